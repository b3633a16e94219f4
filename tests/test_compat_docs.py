"""rangebar 7.1.3's documented examples (README.md, docs/api.md, python/rangebar/CLAUDE.md and the module
docstrings of rangebar.exness and rangebar.clickhouse at tag v7.1.3), quoted verbatim and run against this
package with only ``rangebar`` -> ``rangebar_pipeline``.

No network: downloads go to the loopback mirror of the shared fixtures, which has 2024-08-08/09 only,
so each example that names other dates (or counts of bars those two days cannot hold) lists its
substitutions explicitly in ``SUBSTITUTE``; files an example reads (``trades.parquet``, CSVs) are
written from the real BNBUSDT trades, and the names it leaves to the reader (``MyStrategy``,
``trades``, ``process_batch``, ...) are defined in ``namespace``.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import io
import itertools
import re
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from backtesting import Strategy

from tests.api_support import loopback_env
from tests.data_paths import REAL_BNB, SHARED_DATA

EXNESS_ARCHIVE = SHARED_DATA / "exness/ticks/EURGBP_Raw_Spread/2023/06/Exness_EURGBP_Raw_Spread_2023_06.zip"

SPOT_DAYS = {'"2024-01-01"': '"2024-08-08"', '"2024-06-30"': '"2024-08-09"', '"2024-03-31"': '"2024-08-09"'}
SPOT_DAYS |= {'"2024-01-31"': '"2024-08-09"', '"2024-12-31"': '"2024-08-09"'}
#: (where, code as documented, substitutions beyond the import)
EXAMPLES: list[tuple[str, str, dict[str, str]]] = [
    (
        "README.md quick start",
        """
from rangebar import get_range_bars

# Fetch data and generate range bars in one call
df = get_range_bars("BTCUSDT", "2024-01-01", "2024-06-30")

# Use with backtesting.py
from backtesting import Backtest, Strategy
bt = Backtest(df, MyStrategy, cash=10000, commission=0.0002)
stats = bt.run()
""",
        SPOT_DAYS,
    ),
    (
        "README.md get_range_bars",
        """
from rangebar import get_range_bars

# Basic usage - Binance spot
df = get_range_bars("BTCUSDT", "2024-01-01", "2024-06-30")

# Using threshold presets
df = get_range_bars("BTCUSDT", "2024-01-01", "2024-03-31", threshold_decimal_bps="tight")

# Binance USD-M Futures
df = get_range_bars("BTCUSDT", "2024-01-01", "2024-03-31", market="futures-um")

# With microstructure data (vwap, buy_volume, sell_volume)
df = get_range_bars("BTCUSDT", "2024-01-01", "2024-01-31", include_microstructure=True)
""",
        {'"2024-03-31", market="futures-um"': '"2024-08-08", market="futures-um"'} | SPOT_DAYS,
    ),
    (
        "README.md get_n_range_bars",
        """
from rangebar import get_n_range_bars

# Get last 10,000 bars for ML training
df = get_n_range_bars("BTCUSDT", n_bars=10000)
assert len(df) == 10000

# Get 5,000 bars ending at specific date
df = get_n_range_bars("BTCUSDT", n_bars=5000, end_date="2024-06-01")

# With safety limit (won't fetch more than 30 days of data)
df = get_n_range_bars("BTCUSDT", n_bars=1000, max_lookback_days=30)
""",
        {
            "n_bars=10000)": 'n_bars=300, threshold_decimal_bps=10, end_date="2024-08-09")',
            "== 10000": "== 300",
            'n_bars=5000, end_date="2024-06-01"': (
                'n_bars=50, threshold_decimal_bps=10, end_date="2024-08-09"'
            ),
            "max_lookback_days=30)": 'max_lookback_days=30, end_date="2024-08-09", warn_if_fewer=False)',
        },
    ),
    (
        "README.md presets",
        """
from rangebar import get_range_bars, THRESHOLD_PRESETS

# Using preset string
df = get_range_bars("BTCUSDT", "2024-01-01", "2024-01-31", threshold_decimal_bps="tight")

# Or numeric value
df = get_range_bars("BTCUSDT", "2024-01-01", "2024-01-31", threshold_decimal_bps=50)

# View all presets
print(THRESHOLD_PRESETS)
# {'micro': 10, 'tight': 50, 'standard': 100, 'medium': 250, 'wide': 500, 'macro': 1000}
""",
        SPOT_DAYS,
    ),
    (
        "README.md constants",
        """
from rangebar import TIER1_SYMBOLS, THRESHOLD_PRESETS, THRESHOLD_DECIMAL_MIN, THRESHOLD_DECIMAL_MAX

