"""polars' allocator keeps freed memory for 30 s instead of returning it to the OS within a second.

polars allocates with its own jemalloc, configured by ``_RJEM_MALLOC_CONF``, which it reads once, at
its import; polars itself sets ``dirty_decay_ms:500,muzzy_decay_ms:1000`` and appends what the
process set (the last value wins). With that decay, the buffers of a day's ticks, checks and feature
tables go back to the OS between days and fault in again, 4 KiB at a time, for the next day: a
backfill at six thresholds took ~53 k page faults a day. Kept for 30 s: ~33 k, and ~12 % less CPU a
day, for ~300 MB more peak memory, over 40 days as over 90 (docs/performance.md, "Issue 19, sixth
round").

Importing this package sets the variable, unless the process has it already (set by the user, where
an empty value keeps polars' default, or inherited from a parent process that imported polars or
this package) or imported polars first (then it is too late, and nothing is changed). A Dagster run
worker loads the code location, and with it this package, before anything imports polars.
"""

from __future__ import annotations

import os
import sys
from typing import Final

__all__ = ["POLARS_MALLOC_CONF", "POLARS_MALLOC_ENV", "SET_HERE", "keep_freed_memory"]

POLARS_MALLOC_ENV: Final = "_RJEM_MALLOC_CONF"
#: Freed pages are returned to the OS after 30 s unused (jemalloc's time-based decay).
POLARS_MALLOC_CONF: Final = "dirty_decay_ms:30000,muzzy_decay_ms:30000"


def keep_freed_memory() -> bool:
    """Set :data:`POLARS_MALLOC_CONF` for polars, if it is still up to this package; whether it was."""
    if POLARS_MALLOC_ENV in os.environ or "polars" in sys.modules:
        return False
    os.environ[POLARS_MALLOC_ENV] = POLARS_MALLOC_CONF
    return True


#: Whether this process's import of the package set the variable (a tool spawning other checkouts
#: of the package, such as the benchmarks' baseline, leaves the choice to them).
SET_HERE: Final = keep_freed_memory()
