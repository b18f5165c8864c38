"""Exactly-once Slack delivery across crashes, against the fake in strict mode (behaves like Slack).

One incident, three notifications (first with a chart, grew, resolved) to ``#livewatch-alerts`` by
*name*. For every step kind (post, upload, update, reply) the process "dies" right after Slack accepted the
call and before the step was recorded -- either the connection drops after Slack applied the call, or the
step log raises on the ``done`` record (as ``kill -9`` would). A restarted process with the same durable
records then delivers the rest. The Slack effects must equal those of an uninterrupted run: 0 lost, 0
duplicated.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from alerts.incidents import group_signals
from alerts.model import DeliveryStatus, Notification, NotifyReason
from alerts.outbox import deliver_pending
from alerts.sinks.slack import SCOPES, SlackSink
from alerts.steps import StepKind, StepRecord, StepStatus
from alerts.testing import InMemoryChannelDirectory, InMemoryOutbox, InMemoryStepLog
from tests.alerts.factories import BUCKET, T0, chart, incident, notification, signal
from tests.fakeslack import ALL_SCOPES, FakeSlack

CHANNEL = "#livewatch-alerts"


def _notifications() -> list[Notification]:
    first = incident(signal(chart=chart(12, spike_at=10)))
    grown = incident(signal(chart=chart(12, spike_at=10)), signal(region="US"))
    grown = grown.with_changes(id=first.id)
    resolved = first
    for step in (1, 2, 3):
        (change,) = group_signals([resolved], [], T0 + step * BUCKET).changes
        resolved = change.incident
    return [
        notification(first, NotifyReason.FIRST, channel=CHANNEL),
        notification(grown, NotifyReason.SPREAD, channel=CHANNEL, now=T0 + BUCKET),
        notification(resolved, NotifyReason.RESOLVED, channel=CHANNEL, now=T0 + 3 * BUCKET),
    ]


class CrashOnDone(InMemoryStepLog):
    """A step log over a durable one that 'kills the process' when ``step`` is about to be recorded done."""

    def __init__(self, durable: InMemoryStepLog, step: StepKind) -> None:
        super().__init__()
        self.durable, self.step, self.fired = durable, step, False

    def record_step(self, record: StepRecord) -> None:
        if record.step is self.step and record.status is StepStatus.DONE and not self.fired:
            self.fired = True
            raise KeyboardInterrupt(f"simulated kill -9 after Slack accepted {record.step}")
        self.durable.record_step(record)

    def steps_for(self, notification_id: str) -> list[StepRecord]:
        return self.durable.steps_for(notification_id)


class World:
    """The durable state that survives a restart: outbox, step records, channel directory."""

    def __init__(self, fake: FakeSlack) -> None:
        self.fake = fake
        self.outbox = InMemoryOutbox()
        self.steps = InMemoryStepLog()
        self.channels = InMemoryChannelDirectory()
        self.notes = _notifications()
        self.warnings: list[str] = []

    def sink(self, steps: InMemoryStepLog | None = None) -> SlackSink:
        return SlackSink.from_token(
            self.fake.token,
            api_url=self.fake.api_url,
            timeout=2,
            max_retries=1,
            backoff_factor=0.001,
            steps=steps or self.steps,
            channels=self.channels,
        )

    def deliver(self, at: int, sink: SlackSink | None = None) -> None:
        report = deliver_pending(self.outbox, {"slack": sink or self.sink()}, T0 + at * BUCKET)
        for attempt in report.attempts:
            if attempt.result is not None:
                self.warnings.extend(attempt.result.warnings)

    def run(self, crash_at: int | None = None, crash: Any = None) -> None:
        """Enqueue and deliver the notifications one by one; ``crash`` fires before delivery ``crash_at``."""
        for i, note in enumerate(self.notes):
            self.outbox.enqueue(note)
            if i == crash_at:
                crash(self)
            self.deliver(i)
        self.deliver(len(self.notes))  # a later round retries what is still pending

    def effects(self) -> list[tuple[str, str]]:
        """Every Slack effect in the channel: top-level messages (final blocks), replies, files."""
        out: list[tuple[str, str]] = []
        for message in self.fake.top_level(CHANNEL):
            out.append(("message", json.dumps(message.get("blocks"), sort_keys=True)))
            for reply in self.fake.replies(CHANNEL, message["ts"]):
                if "files" in reply:
                    out.append(("file", reply["files"][0]["name"]))
                else:
                    out.append(("reply", reply["text"]))
        return sorted(out)


@pytest.fixture
def baseline(strict_slack: FakeSlack) -> list[tuple[str, str]]:
    world = World(strict_slack)
    world.run()
    assert all(e.status is DeliveryStatus.DELIVERED for e in world.outbox.entries())
    effects = world.effects()
    assert [kind for kind, _ in effects].count("message") == 1
    assert [kind for kind, _ in effects].count("file") == 1
    assert [kind for kind, _ in effects].count("reply") == 2
    strict_slack.reset(strict=True)
    strict_slack.add_channel("livewatch-alerts")
    return effects


# (step kind, index of the notification whose delivery crashes, fake method to drop after accepting)
CRASH_POINTS = [
    (StepKind.POST, 0, "chat.postMessage"),
    (StepKind.UPLOAD, 0, "files.completeUploadExternal"),
    (StepKind.UPDATE, 1, "chat.update"),
    (StepKind.REPLY, 1, "chat.postMessage"),
]


@pytest.mark.parametrize(("step", "index", "method"), CRASH_POINTS, ids=[c[0].value for c in CRASH_POINTS])
def test_connection_dropped_after_slack_accepted(
    strict_slack: FakeSlack, baseline: list[tuple[str, str]], step: StepKind, index: int, method: str
) -> None:
    world = World(strict_slack)
    world.run(crash_at=index, crash=lambda w: w.fake.drop_after_next(1, methods={method}))
    assert world.effects() == baseline
    assert world.outbox.pending() == []
    assert world.warnings == []


def test_upload_bytes_sent_but_never_completed_is_uploaded_again(
    strict_slack: FakeSlack, baseline: list[tuple[str, str]]
) -> None:
    world = World(strict_slack)
    world.run(crash_at=0, crash=lambda w: w.fake.drop_after_next(1, methods={"upload"}))
    assert world.effects() == baseline


@pytest.mark.parametrize("step", list(StepKind), ids=[s.value for s in StepKind])
def test_killed_between_slack_answer_and_the_record(
    strict_slack: FakeSlack, baseline: list[tuple[str, str]], step: StepKind
) -> None:
    world = World(strict_slack)
    index = 0 if step in (StepKind.POST, StepKind.UPLOAD) else 1
    for i, note in enumerate(world.notes):
        world.outbox.enqueue(note)
        if i == index:
            with pytest.raises(KeyboardInterrupt):
                world.deliver(i, world.sink(CrashOnDone(world.steps, step)))
        world.deliver(i)  # the restarted process: a new sink over the same durable records
    world.deliver(len(world.notes))
    assert world.effects() == baseline
    assert world.outbox.pending() == []
    crashed = world.notes[index].id
    started = [
        r
        for r in world.steps.records
        if r.notification_id == crashed and r.step is step and r.status is StepStatus.STARTED
    ]
    assert len(started) == (2 if step is StepKind.UPDATE else 1)  # only the idempotent update is re-run


def test_recovery_reads_history_by_channel_id_resolved_once(strict_slack: FakeSlack) -> None:
    world = World(strict_slack)
    world.run(crash_at=0, crash=lambda w: w.fake.drop_after_next(1, methods={"chat.postMessage"}))
    cid = strict_slack.channel_id(CHANNEL)
    assert {r.body["channel"] for r in strict_slack.calls("conversations.history")} == {cid}
    assert len(strict_slack.calls("conversations.list")) == 1  # cached in the channel directory
    assert world.channels.get_channel_id("livewatch-alerts") == cid


def test_conversations_list_is_paginated(strict_slack: FakeSlack) -> None:
    for i in range(450):
        strict_slack.add_channel(f"noise-{i:03d}")
    last = strict_slack.add_channel("zz-late-channel")
    world = World(strict_slack)
    world.notes = [replace(n, channel="#zz-late-channel") for n in world.notes]
    world.run()
    assert len(strict_slack.calls("conversations.list")) == 3
    assert world.channels.get_channel_id("zz-late-channel") == last


def test_history_in_strict_mode_needs_an_id(strict_slack: FakeSlack) -> None:
    sink = World(strict_slack).sink()
    with pytest.raises(Exception, match="channel_not_found"):
        sink.client.conversations_history(channel=CHANNEL)


def test_without_history_scope_a_crash_costs_at_most_one_duplicate_never_a_loss(
    strict_slack: FakeSlack, baseline: list[tuple[str, str]]
) -> None:
    strict_slack.set_scopes(ALL_SCOPES - {"channels:history"})
    world = World(strict_slack)
    world.run(crash_at=0, crash=lambda w: w.fake.drop_after_next(1, methods={"chat.postMessage"}))
    effects = world.effects()
    assert [k for k, _ in effects].count("message") == 2  # one duplicate...
    assert set(baseline) <= set(effects)  # ... and nothing lost
    assert any("posting again" in w for w in world.warnings)


def test_without_channels_read_posts_by_name_and_learns_the_id(strict_slack: FakeSlack) -> None:
    strict_slack.set_scopes(ALL_SCOPES - {"channels:read", "groups:read"})
    world = World(strict_slack)
    world.run()
    assert world.channels.get_channel_id("livewatch-alerts") == strict_slack.channel_id(CHANNEL)
    assert any("needs channels:read" in w for w in world.warnings)
    assert len(strict_slack.top_level(CHANNEL)) == 1


def test_check_lists_missing_scopes_and_their_cost(strict_slack: FakeSlack) -> None:
    sink = World(strict_slack).sink()
    full = sink.check()
    assert full.ok and full.missing == () and full.scopes == ALL_SCOPES
    strict_slack.set_scopes({"chat:write", "files:write", "channels:read"})
    partial = sink.check()
    assert partial.ok
    assert partial.missing == ("groups:read", "channels:history", "groups:history", "usergroups:read")
    assert partial.warnings[1] == f"missing scope channels:history: {SCOPES['channels:history']}"
    assert "missing scopes: groups:read, channels:history" in partial.detail
    strict_slack.set_scopes({"channels:read"})
    assert not sink.check().ok


def test_missing_scope_on_post_is_permanent_and_names_the_fix(strict_slack: FakeSlack) -> None:
    strict_slack.set_scopes(ALL_SCOPES - {"chat:write"})
    world = World(strict_slack)
    world.outbox.enqueue(world.notes[0])
    world.deliver(0)
    (entry,) = world.outbox.entries()
    assert entry.status is DeliveryStatus.FAILED
    assert entry.error is not None and "missing_scope" in entry.error and "check-config" in entry.error


def test_private_channels_need_the_groups_scopes(strict_slack: FakeSlack) -> None:
    strict_slack.add_channel("tns-private", private=True)
    world = World(strict_slack)
    world.notes = [replace(n, channel="#tns-private") for n in world.notes]
    world.run(crash_at=0, crash=lambda w: w.fake.drop_after_next(1, methods={"chat.postMessage"}))
    assert len(strict_slack.top_level("#tns-private")) == 1  # recovered through groups:history
    strict_slack.set_scopes(ALL_SCOPES - {"groups:history"})
    other = World(strict_slack)
    other.notes = [
        replace(
            n,
            channel="#tns-private",
            id=n.id + "-b",
            incident=n.incident.with_changes(id="b"),
            incident_id="b",
        )
        for n in other.notes
    ]
    other.run(crash_at=0, crash=lambda w: w.fake.drop_after_next(1, methods={"chat.postMessage"}))
    assert len(strict_slack.top_level("#tns-private")) == 3  # one duplicate without groups:history ...
    assert any("could not read the history" in w and "missing_scope" in w for w in other.warnings)
