"""A tiny seeded warehouse and config for daemon tests (scheduler, health, fault injection).

Two regions of hourly ``reports`` (Poisson around a daily cycle) over ten days, with ground truth:

* :data:`SPIKE_AA`: region AA reports x3 for 4 hours;
* :data:`SPIKE_BB`: region BB reports x3 for 5 hours, later the same day.

A ``bans`` column holds numbers as text; ``corrupt=True`` writes ``'n/a'`` in region BB from
:data:`CORRUPT_FROM` on, so a ``bans`` metric has corrupt rows next to healthy ones. Slicing is off and the
history is short, so a tick takes a fraction of a second and models are the robust baseline only.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
import yaml

from tests.fakeslack import ALL_SCOPES, FakeSlack, Fault

END = datetime(2026, 3, 11, tzinfo=UTC)  # exclusive end of the data
DAYS = 10
HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class Spike:
    region: str
    start: datetime
    hours: int

    @property
    def end(self) -> datetime:
        return self.start + self.hours * HOUR


SPIKE_AA = Spike("AA", datetime(2026, 3, 9, 3, tzinfo=UTC), 4)
SPIKE_BB = Spike("BB", datetime(2026, 3, 9, 14, tzinfo=UTC), 5)
CORRUPT_FROM = datetime(2026, 3, 8, tzinfo=UTC)


def build_warehouse(path: Path, *, seed: int = 11, corrupt: bool = False) -> Path:
    """Write the ``facts`` table to a SQLite file (rollback journal, like a plain warehouse)."""
    rng = np.random.default_rng(seed)
    hours = pd.date_range(END - timedelta(days=DAYS), END, freq="h", inclusive="left")
    rows = []
    for region, level in (("AA", 400.0), ("BB", 300.0)):
        cycle = 1.0 + 0.3 * np.sin(2 * np.pi * (hours.hour.to_numpy() - 6) / 24)
        mean = level * cycle
        for spike in (SPIKE_AA, SPIKE_BB):
            if spike.region == region:
                inside = (hours >= pd.Timestamp(spike.start)) & (hours < pd.Timestamp(spike.end))
                mean = np.where(inside, 3.0 * mean, mean)
        reports = rng.poisson(mean)
        bans = rng.poisson(mean / 20)
        for ts, count, ban in zip(hours, reports, bans, strict=True):
            bad = corrupt and region == "BB" and ts >= CORRUPT_FROM
            rows.append(
                (ts.strftime("%Y-%m-%d %H:%M:%S.000000"), region, int(count), "n/a" if bad else str(ban))
            )
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS facts")
        conn.exec_driver_sql(
            "CREATE TABLE facts (ts DATETIME NOT NULL, region VARCHAR(8) NOT NULL, "
            "reports INTEGER NOT NULL, bans TEXT NOT NULL)"
        )
        conn.exec_driver_sql("INSERT INTO facts VALUES (?, ?, ?, ?)", rows)
        conn.exec_driver_sql("CREATE INDEX ix_facts_ts ON facts (ts, region)")
    engine.dispose()
    return path


def write_config(
    directory: Path,
    warehouse: Path,
    *,
    metrics: tuple[str, ...] = ("user_reports",),
    max_catchup: str = "6h",
    refit_every: str = "1d",
    state: str = "state.db",
    busy_timeout: float = 0.2,
    state_url: str | None = None,
    database_url: str | None = None,
    slack_api_url: str | None = None,
    jsonl: bool = True,
) -> Path:
    """A config for the tiny warehouse; the state database and ``<state stem>.jsonl`` go in ``directory``.

    Args:
        state_url: The state database URL instead of ``sqlite:///<directory>/<state>`` (e.g. PostgreSQL).
        database_url: The warehouse URL instead of the SQLite file ``warehouse``.
        slack_api_url: Deliver to a Slack bot at this API URL (token from ``SLACK_BOT_TOKEN``), to the
            shipped default channel ``#livewatch-alerts`` by name.
        jsonl: Also write every notification to ``<state stem>.jsonl``.
    """
    known = {
        "user_reports": {
            "name": "user_reports",
            "source": {"table": "facts"},
            "kind": "count",
            "value": "reports",
            "direction": "up",
        },
        "bans": {
            "name": "bans",
            "source": {"table": "facts"},
            "kind": "count",
            "value": "bans",
            "direction": "up",
            "noise_floors": {"min_volume": 5, "min_rel_effect": 0.3},
        },
    }
    config = {
        "version": 1,
        "database": {"url": database_url or f"sqlite:///{warehouse}?timeout={busy_timeout}"},
        "state": {"url": state_url or f"sqlite:///{directory / state}"},
        "defaults": {
            "slice_dimensions": [],
            "history": "7d",
            "noise_floors": {"min_volume": 50, "min_rel_effect": 0.15},
        },
        "metrics": [known[name] for name in metrics],
        "alerts": {
            "console": False,
            "jsonl_path": str(directory / f"{Path(state).stem}.jsonl") if jsonl else None,
            "resolve_after": 2,
            **({"slack": {"api_url": slack_api_url, "timeout": "5s"}} if slack_api_url else {}),
        },
        "scheduler": {
            "refit_every": refit_every,
            "max_catchup": max_catchup,
            "misfire_grace": "5m",
            "metrics_port": None,
        },
    }
    path = directory / f"{Path(state).stem}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def copy_warehouse(path: Path, engine: sa.Engine) -> None:
    """Copy the ``facts`` table of the SQLite warehouse at ``path`` into ``engine`` (e.g. PostgreSQL),
    with ``ts`` as a timestamp with time zone."""
    source = sa.create_engine(f"sqlite:///{path}")
    with source.connect() as conn:
        rows = conn.exec_driver_sql("SELECT ts, region, reports, bans FROM facts").fetchall()
    source.dispose()
    table = sa.Table(
        "facts",
        sa.MetaData(),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("region", sa.String(8), nullable=False),
        sa.Column("reports", sa.Integer, nullable=False),
        sa.Column("bans", sa.Text, nullable=False),
    )
    with engine.begin() as conn:
        table.drop(conn, checkfirst=True)
        table.create(conn)
        values = [
            {"ts": pd.Timestamp(ts, tz="UTC").to_pydatetime(), "region": region, "reports": n, "bans": b}
            for ts, region, n, b in rows
        ]
        conn.execute(table.insert(), values)
        conn.exec_driver_sql("CREATE INDEX ix_facts_ts ON facts (ts, region)")


class TcpProxy:
    """A loopback TCP proxy to ``target`` (host, port) that a test can cut and restore.

    While :meth:`cut`, open connections are closed and new ones are accepted and closed at once: to the
    client the server is unreachable. Only the proxy's own sockets are touched, never the server.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._cut = False
        self._closed = False
        threading.Thread(target=self._accept, name="tcp-proxy", daemon=True).start()

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    def cut(self) -> None:
        with self._lock:
            self._cut = True
            sockets, self._open = self._open, set()
        for sock in sockets:
            _close(sock)

    def restore(self) -> None:
        with self._lock:
            self._cut = False

    def close(self) -> None:
        self._closed = True
        self.cut()
        _close(self._listener)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                cut = self._cut
            if cut:
                _close(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _close(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with self._lock:
                    self._open.discard(sock)
                _close(sock)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


#: Seconds a daemon subprocess may take before a test gives up on it.
TIMEOUT = 90.0


class Daemon:
    """A ``livewatch run`` subprocess (``python -m monitor.cli.daemon``) with its output in files.

    Args:
        directory: Working directory and where ``<name>.out`` / ``<name>.err`` go.
        config: The config file.
        args: Arguments after ``run --config <config>`` (e.g. ``--replay-from``, ``--once --at``).
        name: Stem of the output files.
        env: Extra environment (e.g. ``SLACK_BOT_TOKEN``) on top of this process's.
    """

    def __init__(
        self,
        directory: Path,
        config: Path,
        args: Sequence[str],
        *,
        name: str = "daemon",
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.stdout = directory / f"{name}.out"
        self.stderr = directory / f"{name}.err"
        command = [sys.executable, "-m", "monitor.cli.daemon", "--log-level", "INFO", "run"]
        command += ["--config", str(config), *args]
        environment = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        with self.stdout.open("wb") as out, self.stderr.open("wb") as err:
            self.process = subprocess.Popen(command, stdout=out, stderr=err, env=environment, cwd=directory)

    def wait(self) -> int:
        try:
            return self.process.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise

    def kill(self) -> None:
        """SIGKILL (``kill -9``) and reap it."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(TIMEOUT)

    def stop(self) -> None:
        """Kill it if it still runs (test teardown; only this handle's process)."""
        if self.process.poll() is None:
            self.kill()

    def output(self) -> str:
        return self.stdout.read_text() + self.stderr.read_text()


class KillingSlack(FakeSlack):
    """The loopback Slack fake, able to ``kill -9`` the caller at its N-th request.

    :meth:`arm` counts the requests from now on (API calls and the file upload POST). When request
    ``at`` arrives the fake kills the registered process *before* doing anything (``when="before"``:
    the request never takes effect) or kills it and then applies the request without answering
    (``when="after"``: Slack accepted it, the caller never learnt so). Both are exact crash points, the
    same on every run: the daemon is single-threaded and waits for each answer.
    """

    def __init__(self) -> None:
        super().__init__()
        self._count = 0
        self._kill_at: int | None = None
        self._when = "before"
        self._victim: Callable[[], None] | None = None
        self._killed = threading.Event()
        self._killed_method: str | None = None

    def arm(self, victim: Callable[[], None] | None, at: int | None = None, when: str = "before") -> None:
        """Count requests from 1 again; at request ``at`` (None: never) call ``victim`` (the kill)."""
        if when not in ("before", "after"):
            raise ValueError(f"when must be 'before' or 'after', not {when!r}")
        self._count, self._kill_at, self._when, self._victim = 0, at, when, victim
        self._killed.clear()
        self._killed_method = None

    @property
    def seen(self) -> int:
        """Requests since :meth:`arm`."""
        return self._count

    @property
    def killed_method(self) -> str | None:
        """The method of the request the kill happened at (None: no kill yet)."""
        return self._killed_method

    def wait_killed(self, timeout: float) -> bool:
        return self._killed.wait(timeout)

    def _take_fault(self, method: str) -> Fault | None:
        with self._lock:
            self._count += 1
            hit = self._kill_at is not None and self._count == self._kill_at
        if not hit:
            return super()._take_fault(method)
        assert self._victim is not None
        self._victim()  # the process is dead before the request has any effect
        self._killed_method = method
        self._killed.set()
        if self._when == "after":
            return Fault(1, error="killed_after_accept", drop_after_accept=True)
        return Fault(1, error="killed_before")


def slack_effects(fake: FakeSlack, channel: str) -> dict[str, dict[str, list[Any]]]:
    """What the people in ``channel`` see, per incident: top-level posts and thread replies (by the
    notification id in their metadata), chart files (by name), and the distinct contents the incident's
    message was edited to (``chat.update`` is idempotent: the same edit twice is one effect).

    Lists are sorted, so a duplicate shows as a repeated entry.
    """
    messages = fake.messages(channel)
    incident_of_ts: dict[str, str] = {}
    effects: dict[str, dict[str, list[Any]]] = {}

    def of(incident: str) -> dict[str, list[Any]]:
        return effects.setdefault(incident, {"posts": [], "replies": [], "files": [], "updates": []})

    for message in messages:
        payload = (message.get("metadata") or {}).get("event_payload") or {}
        if "thread_ts" not in message and payload.get("incident_id"):
            incident_of_ts[message["ts"]] = str(payload["incident_id"])
            of(str(payload["incident_id"]))["posts"].append(payload.get("notification_id"))
    for message in messages:
        incident = incident_of_ts.get(str(message.get("thread_ts")))
        if "thread_ts" not in message:
            continue
        key = incident or "<orphan thread>"
        if message.get("files"):
            of(key)["files"] += [f.get("name") for f in message["files"]]
        else:
            payload = (message.get("metadata") or {}).get("event_payload") or {}
            of(key)["replies"].append(payload.get("notification_id"))
    for call in fake.calls("chat.update"):
        incident = incident_of_ts.get(str(call.body.get("ts")), "<unknown message>")
        content = hashlib.sha256(f"{call.body.get('text')}|{call.body.get('blocks')}".encode()).hexdigest()[
            :12
        ]
        updates = of(incident)["updates"]
        if content not in updates:
            updates.append(content)
    for value in effects.values():
        value["posts"].sort()
        value["replies"].sort()
        value["files"].sort()
        value["updates"].sort()
    return effects


#: The token scopes of the two Slack modes of the crash tests: everything, and without the history scopes
#: (recovery cannot look anything up, the documented fallback applies).
SLACK_MODES: dict[str, frozenset[str]] = {
    "history": ALL_SCOPES,
    "no-history": ALL_SCOPES - {"channels:history", "groups:history"},
}
#: Requests whose effect is a new visible message or file: repeating one blindly duplicates it.
NON_IDEMPOTENT = ("chat.postMessage", "files.completeUploadExternal")
#: The catch-up of the crash tests: one ``run --once`` at this time scores both spikes of the warehouse.
CATCH_UP_AT = "2026-03-10T00:10Z"
CHANNEL = "livewatch-alerts"


@dataclass(frozen=True)
class CrashOutcome:
    """One kill point: where the process died, and what Slack shows compared with an uninterrupted run."""

    mode: str
    at: int
    when: str
    method: str | None
    lost: int
    duplicated: int
    undelivered: int
    seconds: float
    kills: int = 1
    expected_duplicates: int = 0

    @property
    def ok(self) -> bool:
        """Nothing lost, nothing undelivered, and exactly the duplicates the mode's guarantee allows."""
        return (self.lost, self.duplicated, self.undelivered) == (0, self.expected_duplicates, 0)


def compare_effects(
    reference: dict[str, dict[str, list[Any]]], got: dict[str, dict[str, list[Any]]]
) -> tuple[int, int]:
    """(lost, duplicated): entries of the reference missing from ``got``, and entries beyond it (lists
    compared as multisets; updates as sets of distinct contents)."""
    lost = duplicated = 0
    for incident in set(reference) | set(got):
        want, have = reference.get(incident, {}), got.get(incident, {})
        for kind in ("posts", "replies", "files", "updates"):
            a, b = list(want.get(kind, [])), list(have.get(kind, []))
            for item in a:
                if item in b:
                    b.remove(item)
                else:
                    lost += 1
            duplicated += len(b)
    return lost, duplicated


def expected_duplicates(mode: str, method: str | None, when: str) -> int:
    """The documented guarantee: with the history scopes nothing is ever duplicated; without them, a
    step that Slack accepted but whose answer was lost (``after``) is sent again once when it is a new
    message or file (post, thread reply, chart share), never anything else."""
    if mode == "history":
        return 0
    return 1 if when == "after" and method in NON_IDEMPOTENT else 0


def reset_slack(fake: FakeSlack, mode: str) -> None:
    """A fresh strict workspace with the shipped default channel and the scopes of ``mode``."""
    fake.reset(strict=True, scopes=SLACK_MODES[mode])
    fake.add_channel(CHANNEL)


def reference_run(fake: FakeSlack, directory: Path, warehouse: Path, mode: str) -> tuple[Any, list[str]]:
    """An uninterrupted catch-up (in this process, as ``run --once`` does it): Slack's effects and the
    request methods in order (the kill points)."""
    from monitor.config import load_config
    from monitor.daemon.scheduler import build_daemon

    reset_slack(fake, mode)
    config = load_config(crash_config(directory, warehouse, fake, f"reference-{mode}"))
    at = datetime.fromisoformat(CATCH_UP_AT)
    daemon = build_daemon(config, {"SLACK_BOT_TOKEN": fake.token}, clock=lambda: at, started=at)
    for group in daemon.groups:
        daemon.score(group, at)  # as `run --once` does
    daemon.store.engine.dispose()
    return slack_effects(fake, CHANNEL), [r.method for r in fake.requests]


def crash_config(directory: Path, warehouse: Path, fake: FakeSlack, name: str) -> Path:
    return write_config(
        directory, warehouse, state=f"{name}.db", slack_api_url=fake.api_url, max_catchup="2d", jsonl=False
    )


def run_kill_point(
    fake: KillingSlack,
    directory: Path,
    warehouse: Path,
    reference: dict[str, dict[str, list[Any]]],
    *,
    mode: str,
    at: int,
    when: str,
    then: Sequence[tuple[int, str]] = (),
    template: Path | None = None,
) -> CrashOutcome:
    """``run --once`` the catch-up, ``kill -9`` it at Slack request ``at`` (``when``), start it again
    (the same command) and compare what Slack shows with ``reference``.

    Args:
        then: Further kills, one per restarted run (request number counted from that run's start), before
            the last run goes uninterrupted: a crash during recovery. A run that ends before its kill
            point ends the chain (``kills`` in the outcome says how many happened).
        template: A migrated empty state database to copy (saves the migration in each process).
    """
    from monitor.store import SqlStore, make_engine

    began = time.monotonic()
    name = f"{mode}-{at}-{when}" + "".join(f"-{n}-{w}" for n, w in then)
    work = directory / name
    shutil.rmtree(work, ignore_errors=True)  # the same kill point may run twice (fast tests and the sweep)
    work.mkdir()
    config = crash_config(work, warehouse, fake, "state")
    if template is not None:
        shutil.copyfile(template, work / "state.db")
    reset_slack(fake, mode)
    env = {"SLACK_BOT_TOKEN": fake.token}
    args = ["--once", "--at", CATCH_UP_AT]
    methods: list[str | None] = []
    expected = 0
    for run, (kill_at, kill_when) in enumerate([(at, when), *then]):
        process = Daemon(work, config, args, name=f"killed-{run}", env=env)
        try:
            fake.arm(process.kill, kill_at, kill_when)
            code = process.wait()
            killed = fake.wait_killed(1.0)
        finally:
            process.stop()
        if not killed:
            if run == 0 or code != 0:
                raise AssertionError(
                    f"{name}: run {run} ended ({code}) before Slack request {kill_at}:\n{process.output()}"
                )
            break
        methods.append(fake.killed_method)
        expected += expected_duplicates(mode, fake.killed_method, kill_when)
    else:
        fake.arm(None)
        last = Daemon(work, config, args, name="restarted", env=env)
        try:
            if last.wait() != 0:
                raise AssertionError(f"{name}: the restart failed:\n{last.output()}")
        finally:
            last.stop()
    lost, duplicated = compare_effects(reference, slack_effects(fake, CHANNEL))
    store = SqlStore(make_engine(f"sqlite:///{work / 'state.db'}"))
    undelivered = sum(1 for e in store.entries() if e.status.value != "delivered")
    store.engine.dispose()
    return CrashOutcome(
        mode,
        at,
        when,
        methods[0],
        lost,
        duplicated,
        undelivered,
        time.monotonic() - began,
        kills=len(methods),
        expected_duplicates=expected,
    )
