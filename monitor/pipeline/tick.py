"""One tick: plan -> fetch -> fit what is stale -> score and decide -> signals -> alert -> deliver.

``Monitor(config, source, store, sinks, routes).tick(now) -> TickReport`` is what ``livewatch run --once``
and every scheduled daemon tick call. Stages:

1. **Plan** (:mod:`monitor.pipeline.plan`): for each metric the complete buckets end at
   ``floor(now - completeness_delay)``; each series resumes after its watermark, at most ``max_catchup``
   back.
2. **Score and decide** (:class:`monitor.pipeline.scoring.MetricScorer`): one incremental query per metric,
   fits of series without a fresh model (through the executor, saved), then every series scored and decided
   at once by :func:`monitor.pipeline.scoring.score_and_decide` (post-rules, CUSUM level shifts, holiday
   floor). Buckets that never arrived are scored as missing (NaN), never as dips.
3. **Signals** (:mod:`monitor.pipeline.signals`): each run of flagged buckets gets its root causes from the
   slicer (:mod:`monitor.pipeline.slicing`) and one signal per bucket.
4. **Alert**: buckets are replayed in time order through :func:`alerts.engine.process` (grouping,
   severity, routing, muting, dedup, outbox), then :func:`alerts.outbox.deliver_pending` sends. Buckets that
   ended before ``live_from`` are a catch-up (``process(..., live=False)``): each incident is delivered once,
   as its final state, and reminders only happen in live time (:func:`alerts.dedup.catch_up_gate`). Each
   bucket carries every scored series' recent level (observed and expected, :func:`_observed_by_bucket`):
   a level-shift incident stays open while its series holds the new level and resolves once it is back
   (or a person acknowledged it); spikes and dips ignore it. Metrics with a level shift open keep their
   context buckets for it.
5. **Watermarks** advance (compare-and-set) in the transaction that records the alerts of the scored buckets,
   so a crash re-scores without duplicating anything.

Concurrency: the alert stage (the transaction and the delivery) holds :attr:`Monitor.alert_lock`; actions
from Slack (:mod:`monitor.daemon.interactivity`) take the same lock, so a click and a tick never overwrite
each other's incident, nor send the same pending notification twice.

Failure isolation: a metric whose fetch fails, or a series whose model will not fit, is logged with its
context and reported in the :class:`TickReport`; the others go on.
"""

from __future__ import annotations

import threading
import uuid
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal, Protocol

import pandas as pd
import structlog

from alerts.engine import AlertRepos, EngineConfig, process
from alerts.incidents import GroupingConfig
from alerts.model import AlertSignal, Notification
from alerts.model import RootCause as AlertRootCause
from alerts.muting import MaintenanceWindow
from alerts.outbox import DeliveryReport, deliver_pending
from alerts.routing import Route
from alerts.sinks.base import AlertSink
from detectors.errors import DetectorError
from monitor.config import Config, Metric
from monitor.errors import LivewatchError, SourceError
from monitor.pipeline.executor import ChunkExecutor
from monitor.pipeline.models import DetectorState, ModelCache
from monitor.pipeline.scoring import MetricScorer, SeriesDecisions
from monitor.pipeline.signals import SignalUnits, alert_cause, explain_span, series_signals
from monitor.pipeline.slicing import explain_window
from monitor.pipeline.spec import matchers
from monitor.source import DataProblem, MetricSource
from monitor.store import SqlStore, StoreError

__all__ = ["ConcurrentTickError", "Monitor", "SeriesOutcome", "TickReport"]

log = structlog.get_logger(__name__)


class ExperimentSignals(Protocol):
    """Extra signals for the scored buckets (experiment guardrails), and errors by name."""

    def signals(
        self, buckets: Sequence[pd.Timestamp], now: datetime
    ) -> tuple[dict[pd.Timestamp, list[AlertSignal]], dict[str, str]]: ...


class ConcurrentTickError(LivewatchError):
    """Another tick advanced a watermark first; this tick's alert results were rolled back."""


@dataclass(frozen=True)
class SeriesOutcome:
    """What happened to one series in one tick."""

    metric: str
    series: str
    scored: int = 0
    missing: int = 0
    flagged: int = 0
    refitted: bool = False
    error: str | None = None


