"""A Binance day is written while it is parsed: the file is the one ``write_day`` would write, and any
file that is not already in final order (or is corrupt) takes the whole-day path or leaves nothing."""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import zipfile
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq
import pytest

from rangebar_pipeline.exceptions import CorruptArchiveError
from rangebar_pipeline.schema import TICK_SCHEMA
from rangebar_pipeline.series import Series
from rangebar_pipeline.sources import BinanceVision, binance_vision
from rangebar_pipeline.sources._parsing import iter_zip_member
from rangebar_pipeline.storage import TickStore, tick_files

DAY = date(2024, 8, 8)
SYMBOL = "STREAMUSDT"
ROWS = 5_432
GROUP = 1_000


def _csv(rows: int = ROWS, *, unit_us: bool = False) -> pl.DataFrame:
    """Spot aggTrades columns (no header, 8 columns) spread over ``DAY``."""
    start_ms = int(datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC).timestamp()) * 1000
    i = pl.int_range(rows, eager=True)
    ts = start_ms + i * (86_400_000 // rows)
    return pl.DataFrame(
        {
            "a": i + 7_000,
            "p": ((i * 37 % 1000) + 60_000).cast(pl.String) + ".12345678",
            "q": ((i % 9) + 1).cast(pl.String) + ".5",
            "f": i * 2 + 10,
            "l": i * 2 + 11,
            "T": ts * 1000 if unit_us else ts,
            "m": (i % 3 == 0).replace_strict({True: "True", False: "False"}, return_dtype=pl.String),
            "M": pl.Series(["True"] * rows),
        }
    )


def _publish(root: Path, csv: pl.DataFrame) -> None:
    folder = root / "data" / "spot" / "daily" / "aggTrades" / SYMBOL
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{SYMBOL}-aggTrades-{DAY.isoformat()}"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{name}.csv", csv.write_csv(include_header=False))
    (folder / f"{name}.zip").write_bytes(buffer.getvalue())
    digest = hashlib.sha256(buffer.getvalue()).hexdigest()
    (folder / f"{name}.zip.CHECKSUM").write_text(f"{digest}  {name}.zip\n")


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[TickStore, list[str]]:
    """A store on a ``file://`` mirror, small row groups and small inflated pieces (many chunks);
    the list records every whole-day write."""
    monkeypatch.setattr(tick_files, "ROW_GROUP_ROWS", GROUP)
    monkeypatch.setattr(
        binance_vision, "iter_zip_member", functools.partial(iter_zip_member, piece_size=4096)
    )
    whole_day_writes: list[str] = []
    original = TickStore._write_locked

    def spy(self: TickStore, path: Path, *args: Any, **kwargs: Any) -> Any:
        whole_day_writes.append(path.name)
        return original(self, path, *args, **kwargs)

    monkeypatch.setattr(TickStore, "_write_locked", spy)
    mirror = tmp_path / "mirror"
    return TickStore(tmp_path / "cache", binance=BinanceVision(mirror.as_uri())), whole_day_writes


def _row_groups(path: Path) -> list[int]:
    metadata = pq.ParquetFile(path).metadata
    return [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]


def _footer(path: Path) -> dict[str, Any]:
    meta: dict[str, Any] = json.loads(pq.read_metadata(path).metadata[b"rangebar.tick_store"])
    return meta


@pytest.mark.parametrize("unit_us", [False, True])
def test_a_sorted_day_is_streamed_into_the_file_write_day_writes(
    store: tuple[TickStore, list[str]], tmp_path: Path, unit_us: bool
) -> None:
    tick_store, whole_day_writes = store
    _publish(tmp_path / "mirror", _csv(unit_us=unit_us))
    result = tick_store.fetch_day(Series("binance", "spot", SYMBOL), DAY)
    assert whole_day_writes == []  # written while parsed
    stored = tick_store.read_day(Series("binance", "spot", SYMBOL), DAY)
    assert stored.height == ROWS and dict(stored.schema) == TICK_SCHEMA

    reference = TickStore(tmp_path / "reference").write_day(Series("binance", "spot", SYMBOL), DAY, stored)
    assert _row_groups(result.path) == _row_groups(reference.path) == [GROUP] * 5 + [ROWS - 5 * GROUP]
    assert pq.read_table(result.path).equals(pq.read_table(reference.path))
    streamed, written = _footer(result.path), _footer(reference.path)
    assert streamed.pop("checksum") == result.checksum and streamed.pop("url") == result.url
    assert {**streamed, "checksum": None, "url": None} == written
    assert [p.name for p in result.path.parent.iterdir() if p.name.endswith(".tmp")] == []
    # the same provenance given to write_day: the very same bytes (schema, encodings, statistics,
    # page checksums, row groups and footer)
    same = TickStore(tmp_path / "same").write_day(
        Series("binance", "spot", SYMBOL), DAY, stored, checksum=result.checksum, url=result.url
    )
    assert result.path.read_bytes() == same.path.read_bytes()


