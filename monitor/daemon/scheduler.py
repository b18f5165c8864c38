"""The livewatch daemon: scheduled scoring ticks, background refits, catch-up, replay.

One **scoring job** per group of metrics sharing a granularity and a completeness delay fires at every
bucket boundary plus the delay (hourly metrics with ``completeness_delay: 10m`` at :10 for the hour that
ended) and runs :meth:`monitor.pipeline.tick.Monitor.tick` for that group. A **refit job** fires every
``scheduler.refit_every`` (at :data:`REFIT_OFFSET` past the epoch-aligned boundary, i.e. 00:30 UTC for a
daily cadence) in its own thread and refits every series' :class:`~detectors.stack.DetectorStack` on the
history it has scored, so scoring ticks find fresh models and never fit inline.

APScheduler 3 runs the jobs (:func:`run_daemon`): ``max_instances=1`` and ``coalesce=True`` on every job,
``misfire_grace_time`` from config, scoring jobs in a one-thread executor (ticks never overlap: groups
share incidents), the refit job in another. Each scoring job also runs once at start-up, so the catch-up
after downtime begins at once. :func:`replay` drives the very same job functions over the same trigger
times with a simulated clock (``--replay-from/--replay-to/--speed``).

Catch-up (issues #6, #16): a tick after downtime scores every missed bucket (bounded by ``max_catchup``) in
order; buckets that ended before :func:`live_cutoff` are a catch-up and go through the alert engine with
``live=False`` (:func:`alerts.dedup.catch_up_gate`): incidents are opened, updated and resolved in the store
as usual, but each is delivered at most once, as its final state -- an incident that began and ended while
the daemon was down gets one catch-up summary with a short timeline, an incident announced before the
downtime gets its resolution, an incident still open at the first live bucket is announced then; reminders
only happen in live time. ``livewatch run --once`` over history is the same catch-up. With
``mute_catch_up`` (``run --once --live-only``) the catch-up is recorded and nothing of it is sent (a
suppressing :class:`~alerts.muting.MaintenanceWindow` named :data:`CATCH_UP_WINDOW`). The incidents that
began and ended in the catch-up are listed in a :class:`CatchUpSummary` (logged, printed by the CLI).

Actions from Slack (issue #16): :func:`run_daemon` starts the listener of
:mod:`monitor.daemon.interactivity` (Socket Mode or a signed HTTP endpoint, ``alerts.slack.interactivity``)
before the jobs and stops it first on SIGTERM; ``run --once`` and replays never listen.

Failure isolation: a tick that raises (state store down, a bug) is logged and counted and the daemon goes
on; a tick row left ``running`` by a killed process is closed as ``failed`` at the next start
(:meth:`Daemon.abandon_orphaned_runs`). Everything a tick does is committed per bucket and idempotent, so
abandoning a tick (SIGKILL, or a second SIGTERM) is safe: the next tick scores its buckets again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pandas as pd
import structlog
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from alerts.model import Incident, IncidentState, NotifyReason
from alerts.muting import MaintenanceWindow
from monitor.config import Config
from monitor.daemon.metrics import HealthMetrics, read_store_figures
from monitor.daemon.selfmon import PipelineStore, SelfMonitor, SelfProblem, tick_failed
from monitor.pipeline.executor import make_executor
from monitor.pipeline.refit import refit_all
from monitor.pipeline.tick import Monitor, TickReport
from monitor.source import floor_time
from monitor.store import SqlStore

if TYPE_CHECKING:
    from monitor.daemon.interactivity import RunningListener

__all__ = [
    "CATCH_UP_WINDOW",
    "REFIT_OFFSET",
    "CatchUpSummary",
    "Daemon",
    "RefitReport",
    "ReplayReport",
    "ScoringGroup",
    "TickResult",
    "build_daemon",
    "build_scheduler",
    "fire_times",
    "live_cutoff",
    "refit_models",
    "refit_trigger",
    "replay",
    "run_daemon",
    "scoring_groups",
    "scoring_trigger",
]

log = structlog.get_logger(__name__)

Clock = Callable[[], datetime]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
CATCH_UP_WINDOW = "catch-up after downtime"
#: The refit cadence is aligned to the epoch plus this offset (00:30 UTC for ``refit_every: 1d``).
REFIT_OFFSET = timedelta(minutes=30)
HOUR = timedelta(hours=1)


# -- plan: groups, triggers, the live cutoff (pure) ---------------------------------------------------------
@dataclass(frozen=True)
class ScoringGroup:
    """Metrics scored together: same granularity (``step``) and completeness delay."""

    step: timedelta
    delay: timedelta
    metrics: tuple[str, ...]

    @property
    def job_id(self) -> str:
        return f"score:{_text(self.step)}+{_text(self.delay)}"


def _text(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def scoring_groups(config: Config) -> list[ScoringGroup]:
    """One group per (granularity, completeness delay), metrics in config order, groups by step."""
    groups: dict[tuple[timedelta, timedelta], list[str]] = {}
    for metric in config.metrics:
        key = (metric.granularity or HOUR, metric.completeness_delay or timedelta(0))
        groups.setdefault(key, []).append(metric.name)
    return [ScoringGroup(step, delay, tuple(names)) for (step, delay), names in sorted(groups.items())]


def scoring_trigger(group: ScoringGroup) -> IntervalTrigger:
    """Fires at every epoch-aligned bucket boundary plus the completeness delay (e.g. hh:10 hourly)."""
    return IntervalTrigger(seconds=group.step.total_seconds(), start_date=EPOCH + group.delay, timezone=UTC)


def refit_trigger(config: Config) -> IntervalTrigger:
    """Fires every ``scheduler.refit_every``, aligned to the epoch plus :data:`REFIT_OFFSET`."""
    return IntervalTrigger(
        seconds=config.scheduler.refit_every.total_seconds(), start_date=EPOCH + REFIT_OFFSET, timezone=UTC
    )


def fire_times(trigger: IntervalTrigger, start: datetime, end: datetime) -> list[datetime]:
    """Every time ``trigger`` fires in ``(start, end]``, in order (what the scheduler would do)."""
    times: list[datetime] = []
    previous: datetime | None = None
    probe = start + timedelta(microseconds=1)
    while True:
        fire = trigger.get_next_fire_time(previous, probe)
        if fire is None or fire > end:
            return times
        times.append(fire.astimezone(UTC))
        previous = fire


def live_cutoff(now: datetime, step: timedelta, delay: timedelta, grace: timedelta) -> datetime:
    """Buckets that ended before this time are catch-up: recorded, not paged.

    A tick on time sees its newest bucket end ``delay`` ago; one step more (a single missed or coalesced
    tick) plus the misfire grace is still live. Anything older was missed during real downtime.
    """
    return now - delay - step - grace


def catch_up_window(cutoff: datetime) -> MaintenanceWindow:
    """Mutes every evaluation before ``cutoff`` (``mute_catch_up``; the engine still records and resolves
    incidents)."""
    return MaintenanceWindow(name=CATCH_UP_WINDOW, start=EPOCH, end=max(cutoff, EPOCH + HOUR), suppress=True)


# -- results ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CatchUpSummary:
    """Incidents that began and ended in the catch-up span ``[start, end)``: one catch-up summary each
    (``muted``: recorded, not sent)."""

    start: datetime
    end: datetime
    incidents: tuple[Incident, ...]
    muted: bool = False

    def lines(self) -> list[str]:
        told = "not sent" if self.muted else "one summary each"
        head = (
            f"catch-up {self.start:%Y-%m-%d %H:%M} to {self.end:%Y-%m-%d %H:%M} UTC: "
            f"{len(self.incidents)} incident(s) began and ended while the daemon was down ({told})"
        )
        return [head] + [
            f"  {i.id}: {', '.join(i.metrics)} in {', '.join(i.regions)}, {i.severity.value}, "
            f"started {i.started_at:%m-%d %H:%M} (opened {i.opened_at:%m-%d %H:%M}), resolved "
            f"{i.resolved_at:%m-%d %H:%M}, {i.magnitude:+.0f}%"
            for i in self.incidents
            if i.resolved_at is not None
        ]


@dataclass(frozen=True)
class TickResult:
    """One scoring job run: the pipeline report (``None`` if the tick raised) and what surrounded it."""

    group: ScoringGroup
    now: datetime
    report: TickReport | None
    duration: float
    error: str | None = None
    catch_up: CatchUpSummary | None = None
    problems: tuple[SelfProblem, ...] = ()


@dataclass(frozen=True)
class RefitReport:
    """One refit run: the series refitted and the ones that failed (``metric/series`` -> error)."""

    now: datetime
    fitted: tuple[str, ...]
    errors: dict[str, str] = field(default_factory=dict)


@dataclass
class ReplayReport:
    """Everything a replay ran, in order."""

    ticks: list[TickResult] = field(default_factory=list)
    refits: list[RefitReport] = field(default_factory=list)
    stopped: bool = False


# -- refit --------------------------------------------------------------------------------------------------
def refit_models(monitor: Monitor, clock: Clock, *, metrics: Sequence[str] | None = None) -> RefitReport:
    """Refit and save every series' model on its history up to its watermark, through the configured
    executor (a local process pool or a Dask cluster), filling the tick's parsed-model cache as they land."""
    now = clock()
    with make_executor(monitor.config.executor) as executor:
        summary = refit_all(
            monitor.config,
            monitor.store,
            monitor.source,
            now,
            executor,
            cache=monitor.models,
            metrics=metrics,
        )
    log.info("refit done", fitted=len(summary.fitted), errors=len(summary.errors))
    return RefitReport(now, tuple(summary.fitted), summary.errors)


