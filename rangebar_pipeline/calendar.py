"""UTC calendar days: parsing user input, day ranges and day bounds in microseconds (lowest layer)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Final

__all__ = ["US_PER_DAY", "day_start_us", "days", "parse_day"]

#: Microseconds in a UTC day.
US_PER_DAY: Final = 86_400_000_000


def parse_day(value: date | datetime | str, *, name: str = "day", strict: bool = False) -> date:
    """A UTC calendar day from a :class:`datetime.date` or a ``'YYYY-MM-DD'`` string.

    The library API's rule (default): a datetime gives its UTC day (a naive one its own day) and
    a malformed string raises ``ValueError("Invalid date format: ...")``. ``strict=True`` (the tick
    cache's rule) refuses datetimes (``TypeError``) and accepts any ISO 8601 date string.
    """
    if strict:
        if isinstance(value, datetime):
            raise TypeError(
                f"{name} must be a date or 'YYYY-MM-DD' (a UTC calendar day), got datetime {value!r}"
            )
        if isinstance(value, date):
            return value
        if isinstance(value, str):
            try:
                return date.fromisoformat(value.strip())
            except ValueError:
                pass
        raise ValueError(f"{name} must be a date or 'YYYY-MM-DD', got {value!r}")
    if isinstance(value, datetime):
        return (value if value.tzinfo is None else value.astimezone(UTC)).date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return datetime.strptime(value.strip(), "%Y-%m-%d").date()
        except ValueError:
            raise ValueError(f"Invalid date format: {name} {value!r}; expected YYYY-MM-DD") from None
    raise TypeError(f"{name} must be a YYYY-MM-DD string or a date, got {type(value).__name__}")


def days(start: date, end: date) -> list[date]:
    """Every day from ``start`` to ``end``, both included (empty when ``start > end``)."""
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def day_start_us(day: date) -> int:
    """Microseconds since the epoch at ``day`` 00:00 UTC."""
    return (day - date(1970, 1, 1)).days * US_PER_DAY
