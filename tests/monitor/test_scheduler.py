"""The daemon's plan (groups, triggers, live cutoff), replay, catch-up, refit and the APScheduler loop."""

from __future__ import annotations

import copy
import shutil
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from alerts.model import IncidentState, NotifyReason
from monitor.config import Config, load_config, parse_config
from monitor.daemon.scheduler import (
    CATCH_UP_WINDOW,
    Daemon,
    ScoringGroup,
    TickResult,
    build_daemon,
    build_scheduler,
    catch_up_window,
    fire_times,
    live_cutoff,
    refit_trigger,
    replay,
    run_daemon,
    scoring_groups,
    scoring_trigger,
)
from monitor.pipeline.tick import Monitor
from monitor.store import SqlStore, make_engine
from tests.monitor.daemon_helpers import SPIKE_AA, SPIKE_BB, build_warehouse, write_config

H = timedelta(hours=1)
M = timedelta(minutes=1)


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _config(metrics: list[dict[str, object]], **scheduler: str) -> Config:
    return parse_config(
        {"database": {"url": "sqlite://"}, "metrics": metrics, "scheduler": scheduler}, env={}
    )


def _metric(name: str, **extra: object) -> dict[str, object]:
    return {"name": name, "source": {"table": "t"}, "kind": "count", "value": "v", **extra}


# -- plan (pure) ---------------------------------------------------------------------------------------------
def test_scoring_groups_share_granularity_and_delay() -> None:
    config = _config(
        [
            _metric("a"),
            _metric("b", granularity="1d", completeness_delay="2h"),
            _metric("c"),
            _metric("d", completeness_delay="20m"),
        ]
    )
    groups = scoring_groups(config)
    # hourly +10m (a, c together, config order), hourly +20m, daily +2h: sorted by step then delay
    assert [(g.job_id, g.metrics) for g in groups] == [
        ("score:1h+10m", ("a", "c")),
        ("score:1h+20m", ("d",)),
        ("score:1d+2h", ("b",)),
    ]


@pytest.mark.parametrize(
    ("step", "delay", "start", "end", "expected"),
    [
        # hourly metrics with a 10-minute delay are scored at :10 for the hour that ended
        (H, 10 * M, "2026-03-09T00:00", "2026-03-09T03:00", ["00:10", "01:10", "02:10"]),
        # the window is (start, end]: a fire time equal to start is excluded, one equal to end included
        (H, 10 * M, "2026-03-09T00:10", "2026-03-09T02:10", ["01:10", "02:10"]),
        # 15-minute buckets with a 1-minute delay fire at :01, :16, :31, :46
        (15 * M, M, "2026-03-09T00:00", "2026-03-09T00:50", ["00:01", "00:16", "00:31", "00:46"]),
        # daily buckets with a 2-hour delay fire once a day at 02:00
        (24 * H, 2 * H, "2026-03-08T05:00", "2026-03-10T05:00", ["02:00", "02:00"]),
    ],
)
def test_scoring_trigger_fires_at_bucket_end_plus_delay(
    step: timedelta, delay: timedelta, start: str, end: str, expected: list[str]
) -> None:
    times = fire_times(scoring_trigger(ScoringGroup(step, delay, ("m",))), _utc(start), _utc(end))
    assert [f"{t:%H:%M}" for t in times] == expected
    assert all(t.tzinfo is not None and t.utcoffset() == timedelta(0) for t in times)


def test_refit_trigger_is_nightly_for_a_daily_cadence() -> None:
    config = _config([_metric("a")], refit_every="1d")
    times = fire_times(refit_trigger(config), _utc("2026-03-08T12:00"), _utc("2026-03-10T12:00"))
    assert times == [_utc("2026-03-09T00:30"), _utc("2026-03-10T00:30")]


