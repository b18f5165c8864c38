"""Actions from Slack inside the daemon, end to end on the tiny warehouse with the loopback Slack fake.

Real pieces only: the daemon's pipeline and SQLite state store, the Slack sink's ``WebClient`` against the
fake, the HTTP endpoint checked with a real signature, the Socket Mode client against the fake's websocket
server. What each test proves is in its name; the figures are the tiny warehouse's injected spikes (AA
03:00-07:00 and BB 14:00-19:00 on 2026-03-09, see :mod:`tests.monitor.daemon_helpers`).
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

import pytest
import yaml
from click.testing import CliRunner
from slack_sdk.signature import SignatureVerifier

from alerts.actions import ACTION_IDS, ActionKind, ActionResult, parse_block_actions
from alerts.model import IncidentState, LifecycleKind, NotifyReason
from detectors.stack import DetectorStack
from monitor.cli.main import cli
from monitor.config import Config, InteractivityConfig, load_config
from monitor.daemon.interactivity import ActionGate, RunningListener, build_listener, listener_mode
from monitor.daemon.scheduler import Daemon, build_daemon, run_daemon
from monitor.errors import ConfigError
from monitor.pipeline.executor import InlineExecutor
from monitor.pipeline.models import FitTask, ModelCache
from monitor.pipeline.refit import refit_all
from monitor.pipeline.scoring import MetricScorer
from monitor.store import IncidentHistory
from tests.alerts.test_actions import payload
from tests.fakeslack import FakeSlack, strict_slack  # noqa: F401 - fixture
from tests.monitor.daemon_helpers import SPIKE_AA, build_warehouse, write_config

H = timedelta(hours=1)
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
CHANNEL = "#livewatch-alerts"
T = TypeVar("T")
R = TypeVar("R")


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


class Clock:
    """The daemon's wall clock, moved by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_warehouse(tmp_path_factory.mktemp("warehouse") / "wh.db")


def _config(
    tmp_path: Path,
    warehouse: Path,
    fake: FakeSlack,
    *,
    interactivity: dict[str, Any],
    max_catchup: str = "6h",
) -> Config:
    path = write_config(tmp_path, warehouse, max_catchup=max_catchup)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["alerts"]["slack"] = {"api_url": fake.api_url, "timeout": "5s", "interactivity": interactivity}
    data["alerts"]["repeat_interval"] = "1h"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return load_config(path, env={})


@dataclass
class World:
    """A daemon posting to the fake Slack, its clock, and the action listener."""

    fake: FakeSlack
    config: Config
    daemon: Daemon
    clock: Clock
    listener: RunningListener
    config_path: Path

    def tick(self, at: str) -> list[NotifyReason]:
        """One scoring tick at ``at``; the reasons sent to Slack."""
        self.clock.now = _utc(at)
        result = self.daemon.score(self.daemon.groups[0], self.clock.now)
        assert result.report is not None and result.report.errors == 0, result
        return [n.reason for n in result.report.notifications if n.receiver == "slack"]

    @property
    def incident_id(self) -> str:
        (incident,) = [i for i in self.daemon.store.list_incidents() if i.regions == ("AA",)][-1:]
        return incident.id

    def message(self) -> dict[str, Any]:
        (message,) = self.fake.top_level(CHANNEL)
        return message

    def thread(self) -> list[str]:
        return [r["text"] for r in self.fake.text_replies(CHANNEL, self.message()["ts"])]

    def click(self, kind: ActionKind, *, user: str = "U1", snooze: str | None = None) -> dict[str, Any]:
        """A block_actions payload as Slack sends it for a click now on the AA incident's message."""
        ts = f"{self.clock.now.timestamp():.6f}"
        if kind is ActionKind.SNOOZE:
            data = payload(ACTION_IDS[kind], selected=f"{self.incident_id}|{snooze}", user=user, ts=ts)
        else:
            data = payload(ACTION_IDS[kind], self.incident_id, user=user, ts=ts)
        data["response_url"] = self.fake.response_url()
        data["channel"]["id"] = self.fake.channel_id(CHANNEL)
        data["message"]["ts"] = self.message()["ts"]
        return data

    def results(self, count: int) -> list[ActionResult]:
        return _wait_for(lambda: self.listener.service.results, count)


