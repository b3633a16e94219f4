"""Bar options: the opt-in settings that change which bars are cut or which columns they carry.

``same_timestamp_gate`` and ``min_duration_us`` change the bar rule (docs/bar-options.md);
``lookback_trades`` adds the lookback group, ``intra_bar`` the intra group. Bars of different
options are different series of bars: the bar store keys every stored day by
:attr:`BarOptions.key` (``""`` for the defaults, so stores written before the options existed keep
their meaning), the Dagster code version includes it, and a checkpoint carries the same settings,
so gated and ungated bars never mix.

>>> BarOptions().key
''
>>> BarOptions(min_duration_us=1000, lookback_trades=500).key
'min_duration_us=1000,lookback_trades=500'
>>> BarOptions.from_key('min_duration_us=1000,lookback_trades=500').lookback_trades
500
>>> BarOptions(intra_bar=True).key
'intra_bar'
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Final

import polars as pl

from rangebar_pipeline import _core
from rangebar_pipeline.frames import empty_bars
from rangebar_pipeline.schema import bar_schema

if TYPE_CHECKING:
    from rangebar_pipeline.processing import RangeBarProcessor

__all__ = ["DEFAULT_OPTIONS", "LOOKBACK_TRADES_MAX", "BarOptions"]

#: Largest lookback window the kernel accepts (the kernel's own bound).
LOOKBACK_TRADES_MAX: Final[int] = _core.LOOKBACK_TRADES_MAX


@dataclass(frozen=True, slots=True)
class BarOptions:
    """Opt-in bar settings (all off by default); see the module docstring."""

    #: A trade with the bar's open timestamp cannot close the bar.
    same_timestamp_gate: bool = False
    #: A bar closes only on a breach at least this many microseconds after its open (0: off).
    min_duration_us: int = 0
    #: Window of the lookback group in trades (0: the group is off and not computed).
    lookback_trades: int = 0
    #: The intra group: statistics of each bar's own trades (off: not computed).
    intra_bar: bool = False

    def __post_init__(self) -> None:
        for name in ("same_timestamp_gate", "intra_bar"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")
        _check_int("min_duration_us", self.min_duration_us, 0, None)
        _check_int("lookback_trades", self.lookback_trades, 0, LOOKBACK_TRADES_MAX)

    @property
    def key(self) -> str:
        """Canonical text of the settings that are on (``""`` when all are off)."""
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value:
                parts.append(f.name if value is True else f"{f.name}={value}")
        return ",".join(parts)

    @classmethod
    def from_key(cls, key: str) -> BarOptions:
        """Parse :attr:`key` back (``ValueError`` on anything else)."""
        values: dict[str, Any] = {}
        known = {f.name for f in fields(cls)}
        flags = {f.name for f in fields(cls) if f.type in (bool, "bool")}
        for part in filter(None, key.split(",")):
            name, _, raw = part.partition("=")
            if name not in known or name in values:
                raise ValueError(f"bad bar options key {key!r}: unknown or repeated {name!r}")
            try:
                if name in flags and raw:
                    raise ValueError
                values[name] = True if name in flags else int(raw)
            except ValueError:
                raise ValueError(f"bad bar options key {key!r}: {part!r} is not a setting") from None
        options = cls(**values)
        if options.key != key:
            raise ValueError(f"bad bar options key {key!r}: not canonical (expected {options.key!r})")
        return options

    @property
    def bar_schema(self) -> dict[str, pl.DataType]:
        """Columns and dtypes of a bar frame computed with these options."""
        return bar_schema(lookback=self.lookback_trades > 0, intra=self.intra_bar)

    def empty_bars(self) -> pl.DataFrame:
        """A bar frame with no rows and the columns of these options."""
        return empty_bars(lookback=self.lookback_trades > 0, intra=self.intra_bar)

    def processor(self, threshold_decimal_bps: int | str, symbol: str | None = None) -> RangeBarProcessor:
        """A fresh processor with these options."""
        from rangebar_pipeline.processing import RangeBarProcessor

        return RangeBarProcessor(
            threshold_decimal_bps,
            symbol,
            same_timestamp_gate=self.same_timestamp_gate,
            min_duration_us=self.min_duration_us,
            lookback_trades=self.lookback_trades,
            intra_bar=self.intra_bar,
        )

    @classmethod
    def of(cls, processor: RangeBarProcessor) -> BarOptions:
        """The options a processor (or a processor restored from a checkpoint) runs with."""
        return cls(
            processor.same_timestamp_gate,
            processor.min_duration_us,
            processor.lookback_trades,
            processor.intra_bar,
        )

    def __str__(self) -> str:
        return self.key or "default options"


def _check_int(name: str, value: object, low: int, high: int | None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"{low}..={high}" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be {bound}, got {value}")


#: All options off: the plain bar rule, core and microstructure columns.
DEFAULT_OPTIONS: Final = BarOptions()
