"""The feature/dataset store: Delta Lake feature tables, ML datasets and model summaries.

Layout under ``root`` (``RANGEBAR_PIPELINE_DIR``, else ``<cache dir>/pipeline``)::

    features/<threshold>/                 one Delta table per threshold (``tables_uri`` may move them)
    datasets/<threshold>/<series>.parquet the ML dataset of a series, with its provenance
    models/<name>/<series>.json           a consumer's fitted-model summary
    failures.jsonl                        run failures (the failure sensor)

A feature table is partitioned by ``series`` and ``month`` (``YYYY-MM``): a series-day is replaced
atomically by one predicate overwrite (``series = .. AND day IN (..)``); a day is written only after its
blocking checks passed, so a failed gate leaves the previous version of that day (or nothing) visible.
Every commit records what it did in its commit info (``rangebar.series``, ``rangebar.published``,
``rangebar.rejected``, ``rangebar.withdrawn``): :meth:`DatasetStore.rejected_days` reads them back; no
side files. Partitions past :data:`COMPACT_AFTER_FILES` files are compacted (delta-rs ``optimize``) after
a write; nothing is vacuumed and the commit log is kept (:data:`TABLE_PROPERTIES`), so every version
stays readable (time travel).

The feature tables may live in an object store in production: ``tables_uri`` (``RANGEBAR_FEATURES_URI``,
e.g. ``s3://bucket/rangebar/features``) with delta-rs ``storage_options``; the default is local files.
Only this module knows these paths and files.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, BinaryIO, Final

import polars as pl

from rangebar_pipeline import _core
from rangebar_pipeline.exceptions import StoreError
from rangebar_pipeline.paths import default_cache_dir
from rangebar_pipeline.schema import SCHEMA_VERSION
from rangebar_pipeline.series import Series
from rangebar_pipeline.storage._atomic import atomic_write

__all__ = [
    "COMPACT_AFTER_FILES",
    "DICTIONARY_PAGE_BYTES",
    "FEATURES_URI_ENV",
    "LAYOUT_COLUMNS",
    "PIPELINE_DIR_ENV",
    "TABLE_PROPERTIES",
    "DatasetStore",
    "DayTable",
    "FeatureCommit",
    "Published",
]

#: Environment variable naming the store's root.
PIPELINE_DIR_ENV: Final = "RANGEBAR_PIPELINE_DIR"
#: Environment variable naming where the feature tables live (a directory or an object-store URI).
FEATURES_URI_ENV: Final = "RANGEBAR_FEATURES_URI"
#: A partition (series, month) with more data files than this is compacted after a write.
COMPACT_AFTER_FILES: Final = 16
#: Columns the store adds to each feature row: where it belongs, its order, what produced it.
LAYOUT_COLUMNS: Final = (
    "series",
    "day",
    "month",
    "bar_index",
    "bars_data_version",
    "schema_version",
    "kernel_version",
)
_PARTITIONS: Final = ["series", "month"]
#: Set when a table is created: the commit log is never cleaned up, so every version (and every
#: commit's record) stays readable; delta-rs would otherwise drop log entries older than 30 days.
TABLE_PROPERTIES: Final = {
    "delta.enableExpiredLogCleanup": "false",
    "delta.logRetentionDuration": "interval 36500 days",
}
#: The Parquet encoding of the tables' data files: zstd at level 1, and dictionary pages of at most
#: 64 KiB. delta-rs's default (Snappy, 1 MiB dictionary pages) keeps a dictionary on every column until
#: its page is full, and most feature columns (times, ids, volumes, VWAP) are unique per bar. Four
#: commits of a week of 10 dbps bars (334 k rows each) took 1.55-1.66 s of CPU, now 0.98-1.07 s, and
#: their files 86 MB, now 59 MB. Low-cardinality columns (prices on the tick grid, counts, the layout's
#: strings) still fit a dictionary page; readers see the same rows.
DICTIONARY_PAGE_BYTES: Final = 64 * 1024
_PREFIX: Final = "rangebar."
_COMMIT_ATTEMPTS: Final = 5
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Published:
    """A file written by the store: its URI and size."""

    uri: str
    bytes: int


@dataclass(frozen=True, slots=True)
class DayTable:
    """One day's feature table on its way into the Delta table.

    ``failures`` empty: the day passed its blocking checks and replaces the day's rows. Otherwise it is
    rejected: nothing of it is written and the reasons go into the commit info; ``withdraw`` also
    removes the day's visible rows (its bars failed, so the previous rows describe bars no longer stored).
    """

    day: date
    table: pl.DataFrame
    failures: tuple[str, ...] = ()
    withdraw: bool = False
    bars_data_version: str | None = None

    @property
    def visible(self) -> bool:
        return not self.failures


@dataclass(frozen=True, slots=True)
class FeatureCommit:
    """What one :meth:`DatasetStore.publish_days` commit did."""

    uri: str
    version: int
    published: tuple[date, ...]
    rejected: Mapping[date, tuple[str, ...]]
    withdrawn: tuple[date, ...]
    compacted: tuple[str, ...] = field(default=())


class DatasetStore:
    """Feature tables, ML datasets and model summaries (see the module docstring).

    Args:
        root: The directory; ``None``: ``RANGEBAR_PIPELINE_DIR``, else ``<cache dir>/pipeline``.
        tables_uri: Where the feature tables live; ``None``: ``RANGEBAR_FEATURES_URI``, else
            ``<root>/features``. An object-store URI needs ``storage_options`` (delta-rs keys).
        storage_options: Passed to delta-rs for ``tables_uri``.
    """

    def __init__(
        self,
        root: str | Path | None = None,
        *,
        tables_uri: str | None = None,
        storage_options: Mapping[str, str] | None = None,
    ) -> None:
        if root:
            self.root = Path(root).expanduser()
        else:
            env = os.environ.get(PIPELINE_DIR_ENV)
            self.root = Path(env).expanduser() if env else default_cache_dir() / "pipeline"
        tables = tables_uri or os.environ.get(FEATURES_URI_ENV) or str(self.root / "features")
        self.tables_uri = tables.rstrip("/")
        self.storage_options = dict(storage_options or {})

    def __repr__(self) -> str:
        return f"DatasetStore({str(self.root)!r}, tables_uri={self.tables_uri!r})"

    # --- paths (private: callers get URIs and frames) ---------------------------------------------

    def features_uri(self, threshold: int) -> str:
        """The Delta table of a threshold's feature tables."""
        return f"{self.tables_uri}/{threshold}"

    def _dataset_path(self, threshold: int, series: Series) -> Path:
        return self.root / "datasets" / f"{threshold}" / f"{series.key}.parquet"

    def _model_path(self, name: str, series: Series) -> Path:
        return self.root / "models" / name / f"{series.key}.json"

    def failures_log(self) -> Path:
        """The run-failure log (JSON lines) that the failure sensor appends to."""
        return self.root / "failures.jsonl"

    # --- feature tables: writes --------------------------------------------------------------------

    def publish_days(self, threshold: int, series: Series, days: Sequence[DayTable]) -> FeatureCommit:
        """One commit: the visible ``days`` replace their rows, withdrawn ones lose theirs, and every
        rejection is recorded in the commit info; then the touched partitions are compacted if needed.

        Raises:
            ValueError: ``days`` is empty or names a day twice.
            StoreError: The write failed (e.g. a full disk); the message names the table, and nothing
                of this commit is visible.
        """
        from deltalake import CommitProperties, write_deltalake

        if not days or len({d.day for d in days}) != len(days):
            raise ValueError(f"publish_days needs distinct days, found {[str(d.day) for d in days]}")
        uri = self.features_uri(threshold)
        visible = [d for d in days if d.visible]
        replaced = sorted(d.day for d in days if d.visible or d.withdraw)
        rejected = {d.day: d.failures for d in days if not d.visible}
        commit_id = uuid.uuid4().hex
        record = {
            f"{_PREFIX}commit": commit_id,
            f"{_PREFIX}series": series.key,
            f"{_PREFIX}published": json.dumps([str(d.day) for d in visible]),
            f"{_PREFIX}rejected": json.dumps({str(k): list(v) for k, v in rejected.items()}),
            f"{_PREFIX}withdrawn": json.dumps([str(d.day) for d in days if not d.visible and d.withdraw]),
        }
        frames = [_with_layout(d, series) for d in visible]
        data = pl.concat(frames, how="diagonal_relaxed") if frames else None
        for attempt in range(1, _COMMIT_ATTEMPTS + 1):
            try:
                if replaced:
                    empty = _with_layout(days[0], series).head(0)
                    write_deltalake(
                        uri,
                        (data if data is not None else empty).to_arrow(),
                        mode="overwrite",
                        predicate=_days_predicate(series, replaced),
                        partition_by=_PARTITIONS,
                        schema_mode="merge",
                        configuration=TABLE_PROPERTIES,
                        storage_options=self.storage_options or None,
                        commit_properties=CommitProperties(custom_metadata=record),
                        writer_properties=_writer_properties(),
                    )
                else:  # rejections only: an empty commit that records them
                    write_deltalake(
                        uri,
                        self._empty_like(threshold, days[0], series),
                        mode="append",
                        partition_by=_PARTITIONS,
                        schema_mode="merge",
                        configuration=TABLE_PROPERTIES,
                        storage_options=self.storage_options or None,
                        commit_properties=CommitProperties(custom_metadata=record),
                        writer_properties=_writer_properties(),
                    )
                break
            except Exception as exc:  # a concurrent commit delta-rs could not reconcile: write again
                if type(exc).__name__ == "CommitFailedError" and attempt < _COMMIT_ATTEMPTS:
                    log.info("feature table %s: commit conflict (%s), attempt %d", uri, exc, attempt + 1)
                    continue
                # nothing was committed: the table's current version is still the previous one (data
                # files a failed write may leave are in no commit, so no reader sees them)
                raise StoreError(f"cannot write the feature table {uri}: {exc}") from exc
        version = self._committed_version(threshold, commit_id)
        months = sorted({d.day.strftime("%Y-%m") for d in visible})
        compacted = self.compact(threshold, series=series, months=months)
        return FeatureCommit(
            uri=uri,
            version=version,
            published=tuple(d.day for d in visible),
            rejected=rejected,
            withdrawn=tuple(d.day for d in days if not d.visible and d.withdraw),
            compacted=compacted,
        )

    def _committed_version(self, threshold: int, commit_id: str) -> int:
        """The version of the commit that carries ``commit_id`` (later commits may already exist)."""
        table = self._table(threshold)
        for entry in table.history(limit=64):
            if entry.get(f"{_PREFIX}commit") == commit_id:
                return int(entry["version"])
        raise LookupError(f"commit {commit_id} not among the last 64 of {table.table_uri}")

    def compact(
        self,
        threshold: int,
        *,
        series: Series | None = None,
        months: Iterable[str] | None = None,
        min_files: int = COMPACT_AFTER_FILES,
    ) -> tuple[str, ...]:
        """Compact (delta-rs ``optimize``) each partition holding more than ``min_files`` files; return
        the partitions compacted (``series/month``). A conflicting concurrent commit skips it (it is
        retried after the next write); data and older versions are unchanged."""
        from deltalake import CommitProperties

        table = self._table(threshold)
        if table is None:
            return ()
        actions = pl.DataFrame(table.get_add_actions(flatten=True))
        counts = actions.group_by("partition.series", "partition.month").len()
        if series is not None:
            counts = counts.filter(pl.col("partition.series") == series.key)
        if months is not None:
            counts = counts.filter(pl.col("partition.month").is_in(list(months)))
        done = []
        for key, month, files in counts.filter(pl.col("len") > min_files).sort(pl.all()).iter_rows():
            try:
                table.optimize.compact(
                    partition_filters=[("series", "=", key), ("month", "=", month)],
                    writer_properties=_writer_properties(),
                    commit_properties=CommitProperties(
                        custom_metadata={
                            f"{_PREFIX}compacted": f"{key}/{month}",
                            f"{_PREFIX}files": str(files),
                        }
                    ),
                )
            except Exception as exc:
                if type(exc).__name__ != "CommitFailedError":
                    raise
                log.warning("compaction of %s %s/%s skipped: %s", table.table_uri, key, month, exc)
                continue
            done.append(f"{key}/{month}")
        return tuple(done)

    def _empty_like(self, threshold: int, item: DayTable, series: Series) -> Any:
        """An empty Arrow table for a commit that only records: the table's schema, or the day's when
        the table does not exist yet."""
        import pyarrow as pa

        table = self._table(threshold)
        if table is not None:
            return pa.schema(table.schema().to_arrow()).empty_table()
        return _with_layout(item, series).head(0).to_arrow()

    # --- feature tables: reads ---------------------------------------------------------------------

    def _table(self, threshold: int, version: int | None = None) -> Any:
        """The threshold's DeltaTable (at ``version``), or ``None`` when it does not exist."""
        from deltalake import DeltaTable

        uri = self.features_uri(threshold)
        if not DeltaTable.is_deltatable(uri, storage_options=self.storage_options or None):
            return None
        return DeltaTable(uri, version=version, storage_options=self.storage_options or None)

    def features_version(self, threshold: int) -> int | None:
        """The current version of a threshold's feature table (``None``: none written yet)."""
        table = self._table(threshold)
        return None if table is None else int(table.version())

    def scan_features(self, threshold: int, version: int | None = None) -> pl.LazyFrame:
        """Every visible feature row of a threshold at ``version`` (default: the current one), in no
        particular order; columns as the table's schema has them at that version.

        Raises:
            LookupError: The table does not exist (or not at ``version``); the message names it.
        """
        table = self._table(threshold)
        if table is None:
            raise LookupError(
                f"no feature table at {self.features_uri(threshold)}: materialize features first"
            )
        current = int(table.version())
        pinned = current if version is None else int(version)
        if not 0 <= pinned <= current:
            raise LookupError(
                f"feature table {self.features_uri(threshold)} has versions 0..{current}, not {version}"
            )
        names = [f.name for f in self._table(threshold, pinned).schema().fields]
        frame = pl.scan_delta(
            self.features_uri(threshold), version=pinned, storage_options=self.storage_options or None
        )
        return frame.select(names)

    def feature_days(self, threshold: int, series: Series, version: int | None = None) -> list[date]:
        """The days of a series with visible rows at ``version``, ascending."""
        try:
            frame = self.scan_features(threshold, version)
        except LookupError:
            return []
        days = frame.filter(pl.col("series") == series.key).select(pl.col("day").unique().sort()).collect()
        return days["day"].to_list()

    def read_features(
        self, threshold: int, series: Series, day: date, version: int | None = None
    ) -> pl.DataFrame:
        """The visible feature rows of one day, in bar order.

        Raises:
            LookupError: The day has no visible rows (the message names the table and the version).
        """
        frame = (
            self.scan_features(threshold, version)
            .filter((pl.col("series") == series.key) & (pl.col("day") == day))
            .sort("bar_index")
            .collect()
        )
        if frame.height == 0:
            shown = "the current version" if version is None else f"version {version}"
            raise LookupError(f"{series} {day} has no rows in {self.features_uri(threshold)} at {shown}")
        return frame

    def table_versions(self, threshold: int, series: Series, day: date) -> tuple[int | None, str | None]:
        """``(schema_version, kernel_version)`` that produced a day's visible rows."""
        row = self.read_features(threshold, series, day).row(0, named=True)
        return row["schema_version"], row["kernel_version"]

    def commits(self, threshold: int) -> list[dict[str, Any]]:
        """The table's commit infos, oldest first, with the store's records decoded
        (``published``/``withdrawn``: day lists, ``rejected``: day -> reasons)."""
        table = self._table(threshold)
        if table is None:
            return []
        out = []
        for entry in reversed(table.history()):
            decoded = {k: v for k, v in entry.items() if not k.startswith(_PREFIX)}
            for key, value in entry.items():
                if key.startswith(_PREFIX):
                    name = key.removeprefix(_PREFIX)
                    decoded[name] = (
                        json.loads(value) if name in {"published", "rejected", "withdrawn"} else value
                    )
            out.append(decoded)
        return out

    def rejected_days(self, threshold: int, series: Series) -> dict[date, dict[str, Any]]:
        """Days of a series whose latest gate was failed: ``{day: {failures, version, withdrawn}}``
        (``withdrawn`` False: the day's previous rows, if any, are still visible)."""
        latest: dict[date, dict[str, Any] | None] = {}
        for commit in self.commits(threshold):
            if commit.get("series") != series.key:
                continue
            for day in commit.get("published", []):
                latest[date.fromisoformat(day)] = None
            withdrawn = set(commit.get("withdrawn", []))
            for day, failures in commit.get("rejected", {}).items():
                latest[date.fromisoformat(day)] = {
                    "failures": list(failures),
                    "version": commit.get("version"),
                    "withdrawn": day in withdrawn,
                }
        return {d: r for d, r in sorted(latest.items()) if r is not None}

    # --- datasets and models -------------------------------------------------------------------------

    def write_dataset(
        self, threshold: int, series: Series, table: pl.DataFrame, *, provenance: Mapping[str, str]
    ) -> Published:
        """Replace the ML dataset of a series; ``provenance`` goes into its Parquet key-value metadata."""
        path = self._dataset_path(threshold, series)

        def write(handle: BinaryIO) -> None:
            table.write_parquet(handle, compression="zstd", statistics=True, metadata=dict(provenance))

        return Published(str(path), atomic_write(path, write))

    def read_dataset(self, threshold: int, series: Series) -> tuple[pl.DataFrame, dict[str, str]]:
        """The ML dataset of a series and its provenance.

        Raises:
            FileNotFoundError: It was never written (the message names the path).
        """
        path = self._dataset_path(threshold, series)
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist")
        return pl.read_parquet(path), dict(pl.read_parquet_metadata(path))

    def write_model(self, name: str, series: Series, summary: Mapping[str, Any]) -> str:
        """Replace a consumer's model summary (JSON) for a series; return its URI."""
        path = self._model_path(name, series)
        atomic_write(path, lambda h: _write_json(h, summary))
        return str(path)