def _wait_for(get: Callable[[], list[T]], count: int, timeout: float = 10.0) -> list[T]:
    deadline = time.monotonic() + timeout
    while len(get()) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    return get()


def _world(
    tmp_path: Path, warehouse: Path, fake: FakeSlack, env: dict[str, str], **interactivity: Any
) -> Iterator[World]:
    config = _config(tmp_path, warehouse, fake, interactivity=interactivity)
    clock = Clock(_utc("2026-03-09T02:10"))
    daemon = build_daemon(config, env, clock=clock, started=clock.now)
    listener = build_listener(config, env, daemon.store, daemon.monitor, clock=clock)
    assert listener is not None
    listener.start()
    try:
        yield World(fake, config, daemon, clock, listener, tmp_path / "state.yaml")
    finally:
        listener.close()


@pytest.fixture
def http_world(tmp_path: Path, warehouse: Path, strict_slack: FakeSlack) -> Iterator[World]:  # noqa: F811
    env = {"SLACK_BOT_TOKEN": strict_slack.token, "SLACK_SIGNING_SECRET": SECRET}
    yield from _world(tmp_path, warehouse, strict_slack, env, mode="http", port=0, allowed_users=["U1"])


@pytest.fixture
def socket_world(tmp_path: Path, warehouse: Path, strict_slack: FakeSlack) -> Iterator[World]:  # noqa: F811
    env = {"SLACK_BOT_TOKEN": strict_slack.token, "SLACK_APP_TOKEN": strict_slack.app_token}
    yield from _world(tmp_path, warehouse, strict_slack, env, allowed_users=["U1"])  # mode auto -> socket


def _post(url: str, data: dict[str, Any], at: datetime, *, secret: str = SECRET) -> int:
    body = urlencode({"payload": json.dumps(data)}).encode()
    ts = str(int(at.timestamp()))
    signature = SignatureVerifier(secret).generate_signature(timestamp=ts, body=body) or ""
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": signature,
    }
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body, headers=headers), timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return exc.code


# -- acknowledge over the signed HTTP endpoint ----------------------------------------------------------
def test_acknowledge_over_http_edits_the_message_records_the_ack_and_shows_in_history(
    http_world: World,
) -> None:
    w = http_world
    assert w.listener.mode == "http" and w.listener.url is not None
    assert w.tick("2026-03-09T04:10") == [NotifyReason.FIRST]
    assert "acknowledged" not in json.dumps(w.message()["blocks"])
    w.clock.now = _utc("2026-03-09T04:25")
    assert _post(w.listener.url, w.click(ActionKind.ACKNOWLEDGE), w.clock.now) == 200
    (result,) = w.results(1)
    assert result.ok and result.reason == "acknowledged"
    # the living message follows the state, and a note goes in its thread
    assert "acknowledged by @ana" in json.dumps(w.message()["blocks"])
    assert w.thread() == ["Acknowledged by @ana."]
    assert _wait_for(lambda: w.fake.responses, 1)[0]["response_type"] == "ephemeral"
    # the store: state, the action log, the lifecycle events time to acknowledge is measured on
    store = w.daemon.store
    incident = store.get(w.incident_id)
    assert incident is not None and incident.state is IncidentState.ACKNOWLEDGED
    assert [(a.kind, a.user_id, a.reason) for a in store.list_actions(incident.id)] == [
        (ActionKind.ACKNOWLEDGE, "U1", "acknowledged")
    ]
    events = store.list_events(incident.id)
    assert [(e.kind, e.actor) for e in events if e.kind is LifecycleKind.ACKNOWLEDGED] == [
        (LifecycleKind.ACKNOWLEDGED, "@ana")
    ]
    history = IncidentHistory.build(incident, events)
    assert history.time_to_acknowledge == _utc("2026-03-09T04:25") - incident.opened_at
    # `livewatch incidents show` lists it
    shown = CliRunner().invoke(
        cli, ["incidents", "show", incident.id, "--json", "--config", str(w.config_path)], env={}
    )
    assert shown.exit_code == 0, shown.output
    payload_ = json.loads(shown.output)
    assert payload_["acknowledged_by"] == "@ana" and payload_["time_to_acknowledge_minutes"] == 25.0
    assert {"kind": "acknowledged", "actor": "@ana"}.items() <= next(
        e for e in payload_["events"] if e["kind"] == "acknowledged"
    ).items()
    # the same click delivered again (a Slack retry) changes nothing and posts nothing
    before = len(w.fake.calls("chat.postMessage"))
    w.listener.service.handle(parse_block_actions(w.click(ActionKind.ACKNOWLEDGE)))
    assert len(w.fake.calls("chat.postMessage")) == before
    assert w.listener.service.results[-1].reason == "already_acknowledged"


