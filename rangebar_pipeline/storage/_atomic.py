"""Atomic file replacement: write a temp file beside the target, fsync, rename, fsync the directory."""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from rangebar_pipeline.exceptions import StoreError

__all__ = [
    "TEMP_SUFFIX",
    "AtomicFile",
    "atomic_write",
    "is_io_error",
    "remove_temp_files",
    "temp_files",
    "write_failed",
]

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
        """fsync the temp file, rename it to ``path``, fsync the directory; return the file size.

        Raises:
            StoreError: The file could not be written (e.g. the disk is full), naming it; the temp
                file is deleted and ``path`` is unchanged.
        """
        try:
            self.handle.flush()
            os.fsync(self.handle.fileno())
            self.handle.close()
            size = self.tmp.stat().st_size
            self.tmp.replace(self.path)
        except BaseException as exc:
            self.discard()
            if is_io_error(exc):
                raise write_failed(self.path, exc) from exc
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

    Raises:
        StoreError: The file could not be written (a full disk, a read-only directory), naming it;
            ``path`` is unchanged and the temp file deleted.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("xb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        size = tmp.stat().st_size
        tmp.replace(path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if is_io_error(exc):
            raise write_failed(path, exc) from exc
        raise
    fsync_directory(path.parent)
    return size


def is_io_error(exc: BaseException) -> bool:
    """Whether ``exc`` is the OS refusing a write: an ``OSError``, or a writer library's error that
    carries one (polars reports ``... (os error 28)``, Arrow ``[errno 28] ...``)."""
    return isinstance(exc, OSError) or re.search(r"\(os error \d+\)|\[errno \d+\]", str(exc)) is not None


def write_failed(path: Path, exc: BaseException) -> StoreError:
    """The error of a failed write of ``path``: what failed, where (the OS error's text, e.g. ``No space
    left on device``)."""
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return StoreError(f"cannot write {path}: {reason} ({type(exc).__name__}); nothing was replaced")


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
