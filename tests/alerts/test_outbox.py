"""deliver_pending: record before send, deliver in order, never lose, never duplicate."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from alerts.engine import AlertRepos, process
from alerts.model import DeliveryStatus, Notification, NotifyReason
from alerts.outbox import deliver_pending
from alerts.routing import Route
from alerts.sinks.base import DeliveryResult
from alerts.sinks.slack import SlackSink
from alerts.testing import InMemoryOutbox, RecordingSink
from tests.alerts.factories import BUCKET, T0, incident, notification, signal
from tests.fakeslack import FakeSlack

ONE_ROUTE = Route(receiver="slack", channel="#tns-alerts", repeat_interval=timedelta(hours=4))


def _enqueued(*notes: Notification) -> InMemoryOutbox:
    outbox = InMemoryOutbox()
    for note in notes:
        assert outbox.enqueue(note)
    return outbox


A1 = notification(incident(signal("reports", "EU")), NotifyReason.FIRST, now=T0)
B1 = notification(incident(signal("bans", "JP")), NotifyReason.FIRST, now=T0)
A2 = notification(A1.incident, NotifyReason.GREW, now=T0 + BUCKET)
A3 = notification(A1.incident, NotifyReason.RESOLVED, now=T0 + 2 * BUCKET)


def test_delivers_in_order_and_later_ones_get_the_thread() -> None:
    outbox, sink = _enqueued(A1, B1, A2, A3), RecordingSink()
    report = deliver_pending(outbox, {"slack": sink}, T0)
    assert report.delivered == 4 and outbox.pending() == []
    assert [n.id for n in sink.sent] == [A1.id, B1.id, A2.id, A3.id]
    assert [n.thread is None for n in sink.sent] == [True, True, False, False]
    thread = outbox.thread_for(A1.incident_id, "slack")
    assert thread is not None and sink.sent[2].thread == thread and sink.sent[3].thread == thread


def test_enqueue_is_idempotent() -> None:
    outbox = _enqueued(A1)
    assert not outbox.enqueue(A1)
    assert len(outbox.entries()) == 1


def test_a_retryable_failure_blocks_only_that_incident_and_keeps_order() -> None:
    outbox, sink = _enqueued(A1, B1, A2), RecordingSink()
    sink.fail_next(1)  # A1 fails
    report = deliver_pending(outbox, {"slack": sink}, T0)
    assert [n.id for n in sink.sent] == [A1.id, B1.id]  # A2 deferred behind A1, B1 unaffected
    assert (report.delivered, report.retrying, report.failed_permanently) == (1, 2, 0)
    assert [n.id for n in outbox.pending()] == [A1.id, A2.id]
    (a1_entry,) = [e for e in outbox.entries() if e.notification.id == A1.id]
    assert (a1_entry.attempts, a1_entry.error, a1_entry.retryable) == (1, "simulated outage", True)

    deliver_pending(outbox, {"slack": sink}, T0 + BUCKET)
    assert [n.id for n in sink.sent] == [A1.id, B1.id, A1.id, A2.id]
    assert sink.sent[2].attempts == 1  # the sink is told an earlier attempt started
    assert outbox.pending() == []


def test_a_permanent_failure_is_recorded_and_not_retried() -> None:
    outbox, sink = _enqueued(A1, A2), RecordingSink()
    sink.script.append(DeliveryResult.failure("channel_not_found: fix the route", retryable=False))
    report = deliver_pending(outbox, {"slack": sink}, T0)
    assert report.failed_permanently == 1 and report.delivered == 1
    statuses = {e.notification.id: e.status for e in outbox.entries()}
    assert statuses == {A1.id: DeliveryStatus.FAILED, A2.id: DeliveryStatus.DELIVERED}
    deliver_pending(outbox, {"slack": sink}, T0 + BUCKET)
    assert len(sink.sent) == 2


def test_unknown_receiver_fails_permanently_with_the_fix() -> None:
    outbox = _enqueued(replace(A1, receiver="pagerduty"))
    report = deliver_pending(outbox, {"slack": RecordingSink()}, T0)
    (entry,) = outbox.entries()
    assert report.failed_permanently == 1 and entry.status is DeliveryStatus.FAILED
    assert (
        entry.error
        == "no sink is configured for receiver 'pagerduty' (known: ['slack']); add it to the receivers config"
    )


def test_a_crashing_sink_is_contained_and_retried() -> None:
    class Broken:
        def send(self, notification: Notification) -> DeliveryResult:
            raise RuntimeError("boom")

    outbox, sink = _enqueued(replace(A1, receiver="broken"), B1), RecordingSink()
    report = deliver_pending(outbox, {"broken": Broken(), "slack": sink}, T0)
    assert report.delivered == 1 and report.retrying == 1
    assert [n.id for n in outbox.pending()] == [A1.id]


def test_limit_caps_the_sends() -> None:
    outbox, sink = _enqueued(A1, B1, A2), RecordingSink()
    deliver_pending(outbox, {"slack": sink}, T0, limit=2)
    assert len(sink.sent) == 2 and len(outbox.pending()) == 1


# -- end to end over HTTP with the fake Slack -------------------------------------------------------------
def _slack(fake: FakeSlack) -> SlackSink:
    return SlackSink.from_token(
        fake.token, api_url=fake.api_url, timeout=2, max_retries=1, backoff_factor=0.001, upload_charts=False
    )


def _buckets() -> list[tuple[datetime, list]]:
    """Two incidents evolving over six buckets: open, spread, new metric, then quiet until resolved."""
    eu, us, jp = signal("reports", "EU"), signal("reports", "US"), signal("bans", "JP", score=4.5)
    return [
        (T0, [eu, jp]),
        (T0 + BUCKET, [eu, us, jp]),
        (T0 + 2 * BUCKET, [eu, us, signal("violations", "US")]),
        (T0 + 3 * BUCKET, []),
        (T0 + 4 * BUCKET, []),
        (T0 + 5 * BUCKET, []),
    ]


def test_slack_outage_of_any_length_delays_but_never_loses_or_reorders(
    fake_slack: FakeSlack, repos: AlertRepos
) -> None:
    sink = _slack(fake_slack)
    enqueued: list[Notification] = []
    for i, (now, signals) in enumerate(_buckets()):
        enqueued.extend(process(signals, now, repos=repos, routes=ONE_ROUTE).notifications)
        if 1 <= i <= 3:  # Slack is down for three delivery rounds
            fake_slack.fail_next(1_000, status=503, error="service_unavailable")
        deliver_pending(repos.outbox, {"slack": sink}, now)
        fake_slack.reset_faults()
    deliver_pending(repos.outbox, {"slack": sink}, T0 + 6 * BUCKET)

    assert repos.outbox.pending() == []
    assert all(e.status is DeliveryStatus.DELIVERED for e in repos.outbox.entries())
    assert max(e.attempts for e in repos.outbox.entries()) == 4  # tried in each of the 3 down rounds
    reasons = {
        n.incident_id: [m.reason for m in enqueued if m.incident_id == n.incident_id] for n in enqueued
    }
    assert sorted(map(tuple, reasons.values())) == [
        (NotifyReason.FIRST, NotifyReason.RESOLVED),
        (NotifyReason.FIRST, NotifyReason.SPREAD, NotifyReason.NEW_METRIC_JOINED, NotifyReason.RESOLVED),
    ]
    top = fake_slack.top_level("#tns-alerts")
    assert len(top) == 2  # one living message per incident, whatever happened
    for incident_id, expected in reasons.items():
        thread = repos.outbox.thread_for(incident_id, "slack")
        assert thread is not None
        replies = [r["text"] for r in fake_slack.replies("#tns-alerts", thread.ts)]
        assert [r.split("*")[1] for r in replies] == [r.describe.capitalize() for r in expected[1:]]
        (message,) = [m for m in top if m["ts"] == thread.ts]
        assert message["blocks"][0]["text"]["text"].startswith(":white_check_mark: RESOLVED")


class _CrashAfterSend(InMemoryOutbox):
    """An outbox whose process 'dies' right after Slack answered, before the delivery is recorded."""

    crashes = 1

    def mark_delivered(self, notification_id: str, channel: str, ts: str | None, at: datetime) -> None:
        if self.crashes:
            self.crashes -= 1
            raise KeyboardInterrupt("simulated crash between send and record")
        super().mark_delivered(notification_id, channel, ts, at)


def test_crash_between_send_and_record_never_duplicates_the_message(fake_slack: FakeSlack) -> None:
    outbox = _CrashAfterSend()
    note = replace(A1, channel=fake_slack.channel_id("#tns-alerts"))
    outbox.enqueue(note)
    outbox.enqueue(replace(A2, channel=note.channel))
    with pytest.raises(KeyboardInterrupt):
        deliver_pending(outbox, {"slack": _slack(fake_slack)}, T0)
    assert len(fake_slack.top_level("#tns-alerts")) == 1
    assert [n.attempts for n in outbox.pending()] == [1, 0]

    deliver_pending(outbox, {"slack": _slack(fake_slack)}, T0 + BUCKET)  # the restarted process
    assert outbox.pending() == []
    (message,) = fake_slack.top_level("#tns-alerts")
    assert outbox.thread_for(A1.incident_id, "slack") == outbox.thread_for(A2.incident_id, "slack")
    thread = outbox.thread_for(A1.incident_id, "slack")
    assert thread is not None and thread.ts == message["ts"]
    assert [r["text"].split("*")[1] for r in fake_slack.replies("#tns-alerts", message["ts"])] == [
        "Incident grew"
    ]


def test_429_then_success_delivers_once(fake_slack: FakeSlack) -> None:
    outbox = _enqueued(A1)
    fake_slack.rate_limit_next(1, retry_after=0)
    report = deliver_pending(outbox, {"slack": _slack(fake_slack)}, T0)
    assert report.delivered == 1 and len(fake_slack.top_level("#tns-alerts")) == 1


def test_channel_not_found_is_surfaced_as_non_retryable(fake_slack: FakeSlack) -> None:
    fake_slack.remove_channel("#tns-alerts")
    outbox = _enqueued(A1)
    report = deliver_pending(outbox, {"slack": _slack(fake_slack)}, T0)
    (attempt,) = report.attempts
    assert attempt.result is not None and not attempt.result.retryable
    (entry,) = outbox.entries()
    assert entry.status is DeliveryStatus.FAILED and entry.retryable is False
    assert entry.error is not None and "channel_not_found" in entry.error
