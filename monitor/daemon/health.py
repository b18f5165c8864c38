"""The daemon watching itself: Prometheus figures, store figures for ``livewatch status``, self-alerts.

Three parts, each usable alone:

* :class:`HealthMetrics`: the Prometheus collectors of one daemon (own :class:`CollectorRegistry`, so tests
  and several daemons in one process never collide), fed after every tick by :meth:`HealthMetrics.observe`
  and :meth:`HealthMetrics.observe_store`; :meth:`HealthMetrics.serve` starts ``/metrics`` on a port.
* :func:`read_store_figures` -> :class:`StoreFigures`: what the state store says (ticks by status, last
  successful tick, incidents open, outbox depth, notifications sent and failed, watermark lag per metric).
  The daemon exports these as gauges and ``livewatch status`` prints the same rows (:func:`status_rows`).
* Self-monitoring. :class:`HealthState` remembers, per metric, when data was last seen and how many ticks
  failed in a row; :func:`assess` (pure) turns it into :class:`SelfProblem` values (data stale, ticks
  failing) and :func:`self_signals` into :class:`alerts.model.AlertSignal` values with metrics
  ``livewatch_data_stale`` / ``livewatch_ticks_failing``. :class:`SelfMonitor` runs them through the same
  alert engine and sinks as every other alert, on its own partition of the incidents
  (:class:`IncidentView`, :class:`PipelineStore`): the pipeline never sees self-incidents (its clean
  buckets must not resolve them) and self-checks never count as a clean evaluation of a real incident.

Time is always passed in (``now``); tick durations are measured by the caller.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pandas as pd
import sqlalchemy as sa
import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from alerts.engine import AlertRepos, EngineConfig, process
from alerts.model import AlertSignal, Incident, IncidentState, LifecycleEvent
from alerts.muting import MaintenanceWindow
from alerts.outbox import deliver_pending
from alerts.ports import IncidentRepository
from alerts.routing import Route
from alerts.sinks.base import AlertSink
from monitor.config import Config, MetricConfig
from monitor.pipeline.tick import TickReport
from monitor.store import SqlStore, notifications, runs, watermarks

__all__ = [
    "DATA_STALE",
    "SELF_PREFIX",
    "TICKS_FAILING",
    "HealthMetrics",
    "HealthPolicy",
    "HealthState",
    "IncidentView",
    "PipelineStore",
    "SelfMonitor",
    "SelfProblem",
    "StoreFigures",
    "assess",
    "is_self_incident",
    "read_store_figures",
    "self_signals",
    "status_rows",
    "tick_failed",
]

log = structlog.get_logger(__name__)

SELF_PREFIX = "livewatch_"
DATA_STALE = "livewatch_data_stale"
TICKS_FAILING = "livewatch_ticks_failing"
SELF_REGION_DAEMON = "daemon"
#: Score and volume of self-alerts, chosen against the default severity policy: stale data is a warning,
#: a daemon whose ticks keep failing is critical.
SELF_SEVERITY: dict[str, tuple[float, float]] = {DATA_STALE: (4.0, 100.0), TICKS_FAILING: (8.0, 1000.0)}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# -- store figures (shared by /metrics and `livewatch status`) --------------------------------------------
@dataclass(frozen=True)
class StoreFigures:
    """What the state store says about the daemon at ``now``.

    Attributes:
        ticks: Finished and running ticks by status (``ok``, ``partial``, ``failed``, ``running``).
        last_successful_tick: Start of the newest tick that completed (``ok`` or ``partial``), if any.
        incidents_open: Active (not resolved) incidents, self-monitoring ones included.
        outbox_depth: Notifications still pending delivery.
        notifications_sent: Notifications delivered, all time.
        notifications_failed: Notifications failed for good, all time.
        watermark_lag: Per metric, ``now`` minus the end of its oldest series watermark (seconds).
    """

    now: datetime
    ticks: Mapping[str, int]
    last_successful_tick: datetime | None
    incidents_open: int
    outbox_depth: int
    notifications_sent: int
    notifications_failed: int
    watermark_lag: Mapping[str, float]


def read_store_figures(store: SqlStore, metrics: Sequence[MetricConfig], now: datetime) -> StoreFigures:
    """Count what :class:`StoreFigures` describes, in a few aggregate queries."""
    with store.engine.connect() as connection:
        ticks = {
            status: int(count)
            for status, count in connection.execute(
                sa.select(runs.c.status, sa.func.count()).group_by(runs.c.status)
            )
        }
        last_ok = connection.execute(
            sa.select(sa.func.max(runs.c.started_at)).where(runs.c.status.in_(("ok", "partial")))
        ).scalar_one_or_none()
        outbox = {
            status: int(count)
            for status, count in connection.execute(
                sa.select(notifications.c.status, sa.func.count()).group_by(notifications.c.status)
            )
        }
        oldest = {
            metric: bucket
            for metric, bucket in connection.execute(
                sa.select(watermarks.c.metric, sa.func.min(watermarks.c.bucket)).group_by(watermarks.c.metric)
            )
        }
    lag: dict[str, float] = {}
    for metric in metrics:
        step = metric.granularity or timedelta(hours=1)
        bucket = oldest.get(metric.name)
        if bucket is not None:
            lag[metric.name] = (now - (_utc(bucket) + step)).total_seconds()
    return StoreFigures(
        now=now,
        ticks=ticks,
        last_successful_tick=None if last_ok is None else _utc(last_ok),
        incidents_open=len(store.list_active()),
        outbox_depth=outbox.get("pending", 0),
        notifications_sent=outbox.get("delivered", 0),
        notifications_failed=outbox.get("failed", 0),
        watermark_lag=lag,
    )


def _utc(value: datetime | str) -> datetime:
    """Aggregates bypass the column type on SQLite (``min``/``max`` come back as naive or text)."""
    stamp = pd.Timestamp(value)
    return (stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")).to_pydatetime()


def status_rows(figures: StoreFigures, live: Mapping[str, float] | None = None) -> list[tuple[str, str, str]]:
    """``(metric name, labels, value)`` rows for ``livewatch status``: the names ``/metrics`` uses.

    Args:
        figures: From :func:`read_store_figures`.
        live: Samples scraped from a running daemon's ``/metrics`` (name with labels -> value), e.g. tick
            durations, which only the daemon's memory holds; shown after the store rows.
    """
    statuses = ["ok", "partial", "failed", "running"]
    statuses += sorted(set(figures.ticks) - set(statuses))
    rows = [("livewatch_ticks_total", f'status="{s}"', str(figures.ticks.get(s, 0))) for s in statuses]
    last = figures.last_successful_tick
    rows += [
        ("livewatch_last_successful_tick", "", "never" if last is None else f"{last:%Y-%m-%d %H:%M:%S} UTC"),
        ("livewatch_incidents_open", "", str(figures.incidents_open)),
        ("livewatch_outbox_depth", "", str(figures.outbox_depth)),
        ("livewatch_notifications_sent_total", "", str(figures.notifications_sent)),
        ("livewatch_notifications_failed_total", "", str(figures.notifications_failed)),
    ]
    rows += [
        ("livewatch_watermark_lag_seconds", f'metric="{m}"', f"{lag:.0f} ({_human(lag)})")
        for m, lag in sorted(figures.watermark_lag.items())
    ]
    for name, value in sorted((live or {}).items()):
        base, _, labels = name.partition("{")
        rows.append((base, labels.rstrip("}"), f"{value:g}"))
    return rows


def _human(seconds: float) -> str:
    sign = "-" if seconds < 0 else ""
    minutes = int(abs(seconds) // 60)
    return f"{sign}{minutes // 1440}d {minutes // 60 % 24}h {minutes % 60}m"


# -- Prometheus --------------------------------------------------------------------------------------------
class HealthMetrics:
    """The daemon's Prometheus collectors, in their own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.ticks = Counter("livewatch_ticks", "Scoring ticks by outcome", ["status"], registry=r)
        self.tick_duration = Histogram(
            "livewatch_tick_duration_seconds",
            "Wall time of one scoring tick",
            registry=r,
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
        )
        self.series_scored = Counter("livewatch_series_scored", "Series scored by ticks", registry=r)
        self.anomalies = Counter("livewatch_anomalies", "Anomalous buckets (alert signals)", registry=r)
        self.errors = Counter(
            "livewatch_errors", "Metric or series failures in ticks", ["metric"], registry=r
        )
        self.data_problems = Counter(
            "livewatch_data_problems", "Data-quality findings (skipped buckets)", ["metric"], registry=r
        )
        self.notifications_sent = Counter(
            "livewatch_notifications_sent", "Notifications delivered", registry=r
        )
        self.notifications_failed = Counter(
            "livewatch_notifications_failed", "Notifications failed for good", registry=r
        )
        self.incidents_open = Gauge("livewatch_incidents_open", "Active incidents", registry=r)
        self.outbox_depth = Gauge("livewatch_outbox_depth", "Notifications waiting for delivery", registry=r)
        self.watermark_lag = Gauge(
            "livewatch_watermark_lag_seconds",
            "Now minus the end of the oldest scored bucket",
            ["metric"],
            registry=r,
        )
        self.last_success = Gauge(
            "livewatch_last_successful_tick_timestamp_seconds",
            "Evaluation time of the last completed tick",
            registry=r,
        )

    def observe(self, report: TickReport | None, *, duration: float, failed: bool) -> None:
        """Record one tick (``report`` is ``None`` when the tick raised before producing one)."""
        self.tick_duration.observe(duration)
        if report is None:
            self.ticks.labels(status="failed").inc()
            return
        self.ticks.labels(status="failed" if failed else ("ok" if report.errors == 0 else "partial")).inc()
        self.series_scored.inc(report.series_scored)
        self.anomalies.inc(report.signals)
        for metric in report.metric_errors:
            self.errors.labels(metric=metric).inc()
        for outcome in report.outcomes:
            if outcome.error:
                self.errors.labels(metric=outcome.metric).inc()
        for problem in report.problems:
            self.data_problems.labels(metric=problem.metric).inc()
        if report.delivery is not None:
            self.notifications_sent.inc(report.delivery.delivered)
            self.notifications_failed.inc(report.delivery.failed_permanently)
        if not failed:
            self.last_success.set((report.now - EPOCH).total_seconds())

    def observe_store(self, figures: StoreFigures) -> None:
        """Refresh the gauges that the store is the truth for."""
        self.incidents_open.set(figures.incidents_open)
        self.outbox_depth.set(figures.outbox_depth)
        for metric, lag in figures.watermark_lag.items():
            self.watermark_lag.labels(metric=metric).set(lag)

    def serve(self, port: int, addr: str = "127.0.0.1") -> int:
        """Serve ``/metrics`` in a daemon thread; returns the bound port (``port=0`` picks a free one)."""
        server, _ = start_http_server(port, addr=addr, registry=self.registry)
        return int(server.server_port)


