"""deploy/dagster.yaml's instance storage: Dagster's SQLite files, with one engine kept per file."""

import multiprocessing
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.event_api import EventLogRecord
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.sqlite_storage import DagsterSqliteStorage
from dagster._serdes import deserialize_value, serialize_value

from rangebar_pipeline.dagster_storage import (
    RUN_SHARD_ENGINES,
    PooledSqliteEventLogStorage,
    PooledSqliteRunStorage,
    PooledSqliteStorage,
)

REPO = Path(__file__).resolve().parents[1]
EVENTS = 20


@dg.asset(partitions_def=dg.StaticPartitionsDefinition(["a", "b"]))
def noisy(context: dg.AssetExecutionContext) -> None:
    """One materialization of its own and ``EVENTS`` of other assets, as a day's bar step records."""
    for i in range(EVENTS):
        context.log_event(dg.AssetMaterialization(asset_key=f"side_{i}", metadata={"i": i}))


@dg.asset(check_specs=[dg.AssetCheckSpec(f"check_{i}", asset="checked") for i in range(EVENTS)])
def checked() -> dg.MaterializeResult:  # type: ignore[type-arg]
    """One materialization and ``EVENTS`` check evaluations, as a day's checks record."""
    return dg.MaterializeResult(
        check_results=[dg.AssetCheckResult(check_name=f"check_{i}", passed=True) for i in range(EVENTS)]
    )


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


@pytest.fixture
def instance(home: Path) -> Iterator[dg.DagsterInstance]:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        yield instance


def connections_opened(instance: dg.DagsterInstance, asset: dg.AssetsDefinition = noisy) -> int:
    """SQLite connections opened while the instance records one run of ``asset`` (``noisy``)."""
    opened: list[object] = []

    def count(dbapi_connection: Any, record: Any) -> None:
        opened.append(dbapi_connection)

    sa.event.listen(sa.Engine, "connect", count)
    try:
        key = "b" if asset is noisy else None
        assert dg.materialize([asset], instance=instance, partition_key=key).success
    finally:
        sa.event.remove(sa.Engine, "connect", count)
    return len(opened)


def test_the_deployed_instance_uses_the_pooled_storage(instance: dg.DagsterInstance) -> None:
    assert isinstance(instance.event_log_storage, PooledSqliteEventLogStorage)
    assert isinstance(instance.run_storage, PooledSqliteRunStorage)


