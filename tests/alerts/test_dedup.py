"""should_notify: every decision has a reason (table-driven)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from alerts.dedup import should_notify, snapshot
from alerts.model import AlertDataError, IncidentState, NotifiedSnapshot, NotifyReason, RootCause, Severity
from tests.alerts.factories import T0, incident, signal

REPEAT = timedelta(hours=4)
BASE = incident(signal(score=6.0, volume=2_000.0, causes=(RootCause("category=gambling", 0.6),)))
SENT = snapshot(BASE, "slack", NotifyReason.FIRST, T0)


CASES = [
    # (previous, incident, now, expected, what it proves)
    (None, BASE, T0, NotifyReason.FIRST, "never notified: first message"),
    (SENT, BASE, T0 + timedelta(minutes=15), NotifyReason.NOTHING_NEW, "same picture shortly after: quiet"),
    (SENT, BASE, T0 + REPEAT, NotifyReason.REPEAT_ELAPSED, "repeat interval elapsed: reminder (inclusive)"),
    (
        SENT,
        incident(signal(causes=(RootCause("category=gambling", 0.6),)), signal("bans")),
        T0,
        NotifyReason.NEW_METRIC_JOINED,
        "another metric joined the incident",
    ),
    (
        SENT,
        incident(signal(causes=(RootCause("category=gambling", 0.6),)), signal(region="US")),
        T0,
        NotifyReason.SPREAD,
        "the metric spread to another region",
    ),
    (
        SENT,
        replace(BASE, severity=Severity.CRITICAL),
        T0,
        NotifyReason.GREW,
        "severity rose",
    ),
    (
        SENT,
        incident(signal(observed=180.0, causes=(RootCause("category=gambling", 0.6),))),
        T0,
        NotifyReason.GREW,
        "change % grew by the grow factor (50% -> 80%)",
    ),
    (
        SENT,
        incident(signal(observed=160.0, causes=(RootCause("category=gambling", 0.6),))),
        T0,
        NotifyReason.NOTHING_NEW,
        "a small growth (50% -> 60%) is not news",
    ),
    (
        SENT,
        incident(signal(causes=(RootCause("category=gambling", 0.5), RootCause("language=pt", 0.3)))),
        T0,
        NotifyReason.NEW_ROOT_CAUSE,
        "a new segment among the top root causes",
    ),
    (
        SENT,
        replace(BASE, state=IncidentState.ACKNOWLEDGED, acknowledged_by="ana"),
        T0 + REPEAT,
        NotifyReason.ACKNOWLEDGED,
        "acknowledged incidents get no reminders",
    ),
    (
        SENT,
        replace(
            incident(signal(causes=(RootCause("category=gambling", 0.6),)), signal("bans")),
            state=IncidentState.ACKNOWLEDGED,
        ),
        T0,
        NotifyReason.NEW_METRIC_JOINED,
        "acknowledged incidents still announce growth",
    ),
    (
        SENT,
        replace(BASE, state=IncidentState.SNOOZED, snoozed_until=T0 + timedelta(hours=5)),
        T0 + REPEAT,
        NotifyReason.SNOOZED,
        "snoozed incidents stay quiet",
    ),
    (
        None,
        replace(BASE, state=IncidentState.SNOOZED, snoozed_until=T0 - timedelta(minutes=1)),
        T0,
        NotifyReason.FIRST,
        "an expired snooze no longer mutes",
    ),
    (
        SENT,
        replace(BASE, state=IncidentState.RESOLVED, resolved_at=T0),
        T0,
        NotifyReason.RESOLVED,
        "resolution",
    ),
    (
        None,
        replace(BASE, state=IncidentState.RESOLVED, resolved_at=T0),
        T0,
        NotifyReason.NOTHING_NEW,
        "never announced, so its resolution is not announced either",
    ),
    (
        snapshot(BASE, "slack", NotifyReason.RESOLVED, T0),
        replace(BASE, state=IncidentState.RESOLVED, resolved_at=T0),
        T0 + REPEAT,
        NotifyReason.NOTHING_NEW,
        "resolution is announced once",
    ),
]


@pytest.mark.parametrize(("previous", "inc", "now", "expected", "why"), CASES, ids=[c[4] for c in CASES])
def test_should_notify_table(
    previous: NotifiedSnapshot | None, inc: object, now: object, expected: NotifyReason, why: str
) -> None:
    assert should_notify(previous, inc, now, REPEAT) is expected, why  # type: ignore[arg-type]


def test_reason_notify_flag() -> None:
    quiet = {
        NotifyReason.NOTHING_NEW,
        NotifyReason.ACKNOWLEDGED,
        NotifyReason.SNOOZED,
        NotifyReason.CATCHING_UP,
    }
    assert {r for r in NotifyReason if not r.notify} == quiet


def test_snapshot_records_what_was_shown() -> None:
    snap = snapshot(BASE, "slack", NotifyReason.FIRST, T0)
    assert (snap.metrics, snap.regions, snap.root_causes) == (
        frozenset({"reports"}),
        frozenset({"EU"}),
        frozenset({"category=gambling"}),
    )
    assert snap.magnitude == pytest.approx(50.0)
    assert not snap.resolved


def test_bad_grow_factor_is_rejected() -> None:
    with pytest.raises(AlertDataError, match="grow_factor"):
        should_notify(None, BASE, T0, REPEAT, grow_factor=1.0)