# -- self-monitoring: pure rule ---------------------------------------------------------------------------
@dataclass(frozen=True)
class HealthPolicy:
    """When the daemon alerts about itself.

    Attributes:
        stale_buckets: A metric's data is stale when no bucket with data was scored for this many buckets
            (plus the completeness delay).
        failing_ticks: Ticks keep failing when this many in a row failed.
    """

    stale_buckets: int = 3
    failing_ticks: int = 3


@dataclass
class HealthState:
    """What self-monitoring remembers between ticks (in memory: a restart starts a fresh grace period).

    Attributes:
        started: When watching began; a metric never seen with data is judged from here.
        data_seen: Per metric, the end of the newest evaluated window in which some series had data.
        failures: Ticks failed in a row; ``failing_since`` is when the first of them ran.
    """

    started: datetime
    data_seen: dict[str, datetime] = field(default_factory=dict)
    failures: int = 0
    failing_since: datetime | None = None

    def record(self, report: TickReport | None, now: datetime, metrics: Sequence[MetricConfig]) -> None:
        """Update from one tick over ``metrics`` (``report`` ``None``: the tick raised)."""
        if tick_failed(report):
            self.failures += 1
            self.failing_since = self.failing_since or now
            return
        self.failures, self.failing_since = 0, None
        assert report is not None
        with_data = {o.metric for o in report.outcomes if o.error is None and o.scored > o.missing}
        for metric in metrics:
            if metric.name in with_data:
                step = metric.granularity or timedelta(hours=1)
                delay = metric.completeness_delay or timedelta(0)
                self.data_seen[metric.name] = pd.Timestamp(now - delay).floor(step).to_pydatetime()