def test_a_person_not_allowed_is_refused_ephemerally_and_nothing_changes(http_world: World) -> None:
    w = http_world
    w.tick("2026-03-09T04:10")
    w.clock.now = _utc("2026-03-09T04:20")
    assert _post(w.listener.url or "", w.click(ActionKind.RESOLVE, user="U666"), w.clock.now) == 200
    (result,) = w.results(1)
    assert not result.ok and result.reason == "not_allowed"
    (reply,) = _wait_for(lambda: w.fake.responses, 1)
    assert reply["response_type"] == "ephemeral" and "not allowed" in reply["text"]
    incident = w.daemon.store.get(w.incident_id)
    assert incident is not None and incident.state is IncidentState.OPEN
    assert w.thread() == []
    # a request signed with another secret never reaches the handler
    assert _post(w.listener.url or "", w.click(ActionKind.RESOLVE), w.clock.now, secret="nope") == 401
    assert len(w.listener.service.results) == 1


# -- snooze over Socket Mode --------------------------------------------------------------------------
def test_snooze_over_socket_mode_silences_the_incident_until_it_expires(socket_world: World) -> None:
    w = socket_world
    assert w.listener.mode == "socket"
    assert w.fake.socket_mode.wait_connected()
    assert w.tick("2026-03-09T04:10") == [NotifyReason.FIRST]
    w.clock.now = _utc("2026-03-09T04:15")
    envelope = w.fake.socket_mode.send_envelope(w.click(ActionKind.SNOOZE, snooze="1h"))
    assert w.fake.socket_mode.wait_ack(envelope) == {"envelope_id": envelope}
    (result,) = w.results(1)
    assert result.ok and result.reason == "snoozed"
    incident = w.daemon.store.get(w.incident_id)
    assert incident is not None and incident.state is IncidentState.SNOOZED
    assert incident.snoozed_until == _utc("2026-03-09T05:15")
    assert "snoozed by @ana until" in json.dumps(w.message()["blocks"])
    assert len(w.thread()) == 1
    # inside the snooze: the spike goes on, a reminder is due (repeat_interval 1h), nothing is sent
    posts = len(w.fake.calls("chat.postMessage")) + len(w.fake.calls("chat.update"))
    assert w.tick("2026-03-09T05:10") == []
    assert len(w.fake.calls("chat.postMessage")) + len(w.fake.calls("chat.update")) == posts
    # after it expired (bucket 05:00 is evaluated at 06:00 > 05:15): the reminder goes out
    assert w.tick("2026-03-09T06:10") == [NotifyReason.REPEAT_ELAPSED]
    assert len(w.fake.calls("chat.postMessage")) + len(w.fake.calls("chat.update")) > posts


# -- not an incident -> the next refit trains without it ----------------------------------------------
class RecordingExecutor(InlineExecutor):
    """Runs inline and keeps the fit tasks it was given."""

    def __init__(self) -> None:
        self.tasks: list[FitTask] = []

    def map_chunks(self, fn: Callable[[list[T]], R], items: Iterable[T], chunk_size: int) -> Iterator[R]:
        def record(chunk: list[T]) -> R:
            self.tasks += [t for t in chunk if isinstance(t, FitTask)]
            return fn(chunk)

        return super().map_chunks(record, items, chunk_size)


