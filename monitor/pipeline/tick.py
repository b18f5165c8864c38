"""One scoring tick: fetch -> detect -> slice -> alert -> deliver, for every metric and series.

``Monitor(config, source, store, sinks, routes).tick(now) -> TickReport`` is what ``livewatch run --once``
and every scheduled daemon tick call. Stages:

1. **Which buckets.** For each metric the complete buckets end at ``floor(now - completeness_delay)``.
   Each series resumes after its stored watermark (the last scored bucket), at most ``max_catchup``
   back; a fresh store starts ``max_catchup`` back.
2. **Fetch** once per metric: every series, the training history plus the new buckets.
3. **Detect** per series with a :class:`detectors.stack.DetectorStack`: the stored model is reused until
   it is older than ``refit_every`` (fit once, score often); it is fitted on history before the scored
   window (never on what it scores) and saved as JSON. Buckets that never arrived are scored as missing
   (NaN), never as dips. Post-rules (threshold, direction, noise floors) give per-bucket flags.
4. **Slice**: each anomalous run gets its root causes from the slicer (:mod:`monitor.pipeline.slicing`).
5. **Alert**: buckets are replayed in time order through :func:`alerts.engine.process` (grouping,
   severity, routing, muting, dedup, outbox), then :func:`alerts.outbox.deliver_pending` sends.
6. **Watermarks** advance (compare-and-set) only after the alerts of the scored buckets are enqueued; the
   alert engine is idempotent per bucket, so a crash in between re-scores without duplicating anything.

Failure isolation: a metric whose fetch fails, or a series whose model will not fit, is logged with its
context and reported in the :class:`TickReport`; the others go on.
"""

from __future__ import annotations

import shlex
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

import numpy as np
import pandas as pd
import structlog

from alerts.engine import AlertRepos, EngineConfig, process
from alerts.incidents import GroupingConfig
from alerts.model import AlertSignal, ChartData, Notification
from alerts.model import RootCause as AlertRootCause
from alerts.muting import MaintenanceWindow
from alerts.outbox import DeliveryReport, deliver_pending
from alerts.routing import Route
from alerts.sinks.base import AlertSink
from detectors.base import Detector
from detectors.errors import DetectorError
from detectors.postrules import classify_run, evaluate
from detectors.slicer import RootCause
from detectors.stack import DetectorStack
from monitor.config import Config, MetricConfig
from monitor.errors import LivewatchError, SourceError
from monitor.pipeline.scoring import BatchScorer, ModelCache
from monitor.pipeline.slicing import explain_window
from monitor.pipeline.spec import (
    CUSUM_CONTEXT_BUCKETS,
    DETECTOR_NAME,
    holiday_floor,
    level_shifts,
    matchers,
    new_stack,
    post_rules,
    series_frame,
)
from monitor.source import DataProblem, MetricSource, floor_time
from monitor.store import SqlStore

__all__ = ["ConcurrentTickError", "Monitor", "SeriesOutcome", "TickReport"]

log = structlog.get_logger(__name__)

CHART_CONTEXT_BUCKETS = 48


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


@dataclass
class _ScoredSeries:
    metric: MetricConfig
    series: str
    decisions: pd.DataFrame  # score columns + volume + flag + reason, indexed by bucket
    context: pd.DataFrame  # scores of the buckets before the window, for charts
    last_bucket: pd.Timestamp
    previous_watermark: datetime | None


