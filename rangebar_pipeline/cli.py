"""The ``rangebar`` command line: bars, precompute, cache status/clear."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rangebar_pipeline.exceptions import RangeBarError
from rangebar_pipeline.series import MARKET_ALIASES, SOURCES, Series

if TYPE_CHECKING:
    import polars as pl

_EPILOG = """examples:
  rangebar bars BTCUSDT 2024-08-08 2024-08-09 --threshold 250 --market um --out bars.parquet
  rangebar precompute BTCUSDT 2024-01-01 2024-06-30 --threshold medium
  rangebar bars BTCUSDT 2024-08-08 2024-08-08 --threshold 25 --lookback-trades 500 --min-duration-us 1000
  rangebar bars BTCUSDT 2024-08-08 2024-08-08 --threshold 250 --intra-bar
  rangebar cache status
  rangebar cache clear --symbol BTCUSDT --market spot

Dates are UTC calendar days (YYYY-MM-DD, end inclusive). Thresholds are decimal basis points
(250 = 0.25 %) or presets (micro, tight, standard, medium, wide, macro). The cache lives in
$RANGEBAR_CACHE_DIR (default: the platform cache dir); $RANGEBAR_CLICKHOUSE_DSN selects a ClickHouse
server for the bars instead of the embedded chDB store."""


def _threshold(value: str) -> int | str:
    return int(value) if value.isdigit() else value


def _series_args(parser: argparse.ArgumentParser, *, symbol_required: bool = True) -> None:
    if symbol_required:
        parser.add_argument("symbol", help="instrument, e.g. BTCUSDT, BTCUSD_PERP, EURGBP")
    parser.add_argument("--source", default="binance", choices=SOURCES, help="data source (default: binance)")
    parser.add_argument(
        "--market", default="spot", choices=sorted(MARKET_ALIASES), help="Binance market (default: spot)"
    )
    parser.add_argument(
        "--cache-dir", type=Path, default=None, help="cache root (default: $RANGEBAR_CACHE_DIR)"
    )


def _non_negative(value: str) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {number}")
    return number


def _option_args(parser: argparse.ArgumentParser) -> None:
    """The bar options (docs/bar-options.md); bars of each combination are cached apart."""
    group = parser.add_argument_group("bar options (opt-in; each combination is cached separately)")
    group.add_argument(
        "--same-timestamp-gate",
        action="store_true",
        help="a trade at the bar's open timestamp cannot close it",
    )
    group.add_argument(
        "--min-duration-us", type=_non_negative, default=0, metavar="D",
        help="a bar closes only on a breach at least D microseconds after its open (default: 0, off)",
    )  # fmt: skip
    group.add_argument(
        "--lookback-trades", type=_non_negative, default=0, metavar="N",
        help="add the lookback_* columns over the N trades before each bar's open (default: 0, off)",
    )  # fmt: skip
    group.add_argument(
        "--intra-bar",
        action="store_true",
        help="add the intra_* columns: statistics of each bar's own trades (default: off)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``rangebar``."""
    parser = argparse.ArgumentParser(
        prog="rangebar",
        description="Exact range bars from Binance and Exness ticks, cached in Parquet and ClickHouse.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    bars = commands.add_parser("bars", help="range bars for a symbol and UTC date range")
    _series_args(bars)
    bars.add_argument("start", help="first UTC day, YYYY-MM-DD")
    bars.add_argument("end", help="last UTC day, YYYY-MM-DD (inclusive)")
    bars.add_argument("--threshold", type=_threshold, default=250, help="dbps or preset (default: 250)")
    bars.add_argument(
        "--out", type=Path, help="write all bar columns to .parquet or .csv instead of printing"
    )
    bars.add_argument("--microstructure", action="store_true", help="print the feature columns too")
    bars.add_argument("--incomplete", action="store_true", help="append the trailing unfinished bar")
    bars.add_argument(
        "--no-cache",
        action="store_true",
        help="read and write no cache (download into a temporary directory)",
    )
    bars.add_argument("--no-fetch", action="store_true", help="never download; use cached ticks only")
    _option_args(bars)

    pre = commands.add_parser("precompute", help="compute and store bars day by day (resumable)")
    _series_args(pre)
    pre.add_argument("start", help="first UTC day, YYYY-MM-DD")
    pre.add_argument("end", help="last UTC day, YYYY-MM-DD (inclusive)")
    pre.add_argument("--threshold", type=_threshold, action="append", help="dbps or preset; repeatable")
    pre.add_argument("--recompute", action="store_true", help="recompute days that are already stored")
    pre.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _option_args(pre)

    cache = commands.add_parser("cache", help="inspect or clear the caches")
    cache_commands = cache.add_subparsers(dest="cache_command", required=True, metavar="ACTION")
    status = cache_commands.add_parser("status", help="what the tick and bar caches hold")
    status.add_argument("--cache-dir", type=Path, default=None, help="cache root")
    clear = cache_commands.add_parser("clear", help="forget cached bars (and ticks with --ticks)")
    clear.add_argument("--symbol", help="only this symbol (with --source/--market)")
    _series_args(clear, symbol_required=False)
    clear.add_argument("--threshold", type=_threshold, help="only this threshold")
    clear.add_argument("--ticks", action="store_true", help="also delete the tick cache files of --symbol")
    return parser


def _print_bars(frame: pl.DataFrame, *, include_microstructure: bool) -> None:
    """The bars as ``get_range_bars`` returns them to pandas users (``timestamp``, ``Open``...,
    features on request), printed by polars: the command never needs pandas."""
    import polars as pl

    from rangebar_pipeline.frames import MICROSTRUCTURE_COLUMNS
    from rangebar_pipeline.schema import BAR_SCHEMA, GROUP_SCHEMAS, OHLCV_COLUMNS

    columns = [pl.col("close_time").alias("timestamp")]
    columns += [pl.col(upper.lower()).alias(upper) for upper in OHLCV_COLUMNS]
    if include_microstructure:
        columns += [pl.col(name) for name in MICROSTRUCTURE_COLUMNS]
        columns += [pl.col(name) for name in frame.columns if name not in BAR_SCHEMA | GROUP_SCHEMAS]
    columns += [pl.col(name) for name in GROUP_SCHEMAS if name in frame.columns]
    with pl.Config(tbl_rows=40, tbl_cols=12, tbl_width_chars=200, tbl_hide_dataframe_shape=True):
        print(frame.select(columns))


def _cmd_bars(args: argparse.Namespace) -> int:
    import polars as pl

    from rangebar_pipeline.api import get_range_bars

    frame = get_range_bars(
        args.symbol, args.start, args.end, args.threshold, source=args.source, market=args.market,
        include_incomplete=args.incomplete, include_microstructure=args.microstructure,
        use_cache=not args.no_cache, fetch_if_missing=not args.no_fetch, cache_dir=args.cache_dir,
        output="polars", same_timestamp_gate=args.same_timestamp_gate,
        min_duration_us=args.min_duration_us, lookback_trades=args.lookback_trades,
        intra_bar=args.intra_bar,
    )  # fmt: skip
    if not isinstance(frame, pl.DataFrame):
        raise TypeError(f"expected a polars frame, got {type(frame).__name__}")
    if args.out is None:
        _print_bars(frame, include_microstructure=args.microstructure)
        print(f"{frame.height} bars")
    else:
        if args.out.suffix == ".csv":
            frame.write_csv(args.out)
        else:
            frame.write_parquet(args.out)
        print(f"wrote {frame.height} bars to {args.out}")
    return 0


def _cmd_precompute(args: argparse.Namespace) -> int:
    from rangebar_pipeline.api import precompute_range_bars

    for threshold in args.threshold or [250]:
        result = precompute_range_bars(
            args.symbol, args.start, args.end, threshold, source=args.source, market=args.market,
            invalidate_existing="overlap" if args.recompute else "smart", show_progress=not args.no_progress,
            cache_dir=args.cache_dir, same_timestamp_gate=args.same_timestamp_gate,
        min_duration_us=args.min_duration_us, lookback_trades=args.lookback_trades,
        intra_bar=args.intra_bar,
        )  # fmt: skip
        print(
            f"{result.series} {result.threshold_decimal_bps} dbps {result.start_date}..{result.end_date}: "
            f"{result.total_bars} bars, {result.days_computed} days computed, {result.days_cached} cached, "
            f"{result.total_ticks} ticks in {result.elapsed_seconds:.1f} s"
        )
    return 0


def _cmd_cache(args: argparse.Namespace) -> int:
    from rangebar_pipeline.storage.bars import BarStore
    from rangebar_pipeline.storage.ticks import TickStore

    # the symbol is checked before any store is opened (or created)
    series = (
        None
        if args.cache_command == "status" or not args.symbol
        else Series.of(args.symbol, source=args.source, market=args.market)
    )
    ticks = TickStore(args.cache_dir)
    with BarStore(cache_dir=args.cache_dir) as store:
        if args.cache_command == "status":
            tick_status = ticks.status()
            print(f"ticks: {ticks.root / 'ticks'}")
            for t in tick_status.series:
                print(
                    f"  {t.source}-{t.market}-{t.symbol}: {t.days} days {t.first_day}..{t.last_day}, "
                    f"{t.rows} ticks, {t.bytes} bytes"
                )
            print(f"  total: {tick_status.days} days, {tick_status.rows} ticks, {tick_status.bytes} bytes")
            bar_status = store.status()
            print(f"bars: {bar_status.dsn}")
            for item in bar_status.series:
                options = f" [{item.options.key}]" if item.options.key else ""
                stale = f", {item.stale_days} stale (older schema or kernel)" if item.stale_days else ""
                print(
                    f"  {item.series} {item.threshold:>6} dbps{options}: {item.days} days "
                    f"{item.first_day}..{item.last_day}, {item.bars} bars from {item.ticks} ticks{stale}"
                )
            stale_total = sum(item.stale_days for item in bar_status.series)
            print(
                f"  total: {bar_status.total_days} days, {bar_status.total_bars} bars"
                + (
                    f"; {stale_total} stale days are recomputed from cached ticks on the next request "
                    "(rangebar precompute --recompute recomputes them now)"
                    if stale_total
                    else ""
                )
            )
            return 0
        if series is not None:
            from rangebar_pipeline.constants import resolve_threshold

            threshold = None if args.threshold is None else resolve_threshold(args.threshold)
            days = store.invalidate(series, threshold)
            deleted = 0
            if args.ticks:
                for day in ticks.list_days(series):
                    deleted += ticks.delete_day(series, day)
            print(
                f"cleared {days} bar days of {series}" + (f" and {deleted} tick days" if args.ticks else "")
            )
        else:
            if args.ticks:
                print("--ticks needs --symbol", file=sys.stderr)
                return 2
            print(f"cleared {store.clear()} bar days")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rangebar`` console script."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "bars":
            return _cmd_bars(args)
        if args.command == "precompute":
            return _cmd_precompute(args)
        return _cmd_cache(args)
    except (RangeBarError, ValueError) as exc:
        print(f"rangebar: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
