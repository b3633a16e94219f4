"""``range_bars_{thr}`` and ``features_{thr}`` of every threshold: one subsettable Dagster step.

Day D of a series continues the processor state at the end of D-1, so each bar asset depends on its
own previous day, and a ranged backfill of a series runs as one step (``BackfillPolicy.single_run``)
that walks its days in order. The step reads each day's ticks once for all thresholds
(:class:`rangebar_pipeline.engine.SeriesWalk`), checks each day's bars in memory (tier 1 with
exact tick conservation, continuity), stores days in batches (one Tier 2 insert per batch), then
builds, gates and promotes the feature tables of the days whose bars passed.

Every (date, series) partition records its own truth: one materialization per asset and day with
that day's metadata (row count, hashes, timings, a PNG chart) and one check evaluation per check and
day. When day k fails, the days before it are stored and recorded, day k and later are not, the
error names day k, and re-running the range resumes at k (days already stored are recomputed
identically: same ticks, same checkpoint, same bars and data version).
"""

# No `from __future__ import annotations`: Dagster checks the `context` annotation at runtime.

from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import partial
from typing import Any, Final, cast

import dagster as dg
import polars as pl

from rangebar_pipeline._lazy import in_background, in_thread
from rangebar_pipeline.assets._common import (
    OWNERS,
    column_schema,
    follow_upstream,
    frame_sha256,
    groups_text,
    run_partition_keys,
)
from rangebar_pipeline.assets.bar_metadata import bar_metadata
from rangebar_pipeline.assets.checks import (
    DayCheck,
    continuity_day,
    freshness_description,
    freshness_evaluations,
    gate_evaluation,
    tier1_day,
    tier2_evaluation,
)
from rangebar_pipeline.assets.empty_days import before_start_events
from rangebar_pipeline.assets.features import (
    CommitGroup,
    FeatureDay,
    GateVerdict,
    Tier2Verdict,
    feature_metadata,
    feature_table,
    features_key,
    gate_tables,
    gate_verdicts,
    keep_recent,
    publish_after_gate,
    tier2_verdict,
    withdrawn_observation,
)
from rangebar_pipeline.assets.provenance import (
    KERNEL_CODE_VERSION,
    Version,
    feature_version,
    latest_version,
    latest_versions,
    version_tags,
)
from rangebar_pipeline.assets.ticks import TICKS_KEY
from rangebar_pipeline.config import PipelineConfig
from rangebar_pipeline.engine import (
    Batch,
    DayFailedError,
    SeriesDay,
    SeriesWalk,
    ThresholdDay,
    WalkedDay,
    batched,
    stored_days,
)
from rangebar_pipeline.options import BarOptions
from rangebar_pipeline.partitions import (
    contiguous_ranges,
    daily_series_partitions,
    days_by_series,
    partition_key,
    previous_day_mapping,
)
from rangebar_pipeline.resources import (
    BAR_STORE_POOL,
    BarStoreResource,
    DatasetStoreResource,
    TickStoreResource,
)
from rangebar_pipeline.series import Series
from rangebar_pipeline.storage.bars import BarStore
from rangebar_pipeline.storage.datasets import DatasetStore, FeatureCommit
from rangebar_pipeline.storage.ticks import TickStore
from rangebar_pipeline.streaming import prefetch
from rangebar_pipeline.validation import ConservationTicks, worker
from rangebar_pipeline.validation.continuity import JUNCTION_COLUMNS

__all__ = ["BARS_CODE_VERSION", "BARS_STEP", "build_bars_step", "range_bars_key"]

#: The op name of the step computing every ``range_bars_{thr}`` and ``features_{thr}``.
BARS_STEP: Final = "range_bars_and_features"
#: Changes with the kernel or the bar schema (what a day's bars are): downstream becomes stale.
BARS_CODE_VERSION: Final = KERNEL_CODE_VERSION
#: Bumped when the feature table's construction changes.
FEATURES_CODE_VERSION: Final = f"features-4-{KERNEL_CODE_VERSION}"


def bars_code_version(options: BarOptions) -> str:
    """The bar assets' code version: the kernel and schema, and the bar options when any is on."""
    return BARS_CODE_VERSION + (f"-options-{options.key}" if options.key else "")


def features_code_version(pipeline: PipelineConfig) -> str:
    """The feature assets' code version: their construction, the bars' options and the feature groups."""
    groups = "+".join(g for g in pipeline.feature_groups if g != "core")
    return f"{FEATURES_CODE_VERSION}-{groups or 'core'}" + (
        f"-options-{pipeline.bar_options.key}" if pipeline.bar_options.key else ""
    )