@pytest.mark.parametrize(
    ("now", "evaluated_at", "live"),
    [
        # a tick on time: the bucket that just ended (evaluated at 10:00) pages
        ("2026-03-09T10:10", "2026-03-09T10:00", True),
        # one missed or coalesced tick: the bucket before still pages
        ("2026-03-09T10:10", "2026-03-09T09:00", True),
        # two buckets back is downtime: recorded, not paged
        ("2026-03-09T10:10", "2026-03-09T08:00", False),
        # a tick late within the misfire grace keeps the same live span
        ("2026-03-09T10:14", "2026-03-09T09:00", True),
    ],
)
def test_live_cutoff(now: str, evaluated_at: str, live: bool) -> None:
    cutoff = live_cutoff(_utc(now), H, 10 * M, 5 * M)
    assert (_utc(evaluated_at) >= cutoff) is live
    # the catch-up window mutes exactly the evaluations before the cutoff
    assert catch_up_window(cutoff).active_at(_utc(evaluated_at)) is not live


# -- replay, catch-up, refit on the tiny warehouse ---------------------------------------------------------
@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_warehouse(tmp_path_factory.mktemp("warehouse") / "wh.db")


def _daemon(tmp_path: Path, warehouse: Path, start: datetime, max_catchup: str = "6h") -> Daemon:
    config = load_config(write_config(tmp_path, warehouse, max_catchup=max_catchup))
    return build_daemon(config, {}, clock=lambda: start, started=start)


def test_replay_opens_and_resolves_an_incident_live(tmp_path: Path, warehouse: Path) -> None:
    start, end = _utc("2026-03-09T02:10"), _utc("2026-03-09T10:10")
    daemon = _daemon(tmp_path, warehouse, start)
    report = replay(daemon, start, end)
    assert [t.now.hour for t in report.ticks] == list(range(2, 11))
    assert all(t.report is not None and t.report.errors == 0 for t in report.ticks)
    (incident,) = daemon.store.list_incidents()
    # the injected AA spike (03:00-07:00) opens when its first bucket is evaluated and resolves after
    # `resolve_after: 2` clean buckets (the detector may flag one bucket of aftermath)
    assert incident.regions == ("AA",)
    assert incident.opened_at == SPIKE_AA.start + H
    assert incident.state is IncidentState.RESOLVED
    assert incident.resolved_at is not None
    assert SPIKE_AA.end + 2 * H <= incident.resolved_at <= SPIKE_AA.end + 3 * H
    reasons = [e.notification.reason for e in daemon.store.entries() if e.notification.receiver == "jsonl"]
    assert reasons[0] is NotifyReason.FIRST and reasons[-1] is NotifyReason.RESOLVED
    assert {e.status.value for e in daemon.store.entries()} == {"delivered"}
    # every bucket up to the last complete one is scored, once
    assert {w.bucket for w in daemon.store.list_watermarks()} == {_utc("2026-03-09T09:00")}


def test_catch_up_delivers_what_ended_while_down_once_as_a_summary(tmp_path: Path, warehouse: Path) -> None:
    # The daemon comes back at 16:10 after being down since before the AA spike (03:00-07:00); the BB
    # spike began at 14:00 and is still on.
    now = _utc("2026-03-09T16:10")
    daemon = _daemon(tmp_path, warehouse, now, max_catchup="18h")
    result = daemon.score(daemon.groups[0], now)
    assert result.report is not None and result.report.errors == 0
    incidents = {i.regions: i for i in daemon.store.list_incidents()}
    aa, bb = incidents[("AA",)], incidents[("BB",)]
    # AA began and ended during the downtime: one catch-up summary per receiver (its final state and a
    # short timeline), no first / grew / reminder messages
    assert aa.state is IncidentState.RESOLVED
    aa_sent = [e.notification for e in daemon.store.entries(aa.id)]
    assert sorted((n.receiver, n.reason) for n in aa_sent) == [
        ("console", NotifyReason.CATCH_UP_SUMMARY),
        ("jsonl", NotifyReason.CATCH_UP_SUMMARY),
    ]
    assert all(n.note and "opened" in n.note for n in aa_sent)
    assert result.catch_up is not None and [i.id for i in result.catch_up.incidents] == [aa.id]
    assert any(aa.id in line for line in result.catch_up.lines())
    assert "one summary each" in result.catch_up.lines()[0]
    # BB is still open at the live buckets: paged as new, once per receiver
    assert bb.state is IncidentState.OPEN and bb.opened_at == SPIKE_BB.start + H
    assert {(e.notification.receiver, e.notification.reason) for e in daemon.store.entries(bb.id)} == {
        ("jsonl", NotifyReason.FIRST),
        ("console", NotifyReason.FIRST),
    }


