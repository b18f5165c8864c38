"""Fault injection with real processes and real SQLite databases.

The daemon runs as a subprocess in replay mode (``run --replay-from/--replay-to``) over the tiny seeded
warehouse of :mod:`tests.monitor.daemon_helpers`:

* killed with SIGKILL in the middle of a tick and restarted, it ends in exactly the state of an
  uninterrupted run (same watermarks, incidents and outbox; nothing lost, nothing doubled);
* with the warehouse locked for several ticks, it survives, reports the outage (and pages about itself),
  then catches up, paging only what is still live;
* with a metric whose rows are corrupt next to a healthy one, the healthy one alerts normally and the
  corrupt one is reported with a clear message.
"""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.request import urlopen

import pytest

from alerts.model import DeliveryStatus, NotifyReason
from monitor.config import load_config
from monitor.daemon.scheduler import build_daemon, replay
from monitor.daemon.selfmon import TICKS_FAILING
from monitor.store import SqlStore, make_engine
from tests.monitor.daemon_helpers import SPIKE_AA, TIMEOUT, Daemon, build_warehouse, write_config

H = timedelta(hours=1)
START, END = "2026-03-09T02:10Z", "2026-03-09T12:10Z"
LAST_BUCKET = datetime(2026, 3, 9, 11, tzinfo=UTC)


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_warehouse(tmp_path_factory.mktemp("faults") / "wh.db")


@pytest.fixture
def spawn() -> Iterator[Callable[..., Daemon]]:
    started: list[Daemon] = []

    def make(directory: Path, config: Path, *args: str, name: str = "daemon") -> Daemon:
        """``livewatch run`` replaying START..END (or the scheduled daemon with ``--metrics-port``)."""
        replay = [] if "--metrics-port" in args else ["--replay-from", START, "--replay-to", END]
        started.append(Daemon(directory, config, [*replay, *args], name=name))
        return started[-1]

    yield make
    for daemon in started:  # only our own processes, by handle
        daemon.stop()


def _runs(state: Path) -> list[tuple[str, str, int, int]]:
    """(run_id, status, series_scored, errors) in start order; empty before the daemon made the schema."""
    if not state.exists():
        return []
    try:
        with sqlite3.connect(f"file:{state}?mode=ro", uri=True, timeout=5) as connection:
            return connection.execute(
                "SELECT run_id, status, series_scored, errors FROM runs ORDER BY started_at, run_id"
            ).fetchall()
    except sqlite3.OperationalError:  # the schema is being created
        return []