def tick_failed(report: TickReport | None) -> bool:
    """A tick failed when it raised, or when it had errors and scored nothing at all."""
    return report is None or (report.errors > 0 and report.series_scored == 0)


@dataclass(frozen=True)
class SelfProblem:
    """One thing wrong with the daemon itself.

    Attributes:
        check: :data:`DATA_STALE` or :data:`TICKS_FAILING`.
        subject: The stale metric, or ``"daemon"``.
        since: When the problem began (last data seen, or first failed tick).
        observed: Stale for this long (seconds), or failed ticks in a row.
        allowed: The limit it crossed, in the same unit.
        reason: One sentence for logs and messages.
    """

    check: str
    subject: str
    since: datetime
    observed: float
    allowed: float
    reason: str


def assess(
    state: HealthState, now: datetime, metrics: Sequence[MetricConfig], policy: HealthPolicy
) -> list[SelfProblem]:
    """The self-monitoring rule: stale metrics, then failing ticks (pure)."""
    problems = []
    for metric in metrics:
        step = metric.granularity or timedelta(hours=1)
        delay = metric.completeness_delay or timedelta(0)
        allowed = policy.stale_buckets * step + delay
        since = state.data_seen.get(metric.name, state.started)
        age = now - since
        if age > allowed:
            problems.append(
                SelfProblem(
                    DATA_STALE,
                    metric.name,
                    since,
                    age.total_seconds(),
                    allowed.total_seconds(),
                    f"no data for {metric.name} since {since:%Y-%m-%d %H:%M} UTC "
                    f"({_human(age.total_seconds())}; allowed {_human(allowed.total_seconds())}): "
                    "check the warehouse load and the daemon logs",
                )
            )
    if state.failures >= policy.failing_ticks:
        problems.append(
            SelfProblem(
                TICKS_FAILING,
                SELF_REGION_DAEMON,
                state.failing_since or now,
                float(state.failures),
                float(policy.failing_ticks),
                f"{state.failures} ticks in a row failed since "
                f"{(state.failing_since or now):%Y-%m-%d %H:%M} UTC: "
                "check the database connection and the daemon logs",
            )
        )
    return problems