# 18 high-liquidity symbols available on all Binance markets
print(TIER1_SYMBOLS)
# ('AAVE', 'ADA', 'AVAX', 'BCH', 'BNB', 'BTC', 'DOGE', 'ETH', 'FIL',
#  'LINK', 'LTC', 'NEAR', 'SOL', 'SUI', 'UNI', 'WIF', 'WLD', 'XRP')

# Valid threshold range
print(f"Min: {THRESHOLD_DECIMAL_MIN}, Max: {THRESHOLD_DECIMAL_MAX}")
# Min: 1, Max: 100000
""",
        {},
    ),
    (
        "README.md own trades",
        """
import pandas as pd
from rangebar import process_trades_to_dataframe

# Load your own trade data
trades = pd.read_csv("BTCUSDT-aggTrades.csv")

# Convert to range bars
df = process_trades_to_dataframe(trades, threshold_decimal_bps=250)
""",
        {},
    ),
    (
        "README.md polars",
        """
import polars as pl
from rangebar import process_trades_polars

# LazyFrame with predicate pushdown
lazy_df = pl.scan_parquet("trades.parquet").filter(pl.col("timestamp") >= start_ts)
bars = process_trades_polars(lazy_df, threshold_decimal_bps=250)
""",
        {},
    ),
    (
        "README.md chunked",
        """
from rangebar import process_trades_chunked

# Process 10M+ trades without OOM
for bars_df in process_trades_chunked(iter(trades), chunk_size=50_000):
    process_batch(bars_df)
""",
        {},
    ),
    (
        "docs/api.md process_trades_to_dataframe",
        """
import pandas as pd
from rangebar import process_trades_to_dataframe

# Example 1: List of dicts
trades = [
    {"timestamp": 1704067200000, "price": 42000.0, "quantity": 1.5},
    {"timestamp": 1704067210000, "price": 42105.0, "quantity": 2.3},
    {"timestamp": 1704067220000, "price": 42000.0, "quantity": 1.8},
]

df = process_trades_to_dataframe(trades, threshold_decimal_bps=250)
print(df.head())
#                          Open      High       Low     Close  Volume
# timestamp
# 2024-01-01 00:00:10  42000.0  42105.0  42000.0  42105.0    3.8

# Example 2: DataFrame input
trades_df = pd.DataFrame({
    "timestamp": pd.date_range("2024-01-01", periods=100, freq="min"),
    "price": [42000 + i*10 for i in range(100)],
    "quantity": [1.5] * 100,
})

df = process_trades_to_dataframe(trades_df, threshold_decimal_bps=250)
print(f"Generated {len(df)} range bars from {len(trades_df)} trades")
""",
        {},
    ),
    (
        "docs/api.md RangeBarProcessor",
        """
from rangebar import RangeBarProcessor

# Create processor with 0.25% threshold
processor = RangeBarProcessor(threshold_decimal_bps=250)

# Access threshold
print(processor.threshold_decimal_bps)  # 250

processor = RangeBarProcessor(threshold_decimal_bps=250)

trades = [
    {"timestamp": 1704067200000, "price": 42000.0, "quantity": 1.5},
    {"timestamp": 1704067210000, "price": 42105.0, "quantity": 2.3},
]

bars = processor.process_trades(trades)
print(bars[0])

processor = RangeBarProcessor(threshold_decimal_bps=250)
bars = processor.process_trades(trades)
df = processor.to_dataframe(bars)

print(df.head())

processor = RangeBarProcessor(threshold_decimal_bps=250)

# Process first batch
bars1 = processor.process_trades(trades1)

# Reset before processing new batch
processor.reset()

# Process second batch (independent)
bars2 = processor.process_trades(trades2)

processor = RangeBarProcessor(threshold_decimal_bps=250)
print(processor.threshold_decimal_bps)  # 250
print(processor.threshold_decimal_bps * 0.001)  # 0.25 (percentage)
""",
        {},
    ),
    (
        "docs/api.md usage patterns",
        """
import pandas as pd
from rangebar import process_trades_to_dataframe, RangeBarProcessor

thresholds = [100, 250, 500, 1000]

for threshold in thresholds:
    df = process_trades_to_dataframe(trades, threshold_decimal_bps=threshold)
    print(f"Threshold {threshold}: {len(df)} bars")

processor = RangeBarProcessor(threshold_decimal_bps=250)

all_bars = []
for chunk in pd.read_csv("large_file.csv", chunksize=100_000):
    bars = processor.process_trades(chunk.to_dict("records"))
    all_bars.extend(bars)

df = processor.to_dataframe(all_bars)

symbols = ["BTCUSDT", "ETHUSDT", "BNBUSDT"]

results = {}
for symbol in symbols:
    trades = pd.read_csv(f"{symbol}-aggTrades.csv")
    results[symbol] = process_trades_to_dataframe(trades, threshold_decimal_bps=250)