def range_bars_key(threshold: int) -> dg.AssetKey:
    """``range_bars_{threshold}``."""
    return dg.AssetKey(f"range_bars_{threshold}")


@dataclass(frozen=True, slots=True)
class _Selection:
    """What the current (possibly subset) step computes."""

    bars: tuple[int, ...]
    features: tuple[int, ...]
    checks: frozenset[dg.AssetCheckKey]
    horizons: tuple[int, ...]
    options: BarOptions
    groups: tuple[str, ...]
    #: The bars' Dagster column schema under ``options`` (built once per step, not per day).
    bar_schema: dg.TableSchema

    @classmethod
    def of(cls, context: dg.AssetExecutionContext, pipeline: PipelineConfig) -> "_Selection":
        keys = context.selected_asset_keys
        return cls(
            bars=tuple(t for t in pipeline.thresholds if range_bars_key(t) in keys),
            features=tuple(t for t in pipeline.thresholds if features_key(t) in keys),
            checks=frozenset(context.selected_asset_check_keys),
            horizons=pipeline.label_horizons,
            options=pipeline.bar_options,
            groups=pipeline.feature_groups,
            bar_schema=column_schema(pipeline.bar_options.bar_schema),
        )

    def wants(self, asset: dg.AssetKey, check: str) -> bool:
        return dg.AssetCheckKey(asset, check) in self.checks


@dataclass
class _Day:
    """A computed (or loaded) day with its bar checks; its ticks are released once checked."""

    series: Series
    day: date
    tick_count: int
    read_seconds: float
    results: dict[int, ThresholdDay]
    tier1: dict[int, DayCheck]
    continuity: dict[int, DayCheck]
    #: Per threshold: the bars' content hash and the metadata that needs no instance, built on the
    #: worker thread (the recording thread is the step's bottleneck); empty for stored days.
    prepared: dict[int, tuple[str, dict[str, Any]]]
    #: The feature table of each selected features threshold (built on the worker thread too).
    tables: dict[int, pl.DataFrame]


