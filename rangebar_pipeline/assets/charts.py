"""A day's range bars as a small PNG chart, embedded in Dagster markdown metadata as base64.

Each bar is drawn as a vertical line from low to high with its close as a step line, and the band
of the threshold around the last close shows the move that closes the next bar. matplotlib's Agg
canvas (no pyplot state, so thread-safe) is imported on first use; a chart costs ~20 ms.
"""

from __future__ import annotations

import base64
import io
import threading
from typing import Final

import numpy as np
import polars as pl

__all__ = ["MAX_POINTS", "bars_chart_markdown", "bars_chart_png", "warm_up"]

#: Bars drawn at most; longer days are down-sampled evenly (every bar's range still bounds the plot).
MAX_POINTS: Final = 600
_US_PER_HOUR: Final = 3_600_000_000


def bars_chart_png(bars: pl.DataFrame, *, threshold: int, title: str) -> bytes:
    """PNG bytes of the day's bars: low-high ranges, closes, and the threshold band at the end.

    The x axis is hours (UTC) of the day the bars closed in.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    frame = bars.select("close_time", "high", "low", "close")
    if frame.height > MAX_POINTS:
        step = frame.height / MAX_POINTS
        frame = frame[[int(i * step) for i in range(MAX_POINTS)]]
    micros = frame["close_time"].dt.epoch("us").to_numpy()
    hours = (micros - micros[0] + micros[0] % (24 * _US_PER_HOUR)) / _US_PER_HOUR
    figure = Figure(figsize=(5.0, 1.8), dpi=80)
    FigureCanvasAgg(figure)  # attaches the Agg canvas to the figure
    axes = figure.add_axes((0.13, 0.14, 0.85, 0.74))
    # Every bar's low-high range as one path broken by NaNs (one artist, not one per bar).
    gaps = np.full(len(hours), np.nan)
    xs = np.column_stack([hours, hours, gaps]).ravel()
    ys = np.column_stack([frame["low"].to_numpy(), frame["high"].to_numpy(), gaps]).ravel()
    axes.plot(xs, ys, color="#9db4d0", linewidth=1)
    axes.step(hours, frame["close"].to_numpy(), where="post", color="#1f4e8c", linewidth=1)
    last = float(frame["close"][-1])
    band = last * threshold / 100_000
    axes.axhspan(last - band, last + band, color="#f0a030", alpha=0.25, linewidth=0)
    # Fixed ticks: the tick locator's text layout would cost more than the rest of the chart.
    axes.set_xlim(0, 24)
    axes.set_xticks([0, 6, 12, 18, 24], ["0h", "6h", "12h", "18h", "24h"], fontsize=6)
    low, high = float(frame["low"].min()), float(frame["high"].max())  # type: ignore[arg-type]
    axes.set_yticks([low, high], [f"{low:g}", f"{high:g}"], fontsize=6)
    axes.set_title(title, fontsize=7, loc="left")
    out = io.BytesIO()
    figure.savefig(out, format="png")
    return out.getvalue()


def bars_chart_markdown(bars: pl.DataFrame, *, threshold: int, title: str) -> str:
    """Markdown with the chart as an inline base64 PNG (or a sentence when no bar closed)."""
    if bars.is_empty():
        return f"**{title}**: no bars closed"
    png = base64.b64encode(bars_chart_png(bars, threshold=threshold, title=title)).decode()
    low, high = bars.select(pl.col("close").min().alias("low"), pl.col("close").max().alias("high")).row(0)
    return (
        f"![{title}](data:image/png;base64,{png})\n\n"
        f"{bars.height} bars, close {low:g} .. {high:g}; "
        f"band: ±{threshold / 1000:g} % around the last close"
    )


def warm_up() -> threading.Thread:
    """Import matplotlib's Agg canvas in a daemon thread (the first chart of a process overlaps it)."""

    def load() -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
        from matplotlib.figure import Figure  # noqa: F401

    thread = threading.Thread(target=load, name="rangebar-charts-warm-up", daemon=True)
    thread.start()
    return thread
