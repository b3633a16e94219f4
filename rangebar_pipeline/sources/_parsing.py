"""Parsing helpers shared by the sources: zip members, exact decimals, row-naming errors."""

from __future__ import annotations

import io
import re
import struct
import zipfile
import zlib
from collections.abc import Iterator
from types import ModuleType
from typing import Any, Final

import polars as pl

from rangebar_pipeline.exceptions import CorruptArchiveError
from rangebar_pipeline.schema import PRICE_DECIMAL

_isal_zlib: ModuleType | None
_igzip: ModuleType | None
try:  # optional accelerator
    from isal import igzip as _igzip
    from isal import isal_zlib as _isal_zlib
except ImportError:  # pragma: no cover - depends on the environment
    _isal_zlib = _igzip = None

_LOCAL_HEADER = b"PK\x03\x04"
#: A plain non-negative decimal whose digits past the 8th decimal are all zero (exact at 1e-8).
_EXACT_DECIMAL = r"^[0-9]+(\.[0-9]{0,8}0*)?$"
_EXACT_SIGNED_DECIMAL = r"^-?[0-9]+(\.[0-9]{0,8}0*)?$"


#: Compressed bytes inflated per piece by :func:`iter_zip_member` (~5x that decompressed).
PIECE_SIZE: Final = 1 << 20
#: Inflated bytes per piece per compressed byte of ``piece_size`` with ISA-L (a typical ratio).
_ISAL_PIECE_RATIO: Final = 5
#: A gzip member header (no name, no time) and trailer (CRC-32, size mod 2**32) around a deflate
#: stream: how ISA-L's gzip reader inflates a zip member straight into pieces of a chosen size.
_GZIP_HEADER: Final = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
_GZIP_TRAILER: Final = struct.Struct("<II")


def read_zip_member(
    data: bytes, *, origin: str, member: str | None = None, accelerated: bool = True
) -> tuple[str, bytes]:
    """The one file inside a zip archive (or ``member`` when given), decompressed and CRC-checked.

    Deflated members are inflated with ISA-L (``isal``, ~3x faster than zlib) when it is installed
    and ``accelerated``; otherwise by the standard library.

    Raises:
        CorruptArchiveError: The archive is truncated or corrupt, or does not hold exactly one file
            (or the named ``member``).
    """
    name, pieces = iter_zip_member(data, origin=origin, member=member, accelerated=accelerated)
    return name, b"".join(pieces)