@dataclass
class _StepRun:
    """One contiguous range of one series through the step."""

    context: dg.AssetExecutionContext
    pipeline: PipelineConfig
    selection: _Selection
    store: BarStore
    ticks: TickStore
    datasets: DatasetStore
    previous: dict[int, pl.DataFrame | None] = field(default_factory=dict)
    #: The latest recorded version of each threshold's bars (previous day, then the day just recorded).
    versions: dict[int, Version | None] = field(default_factory=dict)
    #: Versions of the bars recorded in this run, by (threshold, day), for the feature tables.
    recorded: dict[tuple[int, date], Version] = field(default_factory=dict)
    #: The last tick id of the day before the one being checked (boundary continuity).
    last_tick: int | None = None
    #: The most recent feature rows of the range per threshold (tier-2 statistics at its end).
    recent: dict[int, list[pl.DataFrame]] = field(default_factory=dict)
    #: The latest feature materialization recorded per asset whose tier2 check is selected (the
    #: range's tier2 evaluation names it).
    tier2_targets: dict[dg.AssetKey, Version | None] = field(default_factory=dict)
    #: Tier-2 statistics started on the background thread when the range's last batch is ready,
    #: with the rows they judge, so that they overlap the batch's write and recording.
    tier2_pending: dict[int, tuple[list[pl.DataFrame], Future[object]]] = field(default_factory=dict)
    #: Each batch's feature tables and their gate, started before the batch is written, in order.
    judged: deque[tuple[list[FeatureDay], list[FeatureDay], Future[object] | None]] = field(
        default_factory=deque
    )

    def run(self, series: Series, first: date, last: date) -> Iterator[Any]:
        """Compute (or load) ``[first, last]`` of ``series`` and record every day's events."""
        day_before = first - timedelta(days=1)
        computed = self.selection.bars
        loaded = tuple(t for t in self.selection.features if t not in computed)
        options = self.selection.options
        self.previous = {  # continuity reads the previous day's last bar, of these columns
            t: self.store.read_bars(
                series, t, day_before, day_before, options=options, columns=JUNCTION_COLUMNS
            )
            for t in (*computed, *loaded)
        }
        self.last_tick = self.ticks.last_tick_id(series, day_before)
        instance = self.context.instance
        before = partition_key(day_before, series)
        self.versions = {t: latest_version(instance, range_bars_key(t), before) for t in computed}
        self.recent, self.judged = {}, deque()
        self.tier2_targets = {
            features_key(t): None
            for t in self.selection.features
            if self.selection.wants(features_key(t), "tier2")
        }
        try:
            yield from self._walk(series, first, last, computed, loaded)
        except dg.Failure:  # the days done before the failing one still get their statistics
            yield from self._tier2(series, first, last)
            raise
        yield from self._tier2(series, first, last)

    def _tier2(self, series: Series, first: date, last: date) -> Iterator[dg.AssetCheckEvaluation]:
        """Tier-2 statistics of the range's most recent bars: once per threshold, not per day."""
        for threshold, tables in self.recent.items():
            target = self.tier2_targets.get(features_key(threshold))
            started, pending = self.tier2_pending.pop(threshold, (None, None))
            verdict = (
                cast(Tier2Verdict, pending.result())
                if pending is not None and started is tables
                else tier2_verdict(tables, threshold)
            )
            yield tier2_evaluation(threshold, series, first, last, verdict, target=target)
        self.recent, self.tier2_pending = {}, {}

    def _walk(
        self, series: Series, first: date, last: date, computed: tuple[int, ...], loaded: tuple[int, ...]
    ) -> Iterator[Any]:
        options = self.selection.options
        if computed:
            day_before = first - timedelta(days=1)
            stored = self.store.checkpoints_at(series, computed, day_before, options=options)
            if day_before >= self.pipeline.first_day(series) and (
                absent := [t for t in computed if t not in stored]
            ):
                self.context.log.warning(
                    f"{series} {day_before} has no stored bars at {absent} dbps: {first} starts from a "
                    "fresh processor (materialize the previous day first for bars continuous across the "
                    "day boundary)"
                )
            walk = SeriesWalk(series, computed, self.ticks, self.store, options, recompute=True)
            judge = partial(self._judge, last=last)
            batches = walk.batches(first, last, annotate=self._checked, before_write=judge)
            yield from self._recorded(batches, store_bars=True)
        if loaded:
            days = stored_days(
                series, loaded, first, last, store=self.store, ticks=self.ticks, options=options
            )
            walked = (WalkedDay(series, d.day, d, {}, note=self._checked(d, stored=True)) for d in days)
            judge = partial(self._judge, last=last)
            stored_batches = batched(prefetch(walked, depth=2), None, options, before_write=judge)
            yield from self._recorded(stored_batches, store_bars=False)

    def _recorded(self, batches: Iterable[Batch[_Day]], *, store_bars: bool) -> Iterator[Any]:
        """Each batch's events (the engine stored its days first, when they were computed here).

        Days are read, computed and checked in a background thread up to two days ahead (the
        kernel and polars release the GIL), while this thread records the previous batch's events.
        """
        try:
            for batch in batches:
                checked = [d.note for d in batch.days if d.note is not None]
                yield from self._flush(checked, batch.write_seconds, store_bars=store_bars)
        except DayFailedError as exc:
            raise dg.Failure(
                description=(
                    f"{partition_key(exc.day, exc.series)} failed: {exc}. The days before it are stored "
                    f"and recorded; {exc.day} and later days of this run are not. Fix the cause and "
                    f"re-run from {exc.day}."
                ),
                metadata={"failed_partition": partition_key(exc.day, exc.series)},
            ) from exc

    def _checked(self, item: SeriesDay, *, stored: bool = False) -> _Day:
        prepared = ConservationTicks.of(item.ticks)
        tier1: dict[int, DayCheck] = {}
        continuity: dict[int, DayCheck] = {}
        first_id, last_id = item.tick_id_range
        for threshold, result in item.thresholds.items():
            tier1[threshold] = tier1_day(item.series, result, item.day, prepared, self.selection.options)
            continuity[threshold] = continuity_day(
                item.series, item.day, threshold, result.bars, self.previous.get(threshold),
                tick_ids=(self.last_tick, first_id),
            )  # fmt: skip
            self.previous[threshold] = result.bars
        if last_id is not None:
            self.last_tick = last_id
        metadata = {}
        schema, options = self.selection.bar_schema, self.selection.options
        for threshold, result in ({} if stored else item.thresholds).items():
            sha = frame_sha256(result.bars)
            uri = self.store.uri(item.series, threshold, item.day, options=options)
            meta = bar_metadata(item, result, sha, schema=schema, options=options, uri=uri)
            metadata[threshold] = (sha, meta)
        tables = {
            t: feature_table(result.bars, item.series, t, groups=self.selection.groups)
            for t, result in item.thresholds.items()
            if t in self.selection.features
        }
        return _Day(
            item.series, item.day, item.tick_count, item.read_seconds, item.thresholds, tier1, continuity,
            metadata, tables,
        )  # fmt: skip

    def _judge(self, days: Sequence[WalkedDay[_Day]], *, last: date) -> None:
        """Start a batch's gate (and, for the range's last batch, its statistics) before the batch is
        written (on the engine's writer thread), so that they run in the validation worker meanwhile."""
        chunk = [d.note for d in days if d.note is not None]
        ready = [
            FeatureDay(day.series, t, day.day, table)
            for t in self.selection.features
            for day in chunk
            if (table := day.tables.get(t)) is not None and day.tier1[t].passed
        ]
        keep_recent(
            self.recent, ready, [t for t in self.selection.features if features_key(t) in self.tier2_targets]
        )
        gated = [f for f in ready if self.selection.wants(features_key(f.threshold), "expectations")]
        gate = in_background(partial(gate_tables, gated, self.selection.groups)) if gated else None
        self.judged.append((ready, gated, gate))
        if days and days[-1].day == last:
            for t, tables in self.recent.items():
                self.tier2_pending[t] = (tables, in_background(partial(tier2_verdict, tables, t)))

    def _flush(self, chunk: Sequence[_Day], write_seconds: float, *, store_bars: bool) -> Iterator[Any]:
        ready, gated, gate = self.judged.popleft()  # this batch's, from _judge
        if not chunk:
            return
        # the Delta commits as soon as the gate has judged, beside this batch's bar events: they need
        # the bars' data versions only (a computed day's is its sha), not the recorded events
        groups = self._commit_groups(chunk, ready, store_bars=store_bars)
        publish = partial(publish_after_gate, self.datasets, groups, gated, gate)
        commits = in_thread(publish, "rangebar-publish")
        labels = [partition_key(d.day, d.series) for d in chunk]
        ticks = latest_versions(self.context.instance, TICKS_KEY, labels) if store_bars else {}
        for day, label in zip(chunk, labels, strict=True):
            yield from self._bar_events(
                day, write_seconds / len(chunk), materialized=store_bars, ticks_version=ticks.get(label)
            )
            summary = ", ".join(
                f"{t} dbps {r.bars.height} bars{'' if day.tier1[t].passed else ' (tier1 FAILED)'}"
                for t, r in day.results.items()
            )
            self.context.log.info(f"{label}: {day.tick_count} ticks -> {summary}")
        verdicts = gate_verdicts(gated, gate)
        done, error = cast(tuple[list[tuple[CommitGroup, FeatureCommit]], Exception | None], commits.result())
        for (built, failed, sources), commit in done:  # each recorded, then the first failure raised
            recorded = {f.day: self.recorded.get((f.threshold, f.day)) or sources[f.day] for f in built}
            yield from self._published((built, failed, recorded), verdicts, commit)
        if error is not None:
            raise error

    def _bar_events(
        self, day: _Day, write_seconds: float, *, materialized: bool, ticks_version: Version | None
    ) -> Iterator[Any]:
        """The day's bar materializations (when computed here) and the selected bar checks."""
        label = partition_key(day.day, day.series)
        for threshold in day.results:
            asset = range_bars_key(threshold)
            if materialized:
                sha, metadata = day.prepared[threshold]
                inputs = {TICKS_KEY: ticks_version, asset: self.versions.get(threshold)}
                yield dg.AssetMaterialization(
                    asset_key=asset,
                    partition=label,
                    metadata=metadata | {"write_seconds": round(write_seconds, 4)},
                    tags=version_tags(sha, bars_code_version(self.selection.options), inputs),
                )
                recorded = latest_version(self.context.instance, asset, label) or Version(None, sha)
                self.versions[threshold] = self.recorded[(threshold, day.day)] = recorded
            wanted = [name for name in ("tier1", "continuity") if self.selection.wants(asset, name)]
            if not wanted:
                continue
            # Each evaluation names the materialization it judged: just recorded, or the stored day's.
            target = (
                self.recorded[(threshold, day.day)]
                if materialized
                else latest_version(self.context.instance, asset, label)
            )
            if "tier1" in wanted:
                yield day.tier1[threshold].evaluation(
                    asset, label, blocking=True, severity=dg.AssetCheckSeverity.ERROR, target=target
                )
            if "continuity" in wanted:
                yield day.continuity[threshold].evaluation(
                    asset, label, blocking=False, severity=dg.AssetCheckSeverity.ERROR, target=target
                )

    def _commit_groups(
        self, chunk: Sequence[_Day], ready: list[FeatureDay], *, store_bars: bool
    ) -> list[CommitGroup]:
        """The chunk's Delta commits, one per threshold and series: the tables of ``ready`` (bars
        passed tier1), with their bars' data versions, and the days whose bars failed tier1 (their
        rows withdrawn, the reason logged)."""
        withdrawn: list[tuple[FeatureDay, str]] = []
        for threshold in self.selection.features:
            for day in chunk:
                check = day.tier1.get(threshold)
                if check is None or check.passed:
                    continue
                item = FeatureDay(day.series, threshold, day.day, day.tables[threshold])
                self.context.log.warning(
                    f"{partition_key(day.day, day.series)}: features_{threshold} not built, the bars "
                    f"failed their blocking tier1 check ({check.description})"
                )
                withdrawn.append((item, f"range_bars_{threshold}:tier1 failed: {check.description}"))
        computed = {(t, d.day): d.prepared[t][0] for d in chunk for t in d.prepared} if store_bars else {}
        groups: list[CommitGroup] = []
        for threshold in self.selection.features:
            mine = [f for f in ready if f.threshold == threshold]
            failed = [(f, reason) for f, reason in withdrawn if f.threshold == threshold]
            for series in dict.fromkeys(f.series for f in [*mine, *(f for f, _ in failed)]):
                built = [f for f in mine if f.series == series]
                sources = {  # computed here: the sha its materialization records; else the latest
                    f.day: Version(None, sha)
                    if (sha := computed.get((threshold, f.day)))
                    else latest_version(
                        self.context.instance, range_bars_key(threshold), partition_key(f.day, series)
                    )
                    for f in built
                }
                groups.append((built, [(f, r) for f, r in failed if f.series == series], sources))
        return groups

    def _published(
        self, group: CommitGroup, verdicts: dict[int, GateVerdict], commit: FeatureCommit
    ) -> Iterator[Any]:
        """The events of a threshold's and series' Delta commit: a materialization (and gate
        evaluation) per built table, an observation per day withdrawn for its bars."""
        built, failed, sources = group
        first = (built or [f for f, _ in failed])[0]
        threshold, series = first.threshold, first.series
        asset, bars = features_key(threshold), range_bars_key(threshold)
        instance = self.context.instance
        code_version = features_code_version(self.pipeline)
        labels = [partition_key(item.day, series) for item in built]
        for item, label in zip(built, labels, strict=True):
            version = feature_version(sources[item.day], self.selection.horizons, code_version)
            yield dg.AssetMaterialization(
                asset_key=asset,
                partition=label,
                metadata=feature_metadata(item, commit),
                tags=version_tags(version, code_version, {bars: sources[item.day]}),
            )
        gated = [(item, label) for item, label in zip(built, labels, strict=True) if id(item) in verdicts]
        if built and (gated or asset in self.tier2_targets):  # the materializations just recorded
            judged = latest_versions(instance, asset, labels)
            self.tier2_targets[asset] = judged.get(labels[-1])
            for item, label in gated:
                yield gate_evaluation(asset, label, verdicts[id(item)], judged.get(label))
        for item, reason in failed:
            yield withdrawn_observation(item, reason, commit)


