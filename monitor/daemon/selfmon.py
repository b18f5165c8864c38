"""Self-monitoring: the daemon alerts on itself (data stale, ticks failing) through the normal pipeline.

:class:`HealthState` remembers, per metric, when data was last seen and how many ticks failed in a row;
:func:`assess` (pure) turns it into :class:`SelfProblem` values and :func:`self_signals` into
:class:`alerts.model.AlertSignal` values with metrics ``livewatch_data_stale`` / ``livewatch_ticks_failing``.
:class:`SelfMonitor` runs them through the same alert engine and sinks as every other alert, on its own
partition of the incidents (:class:`IncidentView`, :class:`PipelineStore`): the pipeline never sees
self-incidents (its clean buckets must not resolve them) and self-checks never count as a clean evaluation
of a real incident. Time is always passed in (``now``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pandas as pd
import structlog

from alerts.engine import AlertRepos, EngineConfig, process
from alerts.model import AlertSignal, Incident, IncidentState, LifecycleEvent
from alerts.muting import MaintenanceWindow
from alerts.outbox import deliver_pending
from alerts.ports import IncidentRepository
from alerts.routing import Route
from alerts.sinks.base import AlertSink
from monitor.config import Config, MetricConfig
from monitor.daemon.metrics import human_duration
from monitor.pipeline.tick import TickReport
from monitor.store import SqlStore

__all__ = [
    "DATA_STALE",
    "SELF_PREFIX",
    "TICKS_FAILING",
    "HealthPolicy",
    "HealthState",
    "IncidentView",
    "PipelineStore",
    "SelfMonitor",
    "SelfProblem",
    "assess",
    "is_self_incident",
    "self_signals",
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
                    f"({human_duration(age.total_seconds())}; "
                    f"allowed {human_duration(allowed.total_seconds())}): "
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
