"""Data and code versions of the materializations this code location records itself.

Steps that record one materialization per partition (instead of returning an output) must write the
provenance tags Dagster writes for outputs, or every downstream partition looks stale. A day's data
version is a hash of its content (bars: :func:`~rangebar_pipeline.assets._common.frame_sha256`;
ticks: the source file's sha256), so re-materializing a day with identical output keeps downstream
fresh, while a new code version (kernel or schema change) makes it stale.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import dagster as dg
from dagster import DagsterEventType
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)

from rangebar_pipeline import _core
from rangebar_pipeline.schema import SCHEMA_VERSION

__all__ = [
    "KERNEL_CODE_VERSION",
    "Version",
    "feature_version",
    "latest_version",
    "latest_versions",
    "version_tags",
]

#: Code version of everything the kernel computes: a new kernel or bar schema makes it stale.
KERNEL_CODE_VERSION: Final = f"kernel-{_core.__version__}-schema-{SCHEMA_VERSION}"
_DATA: Final = "dagster/data_version"
_CODE: Final = "dagster/code_version"
_INPUT_DATA: Final = "dagster/input_data_version"
_INPUT_POINTER: Final = "dagster/input_event_pointer"
_USER_PROVIDED: Final = "dagster/data_version_is_user_provided"
_NULL_POINTER: Final = "NULL"


@dataclass(frozen=True, slots=True)
class Version:
    """A recorded materialization: its storage id and data version (and its run and time, when read
    from the instance)."""

    storage_id: int | None
    data_version: str
    run_id: str | None = None
    timestamp: float | None = None

    @property
    def target(self) -> AssetCheckEvaluationTargetMaterializationData | None:
        """The pointer a check evaluation of this materialization carries (Dagster counts a
        partition's check as current only when it names the partition's latest materialization)."""
        if self.storage_id is None or self.run_id is None or self.timestamp is None:
            return None
        return AssetCheckEvaluationTargetMaterializationData(
            storage_id=self.storage_id, run_id=self.run_id, timestamp=self.timestamp
        )


def latest_version(instance: dg.DagsterInstance, asset: dg.AssetKey, partition: str) -> Version | None:
    """The latest materialization of ``asset``'s ``partition`` with its data version, if any."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset, asset_partitions=[partition]), limit=1
    ).records
    return _version(records[0]) if records else None


def latest_versions(
    instance: dg.DagsterInstance, asset: dg.AssetKey, partitions: Sequence[str]
) -> dict[str, Version]:
    """:func:`latest_version` of many partitions in two queries (partitions never materialized are
    absent)."""
    if not partitions:
        return {}
    ids = instance.event_log_storage.get_latest_storage_id_by_partition(
        asset, DagsterEventType.ASSET_MATERIALIZATION, set(partitions)
    )
    if not ids:
        return {}
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset, storage_ids=list(ids.values())), limit=len(ids)
    ).records
    by_id = {r.storage_id: _version(r) for r in records}
    return {p: by_id[i] for p, i in ids.items() if i in by_id}


def _version(record: dg.EventLogRecord) -> Version:
    materialization = record.asset_materialization
    tags = (materialization.tags if materialization is not None else None) or {}
    return Version(
        record.storage_id,
        tags.get(_DATA, f"storage-{record.storage_id}"),
        run_id=record.run_id,
        timestamp=record.timestamp,
    )


def feature_version(bars: Version | None, horizons: tuple[int, ...], code_version: str) -> str:
    """A feature table's data version: a function of its day's bars, the label horizons and its
    construction."""
    basis = f"{bars.data_version if bars else 'unrecorded'}|{horizons}|{code_version}"
    return hashlib.sha256(basis.encode()).hexdigest()


def version_tags(
    data_version: str, code_version: str, inputs: Mapping[dg.AssetKey, Version | None]
) -> dict[str, str]:
    """The tags Dagster's staleness reads: own data and code version, and each input's version."""
    tags = {_DATA: data_version, _CODE: code_version, _USER_PROVIDED: "true"}
    for key, version in inputs.items():
        if version is None:
            continue
        name = key.to_user_string()
        tags[f"{_INPUT_DATA}/{name}"] = version.data_version
        tags[f"{_INPUT_POINTER}/{name}"] = (
            str(version.storage_id) if version.storage_id is not None else _NULL_POINTER
        )
    return tags