def build_bars_step(pipeline: PipelineConfig) -> dg.AssetsDefinition:
    """The step computing ``range_bars_{thr}`` and ``features_{thr}`` of every configured threshold."""
    partitions = daily_series_partitions(pipeline)
    options = pipeline.bar_options
    bar_schema = column_schema(options.bar_schema)
    groups = " and ".join(g for g in pipeline.feature_groups if g != "core") or "no feature group"
    specs: list[dg.AssetSpec] = []
    checks: list[dg.AssetCheckSpec] = []

    def spec(key: dg.AssetKey, deps: list[dg.AssetDep], group: str, kinds: set[str], **extra: Any) -> None:
        specs.append(
            dg.AssetSpec(
                key, partitions_def=partitions, deps=deps, skippable=True, group_name=group, kinds=kinds,
                automation_condition=follow_upstream(pipeline), owners=OWNERS, **extra,
            )
        )  # fmt: skip

    def check(key: dg.AssetKey, name: str, description: str, *, blocking: bool = False) -> None:
        checks.append(
            dg.AssetCheckSpec(
                name, asset=key, blocking=blocking, partitions_def=partitions, description=description
            )
        )

    for threshold in pipeline.thresholds:
        bars = range_bars_key(threshold)
        deps = [dg.AssetDep(TICKS_KEY), dg.AssetDep(bars, partition_mapping=previous_day_mapping())]
        spec(
            bars, deps, "range_bars", {"rust", "clickhouse"},
            code_version=bars_code_version(options),
            metadata={"dagster/column_schema": bar_schema, "bar_options": options.key or "default"},
            description=(
                f"Range bars at {threshold} dbps ({threshold / 1000:g} %) with the 10 microstructure "
                f"features{groups_text(options)}, one UTC day of "
                "one series, stored in the Tier 2 bar store (the day is replaced). The day continues the "
                f"previous day's unfinished bar from its checkpoint. Bar options: {options}."
            ),
        )  # fmt: skip
        check(
            bars,
            "tier1",
            "Blocking: tier-1 invariants and exact conservation of the day's ticks",
            blocking=True,
        )
        check(bars, "continuity", "The day's first bar follows the previous day's last bar (ids and times)")
        # Evaluated by this step (an asset check op after it would be skipped: the step records
        # materializations, not outputs), at the end of each run and in the freshness job.
        checks.append(dg.AssetCheckSpec("freshness", asset=bars, description=freshness_description(pipeline)))
    for threshold in pipeline.thresholds:
        features = features_key(threshold)
        spec(
            features, [dg.AssetDep(range_bars_key(threshold))], "features", {"parquet", "polars"},
            code_version=features_code_version(pipeline),
            description=(
                f"ML-ready feature table at {threshold} dbps: the day's bars (only when they passed "
                f"tier1) with the {groups} features, a series-day of the threshold's Delta table "
                "(recording the bars' data version, schema and kernel versions that produced it), "
                "committed once its expectations gate passed; labels are computed across days "
                f"by ml_dataset_{threshold}."
            ),
        )  # fmt: skip
        check(
            features,
            "expectations",
            "Blocking: the manifest's column rules (dtype, no null or NaN, value range) in one "
            "vectorised polars pass and the table suite (column set, row count, high >= low, "
            "unique bars) in great-expectations; a failing day is not promoted",
            blocking=True,
        )
        checks.append(  # a property of a window of bars, not of one day: one evaluation per run and series
            dg.AssetCheckSpec(
                "tier2",
                asset=features,
                description="Tier-2 feature statistics of the run's last bars (warning)",
            )
        )

    @dg.multi_asset(
        name=BARS_STEP,
        specs=specs,
        check_specs=checks,
        can_subset=True,
        # Bounded runs: a backfill of years runs as runs of at most max_days_per_run days per series
        # (each continuing the previous run's stored checkpoint), which fail independently.
        backfill_policy=dg.BackfillPolicy.multi_run(pipeline.max_days_per_run),
        pool=BAR_STORE_POOL,
    )
    def range_bars_and_features(
        context: dg.AssetExecutionContext,
        tick_store: TickStoreResource,
        bar_store: BarStoreResource,
        datasets: DatasetStoreResource,
    ) -> Iterator[Any]:
        selection = _Selection.of(context, pipeline)
        names = {c.name for c in selection.checks}  # their validators now: seconds of imports
        worker.warm_up(gate="expectations" in names, statistics="tier2" in names)
        ticks = tick_store.store()
        with bar_store.open() as store:
            walk = _StepRun(context, pipeline, selection, store, ticks, datasets.store())
            for series, days in days_by_series(run_partition_keys(context.op_execution_context)).items():
                start = pipeline.first_day(series)
                if empty := [d for d in days if d < start]:  # before the series' first day: no data
                    versions = {range_bars_key(t): bars_code_version(options) for t in selection.bars}
                    versions |= {features_key(t): features_code_version(pipeline) for t in selection.features}
                    yield from before_start_events(
                        context.instance, series, empty, first_day=start, checks=selection.checks,
                        code_versions=versions,
                    )  # fmt: skip
                for first, last in contiguous_ranges(d for d in days if d >= start):
                    yield from walk.run(series, first, last)
        fresh = [k for k in map(range_bars_key, pipeline.thresholds) if selection.wants(k, "freshness")]
        yield from freshness_evaluations(context.instance, pipeline, fresh, ticks)

    return range_bars_and_features
