"""Type stubs of the Rust extension ``rangebar_pipeline._core`` (checked by ``mypy.stubtest``)."""

from collections.abc import Mapping
from typing import Any, Final, Literal, Protocol, final, type_check_only

import numpy as np
import numpy.typing as npt

__all__ = [
    "BAR_COLUMNS",
    "CHECKPOINT_VERSION",
    "INTRA_COLUMNS",
    "LOOKBACK_COLUMNS",
    "LOOKBACK_TRADES_MAX",
    "THRESHOLD_DECIMAL_MAX",
    "THRESHOLD_DECIMAL_MIN",
    "AggTradesCsvParser",
    "BarBatch",
    "Checkpoint",
    "Processor",
    "__version__",
    "decimal128_to_fixed_point",
    "to_fixed_point",
]

THRESHOLD_DECIMAL_MIN: Final[int]
THRESHOLD_DECIMAL_MAX: Final[int]
CHECKPOINT_VERSION: Final[int]
__version__: Final[str]

#: Every bar column the kernel emits, in output order (kept equal to features.toml by a test).
_BarColumn = Literal[
    "open_time",
    "close_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "vwap",
    "buy_volume",
    "sell_volume",
    "turnover",
    "buy_turnover",
    "sell_turnover",
    "individual_trade_count",
    "agg_record_count",
    "buy_trade_count",
    "sell_trade_count",
    "first_agg_trade_id",
    "last_agg_trade_id",
    "first_trade_id",
    "last_trade_id",
    "duration_us",
    "ofi",
    "vwap_close_deviation",
    "price_impact",
    "kyle_lambda_proxy",
    "trade_intensity",
    "volume_per_trade",
    "aggression_ratio",
    "aggregation_efficiency",
    "turnover_imbalance",
]
BAR_COLUMNS: Final[tuple[_BarColumn, ...]]
#: The opt-in lookback columns (``lookback_trades=N``), in output order.
_LookbackColumn = Literal[
    "lookback_trade_count",
    "lookback_duration_us",
    "lookback_ofi",
    "lookback_count_imbalance",
    "lookback_intensity",
    "lookback_vwap",
    "lookback_vwap_position",
    "lookback_price_range",
    "lookback_kyle_lambda",
    "lookback_kaufman_er",
    "lookback_garman_klass_vol",
    "lookback_burstiness",
    "lookback_volume_skew",
    "lookback_volume_kurt",
    "lookback_hurst",
    "lookback_permutation_entropy",
]
LOOKBACK_COLUMNS: Final[tuple[_LookbackColumn, ...]]
LOOKBACK_TRADES_MAX: Final[int]
#: The opt-in intra columns (``intra_bar=True``), in output order.
_IntraColumn = Literal[
    "intra_trade_count",
    "intra_duration_us",
    "intra_intensity",
    "intra_ofi",
    "intra_count_imbalance",
    "intra_vwap_position",
    "intra_kyle_lambda",
    "intra_burstiness",
    "intra_volume_skew",
    "intra_volume_kurt",
    "intra_kaufman_er",
    "intra_garman_klass_vol",
    "intra_hurst",
    "intra_permutation_entropy",
    "intra_max_drawdown",
    "intra_max_runup",
    "intra_bull_epoch_density",
    "intra_bull_excess_gain",
    "intra_bull_cv",
    "intra_bear_epoch_density",
    "intra_bear_excess_gain",
    "intra_bear_cv",
]
INTRA_COLUMNS: Final[tuple[_IntraColumn, ...]]

_I64 = npt.NDArray[np.int64]

@type_check_only
class _ArrowStream(Protocol):
    """An object exporting an Arrow C stream (polars, pyarrow, pandas >= 2.2, DuckDB, arro3, ...)."""

    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object: ...

@type_check_only
class _ArrowArray(Protocol):
    """An object exporting an Arrow C array (a record batch as a struct array)."""

    def __arrow_c_array__(self, requested_schema: object | None = None) -> tuple[object, object]: ...