def test_a_run_opens_a_connection_per_file_not_per_event(
    instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    assert dg.materialize([noisy], instance=instance, partition_key="a").success  # files created
    pooled = connections_opened(instance)
    # the new run's shard, and at most one more per file (the runs database, the index shard)
    assert pooled <= 3, pooled
    (tmp_path / "plain").mkdir()
    with dg.DagsterInstance.local_temp(str(tmp_path / "plain")) as plain:  # Dagster's own storage
        assert dg.materialize([noisy], instance=plain, partition_key="a").success
        assert connections_opened(plain) > EVENTS  # what the pooled storage saves


def test_check_evaluations_open_no_connection_each(instance: dg.DagsterInstance, tmp_path: Path) -> None:
    assert dg.materialize([checked], instance=instance).success  # files created
    assert connections_opened(instance, checked) <= 3
    (tmp_path / "plain").mkdir()
    with dg.DagsterInstance.local_temp(str(tmp_path / "plain")) as plain:
        assert dg.materialize([checked], instance=plain).success
        assert connections_opened(plain, checked) > EVENTS  # Dagster asks has_table on a new engine


def test_the_event_log_remembers_its_tables_not_their_absence(instance: dg.DagsterInstance) -> None:
    storage = instance.event_log_storage
    assert isinstance(storage, PooledSqliteEventLogStorage)
    assert storage.has_table("asset_check_executions")
    assert not storage.has_table("added_later")
    with storage.index_connection() as conn:
        conn.execute(sa.text("CREATE TABLE added_later (x INTEGER)"))
    assert storage.has_table("added_later")


def test_materializations_reflect_the_asset_keys_table_once(
    instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    def reflections(instance: dg.DagsterInstance) -> int:
        pragmas: list[str] = []

        def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            if "PRAGMA" in statement and "asset_keys" in statement:
                pragmas.append(statement)

        assert dg.materialize([noisy], instance=instance, partition_key="a").success  # tables known
        sa.event.listen(sa.Engine, "before_cursor_execute", seen)
        try:
            assert dg.materialize([noisy], instance=instance, partition_key="b").success
        finally:
            sa.event.remove(sa.Engine, "before_cursor_execute", seen)
        return len(pragmas)

    assert reflections(instance) <= 2  # one lookup a run at most (SQLAlchemy's main and temp pragma)
    (tmp_path / "plain").mkdir()
    with dg.DagsterInstance.local_temp(str(tmp_path / "plain")) as plain:
        assert reflections(plain) > EVENTS  # Dagster's own storage: one look per materialization


def test_a_materialization_is_serialized_once_for_both_its_tables(
    instance: dg.DagsterInstance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dagster._core.storage.event_log import sql_event_log

    wrapped: list[int] = []  # Dagster's second serialization: the event wrapped as an EventLogRecord

    def counted(value: Any, *args: Any, **kwargs: Any) -> str:
        if isinstance(value, EventLogRecord):
            wrapped.append(value.storage_id)
        return serialize_value(value, *args, **kwargs)

    monkeypatch.setattr(sql_event_log, "serialize_value", counted)
    schema = dg.TableSchema(columns=[dg.TableColumn("close", "float", description="a bar's close")])

    @dg.asset
    def described(context: dg.AssetExecutionContext) -> None:
        for i in range(EVENTS):
            context.log_event(
                dg.AssetMaterialization(
                    asset_key=f"side_{i}", partition="p", metadata={"i": i, "dagster/column_schema": schema}
                )
            )

    def stored(instance: dg.DagsterInstance) -> dict[str, tuple[str, str, int]]:
        """Each asset's ``last_materialization`` and the event row it names, from the index shard."""
        assert dg.materialize([described], instance=instance).success
        with instance.event_log_storage.index_connection() as conn:  # type: ignore[attr-defined]
            keys = conn.execute(sa.text("SELECT asset_key, last_materialization FROM asset_keys")).all()
            query = "SELECT id, event FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'"
            rows = {int(i): event for i, event in conn.execute(sa.text(query)).all()}
        out = {}
        for key, last in keys:
            if last is None:  # an asset with only planned events
                continue
            record = deserialize_value(last, EventLogRecord)
            out[key] = (last, rows[record.storage_id], record.storage_id)
        return out

    pooled = stored(instance)
    assert wrapped == []  # the pooled storage reuses the row's JSON
    assert len(pooled) == EVENTS + 1
    for last, event, storage_id in pooled.values():  # what Dagster itself writes for the same row
        entry = deserialize_value(event, EventLogEntry)
        assert last == serialize_value(EventLogRecord(storage_id=storage_id, event_log_entry=entry))
    side = instance.fetch_materializations(dg.AssetKey("side_3"), limit=1).records[0]
    assert side.asset_materialization is not None
    assert side.asset_materialization.metadata["dagster/column_schema"] == dg.TableSchemaMetadataValue(schema)
    latest = instance.get_asset_records([dg.AssetKey("side_3")])[0].asset_entry.last_materialization_record
    assert latest is not None and latest.storage_id == side.storage_id

    (tmp_path / "plain").mkdir()
    with dg.DagsterInstance.local_temp(str(tmp_path / "plain")) as plain:  # Dagster's own storage
        stored(plain)
        assert len(wrapped) >= EVENTS


def test_dagsters_own_storage_reads_what_the_pooled_one_wrote(
    instance: dg.DagsterInstance, home: Path
) -> None:
    result = dg.materialize([noisy], instance=instance, partition_key="a")
    assert result.success
    plain = DagsterSqliteStorage(str(home))  # same files, Dagster's classes (as an older deployment)
    try:
        records = plain.event_log_storage.fetch_materializations(dg.AssetKey("side_7"), limit=10).records
        assert [r.run_id for r in records] == [result.run_id]
        assert records[0].asset_materialization is not None
        assert records[0].asset_materialization.metadata["i"] == dg.IntMetadataValue(7)
        assert [run.run_id for run in plain.run_storage.get_runs()] == [result.run_id]
        assert len(plain.event_log_storage.get_logs_for_run(result.run_id)) > EVENTS
    finally:
        plain.dispose()


def _record_in_child(instance: dg.DagsterInstance) -> None:
    storage = instance.event_log_storage
    assert isinstance(storage, PooledSqliteEventLogStorage)
    instance.report_runless_asset_event(dg.AssetMaterialization("from_child"))
    assert storage._engines._pid == os.getpid()  # its own engines, not the parent's connections


def test_a_forked_child_records_on_its_own_connections(instance: dg.DagsterInstance) -> None:
    assert dg.materialize([noisy], instance=instance, partition_key="a").success  # parent's engines open
    child = multiprocessing.get_context("fork").Process(target=_record_in_child, args=(instance,))
    child.start()
    child.join(timeout=120)
    assert child.exitcode == 0
    assert instance.fetch_materializations(dg.AssetKey("from_child"), limit=1).records
    # the parent's pooled connections still work after the child used and closed its own
    assert dg.materialize([noisy], instance=instance, partition_key="b").success
    assert len(instance.fetch_materializations(dg.AssetKey("side_0"), limit=10).records) == 2


def test_engines_of_run_shards_are_bounded(instance: dg.DagsterInstance) -> None:
    storage = instance.event_log_storage
    assert isinstance(storage, PooledSqliteEventLogStorage)
    for shard in range(RUN_SHARD_ENGINES + 5):
        with storage.run_connection(f"run-{shard}") as conn:
            conn.execute(sa.text("SELECT 1"))
    assert storage._engines.count() == RUN_SHARD_ENGINES + 1  # the index shard's is kept besides


def test_a_wiped_instance_records_again(instance: dg.DagsterInstance) -> None:
    assert dg.materialize([noisy], instance=instance, partition_key="a").success
    instance.wipe()
    assert not instance.fetch_materializations(dg.AssetKey("side_0"), limit=10).records
    again = dg.materialize([noisy], instance=instance, partition_key="b")
    assert again.success
    records = instance.fetch_materializations(dg.AssetKey("side_0"), limit=10).records
    assert [r.run_id for r in records] == [again.run_id]


def test_the_storage_is_built_from_its_config(home: Path) -> None:
    storage = PooledSqliteStorage.from_config_value(None, {"base_dir": str(home)})
    try:
        assert (home / "history" / "runs.db").exists()
        assert (home / "history" / "runs" / "index.db").exists()
        assert (home / "schedules" / "schedules.db").exists()
    finally:
        storage.dispose()