def self_signals(problems: Sequence[SelfProblem], now: datetime) -> list[AlertSignal]:
    """One :class:`AlertSignal` per problem (labels: ``metric`` = the check, ``region`` = the subject)."""
    signals = []
    for problem in problems:
        score, volume = SELF_SEVERITY[problem.check]
        signals.append(
            AlertSignal(
                metric=problem.check,
                region=problem.subject,
                kind="level_shift",
                observed=problem.observed,
                expected=problem.allowed,
                change_pct=100.0 * (problem.observed - problem.allowed) / problem.allowed,
                score=score,
                volume=volume,
                start=min(problem.since, now),
                end=now,
                investigate="livewatch status",
            )
        )
    return signals


def is_self_incident(incident: Incident) -> bool:
    """True for incidents opened by self-monitoring (every member metric starts with ``livewatch_``)."""
    return bool(incident.signals) and all(m.startswith(SELF_PREFIX) for m in incident.metrics)


class IncidentView:
    """An :class:`alerts.ports.IncidentRepository` whose ``list_active`` keeps only some incidents.

    The alert engine groups a bucket's signals with *every* active incident and counts a clean evaluation
    on those without a signal; two independent evaluators (the pipeline and self-monitoring) therefore each
    get a view of their own incidents. Every other call goes to ``inner`` unchanged.
    """

    def __init__(self, inner: IncidentRepository, keep: Callable[[Incident], bool]) -> None:
        self.inner = inner
        self.keep = keep

    def get(self, incident_id: str) -> Incident | None:
        return self.inner.get(incident_id)

    def get_open_by_key(self, group_key: str) -> Incident | None:
        found = self.inner.get_open_by_key(group_key)
        return found if found is not None and self.keep(found) else None

    def list_active(self) -> list[Incident]:
        return [incident for incident in self.inner.list_active() if self.keep(incident)]

    def list_incidents(
        self,
        *,
        states: Collection[IncidentState] | None = None,
        metric: str | None = None,
        region: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
    ) -> list[Incident]:
        return self.inner.list_incidents(
            states=states, metric=metric, region=region, since=since, until=until, limit=limit
        )

    def save(self, incident: Incident) -> None:
        self.inner.save(incident)

    def record_event(self, event: LifecycleEvent) -> None:
        self.inner.record_event(event)

    def list_events(self, incident_id: str) -> list[LifecycleEvent]:
        return self.inner.list_events(incident_id)