@final
class BarBatch:
    """Bars as an Arrow record batch: pass it to ``polars.DataFrame``, ``pyarrow.record_batch``,
    ``pyarrow.table`` or ``pandas.DataFrame.from_arrow`` (the Arrow PyCapsule interface; no copies).
    The group columns carry validity bitmaps (nulls), the others none."""

    def __arrow_c_schema__(self) -> Any: ...
    def __arrow_c_array__(self, requested_schema: Any | None = None) -> tuple[Any, Any]: ...
    def __arrow_c_stream__(self, requested_schema: Any | None = None) -> Any: ...
    @property
    def num_rows(self) -> int: ...
    @property
    def column_names(self) -> list[str]: ...
    def __len__(self) -> int: ...

@final
class Checkpoint:
    """A lossless snapshot of a processor's state."""

    def to_bytes(self) -> bytes: ...
    @staticmethod
    def from_bytes(data: bytes) -> Checkpoint: ...
    def to_json(self) -> str: ...
    @staticmethod
    def from_json(text: str) -> Checkpoint: ...
    @property
    def threshold_decimal_bps(self) -> int: ...
    @property
    def same_timestamp_gate(self) -> bool: ...
    @property
    def min_duration_us(self) -> int: ...
    @property
    def lookback_trades(self) -> int: ...
    @property
    def intra_bar(self) -> bool: ...
    @property
    def version(self) -> int: ...
    @property
    def has_incomplete_bar(self) -> bool: ...
    @property
    def last_timestamp_us(self) -> int | None: ...
    @property
    def last_agg_trade_id(self) -> int | None: ...
    @property
    def trades_seen(self) -> int: ...
    def __reduce__(self) -> tuple[object, tuple[bytes]]: ...
    def __eq__(self, value: object, /) -> bool: ...

@final
class Processor:
    """The range-bar state machine (batch rule), carried across calls."""

    def __new__(
        cls,
        threshold_decimal_bps: int,
        *,
        same_timestamp_gate: bool = False,
        min_duration_us: int = 0,
        lookback_trades: int = 0,
        intra_bar: bool = False,
    ) -> Processor: ...
    def process(
        self,
        timestamp_us: _I64,
        price: _I64,
        quantity: _I64,
        agg_trade_id: _I64 | None = None,
        first_trade_id: _I64 | None = None,
        last_trade_id: _I64 | None = None,
        is_buyer_maker: npt.NDArray[np.bool_] | None = None,
    ) -> BarBatch: ...
    def process_arrow(
        self,
        data: _ArrowStream | _ArrowArray | Mapping[str, _ArrowStream | _ArrowArray],
        timestamp_mul: int = 1,
        timestamp_div: int = 1,
    ) -> BarBatch | None: ...
    def incomplete_bar(self) -> BarBatch | None: ...
    def checkpoint(self) -> Checkpoint: ...
    @staticmethod
    def from_checkpoint(checkpoint: Checkpoint) -> Processor: ...
    @property
    def threshold_decimal_bps(self) -> int: ...
    @property
    def same_timestamp_gate(self) -> bool: ...
    @property
    def min_duration_us(self) -> int: ...
    @property
    def lookback_trades(self) -> int: ...
    @property
    def intra_bar(self) -> bool: ...
    @property
    def has_incomplete_bar(self) -> bool: ...
    @property
    def trades_seen(self) -> int: ...
    def __reduce__(self) -> tuple[object, tuple[Checkpoint]]: ...

def decimal128_to_fixed_point(words: _I64, scale: int, column: str) -> _I64: ...
def to_fixed_point(values: npt.NDArray[np.float64], column: str) -> _I64: ...

@final
class AggTradesCsvParser:
    """Exact streaming parser of Binance aggTrades CSV (no header) into fixed-point columns."""

    def __new__(cls, fields: int, *, first_line: int = 1, decimal128: bool = False) -> AggTradesCsvParser: ...
    def feed(
        self, data: bytes, start: int = 0
    ) -> dict[str, npt.NDArray[np.int64] | npt.NDArray[np.bool_]]: ...
    def finish(self) -> dict[str, npt.NDArray[np.int64] | npt.NDArray[np.bool_]]: ...
    @property
    def next_line(self) -> int: ...
    @property
    def rows(self) -> int: ...
    @property
    def is_sorted(self) -> bool: ...
    @property
    def timestamp_range(self) -> tuple[int, int] | None: ...