# Compare bar counts
for symbol, df in results.items():
    print(f"{symbol}: {len(df)} bars")
""",
        {},
    ),
    (
        "python/rangebar/CLAUDE.md storage and validation",
        """
from rangebar.storage.parquet import TickStorage
storage = TickStorage()
ticks = storage.get_ticks("BTCUSDT", start, end)

from rangebar.validation.tier1 import validate_tier1
result = validate_tier1(df)
assert result["tier1_passed"]

from rangebar.validation.tier2 import validate_tier2
df["forward_return"] = df["Close"].shift(-1) / df["Close"] - 1
result = validate_tier2(df)
""",
        {},
    ),
    (
        "python/rangebar/CLAUDE.md get_n_range_bars",
        """
from rangebar import get_n_range_bars

df = get_n_range_bars(
    "BTCUSDT",
    n_bars=10000,
    threshold_decimal_bps=250,
)
assert len(df) == 10000  # Exact count guaranteed
""",
        {"n_bars=10000": 'n_bars=300, end_date="2024-08-09"', "=250": "=10", "== 10000": "== 300"},
    ),
    (
        "python/rangebar/exness.py usage",
        """
from rangebar.exness import (
    ExnessInstrument,
    ExnessRangeBarBuilder,
    ValidationStrictness,
    process_exness_ticks_to_dataframe,
)

# Create builder for EURUSD with 25bps threshold
builder = ExnessRangeBarBuilder(
    ExnessInstrument.EURUSD,
    threshold_decimal_bps=250,
    strictness=ValidationStrictness.Strict,
)

# Process tick data
for tick in ticks:
    bar = builder.process_tick(tick)
    if bar:
        print(f"Bar closed: {bar}")
""",
        {},
    ),
    (
        "python/rangebar/exness.py process_exness_ticks_to_dataframe",
        """
from rangebar.exness import (
    ExnessInstrument,
    process_exness_ticks_to_dataframe,
)
import pandas as pd
ticks = pd.DataFrame({
    "bid": [1.0800, 1.0810, 1.0830],
    "ask": [1.0805, 1.0815, 1.0835],
    "timestamp_ms": [1600000000000, 1600001000000, 1600002000000],
})
bars = process_exness_ticks_to_dataframe(
    ticks, ExnessInstrument.EURUSD, threshold_decimal_bps=250
)
""",
        {},
    ),
    (
        "python/rangebar/clickhouse/__init__.py",
        """
from rangebar.clickhouse import RangeBarCache, get_available_clickhouse_host
from rangebar import process_trades_to_dataframe_cached

# Check ClickHouse availability
host = get_available_clickhouse_host()
print(f"Using ClickHouse at {host.host} via {host.method}")