def test_not_an_incident_is_left_out_of_the_next_refit(http_world: World) -> None:
    w = http_world
    w.tick("2026-03-09T04:10")
    w.clock.now = _utc("2026-03-09T04:20")
    fp_id = w.incident_id
    assert _post(w.listener.url or "", w.click(ActionKind.FALSE_POSITIVE), w.clock.now) == 200
    (result,) = w.results(1)
    assert result.ok and result.reason == "marked_false_positive"
    marked = w.daemon.store.get(fp_id)
    assert marked is not None and marked.false_positive and marked.state is IncidentState.RESOLVED
    (fp,) = w.daemon.store.list_false_positives()
    assert (fp.metric, fp.region, fp.start, fp.end) == (
        "user_reports",
        "AA",
        SPIKE_AA.start,
        _utc("2026-03-09T04:20"),
    )
    for at in ("05:10", "06:10", "07:10", "08:10", "09:10", "10:10"):
        w.tick(f"2026-03-09T{at}")
    # the refit gets the false positive's buckets as an exclusion of AA only
    executor = RecordingExecutor()
    now = _utc("2026-03-09T10:30")
    summary = refit_all(w.config, w.daemon.store, w.daemon.monitor.source, now, executor, cache=ModelCache())
    assert sorted(summary.fitted) == ["user_reports/AA", "user_reports/BB"]
    tasks = {t.series: t for t in executor.tasks}
    assert tasks["BB"].exclude == ()
    (span,) = tasks["AA"].exclude
    assert span == (SPIKE_AA.start, _utc("2026-03-09T04:20") - timedelta(microseconds=1))
    frame = tasks["AA"].frame
    assert ((frame.index >= span[0]) & (frame.index <= span[1])).sum() == 2  # buckets 03:00 and 04:00
    # ... and the saved model is the one trained without those buckets
    saved = w.daemon.store.load_model_state("user_reports", "AA", "stack")
    assert saved is not None
    without = DetectorStack(**tasks["AA"].params).fit(frame, series_id="user_reports/AA", exclude=[span])
    with_them = DetectorStack(**tasks["AA"].params).fit(frame, series_id="user_reports/AA")
    assert json.loads(saved.state) == json.loads(without.to_json())
    assert json.loads(saved.state) != json.loads(with_them.to_json())
    # a tick that fits inline (its model too old) leaves the same buckets out
    inline = RecordingExecutor()
    scorer = MetricScorer(
        w.config,
        w.daemon.store,
        w.daemon.monitor.source,
        models=ModelCache(),
        executor=inline,
        max_model_age=timedelta(minutes=1),
    )
    batch = scorer.score_metric(w.config.metrics[0], now + timedelta(hours=2))
    assert batch.refitted == {"AA", "BB"}
    assert {t.series: t.exclude for t in inline.tasks} == {"AA": (span,), "BB": ()}
    # `livewatch incidents stats` reports the false-positive rate per metric
    stats = CliRunner().invoke(cli, ["incidents", "stats", "--json", "--config", str(w.config_path)], env={})
    assert stats.exit_code == 0, stats.output
    figures = json.loads(stats.output)
    total = figures["user_reports"]["incidents"]
    assert figures["user_reports"]["false_positives"] == 1
    assert figures["user_reports"]["false_positive_rate"] == round(1 / total, 4)


# -- catch-up: one message per incident -----------------------------------------------------------------
def test_a_catch_up_posts_one_message_per_incident(
    tmp_path: Path,
    warehouse: Path,
    strict_slack: FakeSlack,  # noqa: F811
) -> None:
    env = {"SLACK_BOT_TOKEN": strict_slack.token}

    def run(directory: Path, *, live: bool) -> tuple[Daemon, int]:
        directory.mkdir()
        config = _config(directory, warehouse, strict_slack, interactivity={}, max_catchup="36h")
        now = _utc("2026-03-10T12:10")  # both spikes (AA 03-07h, BB 14-19h on 03-09) began and ended
        daemon = build_daemon(config, env, clock=lambda: now, started=now)
        if live:  # every bucket as if live: what `run --once` used to do
            daemon.monitor.tick(now)
        else:
            daemon.score(daemon.groups[0], now)
        sent = [e for e in daemon.store.entries() if e.notification.receiver == "slack"]
        return daemon, len(sent)

    strict_slack.reset(strict=True)
    strict_slack.add_channel(CHANNEL.lstrip("#"))
    _, paged_live = run(tmp_path / "live", live=True)
    strict_slack.reset(strict=True)
    strict_slack.add_channel(CHANNEL.lstrip("#"))
    daemon, caught_up = run(tmp_path / "catch-up", live=False)
    incidents = daemon.store.list_incidents()
    assert {i.regions for i in incidents} >= {("AA",), ("BB",)}
    assert all(i.state is IncidentState.RESOLVED for i in incidents)
    # one top-level message per incident, each a catch-up summary with a short timeline
    assert caught_up == len(incidents) < paged_live
    messages = strict_slack.top_level(CHANNEL)
    assert len(messages) == len(incidents)
    assert all("catching up" in json.dumps(m) and "*Timeline*" in json.dumps(m) for m in messages)
    assert {e.notification.reason for e in daemon.store.entries()} == {NotifyReason.CATCH_UP_SUMMARY}


