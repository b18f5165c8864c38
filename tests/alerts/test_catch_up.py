"""Catch-up (issue 16): each incident delivered once, as its final state; reminders only in live time."""

from __future__ import annotations

from datetime import timedelta

import pytest

from alerts.dedup import catch_up_gate, snapshot, summarise_timeline
from alerts.engine import AlertRepos, process
from alerts.incidents import resolve
from alerts.model import Incident, LifecycleEvent, LifecycleKind, NotifiedSnapshot, NotifyReason
from alerts.routing import Route
from tests.alerts.factories import BUCKET, T0, incident, signal

OPEN = incident(signal())
CLOSED = resolve(OPEN, "livewatch", T0 + BUCKET).incident
TOLD = snapshot(OPEN, "slack", NotifyReason.FIRST, T0)

R = NotifyReason
CASES = [
    # (reason, previous, incident, live) -> gated reason   # what it proves
    (R.FIRST, None, OPEN, True, R.FIRST),  # live time: unchanged
    (R.REPEAT_ELAPSED, TOLD, OPEN, True, R.REPEAT_ELAPSED),  # reminders in live time
    (R.REPEAT_ELAPSED, TOLD, OPEN, False, R.CATCHING_UP),  # ... never in a catch-up
    (R.FIRST, None, OPEN, False, R.CATCHING_UP),  # still open: announced at the live edge
    (R.GREW, TOLD, OPEN, False, R.CATCHING_UP),  # intermediate growth: final state later
    (R.SPREAD, TOLD, OPEN, False, R.CATCHING_UP),
    (R.RESOLVED, TOLD, CLOSED, False, R.RESOLVED),  # told before the downtime: its end is sent
    (R.NOTHING_NEW, None, CLOSED, False, R.CATCH_UP_SUMMARY),  # began and ended unseen: one summary
    (R.NOTHING_NEW, None, CLOSED, True, R.NOTHING_NEW),  # live: a never-told resolution stays quiet
    (R.NOTHING_NEW, TOLD, OPEN, False, R.NOTHING_NEW),  # nothing to send stays nothing
    (R.SNOOZED, TOLD, OPEN, False, R.SNOOZED),
]


@pytest.mark.parametrize(("reason", "previous", "inc", "live", "expected"), CASES)
def test_catch_up_gate(
    reason: NotifyReason, previous: NotifiedSnapshot | None, inc: Incident, live: bool, expected: NotifyReason
) -> None:
    assert catch_up_gate(reason, previous, inc, live=live) is expected


def test_timeline_skips_notifications_and_elides_the_middle() -> None:
    events = [LifecycleEvent("i", LifecycleKind.OPENED, T0, "livewatch", "1 signal(s)")]
    events += [LifecycleEvent("i", LifecycleKind.NOTIFIED, T0, "livewatch", "first")]
    events += [
        LifecycleEvent("i", LifecycleKind.UPDATED, T0 + i * BUCKET, "livewatch", f"u{i}")
        for i in range(1, 12)
    ]
    lines = summarise_timeline(events, limit=4).splitlines()
    assert lines == [
        "2026-02-02 12:00 opened: 1 signal(s)",
        "2026-02-02 12:15 updated: u1",
        "2026-02-02 12:30 updated: u2",
        "… 8 more …",
        "2026-02-02 14:45 updated: u11",
    ]


ROUTE = Route(receiver="slack", channel="#tns-alerts", repeat_interval=timedelta(minutes=30))


def test_a_catch_up_sends_each_incident_once_as_its_final_state(repos: AlertRepos) -> None:
    told = signal("bans", "JP")
    process([told], T0 - BUCKET, repos=repos, routes=ROUTE)  # before the downtime: announced
    eu, us = signal("reports", "EU"), signal("reports", "US")
    buckets = [[told, eu], [told, eu, us], [told, eu, us], [eu, us], [eu], [], [], []]
    sent = []
    for i, signals in enumerate(buckets):
        sent += process(signals, T0 + i * BUCKET, repos=repos, routes=ROUTE, live=False).notifications
    by_incident = {(n.incident_id.split("/")[0], n.reason) for n in sent}
    assert by_incident == {("bans", R.RESOLVED), ("reports", R.CATCH_UP_SUMMARY)}  # no reminders, no growth
    (summary,) = [n for n in sent if n.reason is R.CATCH_UP_SUMMARY]
    assert summary.note is not None and "opened" in summary.note and "resolved" in summary.note
    assert summary.incident.regions == ("EU", "US")  # the final state


def test_an_incident_open_at_the_live_edge_is_announced_then(repos: AlertRepos) -> None:
    for i in range(3):
        assert process([signal()], T0 + i * BUCKET, repos=repos, routes=ROUTE, live=False).notifications == ()
    live = process([signal()], T0 + 3 * BUCKET, repos=repos, routes=ROUTE)
    assert [n.reason for n in live.notifications] == [R.FIRST]