class PipelineStore(SqlStore):
    """The state store as the pipeline sees it: active incidents exclude self-monitoring ones.

    The pipeline hands its store (or the transaction-bound copy, which keeps this type) to the alert
    engine; with this store its clean buckets never resolve an incident of :class:`SelfMonitor`.
    """

    def list_active(self) -> list[Incident]:
        return [incident for incident in super().list_active() if not is_self_incident(incident)]


# -- self-monitoring: the stateful runner ------------------------------------------------------------------
class SelfMonitor:
    """Runs :func:`assess` after each tick and alerts through the engine and sinks.

    While a problem lasts its signal is re-sent every check (dedup decides what is news); once every
    problem is gone, each check is a clean evaluation, so the self-incident resolves after
    ``resolve_after`` checks like any other and its resolution is delivered.
    """

    def __init__(
        self,
        config: Config,
        store: SqlStore,
        sinks: Mapping[str, AlertSink],
        routes: Route,
        *,
        windows: Sequence[MaintenanceWindow] = (),
        started: datetime,
        policy: HealthPolicy | None = None,
        engine_config: EngineConfig | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.sinks = sinks
        self.routes = routes
        self.windows = tuple(windows)
        self.policy = policy or HealthPolicy()
        self.engine_config = engine_config or EngineConfig()
        self.state = HealthState(started=started)
        self.repos = AlertRepos(incidents=IncidentView(store, is_self_incident), outbox=store, silences=store)

    def record(self, report: TickReport | None, now: datetime, metrics: Sequence[MetricConfig]) -> None:
        """Feed one tick's outcome (see :meth:`HealthState.record`)."""
        self.state.record(report, now, metrics)

    def check(self, now: datetime) -> list[SelfProblem]:
        """Assess every metric and run the result through the alert engine; returns the problems.

        Every metric is assessed each time (not only the tick's group): a problem left out of one check
        would count as a clean evaluation of its incident.
        """
        problems = assess(self.state, now, self.config.metrics, self.policy)
        for problem in problems:
            log.warning(
                "self_check_failed", check=problem.check, subject=problem.subject, reason=problem.reason
            )
        signals = self_signals(problems, now)
        if signals or self.repos.incidents.list_active():
            process(
                signals,
                now,
                repos=self.repos,
                routes=self.routes,
                windows=self.windows,
                config=self.engine_config,
            )
            deliver_pending(self.store, self.sinks, now)
        return problems