def test_a_muted_catch_up_records_without_sending(tmp_path: Path, warehouse: Path) -> None:
    # `run --once --live-only`: the catch-up window mutes everything before the live cutoff
    now = _utc("2026-03-09T16:10")
    daemon = _daemon(tmp_path, warehouse, now, max_catchup="18h")
    result = daemon.score(daemon.groups[0], now, mute_catch_up=True)
    incidents = {i.regions: i for i in daemon.store.list_incidents()}
    aa, bb = incidents[("AA",)], incidents[("BB",)]
    assert aa.state is IncidentState.RESOLVED and not aa.notified
    assert not daemon.store.entries(aa.id)
    assert result.catch_up is not None and [i.id for i in result.catch_up.incidents] == [aa.id]
    assert "not sent" in result.catch_up.lines()[0]
    assert {e.notification.reason for e in daemon.store.entries(bb.id)} == {NotifyReason.FIRST}
    assert CATCH_UP_WINDOW in catch_up_window(now).name


def test_refit_refits_scored_series_and_ticks_reuse_them(tmp_path: Path, warehouse: Path) -> None:
    first = _utc("2026-03-09T02:10")
    daemon = _daemon(tmp_path, warehouse, first)
    daemon.score(daemon.groups[0], first)
    fitted_before = {s: daemon.store.load_model_state("user_reports", s, "stack") for s in ("AA", "BB")}
    assert all(state is not None and state.fitted_at == first for state in fitted_before.values())
    later = first + 20 * H
    refit = daemon.refit(later)
    assert sorted(refit.fitted) == ["user_reports/AA", "user_reports/BB"] and not refit.errors
    for series in ("AA", "BB"):
        state = daemon.store.load_model_state("user_reports", series, "stack")
        assert state is not None and state.fitted_at == later
    # the next tick, a day after the first fit, finds fresh models: scoring never fits inline
    result = daemon.score(daemon.groups[0], first + 24 * H)
    assert result.report is not None
    assert [o.refitted for o in result.report.outcomes] == [False, False]


def test_refit_before_the_first_tick_fits_every_series_so_the_tick_fits_none(
    tmp_path: Path, warehouse: Path
) -> None:
    now = _utc("2026-03-09T02:10")
    daemon = _daemon(tmp_path, warehouse, now)
    report = daemon.refit(now)
    assert report.fitted and report.errors == {}
    tick = daemon.score(daemon.groups[0], now)
    assert tick.report is not None and tick.report.outcomes
    assert not any(outcome.refitted for outcome in tick.report.outcomes)  # scored from the stored models


def test_run_daemon_schedules_jobs_runs_catch_up_at_start_and_stops(tmp_path: Path, warehouse: Path) -> None:
    now = _utc("2026-03-09T05:10")
    daemon = _daemon(tmp_path, warehouse, now)
    ran = threading.Event()
    calls: list[tuple[str, datetime | None]] = []
    score = daemon.score

    def recording(group: ScoringGroup, now: datetime | None = None) -> TickResult:
        result = score(group, now)
        calls.append((group.job_id, now))
        ran.set()
        return result

    daemon.score = recording  # type: ignore[method-assign]
    stop = threading.Event()
    thread = threading.Thread(target=run_daemon, args=(daemon, stop))
    thread.start()
    try:
        assert ran.wait(30), "the scoring job did not run at start-up"
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()
    assert calls == [("score:1h+10m", None)]
    # the start-up tick used the daemon clock and caught up to the last complete bucket
    assert {w.bucket for w in daemon.store.list_watermarks()} == {_utc("2026-03-09T04:00")}


