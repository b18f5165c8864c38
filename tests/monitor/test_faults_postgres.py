"""Fault injection with real daemon processes, state (and warehouse) in PostgreSQL.

Needs ``LIVEWATCH_TEST_POSTGRES_URL`` (``.ci/run`` exports it); skipped cleanly without. Each test works in
schemas of its own (:func:`tests.monitor.conftest.postgres_schema_factory`), so runs never collide. The
machine's server is never stopped: outages go through a loopback TCP proxy the test cuts and restores.

* the warehouse unreachable for several ticks (proxy cut), then restored: the daemon catches up with no
  gap, the watermarks only ever move forward to the last complete bucket, and every bucket is scored once
  (the incidents and their signals equal those of an uninterrupted run);
* two daemons replaying the same span against one state database: the watermark compare-and-set lets one
  tick win each bucket, and Slack gets each post, chart and reply exactly once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from alerts.model import DeliveryStatus
from monitor.config import load_config
from monitor.daemon.scheduler import build_daemon, replay
from monitor.daemon.selfmon import is_self_incident
from monitor.store import SqlStore, make_engine, upgrade
from tests.fakeslack import FakeSlack
from tests.monitor.daemon_helpers import (
    SPIKE_AA,
    TIMEOUT,
    Daemon,
    TcpProxy,
    build_warehouse,
    copy_warehouse,
    slack_effects,
    write_config,
)

pytestmark = pytest.mark.postgres

START, END = "2026-03-09T02:10Z", "2026-03-09T12:10Z"
LAST_BUCKET = datetime(2026, 3, 9, 11, tzinfo=UTC)


def _url(engine: sa.Engine, *, port: int | None = None) -> str:
    url = engine.url if port is None else engine.url.set(host="127.0.0.1", port=port)
    return url.render_as_string(hide_password=False)


@pytest.fixture
def spawn() -> Iterator[Callable[..., Daemon]]:
    started: list[Daemon] = []

    def make(directory: Path, config: Path, *args: str, name: str = "daemon", **env: str) -> Daemon:
        replay_args = ["--replay-from", START, "--replay-to", END, *args]
        started.append(Daemon(directory, config, replay_args, name=name, env=env))
        return started[-1]

    yield make
    for daemon in started:  # only our own processes, by handle
        daemon.stop()


@pytest.fixture(scope="module")
def sqlite_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_warehouse(tmp_path_factory.mktemp("pg-faults") / "wh.db")


def _outcome(store: SqlStore) -> dict[str, object]:
    return {
        "watermarks": sorted((w.metric, w.series, w.bucket) for w in store.list_watermarks()),
        "incidents": sorted(
            (i.id, i.state.value, i.opened_at, i.resolved_at, len(i.signals))
            for i in store.list_incidents()
            if not is_self_incident(
                i
            )  # the daemon's page about itself (ticks failing) is not in the reference
        ),
    }


def _reference(tmp_path: Path, warehouse: Path, name: str) -> dict[str, object]:
    """The same replay, uninterrupted, in this process (SQLite state)."""
    config = load_config(write_config(tmp_path, warehouse, state=f"{name}.db"))
    start = datetime.fromisoformat(START)
    daemon = build_daemon(config, {}, clock=lambda: start, started=start)
    replay(daemon, start, datetime.fromisoformat(END))
    try:
        return _outcome(daemon.store)
    finally:
        daemon.store.engine.dispose()


def _finished(store: SqlStore) -> list[tuple[str, int, int]]:
    try:
        return [(str(r.status), r.series_scored, r.errors) for r in reversed(store.recent_runs(limit=200))]
    except sa.exc.SQLAlchemyError:  # the schema is being created
        return []


def _poll(until: Callable[[], bool], what: str, daemon: Daemon, interval: float = 0.02) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not until():
        if daemon.process.poll() is not None:
            pytest.fail(f"the daemon exited ({daemon.process.returncode}) before {what}:\n{daemon.output()}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(interval)


def test_warehouse_unreachable_for_several_ticks_then_caught_up_without_gap(
    tmp_path: Path,
    sqlite_warehouse: Path,
    postgres_schema_factory: Callable[[], sa.Engine],
    spawn: Callable[..., Daemon],
) -> None:
    warehouse, state = postgres_schema_factory(), postgres_schema_factory()
    copy_warehouse(sqlite_warehouse, warehouse)
    proxy = TcpProxy((warehouse.url.host or "127.0.0.1", warehouse.url.port or 5432))
    try:
        config = write_config(
            tmp_path,
            sqlite_warehouse,
            state_url=_url(state),
            database_url=_url(warehouse, port=proxy.port),
        )
        store = SqlStore(make_engine(_url(state)))
        seen: list[datetime] = []

        def watch() -> list[tuple[str, int, int]]:
            try:
                marks = store.list_watermarks()
            except sa.exc.SQLAlchemyError:
                marks = []
            if marks:
                seen.append(min(w.bucket for w in marks))
            return _finished(store)

        daemon = spawn(tmp_path, config, "--speed", "14400")  # about a quarter of a second between ticks
        _poll(lambda: sum(run[0] != "running" for run in watch()) >= 2, "two finished ticks", daemon)
        proxy.cut()
        try:
            failing = lambda: sum(run[1] == 0 and run[2] > 0 for run in watch()) >= 3  # noqa: E731
            _poll(failing, "three ticks failing on the warehouse", daemon)
        finally:
            proxy.restore()
        while daemon.process.poll() is None:
            watch()
            time.sleep(0.02)
        assert daemon.wait() == 0, daemon.output()
        watch()
        assert "metric user_reports: metric 'user_reports': query failed" in daemon.output()
        # watermarks only moved forward, up to the last complete bucket
        assert seen == sorted(seen) and seen[-1] == LAST_BUCKET
        # every bucket scored exactly once: the same incidents, with the same signals, as without the outage
        outcome = _outcome(store)
        assert outcome == _reference(tmp_path, sqlite_warehouse, "reference")
        aa = next(i for i in store.list_incidents() if i.regions == ("AA",))
        assert aa.opened_at == SPIKE_AA.start + timedelta(hours=1)
        store.engine.dispose()
    finally:
        proxy.close()


def test_two_daemons_on_one_state_database_post_nothing_twice(
    tmp_path: Path,
    sqlite_warehouse: Path,
    postgres_schema_factory: Callable[[], sa.Engine],
    spawn: Callable[..., Daemon],
) -> None:
    state = postgres_schema_factory()
    fake = FakeSlack().start()
    try:
        fake.reset(strict=True)
        fake.add_channel("livewatch-alerts")
        config = write_config(
            tmp_path, sqlite_warehouse, state_url=_url(state), slack_api_url=fake.api_url, jsonl=False
        )
        env = {"SLACK_BOT_TOKEN": fake.token}
        upgrade(state)  # migrated first: the two processes start together on an existing schema
        daemons = [spawn(tmp_path, config, name=f"daemon-{n}", **env) for n in range(2)]
        for daemon in daemons:
            assert daemon.wait() == 0, daemon.output()
        store = SqlStore(make_engine(_url(state)))
        entries = store.entries()
        assert entries and {e.status for e in entries} == {DeliveryStatus.DELIVERED}
        # each incident has exactly one top-level message; no reply, chart or edit twice
        effects = slack_effects(fake, "livewatch-alerts")
        assert set(effects) == {e.notification.incident_id for e in entries}
        for incident, seen in effects.items():
            assert len(seen["posts"]) == 1, (incident, seen["posts"])
            assert len(seen["replies"]) == len(set(seen["replies"])), (incident, seen["replies"])
            assert len(seen["files"]) == len(set(seen["files"])) <= 1, (incident, seen["files"])
        charts = sum(len(seen["files"]) for seen in effects.values())
        assert len(fake.calls("files.completeUploadExternal")) == charts >= 1
        # the watermarks and incidents are those of one uninterrupted daemon
        assert _outcome(store) == _reference(tmp_path, sqlite_warehouse, "reference")
        store.engine.dispose()
    finally:
        fake.stop()
