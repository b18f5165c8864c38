"""The refit job: every series' model refitted on its history before its next window, through the executor.

A series with a watermark is trained on its history up to the watermark; a series never scored (seen in
the last :data:`DISCOVERY_SPAN`) on the history before the first bucket its first tick will score; both are
"the rows before :meth:`~monitor.pipeline.plan.MetricPlan.start_of`". Histories stream from the source a
few hundred series at a time and fits run many series per executor task, so memory stays bounded for any
number of series; models are saved and put in the tick's :class:`~monitor.pipeline.models.ModelCache` as
they come back.

Buckets people marked "not an incident" from Slack (the store's
:meth:`~monitor.store.SqlStore.list_false_positives`, ``[start, end)`` of a metric and region) are left out
of that metric/region's training at every refit (:func:`false_positive_exclusions`), so a false alarm does
not teach the baseline that the spike was normal, nor is it learnt as the new normal.

An open level shift is left out too while its incident holds it (:func:`held_shift_exclusions`): a model
trained on the new level would call it normal, and the series "back" at once. Acknowledging the incident
accepts the new level, and the next fit learns it. When leaving a shift out would leave too little history
to fit on, the series is fitted with it (see :func:`~monitor.pipeline.models.fit_chunk`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pandas as pd
import structlog

from alerts.model import Incident, IncidentState
from alerts.ports import FalsePositiveRepository
from monitor.config import Config
from monitor.errors import SourceError
from monitor.pipeline.executor import ChunkExecutor
from monitor.pipeline.models import Exclusions, ModelCache, TrainingExclusions, fit_models
from monitor.pipeline.plan import plan_metric
from monitor.source import MetricSource
from monitor.store import SqlStore

__all__ = [
    "DISCOVERY_SPAN",
    "RefitSummary",
    "false_positive_exclusions",
    "held_shift_exclusions",
    "refit_all",
    "training_exclusions",
]

log = structlog.get_logger(__name__)

#: How far back :func:`refit_all` looks for series that have never been scored.
DISCOVERY_SPAN = timedelta(days=1)


@dataclass
class RefitSummary:
    """What :func:`refit_all` did: fitted series (``metric/series``) and errors by series or metric."""

    now: datetime
    fitted: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)


#: A false positive's exclusive end, as the detectors' inclusive interval end.
_JUST_BEFORE = timedelta(microseconds=1)


def false_positive_exclusions(repo: FalsePositiveRepository, metric: str) -> dict[str, Exclusions]:
    """Series (region) -> the intervals of ``metric`` marked "not an incident", inclusive, in start order."""
    found: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
    for fp in repo.list_false_positives(metric=metric):
        found[fp.region].append((fp.start, max(fp.start, fp.end - _JUST_BEFORE)))
    return {series: tuple(spans) for series, spans in found.items()}


#: Buckets before a shift's estimated start that are left out with it: the CUSUM dates the onset a few
#: buckets late, and those buckets are already at the new level.
ONSET_MARGIN = 6


def held_shift_exclusions(incidents: Iterable[Incident], metric: str, now: datetime) -> dict[str, Exclusions]:
    """Series (region) -> ``(start - ONSET_MARGIN buckets, now)`` of every level shift of ``metric`` that an
    active incident holds open: not acknowledged (a person accepted the new level) and not marked "not an
    incident". Pure."""
    found: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
    for incident in incidents:
        if not incident.active or incident.state is IncidentState.ACKNOWLEDGED or incident.false_positive:
            continue
        for member in incident.signals:
            if member.kind == "level_shift" and member.metric == metric and member.start <= now:
                margin = ONSET_MARGIN * (member.bucket or timedelta(0))
                found[member.region].append((member.start - margin, now))
    return {series: tuple(sorted(spans)) for series, spans in found.items()}


def training_exclusions(store: SqlStore, metric: str, now: datetime) -> TrainingExclusions:
    """The intervals the fits of ``metric`` at ``now`` leave out (see the module docstring)."""
    return TrainingExclusions(
        false_positive_exclusions(store, metric), held_shift_exclusions(store.list_active(), metric, now)
    )


def refit_all(
    config: Config,
    store: SqlStore,
    source: MetricSource,
    now: datetime,
    executor: ChunkExecutor,
    *,
    cache: ModelCache,
    metrics: Collection[str] | None = None,
    series: Collection[str] | None = None,
    chunk_size: int = 20,
    fetch_size: int = 400,
) -> RefitSummary:
    """Refit and store the stack of every series (see the module docstring); ``fitted_at = now``.

    Metrics with ``detector: streaming`` are skipped: their state advances with every tick.

    Args:
        config: The configuration.
        store: Where models are saved.
        source: Metric source (queried ``fetch_size`` series at a time).
        now: The refit time (UTC-aware).
        executor: Where fits run (:func:`monitor.pipeline.executor.make_executor`).
        cache: The scorer's model cache, updated in place.
        metrics: Only these metrics (default: all).
        series: Only these series of each metric (default: all).
        chunk_size: Series per executor task.
        fetch_size: Series per history query; bounds memory with the executor's in-flight limit.
    """
    summary = RefitSummary(now)
    for metric in config.metrics:
        if metrics is not None and metric.name not in metrics:
            continue
        if metric.detector == "streaming":  # it learns from every bucket it scores; the tick fits new series
            continue
        watermarks = {w.series: w.bucket for w in store.list_watermarks(metric.name)}
        plan = plan_metric(metric, now, watermarks, config.scheduler.max_catchup)
        try:
            recent = source.fetch(
                metric, (plan.end - pd.Timedelta(DISCOVERY_SPAN)).to_pydatetime(), plan.end.to_pydatetime()
            )
        except SourceError as exc:  # the metric's refit fails, the others go on
            summary.errors[metric.name] = f"series discovery failed: {exc}"
            log.error("refit discovery failed", metric=metric.name, error=str(exc))
            continue
        names = set(watermarks) | set(recent.frame["series"].astype(str).unique())
        if series is not None:
            names &= set(series)
        cutoffs = {name: plan.start_of(name) for name in sorted(names)}
        outcomes, errors = fit_models(
            config,
            source,
            metric,
            cutoffs,
            executor,
            chunk_size=chunk_size,
            fetch_size=fetch_size,
            left_out=training_exclusions(store, metric.name, now),
        )
        for name, error in errors.items():
            summary.errors[f"{metric.name}/{name}"] = error
        for outcome in outcomes:
            key = f"{outcome.metric}/{outcome.series}"
            if outcome.state is None or outcome.model is None:
                summary.errors[key] = outcome.error or "fit failed"
                log.error("refit failed", metric=outcome.metric, series=outcome.series, error=outcome.error)
                continue
            cache.save(store, outcome, now)
            summary.fitted.append(key)
    log.info("refit done", fitted=len(summary.fitted), errors=len(summary.errors))
    return summary
