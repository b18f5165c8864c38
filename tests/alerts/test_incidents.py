"""Grouping signals into incidents, inhibition of per-segment noise, and the lifecycle."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest

from alerts.incidents import GroupingConfig, IncidentStateError, acknowledge, group_signals, resolve, snooze
from alerts.model import (
    AlertDataError,
    AlertSignal,
    Incident,
    IncidentState,
    LifecycleKind,
    RootCause,
    Severity,
)
from tests.alerts.factories import BUCKET, T0, incident, signal

REPORTS_EU = incident(signal("reports", "EU"))
BANS_US = incident(signal("bans", "US"), now=T0 - BUCKET)


def _shape(changes: list[Incident]) -> list[set[tuple[str, str]]]:
    return [{(s.metric, s.region) for s in inc.signals} for inc in changes]


GROUPING = [
    # (active, signals, expected member (metric, region) sets per incident, absorbed, what it proves)
    ([], [signal()], [{("reports", "EU")}], 0, "one signal opens one incident"),
    (
        [],
        [signal(region="EU"), signal(region="US"), signal(region="BR")],
        [{("reports", "EU"), ("reports", "US"), ("reports", "BR")}],
        0,
        "the same metric in several regions at once is ONE incident",
    ),
    (
        [],
        [signal("reports"), signal("violations"), signal("bans")],
        [{("reports", "EU"), ("violations", "EU"), ("bans", "EU")}],
        0,
        "several metrics rising together in one region are ONE incident",
    ),
    (
        [],
        [signal("reports", "EU"), signal("bans", "US")],
        [{("bans", "US")}, {("reports", "EU")}],
        0,
        "unrelated metric and region: separate incidents",
    ),
    (
        [],
        [signal("reports", "EU"), signal("reports", "US"), signal("bans", "US")],
        [{("reports", "EU"), ("reports", "US"), ("bans", "US")}],
        0,
        "links are transitive within a bucket",
    ),
    (
        [REPORTS_EU],
        [signal("reports", "US")],
        [{("reports", "EU"), ("reports", "US")}],
        0,
        "a new region of an open incident joins it",
    ),
    (
        [REPORTS_EU, BANS_US],
        [signal("reports", "US")],
        [{("reports", "EU"), ("reports", "US")}, {("bans", "US")}],
        0,
        "same metric is preferred over same region; existing incidents are never merged",
    ),
    (
        [REPORTS_EU],
        [signal("bans", "JP")],
        [{("reports", "EU")}, {("bans", "JP")}],
        0,
        "an unrelated signal opens a second incident",
    ),
    (
        [REPORTS_EU],
        [signal("reports", "EU", segment="category=gambling")],
        [{("reports", "EU")}],
        1,
        "per-segment noise under an open metric-level incident is absorbed",
    ),
    (
        [],
        [signal("reports", "EU"), signal("reports", "EU", segment="language=pt")],
        [{("reports", "EU")}],
        1,
        "absorption also works for an incident opened in the same bucket",
    ),
    (
        [],
        [signal("bans", "JP", segment="device=android")],
        [{("bans", "JP")}],
        0,
        "a segment signal with no metric-level incident is a member itself",
    ),
]


@pytest.mark.parametrize(
    ("active", "signals", "expected", "absorbed", "why"), GROUPING, ids=[c[-1] for c in GROUPING]
)
def test_grouping_table(
    active: list[Incident],
    signals: list[AlertSignal],
    expected: list[set[tuple[str, str]]],
    absorbed: int,
    why: str,
) -> None:
    result = group_signals(active, signals, T0)
    assert _shape([c.incident for c in result.changes]) == expected, why
    assert len(result.absorbed) == absorbed
    assert sum(c.incident.absorbed for c in result.changes) == absorbed


def test_grouping_does_not_depend_on_signal_order() -> None:
    signals = [signal("reports", "EU"), signal("bans", "US"), signal("reports", "US"), signal("views", "JP")]
    shapes = {
        tuple(
            sorted(
                tuple(sorted(s)) for s in _shape([c.incident for c in group_signals([], list(p), T0).changes])
            )
        )
        for p in itertools.permutations(signals)
    }
    assert len(shapes) == 1


def test_opened_incident_has_stable_id_severity_and_event() -> None:
    result = group_signals([], [signal(score=9.0, volume=5_000.0), signal(region="US", score=4.0)], T0)
    (change,) = result.changes
    inc = change.incident
    assert inc.id == "reports/EU/20260202T120000Z"
    assert inc.group_key == "reports/EU"
    assert inc.severity is Severity.CRITICAL
    assert change.previous is None
    assert [e.kind for e in change.events] == [LifecycleKind.OPENED]


def test_update_event_says_what_changed() -> None:
    later = T0 + BUCKET
    result = group_signals(
        [REPORTS_EU],
        [
            signal("reports", "EU", causes=(RootCause("category=gambling", 0.7),)),
            signal("reports", "US"),
            signal("bans", "EU", score=9.0, volume=10_000.0),
        ],
        later,
    )
    (change,) = result.changes
    (event,) = change.events
    assert event.kind is LifecycleKind.UPDATED
    assert event.detail == (
        "metric bans joined; spread to region US; new root cause category=gambling; "
        "severity warning -> critical"
    )
    assert change.incident.last_signal_at == later


def test_new_numbers_update_the_member_without_an_event() -> None:
    result = group_signals([REPORTS_EU], [signal(observed=170.0)], T0 + BUCKET)
    (change,) = result.changes
    assert len(change.incident.signals) == 1
    assert change.incident.signals[0].observed == 170.0
    assert change.events == ()


def test_resolves_after_n_clean_buckets_and_a_signal_resets_the_count() -> None:
    config = GroupingConfig(resolve_after_clean=3)
    inc = REPORTS_EU
    for step in (1, 2):
        (change,) = group_signals([inc], [], T0 + step * BUCKET, config=config).changes
        inc = change.incident
        assert inc.state is IncidentState.OPEN and inc.clean_buckets == step
    (change,) = group_signals([inc], [signal()], T0 + 3 * BUCKET, config=config).changes
    inc = change.incident
    assert inc.clean_buckets == 0
    for step in (4, 5, 6):
        (change,) = group_signals([inc], [], T0 + step * BUCKET, config=config).changes
        inc = change.incident
    assert inc.state is IncidentState.RESOLVED
    assert inc.resolved_at == T0 + 6 * BUCKET
    assert [e.kind for e in change.events] == [LifecycleKind.RESOLVED]


def test_resolved_incidents_are_not_reopened() -> None:
    closed = resolve(REPORTS_EU, "ana", T0).incident
    (change,) = group_signals([closed], [signal()], T0 + BUCKET).changes
    assert change.previous is None and change.incident.id != closed.id


def test_people_actions_record_actor_and_time() -> None:
    acked = acknowledge(REPORTS_EU, "ana", T0 + BUCKET)
    assert acked.incident.state is IncidentState.ACKNOWLEDGED
    assert (acked.events[0].kind, acked.events[0].actor) == (LifecycleKind.ACKNOWLEDGED, "ana")

    snoozed = snooze(acked.incident, "bo", T0 + timedelta(hours=2), T0 + BUCKET).incident
    assert snoozed.state is IncidentState.SNOOZED and snoozed.snoozed_by == "bo"
    (change,) = group_signals([snoozed], [], T0 + timedelta(hours=2)).changes
    assert change.incident.state is IncidentState.OPEN
    assert change.events[0].detail == "snooze expired"

    closed = resolve(REPORTS_EU, "cy", T0 + BUCKET)
    assert closed.incident.state is IncidentState.RESOLVED
    assert closed.events[0].actor == "cy"


@pytest.mark.parametrize(
    ("action", "message"),
    [
        (lambda: acknowledge(resolve(REPORTS_EU, "a", T0).incident, "b", T0), "cannot acknowledge"),
        (lambda: snooze(REPORTS_EU, "a", T0 - BUCKET, T0), "not after now"),
        (lambda: acknowledge(REPORTS_EU, "", T0), "needs an actor"),
    ],
    ids=["ack a resolved incident", "snooze into the past", "ack without actor"],
)
def test_invalid_actions_are_named_errors(action: object, message: str) -> None:
    with pytest.raises(IncidentStateError, match=message):
        action()  # type: ignore[operator]


def test_naive_now_is_rejected() -> None:
    with pytest.raises(AlertDataError, match="naive"):
        group_signals([], [signal()], T0.replace(tzinfo=None))


def test_bad_config_is_rejected() -> None:
    with pytest.raises(AlertDataError, match="resolve_after_clean"):
        GroupingConfig(resolve_after_clean=0)
