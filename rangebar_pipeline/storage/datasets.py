"""The feature/dataset store: feature tables, ML datasets and model summaries as files under one root.

Layout under ``root`` (``RANGEBAR_PIPELINE_DIR``, else ``<cache dir>/pipeline``)::

    features/<threshold>/<series>/<YYYY-MM-DD>.parquet            promoted daily feature tables
    features/<threshold>/<series>/.staging/<YYYY-MM-DD>.parquet   a table waiting for (or failing) its gate
    features/<threshold>/<series>/.rejected/<YYYY-MM-DD>.json     why a day was withdrawn
    datasets/<threshold>/<series>.parquet                         the ML dataset of a series
    models/<name>/<series>.json                                   a consumer's fitted-model summary
    failures.jsonl                                                run failures (the failure sensor)

Only this module knows these paths and files: the Dagster assets ask it to publish, withdraw and read.
Every file is written atomically (temp file, fsync, rename). Feature tables record the bar schema
and kernel versions that produced them (Parquet key-value metadata, :meth:`DatasetStore.table_versions`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, BinaryIO, Final

import polars as pl

from rangebar_pipeline import _core
from rangebar_pipeline.paths import default_cache_dir
from rangebar_pipeline.schema import SCHEMA_VERSION
from rangebar_pipeline.series import Series
from rangebar_pipeline.storage._atomic import atomic_write

__all__ = ["PIPELINE_DIR_ENV", "DatasetStore", "Published"]

#: Environment variable naming the store's root.
PIPELINE_DIR_ENV: Final = "RANGEBAR_PIPELINE_DIR"
#: Parquet key-value metadata of every feature file: what produced it.
_VERSION_KEYS: Final = ("rangebar.schema_version", "rangebar.kernel_version")


@dataclass(frozen=True, slots=True)
class Published:
    """Where a feature table ended up: promoted (visible to datasets) or held in staging."""

    uri: str
    bytes: int
    promoted: bool


class DatasetStore:
    """Feature tables, ML datasets and model summaries under ``root`` (see the module docstring).

    Args:
        root: The directory; ``None``: ``RANGEBAR_PIPELINE_DIR``, else ``<cache dir>/pipeline``.
    """

    def __init__(self, root: str | Path | None = None) -> None:
        if root:
            self.root = Path(root).expanduser()
        else:
            env = os.environ.get(PIPELINE_DIR_ENV)
            self.root = Path(env).expanduser() if env else default_cache_dir() / "pipeline"

    def __repr__(self) -> str:
        return f"DatasetStore({str(self.root)!r})"

    # --- paths (private: callers get URIs and frames) ---------------------------------------------

    def _features_dir(self, threshold: int, series: Series) -> Path:
        return self.root / "features" / f"{threshold}" / series.key

    def _feature_path(self, threshold: int, series: Series, day: date) -> Path:
        return self._features_dir(threshold, series) / f"{day.isoformat()}.parquet"

    def _staging_path(self, threshold: int, series: Series, day: date) -> Path:
        return self._features_dir(threshold, series) / ".staging" / f"{day.isoformat()}.parquet"

    def _rejected_path(self, threshold: int, series: Series, day: date) -> Path:
        return self._features_dir(threshold, series) / ".rejected" / f"{day.isoformat()}.json"

    def _dataset_path(self, threshold: int, series: Series) -> Path:
        return self.root / "datasets" / f"{threshold}" / f"{series.key}.parquet"

    def _model_path(self, name: str, series: Series) -> Path:
        return self.root / "models" / name / f"{series.key}.json"

    def features_location(self, threshold: int, series: Series) -> str:
        """Where a series' feature tables live (for messages)."""
        return str(self._features_dir(threshold, series))

    def failures_log(self) -> Path:
        """The run-failure log (JSON lines) that the failure sensor appends to."""
        return self.root / "failures.jsonl"

    # --- feature tables ----------------------------------------------------------------------------

    def publish(
        self, series: Series, threshold: int, day: date, table: pl.DataFrame, *, failures: Sequence[str] = ()
    ) -> Published:
        """Stage a day's feature table, then promote it (no ``failures``) or withdraw the day.

        A promoted table replaces the day's previous one and clears a rejection record; a rejected
        one stays in staging for inspection, the day's visible table is removed and the reasons are
        recorded (:meth:`rejected_days`).
        """
        staging = self._staging_path(threshold, series, day)
        size = self._write_table(table, staging)
        if failures:
            self.withdraw(series, threshold, day, failures, staged=staging)
            return Published(str(staging), size, promoted=False)
        target = self._feature_path(threshold, series, day)
        staging.replace(target)
        self._rejected_path(threshold, series, day).unlink(missing_ok=True)
        return Published(str(target), size, promoted=True)

    def withdraw(
        self,
        series: Series,
        threshold: int,
        day: date,
        failures: Sequence[str],
        *,
        staged: Path | None = None,
    ) -> None:
        """Make a day's feature table invisible to datasets and record why."""
        self._feature_path(threshold, series, day).unlink(missing_ok=True)
        record = {
            "series": series.key,
            "threshold_decimal_bps": threshold,
            "day": day.isoformat(),
            "failures": list(failures),
            "staged_table": None if staged is None else str(staged),
            "rejected_at": datetime.now(UTC).isoformat(),
        }
        atomic_write(self._rejected_path(threshold, series, day), lambda h: _write_json(h, record, indent=1))

    def feature_days(self, threshold: int, series: Series) -> list[date]:
        """The days with a promoted feature table, ascending."""
        return [d for d, _ in self._day_files(threshold, series)]

    def read_features(self, threshold: int, series: Series, day: date) -> pl.DataFrame:
        """The promoted feature table of one day.

        Raises:
            FileNotFoundError: The day has no promoted table.
        """
        return pl.read_parquet(self._feature_path(threshold, series, day))

    def rejected_days(self, threshold: int, series: Series) -> dict[date, Mapping[str, Any]]:
        """Days withdrawn by a failed gate, with their records."""
        found: dict[date, Mapping[str, Any]] = {}
        for path in (self._features_dir(threshold, series) / ".rejected").glob("*.json"):
            try:
                found[date.fromisoformat(path.stem)] = json.loads(path.read_text())
            except (ValueError, OSError):
                continue
        return dict(sorted(found.items()))

    def table_versions(self, threshold: int, series: Series, day: date) -> tuple[int | None, str | None]:
        """``(schema_version, kernel_version)`` recorded in a day's promoted table (None where absent)."""
        metadata = pl.read_parquet_metadata(self._feature_path(threshold, series, day))
        schema = metadata.get(_VERSION_KEYS[0])
        return (int(schema) if schema is not None else None), metadata.get(_VERSION_KEYS[1])

    def last_n_rows(self, threshold: int, series: Series, n: int) -> tuple[pl.DataFrame, list[date]]:
        """The ``n`` most recent feature rows of a series (fewer if fewer exist) and the days they span.

        Raises:
            LookupError: No feature table of the series has been promoted at all.
        """
        files = self._day_files(threshold, series)
        if not files:
            raise LookupError(f"no feature tables for {series} at {threshold} dbps")
        frames: list[pl.DataFrame] = []
        days: list[date] = []
        held = 0
        for day, path in reversed(files):
            if held >= n:
                break
            frame = pl.read_parquet(path)
            if frame.height == 0:
                continue
            frames.append(frame)
            days.append(day)
            held += frame.height
        if not frames:  # promoted, but no bar has closed yet at this threshold
            return pl.read_parquet(files[-1][1]), []
        return pl.concat(list(reversed(frames)), how="vertical_relaxed").tail(n), sorted(days)

    # --- datasets and models -------------------------------------------------------------------------

    def write_dataset(self, threshold: int, series: Series, table: pl.DataFrame) -> Published:
        """Replace the ML dataset of a series."""
        path = self._dataset_path(threshold, series)
        return Published(str(path), self._write_table(table, path), promoted=True)

    def read_dataset(self, threshold: int, series: Series) -> pl.DataFrame:
        """The ML dataset of a series.

        Raises:
            FileNotFoundError: It was never written (the message names the path).
        """
        path = self._dataset_path(threshold, series)
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist")
        return pl.read_parquet(path)

    def write_model(self, name: str, series: Series, summary: Mapping[str, Any]) -> str:
        """Replace a consumer's model summary (JSON) for a series; return its URI."""
        path = self._model_path(name, series)
        atomic_write(path, lambda h: _write_json(h, summary, indent=2))
        return str(path)

    # --- helpers -----------------------------------------------------------------------------------

    def _day_files(self, threshold: int, series: Series) -> list[tuple[date, Path]]:
        found = []
        for path in self._features_dir(threshold, series).glob("*.parquet"):
            try:
                found.append((date.fromisoformat(path.stem), path))
            except ValueError:
                continue
        return sorted(found)

    def _write_table(self, frame: pl.DataFrame, path: Path) -> int:
        versions = dict(zip(_VERSION_KEYS, (str(SCHEMA_VERSION), _core.__version__), strict=True))

        def write(handle: BinaryIO) -> None:
            frame.write_parquet(handle, compression="zstd", statistics=True, metadata=versions)

        return atomic_write(path, write)


def _write_json(handle: BinaryIO, value: Any, *, indent: int) -> None:
    handle.write(json.dumps(value, indent=indent).encode())
