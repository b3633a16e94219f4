"""Atomic file replacement: write a temp file beside the target, fsync, rename, fsync the directory."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["TEMP_SUFFIX", "AtomicFile", "atomic_write", "remove_temp_files", "temp_files"]

#: Temp files are ``.<target name>.<pid>.<random>.tmp``: hidden, and never named like data.
TEMP_SUFFIX = ".tmp"


class AtomicFile:
    """A temp file beside ``path`` (``handle``) that replaces ``path`` on :meth:`commit`, or is deleted
    by :meth:`discard`: :func:`atomic_write` for writers that cannot run inside one callback."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
        self.handle: BinaryIO = self.tmp.open("xb")
        self._done = False

    def commit(self) -> int:
        """fsync the temp file, rename it to ``path``, fsync the directory; return the file size."""
        try:
            self.handle.flush()
            os.fsync(self.handle.fileno())
            self.handle.close()
            size = self.tmp.stat().st_size
            self.tmp.replace(self.path)
        except BaseException:
            self.discard()
            raise
        self._done = True
        fsync_directory(self.path.parent)
        return size

    def discard(self) -> None:
        """Delete the temp file (no-op after :meth:`commit`)."""
        if not self._done:
            self._done = True
            self.handle.close()
            self.tmp.unlink(missing_ok=True)


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