def _writer_properties() -> Any:
    """delta-rs ``WriterProperties`` of the tables' data files (see :data:`DICTIONARY_PAGE_BYTES`)."""
    from deltalake import WriterProperties

    return WriterProperties(
        compression="ZSTD", compression_level=1, dictionary_page_size_limit=DICTIONARY_PAGE_BYTES
    )


def _with_layout(item: DayTable, series: Series) -> pl.DataFrame:
    """A day's table with the store's columns: series, day, month, bar order and provenance."""
    return item.table.with_columns(
        pl.lit(series.key, pl.String).alias("series"),
        pl.lit(item.day, pl.Date).alias("day"),
        pl.lit(item.day.strftime("%Y-%m"), pl.String).alias("month"),
        pl.int_range(pl.len(), dtype=pl.Int64).alias("bar_index"),
        pl.lit(item.bars_data_version, pl.String).alias("bars_data_version"),
        pl.lit(SCHEMA_VERSION, pl.Int64).alias("schema_version"),
        pl.lit(_core.__version__, pl.String).alias("kernel_version"),
    )


def _days_predicate(series: Series, days: Sequence[date]) -> str:
    """The SQL predicate of a series' days (and their months, for partition pruning)."""
    months = sorted({d.strftime("%Y-%m") for d in days})
    listed = ", ".join(f"'{d.isoformat()}'" for d in days)
    return (
        f"series = {_quote(series.key)} AND month IN ({', '.join(map(_quote, months))}) AND day IN ({listed})"
    )


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _write_json(handle: BinaryIO, value: Any) -> None:
    handle.write(json.dumps(value, indent=2).encode())