def test_scheduler_jobs_never_overlap_coalesce_and_have_the_misfire_grace(
    tmp_path: Path, warehouse: Path
) -> None:
    now = _utc("2026-03-09T05:10")
    daemon = _daemon(tmp_path, warehouse, now)
    wall = _utc("2026-11-29T08:03")
    jobs = {job.id: job for job in build_scheduler(daemon, wall=lambda: wall).get_jobs()}
    assert set(jobs) == {"score:1h+10m", "score:1h+10m:startup", "refit"}
    for job in jobs.values():
        assert (job.max_instances, job.coalesce, job.misfire_grace_time) == (1, True, 300)
    # a start-up tick is due at once (catch-up); the periodic one stays on :10 of every hour
    assert jobs["score:1h+10m:startup"].trigger.run_date == wall
    assert jobs["score:1h+10m"].trigger.get_next_fire_time(None, wall) == _utc("2026-11-29T08:10")
    # scoring ticks share the single-thread executor; refit has its own
    assert {jobs[j].executor for j in ("score:1h+10m", "score:1h+10m:startup")} == {"default"}
    assert jobs["refit"].executor == "refit"


# -- a tick abandoned between alerting and the watermark ---------------------------------------------------
class _Crash(BaseException):
    """Stands for the process dying: nothing in the tick catches it."""


class _CrashingStore(SqlStore):
    """Dies at the first watermark advance, i.e. after the tick's buckets went through the alert engine."""

    def advance_watermark(self, *args: Any, **kwargs: Any) -> bool:
        raise _Crash


def test_a_tick_abandoned_after_alerting_is_rescored_exactly_once(tmp_path: Path, warehouse: Path) -> None:
    # Re-running the alert engine on a bucket it already saw would count a clean bucket twice (and resolve
    # an incident early): the tick's alerts must commit with its watermarks, or not at all.
    start, crash_at = _utc("2026-03-09T02:10"), _utc("2026-03-09T09:10")
    daemon = _daemon(tmp_path, warehouse, start)
    replay(daemon, start, crash_at - H)
    state = tmp_path / "state.db"
    daemon.store.engine.dispose()
    shutil.copyfile(state, tmp_path / "reference.db")
    reference_store = SqlStore(make_engine(f"sqlite:///{tmp_path / 'reference.db'}"))
    reference = Monitor(
        daemon.config, daemon.monitor.source, reference_store, daemon.monitor.sinks, daemon.monitor.routes
    )
    reference.tick(crash_at)
    crashing = copy.copy(daemon.monitor)
    crashing.store = _CrashingStore(daemon.store.engine)
    with pytest.raises(_Crash):
        crashing.tick(crash_at)
    daemon.monitor.tick(crash_at)  # the restart scores the same bucket again
    seen = [(i.id, i.state, i.clean_buckets, i.resolved_at) for i in daemon.store.list_incidents()]
    assert seen == [(i.id, i.state, i.clean_buckets, i.resolved_at) for i in reference.store.list_incidents()]
    assert [e.notification.id for e in daemon.store.entries()] == [
        e.notification.id for e in reference.store.entries()
    ]


def test_run_once_command_scores_and_reports(tmp_path: Path, warehouse: Path) -> None:
    from click.testing import CliRunner

    from monitor.cli.daemon import run

    config = write_config(tmp_path, warehouse)
    result = CliRunner().invoke(run, ["--config", str(config), "--once", "--at", "2026-03-09T05:10Z"])
    assert result.exit_code == 0, result.output
    assert "at 2026-03-09 05:10 UTC: 2 series scored" in result.output
    store = SqlStore(make_engine(f"sqlite:///{tmp_path / 'state.db'}"))
    assert {w.bucket for w in store.list_watermarks()} == {_utc("2026-03-09T04:00")}


@pytest.mark.parametrize(
    "args",
    [
        # --once and a replay are different modes
        ["--once", "--replay-from", "2026-03-09T00:00Z"],
        # a replay end or speed without a replay start
        ["--replay-to", "2026-03-09T00:00Z"],
        # --at only makes sense for one tick
        ["--at", "2026-03-09T00:00Z"],
    ],
)
def test_run_rejects_mixed_modes(tmp_path: Path, args: list[str]) -> None:
    from click.testing import CliRunner

    from monitor.cli.daemon import run

    result = CliRunner().invoke(run, ["--config", str(tmp_path / "unused.yaml"), *args])
    assert result.exit_code == 2 and "Error" in result.output