@dataclass
class TickReport:
    """Everything one tick did, for logs, ``livewatch status`` and tests."""

    run_id: str
    now: datetime
    outcomes: list[SeriesOutcome] = field(default_factory=list)
    problems: list[DataProblem] = field(default_factory=list)
    metric_errors: dict[str, str] = field(default_factory=dict)
    signals: int = 0
    notifications: list[Notification] = field(default_factory=list)
    delivery: DeliveryReport | None = None

    @property
    def series_scored(self) -> int:
        return sum(1 for o in self.outcomes if o.scored and o.error is None)

    @property
    def errors(self) -> int:
        return len(self.metric_errors) + sum(1 for o in self.outcomes if o.error)


@dataclass(frozen=True)
class _Scored:
    metric: Metric
    item: SeriesDecisions
    previous_watermark: datetime | None
    state: DetectorState | None = None  # a streaming detector's state, saved with the watermark


class Monitor:
    """Runs ticks over a configuration. All collaborators are injected; time is passed to :meth:`tick`.

    Args:
        config: The configuration.
        source: The warehouse.
        store: The state store the alert engine and watermarks use.
        sinks: Sink per receiver name.
        routes: The route tree.
        models: The compiled-model cache (shared with the refit job), default a new one.
        executor: Where a tick fits series without a fresh model (default: in this process).
        max_model_age: Models older than this are refitted by the tick (default ``refit_every``).
        experiments: Experiment guardrails (:class:`monitor.experiments.evaluate.ExperimentMonitor`):
            their signals join the scored buckets' alert evaluation.
    """

    def __init__(
        self,
        config: Config,
        source: MetricSource,
        store: SqlStore,
        sinks: Mapping[str, AlertSink],
        routes: Route,
        *,
        models: ModelCache | None = None,
        executor: ChunkExecutor | None = None,
        max_model_age: timedelta | None = None,
        experiments: ExperimentSignals | None = None,
    ) -> None:
        self.experiments = experiments
        self.config = config
        self.source = source
        self.store = store
        self.sinks = sinks
        self.routes = routes
        self.scorer = MetricScorer(
            config,
            store,
            source,
            models=models if models is not None else ModelCache(),
            executor=executor,
            max_model_age=max_model_age,
        )
        self.engine_config = EngineConfig(
            grouping=GroupingConfig(
                resolve_after_clean=config.alerts.resolve_after, join_window=config.alerts.group_window
            )
        )
        self.alert_lock = threading.RLock()
        self.windows = tuple(
            MaintenanceWindow(
                name=w.name, start=w.start, end=w.end, suppress=w.suppress, matchers=matchers(w.match)
            )
            for w in config.alerts.windows
        )

    @property
    def models(self) -> ModelCache:
        """The compiled-model cache the refit job fills."""
        return self.scorer.models

    def tick(
        self,
        now: datetime,
        *,
        metrics: Sequence[str] | None = None,
        windows: Sequence[MaintenanceWindow] = (),
        live_from: datetime | None = None,
    ) -> TickReport:
        """Score every complete, not yet scored bucket up to ``now``, alert, deliver.

        Args:
            now: The tick time (UTC-aware).
            metrics: Only these metrics (default: all).
            windows: Maintenance windows for this tick on top of the configured ones.
            live_from: Buckets that ended before this time are a catch-up (``live=False``: one message
                per incident, its final state); default: every bucket is live.
        """
        report = TickReport(run_id=uuid.uuid4().hex[:12], now=now)
        bound = log.bind(run_id=report.run_id)
        self.store.start_run(report.run_id, now=now)
        status: Literal["ok", "partial", "failed"] = "ok"
        try:
            scored: list[_Scored] = []
            # A level shift held open is judged on its series' recent buckets: those metrics keep context.
            held = {
                (s.metric, s.region)
                for i in self.store.list_active()
                for s in i.signals
                if s.kind == "level_shift"
            }
            shifted = {metric for metric, _ in held}
            for metric in self.config.metrics:
                if metrics is not None and metric.name not in metrics:
                    continue
                try:
                    scored += self._score_metric(metric, now, report, context=metric.name in shifted)
                except (SourceError, DetectorError, ValueError) as exc:
                    report.metric_errors[metric.name] = str(exc)
                    bound.error("metric failed", metric=metric.name, error=str(exc))
            by_bucket, step_of = self._signals(scored)
            if self.experiments is not None:
                extra, failed = self.experiments.signals(sorted(step_of), now)
                report.metric_errors.update(failed)
                for bucket, signals in extra.items():
                    by_bucket[bucket] += signals
            report.signals = sum(len(v) for v in by_bucket.values())
            # Incidents, notifications and watermarks commit together: a crash re-scores the buckets,
            # never half-records them.
            with self.alert_lock:
                with self.store.transaction() as tx:
                    report.notifications = self._process(
                        by_bucket,
                        step_of,
                        AlertRepos(tx, tx, tx),
                        (*self.windows, *windows),
                        live_from,
                        _observed_by_bucket(scored, held | _shifts(by_bucket)),
                    )
                    for entry in scored:
                        last = entry.item.last_bucket.to_pydatetime()
                        name, series = entry.metric.name, entry.item.series
                        if not tx.advance_watermark(name, series, last, entry.previous_watermark, now=now):
                            raise ConcurrentTickError(
                                f"{name}/{series}: another tick advanced the watermark; "
                                "this tick's results were rolled back (run one daemon per state database)"
                            )
                        if entry.state is not None:
                            state = entry.state
                            tx.save_model_state(
                                name, series, state.detector, state.text, version=state.version, fitted_at=now
                            )
                report.delivery = deliver_pending(self.store, self.sinks, now)
            status = "ok" if report.errors == 0 else "partial"
            return report
        except Exception:
            status = "failed"
            raise
        finally:
            try:
                self.store.finish_run(
                    report.run_id,
                    now=now,
                    status=status,
                    series_scored=report.series_scored,
                    errors=report.errors,
                )
            except StoreError as exc:  # a second daemon starting up closed it as orphaned: its record only
                bound.warning("tick record closed by another process", error=str(exc))

    def _score_metric(
        self, metric: Metric, now: datetime, report: TickReport, *, context: bool = False
    ) -> list[_Scored]:
        batch = self.scorer.score_metric(metric, now, full_context=context)
        report.problems += batch.problems
        for problem in batch.problems:
            log.warning("data problem", metric=metric.name, series=problem.series, problem=problem.message)
        for series, error in sorted(batch.errors.items()):
            report.outcomes.append(SeriesOutcome(metric.name, series, error=error))
        scored = []
        for item in batch.scored:
            report.outcomes.append(
                SeriesOutcome(
                    metric.name,
                    item.series,
                    item.scored,
                    item.missing,
                    item.flagged,
                    refitted=item.series in batch.refitted,
                )
            )
            previous = batch.plan.watermarks.get(item.series)
            scored.append(_Scored(metric, item, previous, batch.states.get(item.series)))
        return scored

    def _signals(
        self, scored: list[_Scored]
    ) -> tuple[dict[pd.Timestamp, list[AlertSignal]], dict[pd.Timestamp, pd.Timedelta]]:
        """Alert signals by the bucket they belong to, and the step of every scored bucket."""
        by_bucket: dict[pd.Timestamp, list[AlertSignal]] = defaultdict(list)
        step_of: dict[pd.Timestamp, pd.Timedelta] = {}
        for entry in scored:
            step = pd.Timedelta(entry.metric.granularity)
            for bucket in entry.item.decisions.index:
                step_of[bucket] = step

            def explain(run: pd.DataFrame, entry: _Scored = entry) -> tuple[AlertRootCause, ...]:
                return self._explain(entry, run)

            units = SignalUnits.of(entry.metric)
            for signal in series_signals(entry.metric.name, entry.item, explain=explain, units=units):
                by_bucket[pd.Timestamp(signal.end)].append(signal)
        return by_bucket, step_of

    def _process(
        self,
        by_bucket: dict[pd.Timestamp, list[AlertSignal]],
        step_of: dict[pd.Timestamp, pd.Timedelta],
        repos: AlertRepos,
        windows: Sequence[MaintenanceWindow],
        live_from: datetime | None = None,
        observed_of: Mapping[pd.Timestamp, tuple[dict[str, float], dict[str, float]]] | None = None,
    ) -> list[Notification]:
        """Replay the buckets in time order through the alert engine (one call per bucket); buckets
        that ended before ``live_from`` are a catch-up (``live=False``); ``observed_of`` gives each bucket's
        observed and expected values per series (whether a level shift holds)."""
        notifications: list[Notification] = []
        observed_of = observed_of or {}
        for bucket in sorted(step_of):
            ended = (bucket + step_of[bucket]).to_pydatetime()
            observed, expected = observed_of.get(bucket, ({}, {}))
            result = process(
                by_bucket.get(bucket, []),
                ended,
                repos=repos,
                routes=self.routes,
                windows=windows,
                config=self.engine_config,
                live=live_from is None or ended >= live_from,
                observed=observed,
                expected=expected,
            )
            notifications += result.notifications
        return notifications

    def _explain(self, entry: _Scored, run: pd.DataFrame) -> tuple[AlertRootCause, ...]:
        timestamps, expected = explain_span(entry.item, run)
        try:
            causes = explain_window(self.source, entry.metric, entry.item.series, timestamps, expected)
        except (SourceError, DetectorError, ValueError) as exc:
            log.warning(
                "root-cause slicing failed",
                metric=entry.metric.name,
                series=entry.item.series,
                error=str(exc),
            )
            return ()
        return tuple(alert_cause(c) for c in causes)