def iter_zip_member(
    data: bytes,
    *,
    origin: str,
    member: str | None = None,
    accelerated: bool = True,
    piece_size: int = PIECE_SIZE,
) -> tuple[str, Iterator[bytes]]:
    """Like :func:`read_zip_member`, but the content comes in pieces as it is inflated.

    Pieces split the content at arbitrary bytes: ``piece_size`` compressed bytes' worth each (with
    ISA-L, ``5 * piece_size`` inflated bytes each). Size and CRC-32 are checked when the last piece
    has been produced: a consumer must not keep anything unless the iterator ran to its end.

    Raises:
        CorruptArchiveError: As :func:`read_zip_member` (while iterating, for damaged content).
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            info = _member_info(archive, origin=origin, member=member)
            if info.flag_bits & 1 or info.compress_type not in (zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED):
                return info.filename, iter([archive.read(info)])
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as exc:
        raise CorruptArchiveError(f"{origin}: corrupt or truncated zip archive ({exc})") from exc
    return info.filename, _pieces(data, info, origin=origin, accelerated=accelerated, piece_size=piece_size)


def _member_info(archive: zipfile.ZipFile, *, origin: str, member: str | None) -> zipfile.ZipInfo:
    unsafe = [info.filename for info in archive.infolist() if not _safe_name(info.filename)]
    if unsafe:  # zip-slip: nothing is extracted by name here, but such an archive is not the source's
        raise CorruptArchiveError(
            f"{origin}: unsafe entry name(s) {unsafe} in the zip (absolute, or escaping the archive with "
            "'..', a drive or a backslash); refused"
        )
    infos = [info for info in archive.infolist() if not info.is_dir()]
    names = [info.filename for info in infos]
    if member is not None and member in names:
        return infos[names.index(member)]
    if len(infos) == 1:
        return infos[0]
    wanted = f"{member!r} or exactly one file" if member else "exactly one file"
    raise CorruptArchiveError(f"{origin}: expected {wanted} in the zip, found {names}")


def _safe_name(name: str) -> bool:
    """A relative entry name that stays inside the archive (no ``..`` part, drive, backslash or NUL)."""
    if not name or "\x00" in name or "\\" in name or name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return False
    return ".." not in name.split("/")


def _pieces(
    data: bytes, info: zipfile.ZipInfo, *, origin: str, accelerated: bool, piece_size: int
) -> Iterator[bytes]:
    """Inflate (or copy) one member straight from the archive bytes, checking size and CRC-32."""
    view = memoryview(data)
    try:
        offset = info.header_offset
        if data[offset : offset + 4] != _LOCAL_HEADER:
            raise zipfile.BadZipFile(f"no local file header for {info.filename!r}")
        name_length, extra_length = struct.unpack_from("<HH", data, offset + 26)
        start = offset + 30 + name_length + extra_length
        compressed = view[start : start + info.compress_size]
        if len(compressed) != info.compress_size:
            raise zipfile.BadZipFile(f"{info.filename!r} is truncated")
        if info.compress_type == zipfile.ZIP_DEFLATED and accelerated and _igzip is not None:
            yield from _isal_pieces(compressed, info, piece_size * _ISAL_PIECE_RATIO)
            return
        zlib_module: Any = _isal_zlib if accelerated and _isal_zlib is not None else zlib
        inflater = zlib_module.decompressobj(-15) if info.compress_type == zipfile.ZIP_DEFLATED else None
        crc, size = 0, 0
        for at in range(0, len(compressed), piece_size):
            piece = compressed[at : at + piece_size]
            content = inflater.decompress(piece) if inflater is not None else bytes(piece)
            crc, size = zlib_module.crc32(content, crc), size + len(content)
            if size > info.file_size:
                break
            yield content
        if inflater is not None:
            tail = inflater.flush()
            crc, size = zlib_module.crc32(tail, crc), size + len(tail)
            if not inflater.eof:
                raise zipfile.BadZipFile(f"{info.filename!r}: the deflate stream is truncated")
            if tail and size <= info.file_size:
                yield tail
        if size != info.file_size or crc != info.CRC:
            raise zipfile.BadZipFile(f"bad CRC-32 or size for {info.filename!r}")
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        raise CorruptArchiveError(f"{origin}: corrupt or truncated zip archive ({exc})") from exc
    except Exception as exc:
        if _isal_zlib is not None and isinstance(exc, _isal_zlib.error):
            raise CorruptArchiveError(f"{origin}: corrupt or truncated zip archive ({exc})") from exc
        raise


def _isal_pieces(compressed: memoryview, info: zipfile.ZipInfo, piece_size: int) -> Iterator[bytes]:
    """A deflated member inflated by ISA-L's gzip reader (no GIL) into pieces of ``piece_size``
    bytes, each allocated once at its size (``decompressobj`` grows a list of blocks and joins
    them: a copy, and fresh memory for every piece); the reader checks the CRC-32 and the size
    (mod 2**32) given in the trailer, the exact size is checked here."""
    assert _igzip is not None
    trailer = _GZIP_TRAILER.pack(info.CRC, info.file_size & 0xFFFFFFFF)
    size = 0
    with _igzip.IGzipFile(fileobj=_Concatenated(_GZIP_HEADER, compressed, trailer), mode="rb") as member:
        while True:
            try:
                piece = member.read(min(piece_size, info.file_size - size + 1))
            except EOFError as exc:
                raise zipfile.BadZipFile(
                    f"{info.filename!r}: the deflate stream is truncated ({exc})"
                ) from exc
            except OSError as exc:  # gzip.BadGzipFile: the trailer's CRC-32 or size
                raise zipfile.BadZipFile(f"bad CRC-32 or size for {info.filename!r} ({exc})") from exc
            size += len(piece)
            if not piece or size > info.file_size:
                break
            yield piece
    if size != info.file_size:
        raise zipfile.BadZipFile(
            f"bad CRC-32 or size for {info.filename!r}: {size} bytes, not {info.file_size}"
        )


class _Concatenated(io.RawIOBase):
    """A read-only file of ``parts`` one after the other (no copy of the parts)."""

    def __init__(self, *parts: bytes | memoryview) -> None:
        super().__init__()
        self._parts = [memoryview(part).cast("B") for part in parts]
        self._index = self._offset = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while self._index < len(self._parts):
            part = self._parts[self._index]
            if self._offset < len(part):
                count = min(len(buffer), len(part) - self._offset)
                buffer[:count] = part[self._offset : self._offset + count]
                self._offset += count
                return count
            self._index, self._offset = self._index + 1, 0
        return 0


def row_error(origin: str, frame: pl.DataFrame, bad: pl.Series, what: str, *, header_lines: int) -> str:
    """A message naming the first row where ``bad`` is true (1-based CSV line), its values and ``what``."""
    index = int(bad.arg_true()[0])
    count = int(bad.sum())
    row = frame.row(index, named=True)
    more = f" ({count - 1} more row(s) like it)" if count > 1 else ""
    return f"{origin}: line {index + 1 + header_lines}: {what}: {row}{more}"


def exact_decimals(
    frame: pl.DataFrame, columns: tuple[str, ...], *, origin: str, header_lines: int, signed: bool = False
) -> pl.DataFrame:
    """Cast the string ``columns`` to Decimal(18, 8) exactly, refusing anything that would round.

    Only plain decimals are accepted (no exponent, no ``+``; a ``-`` only when ``signed``).

    Raises:
        CorruptArchiveError: A value is missing, not a plain non-negative decimal, has non-zero digits
            past the 8th decimal, or does not fit Decimal(18, 8); the message names the line.
    """
    pattern = _EXACT_SIGNED_DECIMAL if signed else _EXACT_DECIMAL
    sign = "a" if signed else "a non-negative"
    checks = frame.select([pl.col(c).str.contains(pattern).fill_null(False).not_().alias(c) for c in columns])
    for column in columns:
        bad = checks[column]
        if bad.any():
            raise CorruptArchiveError(
                row_error(
                    origin,
                    frame,
                    bad,
                    f"{column} is not {sign} decimal with at most 8 decimals",
                    header_lines=header_lines,
                )
            )
    cast = frame.with_columns([pl.col(c).cast(PRICE_DECIMAL, strict=False) for c in columns])
    for column in columns:
        bad = cast[column].is_null()
        if bad.any():
            raise CorruptArchiveError(
                row_error(
                    origin, frame, bad, f"{column} does not fit Decimal(18, 8)", header_lines=header_lines
                )
            )
    return cast


def require_no_nulls(frame: pl.DataFrame, *, origin: str, header_lines: int) -> None:
    """Raise :class:`CorruptArchiveError` naming the first line with an empty field."""
    if frame.null_count().sum_horizontal().item() == 0:
        return
    bad = frame.select(pl.any_horizontal(pl.all().is_null())).to_series()
    raise CorruptArchiveError(row_error(origin, frame, bad, "empty field", header_lines=header_lines))
