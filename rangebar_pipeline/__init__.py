"""rangebar_pipeline: exact, fast range bars from trade ticks."""

from __future__ import annotations