#: Calm buckets (``|score|`` under the metric's threshold) averaged into the level a shifted series is
#: judged at: one bucket of a noisy ratio dips halfway back every few hours while the shift holds.
RETURN_WINDOW = 6


def _shifts(by_bucket: Mapping[pd.Timestamp, Sequence[AlertSignal]]) -> set[tuple[str, str]]:
    """``(metric, series)`` of every level-shift signal of this tick."""
    return {
        (s.metric, s.region) for signals in by_bucket.values() for s in signals if s.kind == "level_shift"
    }


def _observed_by_bucket(
    scored: Sequence[_Scored], series: Collection[tuple[str, str]]
) -> dict[pd.Timestamp, tuple[dict[str, float], dict[str, float]]]:
    """``bucket -> ({"metric/series": observed}, {"metric/series": expected})`` of every scored bucket of
    the ``(metric, series)`` pairs in ``series``: what tells the alert engine whether a level shift holds.
    Only level-shift members read them, so only the series of one (open, or signalled in this tick) are
    computed; a scored series left out of an incident's members is never consulted.

    Each value is the mean over the calm buckets among the last :data:`RETURN_WINDOW` (context included):
    loud buckets (a spike during the shift, the burst that a CUSUM took for a shift) are left out, so a
    series back after a burst is back at once, and a noisy series at its new level does not look back
    because of one low bucket. A bucket with no calm bucket behind it gives its own values.
    """
    out: dict[pd.Timestamp, tuple[dict[str, float], dict[str, float]]] = defaultdict(lambda: ({}, {}))
    for entry in scored:
        if (entry.metric.name, entry.item.series) not in series:
            continue
        key = f"{entry.metric.name}/{entry.item.series}"
        decisions = entry.item.decisions
        columns = ["observed", "expected", "score"]
        frames = [f.loc[:, columns] for f in (entry.item.context, decisions) if len(f)]
        trail = (pd.concat(frames) if len(frames) > 1 else frames[0]).astype(float)
        calm = trail["score"].abs() < entry.metric.threshold
        level = trail[["observed", "expected"]].where(calm, axis=0).rolling(RETURN_WINDOW, min_periods=1)
        smooth = level.mean().reindex(decisions.index)
        raw = decisions[["observed", "expected"]].astype(float)
        smooth = smooth.where(smooth.notna().all(axis=1), raw, axis=0)
        for bucket, seen, model in zip(
            decisions.index,
            smooth["observed"].to_numpy(dtype=float),
            smooth["expected"].to_numpy(dtype=float),
            strict=True,
        ):
            values, expectations = out[pd.Timestamp(bucket)]
            values[key], expectations[key] = float(seen), float(model)
    return out