class Monitor:
    """Runs ticks over a configuration. All collaborators are injected; time is passed to :meth:`tick`."""

    def __init__(
        self,
        config: Config,
        source: MetricSource,
        store: SqlStore,
        sinks: Mapping[str, AlertSink],
        routes: Route,
        *,
        models: ModelCache | None = None,
    ) -> None:
        self.config = config
        self.source = source
        self.store = store
        # Series with a fresh stored model are scored all at once (monitor.pipeline.scoring); `models` is the parsed
        # model cache the refit job (monitor.pipeline.scoring.refit_all) fills, shared so ticks never re-parse JSON.
        self.batch = BatchScorer(config, store, source, models=models)
        self.sinks = sinks
        self.routes = routes
        self.engine_config = EngineConfig(
            grouping=GroupingConfig(resolve_after_clean=config.alerts.resolve_after)
        )
        self.windows = tuple(
            MaintenanceWindow(
                name=w.name, start=w.start, end=w.end, suppress=w.suppress, matchers=matchers(w.match)
            )
            for w in config.alerts.windows
        )

    # -- the tick ----------------------------------------------------------------------------------
    def tick(self, now: datetime, *, metrics: Sequence[str] | None = None) -> TickReport:
        """Score every complete, not yet scored bucket up to ``now``, alert, deliver."""
        report = TickReport(run_id=uuid.uuid4().hex[:12], now=now)
        bound = log.bind(run_id=report.run_id)
        self.store.start_run(report.run_id, now=now)
        status: Literal["ok", "partial", "failed"] = "ok"
        try:
            scored: list[_ScoredSeries] = []
            for metric in self.config.metrics:
                if metrics is not None and metric.name not in metrics:
                    continue
                try:
                    scored += self._score_metric(metric, now, report)
                except (SourceError, DetectorError, ValueError) as exc:
                    report.metric_errors[metric.name] = str(exc)
                    bound.error("metric failed", metric=metric.name, error=str(exc))
            by_bucket, step_of = self._signals(scored)
            report.signals = sum(len(v) for v in by_bucket.values())
            # Incidents, notifications and watermarks commit together: a crash re-scores the buckets,
            # never half-records them.
            with self.store.transaction() as tx:
                report.notifications = self._process(by_bucket, step_of, AlertRepos(tx, tx, tx))
                for item in scored:
                    last = item.last_bucket.to_pydatetime()
                    if not tx.advance_watermark(
                        item.metric.name, item.series, last, item.previous_watermark, now=now
                    ):
                        raise ConcurrentTickError(
                            f"{item.metric.name}/{item.series}: another tick advanced the watermark; "
                            "this tick's results were rolled back (run one daemon per state database)"
                        )
            report.delivery = deliver_pending(self.store, self.sinks, now)
            status = "ok" if report.errors == 0 else "partial"
            return report
        except Exception:
            status = "failed"
            raise
        finally:
            self.store.finish_run(
                report.run_id,
                now=now,
                status=status,
                series_scored=report.series_scored,
                errors=report.errors,
            )

    # -- detection ---------------------------------------------------------------------------------
    def _score_metric(self, metric: MetricConfig, now: datetime, report: TickReport) -> list[_ScoredSeries]:
        batch = self.batch.score_metric(metric, now)
        pending = set(batch.pending)
        problems = [p for p in batch.problems if p.series not in pending]  # the inline path reports those
        report.problems += problems
        for problem in problems:
            log.warning("data problem", metric=metric.name, series=problem.series, problem=problem.message)
        for series, error in batch.model_errors.items():
            log.warning("stored model unreadable; refitting", metric=metric.name, series=series, error=error)
        scored = []
        for item in batch.scored:
            report.outcomes.append(
                SeriesOutcome(metric.name, item.series, item.scored, item.missing, item.flagged)
            )
            scored.append(
                _ScoredSeries(
                    metric,
                    item.series,
                    item.decisions,
                    item.context,
                    item.last_bucket,
                    item.previous_watermark,
                )
            )
        if pending:
            scored += self._score_inline(metric, now, report, sorted(pending))
        return scored

    def _score_inline(
        self, metric: MetricConfig, now: datetime, report: TickReport, only: Sequence[str]
    ) -> list[_ScoredSeries]:
        """Series without a fresh stored model: fetch their history, fit (and store) inline, score."""
        step = metric.granularity or timedelta(hours=1)
        complete_end = floor_time(pd.Timestamp(now) - pd.Timedelta(metric.completeness_delay or 0), step)
        earliest = complete_end - pd.Timedelta(self.config.scheduler.max_catchup)
        watermarks = {w.series: w.bucket for w in self.store.list_watermarks(metric.name)}
        starts = [pd.Timestamp(w) + pd.Timedelta(step) for w in watermarks.values()]
        first_needed = max(earliest, min([*starts, complete_end])) if starts else earliest
        history = pd.Timedelta(metric.history or timedelta(days=56))
        result = self.source.fetch(
            metric, (first_needed - history).to_pydatetime(), complete_end.to_pydatetime(), series=only
        )
        report.problems += result.problems
        for problem in result.problems:
            log.warning("data problem", metric=metric.name, series=problem.series, problem=problem.message)
        scored = []
        for series, frame in result.frame.groupby("series", sort=True):
            previous = watermarks.get(str(series))
            start = max(earliest, pd.Timestamp(previous) + pd.Timedelta(step)) if previous else earliest
            if start >= complete_end:
                continue
            try:
                item, outcome = self._score_series(metric, str(series), frame, start, complete_end, now)
            except (DetectorError, ValueError) as exc:
                outcome = SeriesOutcome(metric.name, str(series), error=str(exc))
                log.error("series failed", metric=metric.name, series=series, error=str(exc))
                item = None
            report.outcomes.append(outcome)
            if item is not None:
                item.previous_watermark = previous
                scored.append(item)
        return scored

    def _score_series(
        self,
        metric: MetricConfig,
        series: str,
        frame: pd.DataFrame,
        start: pd.Timestamp,
        end: pd.Timestamp,
        now: datetime,
    ) -> tuple[_ScoredSeries, SeriesOutcome]:
        step = pd.Timedelta(metric.granularity or timedelta(hours=1))
        values = series_frame(metric, frame)
        grid = pd.date_range(start, end, freq=step, inclusive="left")
        window = values.reindex(grid)  # buckets that never arrived are NaN: missing, not zero
        history = values[values.index < start]
        model, refitted = self._model(metric, series, history, now)
        context_start = start - CUSUM_CONTEXT_BUCKETS * step
        context = model.score(history[history.index >= context_start]) if len(history) else pd.DataFrame()
        scores = model.score(window)
        # Noise floors compare against the denominator of a ratio and the expected count of a count.
        scores["volume"] = window["volume"].to_numpy() if metric.kind == "ratio" else scores["expected"]
        rules = post_rules(metric)
        decisions = evaluate(scores, rules)
        decisions = level_shifts(decisions, context, rules)
        decisions = holiday_floor(decisions, self.config.regions.get(series), pd.DatetimeIndex(history.index))
        outcome = SeriesOutcome(
            metric.name,
            series,
            scored=len(grid),
            missing=int(window["value"].isna().sum()),
            flagged=int(decisions["flag"].sum()),
            refitted=refitted,
        )
        return _ScoredSeries(metric, series, decisions, context, grid[-1], None), outcome

    def _model(
        self, metric: MetricConfig, series: str, history: pd.DataFrame, now: datetime
    ) -> tuple[Detector, bool]:
        stored = self.store.load_model_state(metric.name, series, DETECTOR_NAME)
        fresh_after = pd.Timestamp(now) - pd.Timedelta(self.config.scheduler.refit_every)
        if stored is not None and pd.Timestamp(stored.fitted_at) > fresh_after:
            return DetectorStack.from_json(stored.state), False
        horizon = (
            history.index.max() - pd.Timedelta(metric.history or timedelta(days=56)) if len(history) else None
        )
        training = history[history.index > horizon] if horizon is not None else history
        model = new_stack(self.config, metric, series).fit(training, series_id=f"{metric.name}/{series}")
        self.store.save_model_state(
            metric.name, series, DETECTOR_NAME, model.to_json(), version=model.state_version, fitted_at=now
        )
        return model, True

    # -- alerting ----------------------------------------------------------------------------------
    def _signals(
        self, scored: list[_ScoredSeries]
    ) -> tuple[dict[pd.Timestamp, list[AlertSignal]], dict[pd.Timestamp, pd.Timedelta]]:
        """Alert signals by the bucket they belong to, and the step of every scored bucket."""
        by_bucket: dict[pd.Timestamp, list[AlertSignal]] = defaultdict(list)
        step_of: dict[pd.Timestamp, pd.Timedelta] = {}
        for item in scored:
            step = pd.Timedelta(item.metric.granularity or timedelta(hours=1))
            for bucket in item.decisions.index:
                step_of[bucket] = step
            for run in _runs(item.decisions):
                causes = self._explain(item, run)
                for position in range(len(run)):
                    signal = self._signal(item, run.iloc[: position + 1], causes)
                    by_bucket[pd.Timestamp(signal.end)].append(signal)
        return by_bucket, step_of

    def _process(
        self,
        by_bucket: dict[pd.Timestamp, list[AlertSignal]],
        step_of: dict[pd.Timestamp, pd.Timedelta],
        repos: AlertRepos,
    ) -> list[Notification]:
        """Replay the buckets in time order through the alert engine (one call per bucket)."""
        notifications: list[Notification] = []
        for bucket in sorted(step_of):
            result = process(
                by_bucket.get(bucket, []),
                (bucket + step_of[bucket]).to_pydatetime(),
                repos=repos,
                routes=self.routes,
                windows=self.windows,
                config=self.engine_config,
            )
            notifications += result.notifications
        return notifications

    def _explain(self, item: _ScoredSeries, run: pd.DataFrame) -> tuple[AlertRootCause, ...]:
        # A confirmed level shift is explained over everything since its estimated start.
        shift_start = run["shift_start"].dropna()
        if len(shift_start):
            trail = pd.concat([f.loc[:, ["expected"]] for f in (item.context, item.decisions) if len(f)])
            run = trail[(trail.index >= shift_start.iloc[0]) & (trail.index <= run.index[-1])]
        try:
            causes = explain_window(
                self.source, item.metric, item.series, list(run.index), run["expected"].tolist()
            )
        except (SourceError, DetectorError, ValueError) as exc:
            log.warning(
                "root-cause slicing failed", metric=item.metric.name, series=item.series, error=str(exc)
            )
            return ()
        return tuple(_alert_cause(c) for c in causes)

    def _signal(
        self, item: _ScoredSeries, run: pd.DataFrame, causes: tuple[AlertRootCause, ...]
    ) -> AlertSignal:
        last = run.iloc[-1]
        deviation = (run["observed"] - run["expected"]).to_numpy(dtype=float)
        kind, _ = classify_run(deviation, min_points=6, max_spread=0.5)
        expected = float(last["expected"])
        observed = float(last["observed"])
        start = pd.Timestamp(run.index[0]).to_pydatetime()
        shift_start = run["shift_start"].dropna()
        if len(shift_start):
            kind, start = "level_shift", min(start, pd.Timestamp(shift_start.iloc[0]).to_pydatetime())
        volume = float(last["volume"]) if np.isfinite(last["volume"]) else observed
        return AlertSignal(
            metric=item.metric.name,
            region=item.series,
            kind=kind,
            observed=observed,
            expected=expected,
            change_pct=100.0 * (observed - expected) / expected if expected else float("nan"),
            score=float(last["score"]),
            volume=volume,
            start=start,
            end=pd.Timestamp(run.index[-1]).to_pydatetime(),
            root_causes=causes,
            chart=_chart(item, run.index[-1]),
            investigate=f"livewatch investigate {shlex.quote(item.metric.name)} --region "
            f"{shlex.quote(item.series)} --at {start:%Y-%m-%dT%H:%MZ}",
        )