def _poll(until: Callable[[], bool], what: str, daemon: Daemon, interval: float = 0.005) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not until():
        if daemon.process.poll() is not None:
            pytest.fail(f"the daemon exited ({daemon.process.returncode}) before {what}:\n{daemon.output()}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(interval)


def _store(directory: Path, name: str) -> SqlStore:
    return SqlStore(make_engine(f"sqlite:///{directory / name}"))


def _outcome(store: SqlStore) -> dict[str, object]:
    """Everything that must not depend on crashes: progress, incidents and the outbox."""
    return {
        "watermarks": sorted((w.metric, w.series, w.bucket) for w in store.list_watermarks()),
        "incidents": sorted(
            (i.id, i.state.value, i.opened_at, i.resolved_at, i.clean_buckets, len(i.signals))
            for i in store.list_incidents()
        ),
        "outbox": [(e.notification.id, e.status.value) for e in store.entries()],
    }


def test_kill_9_mid_tick_then_restart_loses_and_doubles_nothing(
    tmp_path: Path, warehouse: Path, spawn: Callable[..., Daemon]
) -> None:
    config = write_config(tmp_path, warehouse, state="crash.db")
    state = tmp_path / "crash.db"
    first = spawn(tmp_path, config, name="first")
    # a tick is running (its row was just written) after at least three finished ones: SIGKILL it
    _poll(lambda: len(_runs(state)) >= 4 and _runs(state)[-1][1] == "running", "the fourth tick", first)
    first.kill()
    orphans = [run for run in _runs(state) if run[1] == "running"]
    assert len(orphans) == 1, "the process must die mid-tick"
    second = spawn(tmp_path, config, name="second")
    assert second.wait() == 0, second.output()

    # the reference: the same replay, uninterrupted, in this process
    reference_config = load_config(write_config(tmp_path, warehouse, state="reference.db"))
    start = datetime.fromisoformat(START)
    reference = build_daemon(reference_config, {}, clock=lambda: start, started=start)
    replay(reference, start, datetime.fromisoformat(END))

    crashed = _store(tmp_path, "crash.db")
    expected = _outcome(reference.store)
    assert _outcome(crashed) == expected
    # every bucket scored up to the last complete one, the spike paged and resolved, all delivered
    assert {bucket for _, _, bucket in expected["watermarks"]} == {LAST_BUCKET}  # type: ignore[attr-defined]
    reasons = {e.notification.reason for e in crashed.entries()}
    assert {NotifyReason.FIRST, NotifyReason.RESOLVED} <= reasons
    assert {e.status for e in crashed.entries()} == {DeliveryStatus.DELIVERED}
    # the JSON-lines sink got each notification once (a resend is only allowed after a started attempt)
    lines = (tmp_path / "crash.jsonl").read_text().splitlines()
    sent = [json.loads(line)["notification"]["id"] for line in lines]
    resent = {e.notification.id for e in crashed.entries() if e.attempts > 1}
    jsonl = [e.notification.id for e in crashed.entries() if e.notification.receiver == "jsonl"]
    assert sorted(set(sent)) == sorted(jsonl)
    assert all(sent.count(i) == 1 or i in resent for i in sent)
    # the killed tick is closed as failed at restart, none is left running
    statuses = {run_id: status for run_id, status, _, _ in _runs(state)}
    assert statuses[orphans[0][0]] == "failed"
    assert "running" not in statuses.values()


def test_daemon_serves_metrics_and_stops_cleanly_on_sigterm(
    tmp_path: Path, warehouse: Path, spawn: Callable[..., Daemon]
) -> None:
    config = write_config(tmp_path, warehouse, state="live.db")
    daemon = spawn(tmp_path, config, "--metrics-port", "0")  # the scheduled daemon on the wall clock
    found: list[str] = []
    text = ""

    def served() -> bool:
        # the daemon records the finished run in the store before it observes the tick in memory: scrape
        # until the start-up tick shows (or the poll times out)
        nonlocal text
        found[:] = re.findall(r"http://127\.0\.0\.1:\d+/metrics", daemon.stderr.read_text())
        if not found or all(run[1] == "running" for run in _runs(tmp_path / "live.db")):
            return False
        with urlopen(found[0], timeout=5) as response:
            text = response.read().decode()
        return 'livewatch_ticks_total{status="ok"}' in text

    _poll(served, "the metrics endpoint and the start-up tick", daemon, interval=0.05)
    assert 'livewatch_ticks_total{status="ok"} 1.0' in text
    daemon.process.send_signal(signal.SIGTERM)
    assert daemon.wait() == 0, daemon.output()
    assert "daemon stopped" in daemon.output()


def test_warehouse_outage_is_survived_reported_and_caught_up(
    tmp_path: Path, warehouse: Path, spawn: Callable[..., Daemon]
) -> None:
    config = write_config(tmp_path, warehouse, state="outage.db")
    state = tmp_path / "outage.db"
    # 4 simulated hours a second: about a quarter of a second between ticks
    daemon = spawn(tmp_path, config, "--speed", "14400")
    _poll(lambda: sum(run[1] != "running" for run in _runs(state)) >= 2, "two finished ticks", daemon)
    lock = sqlite3.connect(warehouse, timeout=5, isolation_level=None)
    try:
        lock.execute("BEGIN EXCLUSIVE")  # no reader gets in: the warehouse is unavailable
        failing = lambda: sum(run[2] == 0 and run[3] > 0 for run in _runs(state)) >= 3  # noqa: E731
        _poll(failing, "three failed ticks", daemon, interval=0.02)
    finally:
        lock.execute("COMMIT")
        lock.close()
    assert daemon.wait() == 0, daemon.output()
    output = daemon.output()
    assert "metric user_reports: metric 'user_reports': query failed: database is locked" in output
    store = _store(tmp_path, "outage.db")
    # it caught up: every bucket up to the last complete one is scored
    assert {w.bucket for w in store.list_watermarks()} == {LAST_BUCKET}
    # the AA spike began during the outage: recorded then, paged only once its buckets were live again
    aa = next(i for i in store.list_incidents() if i.regions == ("AA",))
    assert aa.opened_at == SPIKE_AA.start + H
    first = [e.notification for e in store.entries(aa.id) if e.notification.reason is NotifyReason.FIRST]
    assert first and all(n.created_at > aa.opened_at for n in first)
    # the daemon paged about itself while its ticks kept failing, and resolved that when they recovered
    (own,) = [i for i in store.list_incidents() if i.metrics == (TICKS_FAILING,)]
    reasons = {e.notification.reason for e in store.entries(own.id)}
    assert reasons == {NotifyReason.FIRST, NotifyReason.RESOLVED}
    assert own.state.value == "resolved"


def test_corrupt_metric_next_to_a_healthy_one(tmp_path: Path, spawn: Callable[..., Daemon]) -> None:
    warehouse = build_warehouse(tmp_path / "corrupt.db", corrupt=True)
    config = write_config(tmp_path, warehouse, metrics=("user_reports", "bans"), state="corrupt-state.db")
    daemon = spawn(tmp_path, config)
    assert daemon.wait() == 0, daemon.output()
    output = daemon.output()
    # the corrupt series is named with the column, the span and the fix
    assert "data: bans/BB: non-numeric values in column 'bans'" in output
    assert "fix the source rows" in output
    store = _store(tmp_path, "corrupt-state.db")
    # the healthy metric alerts normally
    aa = next(i for i in store.list_incidents() if "user_reports" in i.metrics and i.regions == ("AA",))
    assert aa.opened_at == SPIKE_AA.start + H
    assert NotifyReason.FIRST in {e.notification.reason for e in store.entries(aa.id)}
    # and the healthy series of the corrupt metric is scored to the end; the corrupt one never alerts
    assert {(w.metric, w.series, w.bucket) for w in store.list_watermarks() if w.metric == "bans"} >= {
        ("bans", "AA", LAST_BUCKET)
    }
    assert not [i for i in store.list_incidents() if "bans" in i.metrics and "BB" in i.regions]
