"""Parsing helpers shared by the sources: zip members, exact decimals, row-naming errors."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from types import ModuleType

import polars as pl

from rangebar_pipeline.exceptions import CorruptArchiveError
from rangebar_pipeline.schema import PRICE_DECIMAL

_isal_zlib: ModuleType | None
try:  # optional accelerator
    from isal import isal_zlib as _isal_zlib
except ImportError:  # pragma: no cover - depends on the environment
    _isal_zlib = None

_LOCAL_HEADER = b"PK\x03\x04"
#: A plain non-negative decimal whose digits past the 8th decimal are all zero (exact at 1e-8).
_EXACT_DECIMAL = r"^[0-9]+(\.[0-9]{0,8}0*)?$"
_EXACT_SIGNED_DECIMAL = r"^-?[0-9]+(\.[0-9]{0,8}0*)?$"


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
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = [info for info in archive.infolist() if not info.is_dir()]
            names = [info.filename for info in infos]
            if member is not None and member in names:
                info = infos[names.index(member)]
            elif len(infos) == 1:
                info = infos[0]
            else:
                wanted = f"{member!r} or exactly one file" if member else "exactly one file"
                raise CorruptArchiveError(f"{origin}: expected {wanted} in the zip, found {names}")
            deflated = info.compress_type == zipfile.ZIP_DEFLATED and not info.flag_bits & 1
            if accelerated and _isal_zlib is not None and deflated:
                return info.filename, _inflate(data, info)
            return info.filename, archive.read(info)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        raise CorruptArchiveError(f"{origin}: corrupt or truncated zip archive ({exc})") from exc


def _inflate(data: bytes, info: zipfile.ZipInfo) -> bytes:
    """Inflate one deflated member straight from the archive bytes, checking its size and CRC-32."""
    assert _isal_zlib is not None
    offset = info.header_offset
    if data[offset : offset + 4] != _LOCAL_HEADER:
        raise zipfile.BadZipFile(f"no local file header for {info.filename!r}")
    name_length, extra_length = struct.unpack_from("<HH", data, offset + 26)
    start = offset + 30 + name_length + extra_length
    compressed = data[start : start + info.compress_size]
    if len(compressed) != info.compress_size:
        raise zipfile.BadZipFile(f"{info.filename!r} is truncated")
    try:
        content: bytes = _isal_zlib.decompress(compressed, wbits=-15)
    except _isal_zlib.error as exc:
        raise zipfile.BadZipFile(f"{info.filename!r} does not inflate: {exc}") from exc
    if len(content) != info.file_size or _isal_zlib.crc32(content) != info.CRC:
        raise zipfile.BadZipFile(f"bad CRC-32 or size for {info.filename!r}")
    return content


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