def test_an_unsorted_day_is_written_whole_and_sorted(
    store: tuple[TickStore, list[str]], tmp_path: Path
) -> None:
    tick_store, whole_day_writes = store
    csv = _csv()
    swapped = pl.concat([csv.slice(0, 3000), csv.slice(3001, 1), csv.slice(3000, 1), csv.slice(3002)])
    _publish(tmp_path / "mirror", swapped)
    result = tick_store.fetch_day(Series("binance", "spot", SYMBOL), DAY)
    assert whole_day_writes == [result.path.name]
    stored = tick_store.read_day(Series("binance", "spot", SYMBOL), DAY)
    assert stored["agg_trade_id"].to_list() == csv["a"].to_list()
    assert [p.name for p in result.path.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_a_corrupt_day_leaves_no_file(store: tuple[TickStore, list[str]], tmp_path: Path) -> None:
    tick_store, _ = store
    csv = _csv()
    mixed = csv.with_columns(  # ms, then us from row 4000 on (after some row groups were written)
        pl.when(pl.int_range(pl.len()) >= 4000).then(pl.col("T") * 1000).otherwise(pl.col("T")).alias("T")
    )
    _publish(tmp_path / "mirror", mixed)
    with pytest.raises(CorruptArchiveError, match="mixed timestamp units"):
        tick_store.fetch_day(Series("binance", "spot", SYMBOL), DAY)
    folder = tick_store.day_path(Series("binance", "spot", SYMBOL), DAY).parent
    assert [p.name for p in folder.iterdir() if not p.name.endswith(".lock")] == []


def test_a_streamed_fetch_killed_mid_way_leaves_no_day(tmp_path: Path) -> None:
    _publish(tmp_path / "mirror", _csv())
    script = """
        import sys
        from pathlib import Path
        from rangebar_pipeline.sources import BinanceVision
        from rangebar_pipeline.series import Series
        from rangebar_pipeline.storage import TickStore, tick_files
        from tests.test_tick_store_streamed import DAY, GROUP, SYMBOL

        tick_files.ROW_GROUP_ROWS = GROUP
        write = tick_files.StreamedDay._write

        def write_then_wait(self, table):
            write(self, table)
            print("ROW-GROUP-WRITTEN", flush=True)
            sys.stdin.readline()  # wait to be killed

        tick_files.StreamedDay._write = write_then_wait
        root = Path(sys.argv[1])
        TickStore(root / "cache", binance=BinanceVision((root / "mirror").as_uri())).fetch_day(
            Series("binance", "spot", SYMBOL), DAY
        )
    """
    repo = Path(__file__).resolve().parents[1]
    writer = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")])},
        cwd=repo,
    )
    assert writer.stdout is not None
    assert writer.stdout.readline().strip() == "ROW-GROUP-WRITTEN"
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=60)
    store = TickStore(tmp_path / "cache", binance=BinanceVision((tmp_path / "mirror").as_uri()))
    folder = store.day_path(Series("binance", "spot", SYMBOL), DAY).parent
    left = [p.name for p in folder.iterdir() if not p.name.endswith(".lock")]
    assert len(left) == 1 and left[0].startswith(".") and left[0].endswith(".tmp")  # hidden, never data
    assert store.list_days(Series("binance", "spot", SYMBOL)) == []
    result = store.fetch_day(Series("binance", "spot", SYMBOL), DAY)  # the next writer cleans up
    assert [p.name for p in folder.iterdir() if not p.name.endswith(".lock")] == [result.path.name]
    assert store.read_day(Series("binance", "spot", SYMBOL), DAY).height == ROWS
