"""Atomic file replacement: write a temp file beside the target, fsync, rename, fsync the directory."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["TEMP_SUFFIX", "atomic_write", "remove_temp_files", "temp_files"]

#: Temp files are ``.<target name>.<pid>.<random>.tmp``: hidden, and never named like data.
TEMP_SUFFIX = ".tmp"


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> int:
    """Replace ``path`` with what ``write`` writes to a binary file, atomically; return its size.

    A crash at any point leaves either the previous ``path`` or none, never a torn file (at worst a
    stray temp file, which :func:`remove_temp_files` deletes).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
    try:
        with tmp.open("xb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        size = tmp.stat().st_size
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)
    return size


def fsync_directory(directory: Path) -> None:
    """Make a rename or unlink in ``directory`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def temp_files(path: Path) -> list[Path]:
    """Temp files left beside ``path`` by interrupted writes."""
    return sorted(path.parent.glob(f".{path.name}.*{TEMP_SUFFIX}"))


def remove_temp_files(path: Path) -> int:
    """Delete temp files left beside ``path``; call only while holding ``path``'s writer lock."""
    stale = temp_files(path)
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    return len(stale)
