"""Where the caches live: one root for the tick files, the embedded bar store and pipeline outputs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

import platformdirs

#: Environment variable naming the cache root.
CACHE_DIR_ENV: Final = "RANGEBAR_CACHE_DIR"


def default_cache_dir() -> Path:
    """``$RANGEBAR_CACHE_DIR``, else the platform's user cache directory for ``rangebar``."""
    env = os.environ.get(CACHE_DIR_ENV)
    return Path(env).expanduser() if env else platformdirs.user_cache_path("rangebar", appauthor=False)
