"""DSN handling of the bar store: resolving, redacting, scrubbing secrets, database name, chDB path.

A DSN is a ClickHouse server URL (``http(s)://user:password@host:8123/database``) or the embedded
engine (``chdb:///absolute/path``, database :data:`DEFAULT_DATABASE`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Final
from urllib.parse import unquote, urlparse, urlunparse

from rangebar_pipeline.exceptions import StoreError
from rangebar_pipeline.paths import default_cache_dir

__all__ = [
    "DEFAULT_DATABASE",
    "DSN_ENV",
    "chdb_path",
    "database_name",
    "is_embedded",
    "location",
    "redact_dsn",
    "resolve_dsn",
    "scrub_secrets",
]

DSN_ENV: Final = "RANGEBAR_CLICKHOUSE_DSN"
DEFAULT_DATABASE: Final = "rangebar"


def resolve_dsn(dsn: str | None = None, *, cache_dir: str | Path | None = None) -> str:
    """The DSN to use: ``dsn``, else ``RANGEBAR_CLICKHOUSE_DSN``, else chDB under the cache directory."""
    if dsn:
        return dsn
    env = os.environ.get(DSN_ENV)
    if env:
        return env
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return f"chdb://{(root / 'clickhouse').resolve()}"


def redact_dsn(dsn: str) -> str:
    """``dsn`` with user and password replaced by ``***`` (safe for logs and errors)."""
    parsed = urlparse(dsn)
    if parsed.username is None and parsed.password is None:
        return dsn
    host = parsed.hostname or ""
    if parsed.port is not None:
        host = f"{host}:{parsed.port}"
    return urlunparse(parsed._replace(netloc=f"***@{host}"))


def _secrets(dsn: str) -> list[str]:
    parsed = urlparse(dsn)
    found = [parsed.password, unquote(parsed.password or ""), parsed.username, unquote(parsed.username or "")]
    return [s for s in found if s and len(s) >= 2]


def scrub_secrets(text: str, dsn: str) -> str:
    """``text`` without the DSN's credentials (the DSN redacted, user and password replaced)."""
    text = text.replace(dsn, redact_dsn(dsn))
    for secret in _secrets(dsn):
        text = text.replace(secret, "***")
    return text


def is_embedded(dsn: str) -> bool:
    """True for an embedded chDB DSN (``chdb:...``)."""
    return dsn.startswith("chdb:")


def chdb_path(dsn: str) -> Path | None:
    """The data directory of a chDB DSN; None for a server DSN."""
    if not is_embedded(dsn):
        return None
    parsed = urlparse(dsn)
    if parsed.netloc and parsed.netloc != "":
        raise StoreError(f"unsupported chDB DSN {dsn!r}: expected chdb:///absolute/path")
    return Path(parsed.path)


def database_name(dsn: str) -> str:
    """The database the store uses: the DSN's path (a server) or :data:`DEFAULT_DATABASE`."""
    if is_embedded(dsn):
        return DEFAULT_DATABASE
    name = urlparse(dsn).path.strip("/").split("/")[0]
    name = unquote(name) or DEFAULT_DATABASE
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise StoreError(f"invalid ClickHouse database name {name!r} in DSN {redact_dsn(dsn)}")
    return name


def location(dsn: str) -> str:
    """Where the store is, without credentials or database: ``clickhouse://host:port`` for a server
    (port 8123, or 8443 for ``https``, when the DSN has none) or ``chdb:///data/directory``."""
    path = chdb_path(dsn)
    if path is not None:
        return f"chdb://{path.as_posix().rstrip('/')}"
    parsed = urlparse(dsn)
    port = parsed.port or (8443 if parsed.scheme == "https" else 8123)
    return f"clickhouse://{parsed.hostname or 'localhost'}:{port}"