# -- the listener's life in the daemon ----------------------------------------------------------------
MODES = [
    # (settings, env) -> mode      # what it proves
    ({}, {}, "off"),  # default auto, no app token: no listener, the daemon runs as before
    ({}, {"SLACK_APP_TOKEN": "xapp-1"}, "socket"),  # auto with an app token: Socket Mode
    ({"mode": "http"}, {"SLACK_SIGNING_SECRET": "s"}, "http"),  # explicit http with its secret
    ({"mode": "off"}, {"SLACK_APP_TOKEN": "xapp-1"}, "off"),  # off wins over a token
    ({"app_token_env": "LW_APP"}, {"LW_APP": "xapp-1"}, "socket"),  # the variable's name is configurable
]


@pytest.mark.parametrize(("settings", "env", "expected"), MODES)
def test_listener_mode(settings: dict[str, Any], env: dict[str, str], expected: str) -> None:
    assert listener_mode(InteractivityConfig(**settings), env) == expected


@pytest.mark.parametrize(
    ("mode", "variable"), [("socket", "SLACK_APP_TOKEN"), ("http", "SLACK_SIGNING_SECRET")]
)
def test_a_mode_without_its_secret_is_a_config_error_naming_the_variable(mode: str, variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        listener_mode(InteractivityConfig(mode=mode), {})  # type: ignore[arg-type]


def test_the_gate_resolves_channel_names_and_user_groups(
    tmp_path: Path,
    strict_slack: FakeSlack,  # noqa: F811
) -> None:
    from slack_sdk import WebClient

    from alerts.sinks.slack import SlackUserGroups
    from alerts.testing import InMemoryChannelDirectory

    channels = InMemoryChannelDirectory()
    channels.put_channel_id("trust-safety-oncall", "C0ONCALL")
    strict_slack.add_usergroup("S0ONCALL", ["U2", "U3"])
    settings = InteractivityConfig(
        allowed_usergroups=["S0ONCALL"], allowed_channels=["#trust-safety-oncall", "#unknown", "C0OTHER"]
    )
    directory = SlackUserGroups(WebClient(token=strict_slack.token, base_url=strict_slack.api_url))
    gate = ActionGate.of(settings, channel_ids=channels, directory=directory)
    policy = gate.policy()
    assert policy.channels == {"C0ONCALL", "C0OTHER"}  # an unknown name is left out (and logged)
    assert gate.members(policy) == {"S0ONCALL": frozenset({"U2", "U3"})}
    assert ActionGate.of(InteractivityConfig()).empty  # the default lets nobody act


def test_run_daemon_starts_the_listener_and_closes_it_on_stop(
    tmp_path: Path,
    warehouse: Path,
    strict_slack: FakeSlack,  # noqa: F811
) -> None:
    config = _config(tmp_path, warehouse, strict_slack, interactivity={"mode": "http", "port": 0})
    env = {"SLACK_SIGNING_SECRET": SECRET}
    now = _utc("2026-03-09T04:10")
    daemon = build_daemon(config, env, clock=lambda: now, started=now)
    stop = threading.Event()
    thread = threading.Thread(target=run_daemon, args=(daemon, stop), kwargs={"env": env}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while daemon.listener is None and time.monotonic() < deadline:
        time.sleep(0.02)
    listener = daemon.listener
    assert listener is not None and listener.url is not None
    data = payload(ACTION_IDS[ActionKind.INVESTIGATE], "no-such-incident", user="U1")
    data["response_url"] = strict_slack.response_url()
    assert _post(listener.url, data, now) == 200  # listening
    stop.set()
    thread.join(15)
    assert not thread.is_alive()
    with pytest.raises(OSError):
        _post(listener.url, data, now)  # closed
    # a mode whose secret is missing stops the daemon before anything runs
    with pytest.raises(ConfigError, match="SLACK_SIGNING_SECRET"):
        run_daemon(daemon, threading.Event(), env={})
