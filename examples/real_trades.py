"""Range bars from real Binance trades (the shared BNBUSDT slice), printed as a backtesting.py frame.

Run: ``.venv/bin/python examples/real_trades.py [path.parquet] [--threshold 25] [--lookback-trades 500]
[--intra-bar]``
"""

from __future__ import annotations

import argparse
from pathlib import Path

import polars as pl

from rangebar_pipeline import RangeBarProcessor, bars_to_pandas

DEFAULT = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "data"
    / "real"
    / "BNBUSDT-aggTrades-2023-06-01-slice.parquet"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("path", nargs="?", type=Path, default=DEFAULT, help="Parquet file of trades")
    parser.add_argument("--threshold", default="25", help="decimal bps (25 = 0.025%%) or a preset name")
    parser.add_argument(
        "--lookback-trades", type=int, default=0, help="add the lookback_* columns over N prior trades"
    )
    parser.add_argument("--intra-bar", action="store_true", help="add the intra_* columns of each bar")
    args = parser.parse_args()
    threshold = int(args.threshold) if args.threshold.isdigit() else args.threshold

    # The slice names its price column "close" and stores is_buyer_maker as text: both are handled.
    trades = pl.read_parquet(args.path).rename({"close": "price"}, strict=False)
    processor = RangeBarProcessor(threshold, lookback_trades=args.lookback_trades, intra_bar=args.intra_bar)
    bars = processor.process(trades)
    frame = bars_to_pandas(bars, include_microstructure=True)
    print(f"{trades.height:,} trades -> {bars.height:,} range bars at {processor.threshold_decimal_bps} dbps")
    shown = ["Open", "High", "Low", "Close", "Volume", "ofi", "duration_us"]
    shown += ["lookback_ofi", "lookback_hurst"] if args.lookback_trades else []
    shown += ["intra_ofi", "intra_max_drawdown", "intra_hurst"] if args.intra_bar else []
    print(frame[shown].tail(10).to_string())
    tail = processor.incomplete_bar()
    if tail is not None:
        print(f"trailing bar in progress: open {tail['open']}, {tail['agg_record_count']} trades")


if __name__ == "__main__":
    main()
