"""The bar chart: a valid PNG sized for the metadata dialog, over the bars' own time range."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import polars as pl
import pytest

from rangebar_pipeline.assets import charts
from rangebar_pipeline.assets.charts import HEIGHT, WIDTH, bars_chart_markdown, bars_chart_png, chart_summary
from tests.api_support import SHARED


@pytest.fixture(scope="module")
def bars() -> pl.DataFrame:
    golden = pl.read_parquet(SHARED / "golden" / "spot_BTCUSDT_25.parquet")
    return golden.with_columns(
        pl.from_epoch("close_time_us", time_unit="us").dt.replace_time_zone("UTC").alias("close_time")
    )


def decode(png: bytes) -> np.ndarray:
    """The palette indices of an 8-bit indexed PNG (filter 0 rows), checking its structure."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, offset = {}, 8
    while offset < len(png):
        (length,) = struct.unpack(">I", png[offset : offset + 4])
        kind, data = png[offset + 4 : offset + 8], png[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", png[offset + 8 + length : offset + 12 + length])
        assert crc == zlib.crc32(kind + data), kind
        chunks[kind] = data
        offset += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, colour) == (8, 3) and b"PLTE" in chunks and b"IEND" in chunks
    rows = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), np.uint8).reshape(height, width + 1)
    assert not rows[:, 0].any()  # filter 0
    return rows[:, 1:]


def test_the_chart_spans_the_bars_time_range_with_the_band(bars: pl.DataFrame) -> None:
    image = decode(bars_chart_png(bars, threshold=25))
    assert image.shape == (HEIGHT, WIDTH)
    plot = image[charts._TOP : HEIGHT - charts._BOTTOM, charts._LEFT : WIDTH - charts._RIGHT]
    ink = plot == charts._INK
    # The close path reaches the first and the last column: the x axis is the bars' own range.
    assert ink[:, 0].any() and ink[:, -1].any()
    assert ink.any(axis=0).all()  # and is continuous
    assert (plot == charts._BAND).any()  # the band around the last close
    assert (image == charts._TEXT).sum() > 100  # axis labels


def test_a_five_minute_day_fills_the_width_and_the_summary_is_plain_text(bars: pl.DataFrame) -> None:
    short = bars.head(6)
    assert (short["close_time"][-1] - short["close_time"][0]).total_seconds() < 3600
    ink = decode(bars_chart_png(short, threshold=25)) == charts._INK
    columns = np.flatnonzero(ink.any(axis=0))
    assert columns[0] == charts._LEFT and columns[-1] == WIDTH - charts._RIGHT - 1
    summary = chart_summary(short, threshold=25)
    assert summary.startswith(f"6 bars closed {short['close_time'][0]:%Y-%m-%d %H:%M:%S} .. ")
    assert f"band: ±0.025 % around the last close {short['close'][-1]:g}" in summary
    markdown = bars_chart_markdown(short, threshold=25, title="t")
    assert "data:image/png;base64," in markdown and summary in markdown
    assert bars_chart_markdown(bars.head(0), threshold=25, title="t") == "**t**: no bars closed"
