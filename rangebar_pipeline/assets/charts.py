"""A day's range bars as a small PNG chart, embedded in Dagster markdown metadata as base64.

Each bar is drawn as a vertical line from low to high with its close as a step line, and the band
of the threshold around the last close shows the move that closes the next bar. matplotlib (Agg)
is imported on first use; a chart costs a few tens of milliseconds.
"""

from __future__ import annotations

import base64
import io
import threading
from typing import Any, Final

import polars as pl

__all__ = ["MAX_POINTS", "bars_chart_markdown", "bars_chart_png"]

#: Bars drawn at most; longer days are down-sampled evenly (every bar's range still bounds the plot).
MAX_POINTS: Final = 600
_LOCK = threading.Lock()  # pyplot state is process-global


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def bars_chart_png(bars: pl.DataFrame, *, threshold: int, title: str) -> bytes:
    """PNG bytes of the day's bars: low-high ranges, closes, and the threshold band at the end."""
    frame = bars.select("close_time", "high", "low", "close")
    if frame.height > MAX_POINTS:
        step = frame.height / MAX_POINTS
        frame = frame[[int(i * step) for i in range(MAX_POINTS)]]
    with _LOCK:
        plt = _pyplot()
        fig, ax = plt.subplots(figsize=(5.0, 1.9), dpi=80)
        try:
            times = frame["close_time"].to_list()
            ax.vlines(times, frame["low"].to_list(), frame["high"].to_list(), color="#9db4d0", linewidth=1)
            ax.step(times, frame["close"].to_list(), where="post", color="#1f4e8c", linewidth=1)
            last = float(frame["close"][-1])
            band = last * threshold / 100_000
            ax.axhspan(last - band, last + band, color="#f0a030", alpha=0.25, linewidth=0)
            ax.set_title(title, fontsize=8)
            ax.tick_params(labelsize=6)
            fig.autofmt_xdate()
            fig.tight_layout()
            out = io.BytesIO()
            fig.savefig(out, format="png")
        finally:
            plt.close(fig)
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