def _runs(decisions: pd.DataFrame) -> list[pd.DataFrame]:
    """Consecutive flagged buckets of one sign."""
    flag = decisions["flag"].to_numpy(dtype=bool)
    sign = np.sign(decisions["score"].to_numpy(dtype=float))
    runs, i = [], 0
    while i < len(flag):
        if not flag[i]:
            i += 1
            continue
        j = i
        while j + 1 < len(flag) and flag[j + 1] and sign[j + 1] == sign[i]:
            j += 1
        runs.append(decisions.iloc[i : j + 1])
        i = j + 1
    return runs


def _chart(item: _ScoredSeries, until: pd.Timestamp) -> ChartData | None:
    frames = [f for f in (item.context, item.decisions) if len(f)]
    if not frames:
        return None
    frame = pd.concat([f.loc[:, ["observed", "expected", "lower", "upper"]] for f in frames])
    frame = frame[frame.index <= until].tail(CHART_CONTEXT_BUCKETS + 24)
    flags = item.decisions["flag"].reindex(frame.index, fill_value=False)
    clean = frame.astype(float).fillna(np.nan)
    return ChartData(
        timestamps=tuple(t.to_pydatetime() for t in frame.index),
        observed=tuple(clean["observed"]),
        expected=tuple(clean["expected"]),
        lower=tuple(clean["lower"]),
        upper=tuple(clean["upper"]),
        anomalous=tuple(bool(f) for f in flags),
    )


def _alert_cause(cause: RootCause) -> AlertRootCause:
    return AlertRootCause(
        segment=cause.label(),
        share=float(cause.deviation_share),
        mix=None if cause.mix_share is None else float(cause.mix_share),
        rate=None if cause.rate_share is None else float(cause.rate_share),
    )