# -- the daemon ---------------------------------------------------------------------------------------------
class Daemon:
    """The job functions the scheduler (or :func:`replay`) calls, and the state they share.

    Args:
        config: The configuration.
        monitor: The pipeline (its store a :class:`~monitor.daemon.selfmon.PipelineStore`, which hides
            self-incidents from it).
        store: The whole state store (figures, summaries, self-incidents).
        clock: Wall clock (``now`` can also be passed to each job, as :func:`replay` does).
        health: Prometheus collectors, or ``None``.
        self_monitor: Self-alerting, or ``None``.
        timer: Monotonic seconds, to measure tick durations.
    """

    def __init__(
        self,
        config: Config,
        monitor: Monitor,
        store: SqlStore,
        *,
        clock: Clock,
        health: HealthMetrics | None = None,
        self_monitor: SelfMonitor | None = None,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.config = config
        self.monitor = monitor
        self.store = store
        self.clock = clock
        self.health = health
        self.self_monitor = self_monitor
        self.timer = timer
        self.groups = scoring_groups(config)
        self.listener: RunningListener | None = None  # set by run_daemon
        self._tick_lock = threading.Lock()

    def abandon_orphaned_runs(self, now: datetime | None = None) -> int:
        """Close tick rows left ``running`` by a process that died mid-tick; returns how many."""
        now = now or self.clock()
        orphans = self.store.recent_runs(limit=1000, status="running")
        for run in orphans:
            self.store.finish_run(
                run.run_id,
                now=max(now, run.started_at),
                status="failed",
                series_scored=0,
                errors=1,
                detail={"abandoned": "the process stopped mid-tick; a later tick scored its buckets again"},
            )
            log.warning("abandoned tick closed", run_id=run.run_id, started_at=run.started_at.isoformat())
        return len(orphans)

    def score(
        self, group: ScoringGroup, now: datetime | None = None, *, mute_catch_up: bool = False
    ) -> TickResult:
        """The scoring job: one tick of ``group`` at ``now`` (default: the clock). Never raises.

        Buckets older than :func:`live_cutoff` are a catch-up (module docstring): each incident is
        delivered once, as its final state; ``mute_catch_up`` records them without sending anything.
        """
        now = now or self.clock()
        with self._tick_lock:
            return self._score(group, now, mute_catch_up=mute_catch_up)

    def _score(self, group: ScoringGroup, now: datetime, *, mute_catch_up: bool = False) -> TickResult:
        bound = log.bind(job=group.job_id, at=now.isoformat())
        cutoff = live_cutoff(now, group.step, group.delay, self.config.scheduler.misfire_grace)
        windows = (catch_up_window(cutoff),) if mute_catch_up else ()
        started = self.timer()
        report: TickReport | None = None
        error: str | None = None
        before: datetime | None = None
        try:
            before = self._oldest_watermark(group)
            report = self.monitor.tick(now, metrics=group.metrics, windows=windows, live_from=cutoff)
        except Exception as exc:  # the daemon must outlive any tick (database outage, a bug)
            error = f"{type(exc).__name__}: {exc}"
            bound.exception("tick failed")
        duration = self.timer() - started
        summary = self._catch_up(group, now, before, cutoff, mute_catch_up) if report is not None else None
        problems: tuple[SelfProblem, ...] = ()
        try:
            metrics = [m for m in self.config.metrics if m.name in group.metrics]
            if self.self_monitor is not None:
                self.self_monitor.record(report, now, metrics)
            if self.health is not None:
                self.health.observe(report, duration=duration, failed=tick_failed(report))
                self.health.observe_store(read_store_figures(self.store, self.config.metrics, now))
            if self.self_monitor is not None:
                with self.monitor.alert_lock:  # it alerts and delivers too: never beside a Slack action
                    problems = tuple(self.self_monitor.check(now))
        except Exception:  # the state store may be the thing that is down
            bound.exception("health update failed")
        if report is not None:
            bound.info(
                "tick done",
                run_id=report.run_id,
                series_scored=report.series_scored,
                signals=report.signals,
                notifications=len(report.notifications),
                errors=report.errors,
                seconds=round(duration, 3),
            )
        return TickResult(group, now, report, duration, error, summary, problems)

    def _oldest_watermark(self, group: ScoringGroup) -> datetime | None:
        marks = [w.bucket for m in group.metrics for w in self.store.list_watermarks(m)]
        return min(marks) if marks else None

    def _catch_up(
        self, group: ScoringGroup, now: datetime, before: datetime | None, cutoff: datetime, muted: bool
    ) -> CatchUpSummary | None:
        """Incidents opened in the span this tick caught up (to ``cutoff``) and resolved there, that were
        never notified live (at most a catch-up summary)."""
        try:
            complete_end = floor_time(now - group.delay, group.step)
            earliest = (complete_end - pd.Timedelta(self.config.scheduler.max_catchup)).to_pydatetime()
            start = max(earliest, before + group.step) if before is not None else earliest
            if start >= cutoff:
                return None
            found = self.store.list_incidents(states=[IncidentState.RESOLVED], since=start, until=cutoff)
            quiet = tuple(
                sorted(
                    (
                        i
                        for i in found
                        if all(n.reason is NotifyReason.CATCH_UP_SUMMARY for n in i.notified)
                        and set(i.metrics) <= set(group.metrics)
                    ),
                    key=lambda i: (i.opened_at, i.id),
                )
            )
        except Exception:
            log.exception("catch-up summary failed", job=group.job_id)
            return None
        summary = CatchUpSummary(start, cutoff, quiet, muted)
        if quiet:
            log.info(
                "catch-up summary",
                job=group.job_id,
                incidents=[i.id for i in quiet],
                start=start.isoformat(),
                end=cutoff.isoformat(),
            )
        return summary

    def refit(self, now: datetime | None = None) -> RefitReport:
        """The refit job. With ``now`` (replay) models are stamped ``now``; else the clock is read per fit."""
        clock: Clock = (lambda: now) if now is not None else self.clock
        try:
            return refit_models(self.monitor, clock)
        except Exception as exc:  # state store down: try again next time
            log.exception("refit failed")
            return RefitReport(clock(), (), {"*": f"{type(exc).__name__}: {exc}"})


def build_scheduler(daemon: Daemon, *, wall: Clock | None = None) -> BackgroundScheduler:
    """The APScheduler scheduler of ``daemon`` (not started): its jobs and their overlap rules.

    Every job has ``max_instances=1``, ``coalesce=True`` and the configured misfire grace. Scoring jobs
    share a one-thread executor (ticks never overlap: groups share incidents); a one-off ``startup`` run of
    each is due at once, so the catch-up begins at start-up while the periodic job keeps its aligned
    times; the refit job has its own thread, so it never blocks scoring.

    Args:
        daemon: Whose jobs to schedule.
        wall: The scheduler's own clock (APScheduler runs on wall time); default ``datetime.now(UTC)``.
    """
    wall = wall or (lambda: datetime.now(UTC))
    rules = {
        "coalesce": True,
        "max_instances": 1,
        "misfire_grace_time": max(int(daemon.config.scheduler.misfire_grace.total_seconds()), 1),
    }
    scheduler = BackgroundScheduler(
        timezone=UTC, executors={"default": ThreadPoolExecutor(1), "refit": ThreadPoolExecutor(1)}
    )
    for group in daemon.groups:
        name = f"score {', '.join(group.metrics)}"
        scheduler.add_job(
            daemon.score, scoring_trigger(group), args=[group], id=group.job_id, name=name, **rules
        )
        scheduler.add_job(
            daemon.score,
            DateTrigger(wall(), timezone=UTC),
            args=[group],
            id=f"{group.job_id}:startup",
            name=f"{name} (start-up catch-up)",
            **rules,
        )
    scheduler.add_job(
        daemon.refit, refit_trigger(daemon.config), id="refit", name="refit models", executor="refit", **rules
    )
    return scheduler


def run_daemon(
    daemon: Daemon,
    stop: threading.Event,
    *,
    wall: Clock | None = None,
    env: Mapping[str, str] | None = None,
) -> None:
    """Run the scheduled jobs and the Slack actions listener until ``stop`` is set.

    The listener (:func:`monitor.daemon.interactivity.build_listener`, from ``alerts.slack.interactivity``
    and the secrets in ``env``, default the process environment) starts before the jobs; on stop it is
    closed first (no new clicks; the one being applied finishes), then the running tick finishes.

    Raises:
        ConfigError: the interactivity mode needs a secret variable that is not set (before anything runs).
    """
    import os

    from monitor.daemon.interactivity import build_listener

    listener = build_listener(
        daemon.config,
        dict(os.environ) if env is None else env,
        daemon.store,
        daemon.monitor,
        clock=daemon.clock,
    )
    daemon.listener = listener
    daemon.abandon_orphaned_runs()
    scheduler = build_scheduler(daemon, wall=wall)
    if listener is not None:
        try:
            listener.start()
        except Exception:  # Slack unreachable, port taken: scoring must go on without the buttons
            log.exception("slack actions listener failed to start; the daemon runs without it")
            listener = daemon.listener = None
    try:
        scheduler.start()
        log.info(
            "daemon started",
            jobs=[job.id for job in scheduler.get_jobs()],
            slack_actions=listener.mode if listener else "off",
        )
        while not stop.wait(1.0):
            pass
    finally:
        log.info("daemon stopping: closing the Slack actions listener, waiting for the running job")
        if listener is not None:
            listener.close()
        if scheduler.running:
            scheduler.shutdown(wait=True)
        log.info("daemon stopped")


def replay(
    daemon: Daemon,
    start: datetime,
    end: datetime,
    *,
    speed: float | None = None,
    stop: threading.Event | None = None,
    on_tick: Callable[[TickResult], None] | None = None,
) -> ReplayReport:
    """Drive the daemon's jobs over ``[start, end]`` with a simulated clock.

    Each scoring group ticks at ``start`` (like a daemon starting) and then at every time its trigger
    fires; the refit job at every refit fire time (before a tick due at the same time). With ``speed``
    (simulated seconds per real second) the replay waits between jobs; ``None`` runs flat out. Setting
    ``stop`` ends it after the running job.

    A replay resumes: jobs due before the newest tick recorded in the store are skipped, so restarting
    a killed replay with the same arguments continues at the tick it was in (use a fresh state database
    to replay a span again from scratch).
    """
    stop = stop or threading.Event()
    latest = daemon.store.recent_runs(limit=1)
    resume = max(start, latest[0].started_at) if latest else start
    events: list[tuple[datetime, int, ScoringGroup | None]] = [(start, 1, group) for group in daemon.groups]
    for group in daemon.groups:
        events += [(t, 1, group) for t in fire_times(scoring_trigger(group), start, end)]
    events += [(t, 0, None) for t in fire_times(refit_trigger(daemon.config), start, end)]
    events = sorted(
        (e for e in events if e[0] >= resume), key=lambda e: (e[0], e[1], e[2].job_id if e[2] else "")
    )
    report = ReplayReport()
    daemon.abandon_orphaned_runs(start)
    previous = resume
    for when, _, job in events:
        wait = (when - previous).total_seconds() / speed if speed else 0.0
        if stop.is_set() or (wait > 0 and stop.wait(wait)):
            report.stopped = True
            break
        previous = when
        if job is None:
            report.refits.append(daemon.refit(when))
            continue
        result = daemon.score(job, when)
        report.ticks.append(result)
        if on_tick is not None:
            on_tick(result)
    return report


def build_daemon(
    config: Config, env: dict[str, str] | None = None, *, clock: Clock, started: datetime | None = None
) -> Daemon:
    """The daemon of ``config``: pipeline, Prometheus collectors and self-monitoring, wired together."""
    import os

    from monitor.wiring import build_monitor, open_store

    store = open_store(config)
    # The pipeline sees the incidents without self-monitoring ones, which only `self_monitor` evaluates.
    monitor = build_monitor(
        config, dict(os.environ) if env is None else env, store=PipelineStore(store.engine), clock=clock
    )
    self_monitor = SelfMonitor(
        config,
        store,
        monitor.sinks,
        monitor.routes,
        windows=monitor.windows,
        started=started or clock(),
        engine_config=monitor.engine_config,
    )
    return Daemon(config, monitor, store, clock=clock, health=HealthMetrics(), self_monitor=self_monitor)
