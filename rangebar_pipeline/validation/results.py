"""Typed, frozen result objects shared by every validation check.

A check produces a :class:`CheckOutcome` (``passed``, ``failed`` or ``not_applicable`` with a detail
that names the offending rows). Result classes collect outcomes and convert to a plain dict
(``to_dict``) and to JSON-able Dagster metadata (``to_metadata``) without importing Dagster.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

CheckStatus: TypeAlias = Literal["passed", "failed", "not_applicable"]
JSONScalar: TypeAlias = str | int | float | bool | None
JSONValue: TypeAlias = JSONScalar | list["JSONValue"] | dict[str, "JSONValue"]


@dataclass(frozen=True, slots=True)
class CheckOutcome:
    """The outcome of one named check.

    ``rows`` holds the 0-based row positions of the first offending rows (at most a few);
    ``violations`` the total number of offending rows (or junctions, or ticks).
    A non-blocking (informational) check never makes its result fail.
    """

    name: str
    status: CheckStatus
    detail: str = ""
    violations: int = 0
    rows: tuple[int, ...] = ()
    blocking: bool = True

    @property
    def passed(self) -> bool:
        """True unless the check failed (``not_applicable`` counts as passed)."""
        return self.status != "failed"

    def to_dict(self) -> dict[str, JSONValue]:
        """Plain-dict form of the outcome."""
        return {
            "name": self.name,
            "status": self.status,
            "detail": self.detail,
            "violations": self.violations,
            "rows": list(self.rows),
            "blocking": self.blocking,
        }


def passed_check(name: str, detail: str = "", *, blocking: bool = True) -> CheckOutcome:
    """A passed outcome."""
    return CheckOutcome(name, "passed", detail, blocking=blocking)


def not_applicable(name: str, reason: str, *, blocking: bool = True) -> CheckOutcome:
    """An outcome for a check that cannot run on this input (it says why)."""
    return CheckOutcome(name, "not_applicable", reason, blocking=blocking)


def failed_check(
    name: str, detail: str, *, violations: int = 1, rows: Iterable[int] = (), blocking: bool = True
) -> CheckOutcome:
    """A failed outcome naming what was expected and what was found."""
    return CheckOutcome(name, "failed", detail, violations, tuple(rows), blocking)


@dataclass(frozen=True, slots=True)
class CheckedResult(Mapping[str, JSONValue]):
    """Base of the validation results: an ordered tuple of named check outcomes.

    Also a read-only mapping over :meth:`to_dict` (``result["is_valid"]``, ``in``, iteration,
    ``keys``, ``get``, ``dict(result)``), as rangebar 7.1.3 returned plain dicts.
    """

    checks: tuple[CheckOutcome, ...]

    def to_dict(self) -> dict[str, JSONValue]:
        """Plain-dict form (each result class defines its keys)."""
        return {"passed": self.passed, "failures": list[JSONValue](self.failures)}

    def __getitem__(self, key: str) -> JSONValue:
        return self.to_dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())

    @property
    def passed(self) -> bool:
        """True when no blocking check failed."""
        return not self.failures

    @property
    def failures(self) -> list[str]:
        """Names of the failed blocking checks, in check order."""
        return [c.name for c in self.checks if c.blocking and c.status == "failed"]

    @property
    def warnings(self) -> list[str]:
        """Names of the failed informational (non-blocking) checks."""
        return [c.name for c in self.checks if not c.blocking and c.status == "failed"]

    @property
    def skipped(self) -> list[str]:
        """Names of the checks that could not run on this input."""
        return [c.name for c in self.checks if c.status == "not_applicable"]

    def check(self, name: str) -> CheckOutcome:
        """The outcome of the check called ``name`` (KeyError naming the known checks otherwise)."""
        for outcome in self.checks:
            if outcome.name == name:
                return outcome
        known = ", ".join(c.name for c in self.checks)
        raise KeyError(f"no check named {name!r}; this result has: {known}")

    def _checks_metadata(self) -> dict[str, JSONValue]:
        failed_details: dict[str, JSONValue] = {c.name: c.detail for c in self.checks if c.status == "failed"}
        return {
            "passed": self.passed,
            "failures": list[JSONValue](self.failures),
            "warnings": list[JSONValue](self.warnings),
            "not_applicable": list[JSONValue](self.skipped),
            "checks": {c.name: c.status for c in self.checks},
            "failure_details": failed_details,
        }


def json_safe(value: Any) -> JSONValue:
    """Convert numpy scalars, tuples and mappings to plain JSON-able Python values (NaN -> None)."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    item = getattr(value, "item", None)
    if callable(item):  # numpy scalar
        return json_safe(item())
    return str(value)


__all__ = [
    "CheckOutcome",
    "CheckStatus",
    "CheckedResult",
    "JSONValue",
    "failed_check",
    "json_safe",
    "not_applicable",
    "passed_check",
]