# Use cached processing
df = process_trades_to_dataframe_cached(trades, symbol="BTCUSDT")
""",
        {},
    ),
]


class MyStrategy(Strategy):  # type: ignore[misc]
    def init(self) -> None:
        pass

    def next(self) -> None:
        pass


@pytest.fixture
def namespace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """The loopback mirror, a working directory with the files the examples read, and their names."""
    env = loopback_env(tmp_path / "cache", monkeypatch)
    next(env)
    monkeypatch.chdir(tmp_path)
    trades = pl.read_parquet(REAL_BNB).select("timestamp", pl.col("close").alias("price"), "quantity")
    trades.write_parquet("trades.parquet")
    for name in ("BTCUSDT-aggTrades.csv", "ETHUSDT-aggTrades.csv", "BNBUSDT-aggTrades.csv", "large_file.csv"):
        trades.write_csv(name)
    records = trades.to_dicts()
    with zipfile.ZipFile(EXNESS_ARCHIVE) as archive:
        quotes = pl.read_csv(archive.read(archive.namelist()[0]), n_rows=300)
    ms = quotes["Timestamp"].str.strptime(pl.Datetime("ms"), "%Y-%m-%d %H:%M:%S%.fZ").cast(pl.Int64)
    batches: list[Any] = []
    from rangebar_pipeline import get_range_bars

    yield {
        "MyStrategy": MyStrategy,
        "trades": records,
        "ticks": pl.DataFrame({"bid": quotes["Bid"], "ask": quotes["Ask"], "timestamp_ms": ms}).to_dicts(),
        "trades1": records[:4000],
        "trades2": records[4000:],
        "start_ts": records[100]["timestamp"],
        "start": None,
        "end": None,
        "process_batch": batches.append,
        "df": get_range_bars("BTCUSDT", "2024-08-08", "2024-08-09", 10, include_microstructure=True),
    }
    next(env, None)


#: Examples 7.1.3 itself runs here (no download, no ClickHouse server): what they print is compared with
#: what 7.1.3 prints. The others are compared on the prints 7.1.3 can make (imports and prints of
#: imported names, e.g. ``print(THRESHOLD_PRESETS)``) and on the values the documentation prints.
RUNS_ON_7_1_3 = {
    "README.md constants",
    "README.md own trades",
    "README.md polars",
    "README.md chunked",
    "docs/api.md process_trades_to_dataframe",
    "docs/api.md RangeBarProcessor",
    "docs/api.md usage patterns",
    "python/rangebar/exness.py usage",
    "python/rangebar/exness.py process_exness_ticks_to_dataframe",
}
#: Documented outputs that 7.1.3 does not print either (slips of its docs): 7.1.3's own print is the oracle.
DOC_SLIPS = {("docs/api.md process_trades_to_dataframe", "df.head()")}


def run(code: str, where: str, namespace: dict[str, Any]) -> tuple[str, BaseException | None]:
    """Execute ``code``; return what it printed and the error that stopped it (None: it completed)."""
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exec(compile(code, where, "exec"), namespace)
    except Exception as exc:  # 7.1.3's examples may stop where 7.1.3 lacks what its docs name
        return out.getvalue(), exc
    return out.getvalue(), None


def printable_subset(code: str) -> str:
    """The imports of ``code`` and its prints of imported names only (runnable without data)."""
    tree = ast.parse(code)
    imported = {a.asname or a.name for n in tree.body if isinstance(n, ast.ImportFrom) for a in n.names}
    kept: list[ast.stmt] = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    for node in tree.body:
        call = node.value if isinstance(node, ast.Expr) else None
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "print":
            names = {n.id for a in call.args for n in ast.walk(a) if isinstance(n, ast.Name)}
            if names <= imported:
                kept.append(node)
    return ast.unparse(ast.Module(body=kept, type_ignores=[]))


def documented_prints(code: str) -> list[tuple[str, str]]:
    """``(printed expression, text the docs show)``: an inline ``print(x)  # value`` (its first word) or
    the ``#`` lines right below a ``print(...)`` (joined as the docs wrap them)."""
    found: list[tuple[str, str]] = []
    lines = code.splitlines()
    for i, line in enumerate(lines):
        match = re.match(r"^print\((.*?)\)\s*(?:#\s*(\S+).*)?$", line.strip())
        if match is None:
            continue
        if match.group(2):
            found.append((match.group(1), match.group(2)))
            continue
        block = list(itertools.takewhile(lambda t: t.strip().startswith("#"), lines[i + 1 :]))
        if block:
            found.append((match.group(1), " ".join(t.strip().lstrip("#").strip() for t in block)))
    return found


def same_print(ours: str, theirs: str) -> bool:
    """Equal, except that a printed bar dict may hold more keys after 7.1.3's (docs/migration.md)."""
    if ours == theirs:
        return True
    if not (ours.startswith("{") and theirs.startswith("{")):
        return False
    mine, ref = ast.literal_eval(ours), ast.literal_eval(theirs)
    return isinstance(mine, dict) and isinstance(ref, dict) and {k: mine[k] for k in ref} == ref


@pytest.mark.parametrize(("where", "code", "substitute"), EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_documented_example_runs_and_prints_what_7_1_3_prints(
    where: str, code: str, substitute: dict[str, str], namespace: dict[str, Any]
) -> None:
    original = code
    for old, new in {"from rangebar": "from rangebar_pipeline", **substitute}.items():
        assert old in code or old in SPOT_DAYS, f"{where}: {old!r} is not in the example"
        code = code.replace(old, new)
    printed, error = run(code, where, dict(namespace))  # the documented example, with only the import changed
    assert error is None, f"{where}: {error!r}"
    ours = printed.splitlines()
    if where in RUNS_ON_7_1_3:
        reference, stopped = run(original, where, copy.deepcopy(namespace))
    else:
        reference, stopped = run(printable_subset(original), where, {})
        ours = run(printable_subset(code), where, {})[0].splitlines()
    theirs = reference.splitlines()
    if stopped is not None:  # 7.1.3 lacks something its docs use (reset()): compare what it printed before
        assert isinstance(stopped, AttributeError) and "reset" in str(stopped), stopped
        assert len(ours) > len(theirs)
        ours = ours[: len(theirs)]
    assert len(ours) == len(theirs) and all(map(same_print, ours, theirs)), (where, ours, theirs)
    for expression, shown in documented_prints(original):
        if (where, expression) in DOC_SLIPS:
            continue
        assert shown in printed.splitlines() or any(line.split()[:1] == [shown] for line in ours), (
            where,
            expression,
            shown,
            printed,
        )
