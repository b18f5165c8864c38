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


# -- level shifts: resolution and severity -------------------------------------------------------------------
from alerts.incidents import ResolutionReason, decide_resolution  # noqa: E402
from alerts.model import IncidentState as _State  # noqa: E402
from alerts.model import Severity as _Severity  # noqa: E402
from alerts.severity import signal_severity  # noqa: E402
from tests.alerts.factories import incident as _incident  # noqa: E402
from tests.alerts.factories import signal as _signal  # noqa: E402


@pytest.mark.parametrize(
    ("kind", "acked", "fired", "clean", "returned", "resolve", "reason"),
    [
        # a member fired in this bucket: nothing resolves, whatever the kind
        ("spike", False, True, 0, (), False, ResolutionReason.FIRING),
        ("level_shift", True, True, 0, ("reports/EU",), False, ResolutionReason.FIRING),
        # too few clean buckets yet
        ("spike", False, False, 2, (), False, ResolutionReason.WAITING),
        ("level_shift", False, False, 2, ("reports/EU",), False, ResolutionReason.WAITING),
        # a spike ends when the detector is quiet long enough
        ("spike", False, False, 3, (), True, ResolutionReason.BACK_TO_NORMAL),
        ("dip", False, False, 5, (), True, ResolutionReason.BACK_TO_NORMAL),
        # a level shift does not end because the detector went quiet: the shift persists
        ("level_shift", False, False, 3, (), False, ResolutionReason.SHIFT_PERSISTS),
        ("level_shift", False, False, 30, ("bans/EU",), False, ResolutionReason.SHIFT_PERSISTS),
        # ... it ends when the series is back within its pre-shift band
        ("level_shift", False, False, 3, ("reports/EU",), True, ResolutionReason.LEVEL_RETURNED),
        # ... or when a person accepted the new level (acknowledged) and nothing fired since
        ("level_shift", True, False, 3, (), True, ResolutionReason.NEW_LEVEL_ACCEPTED),
    ],
)
def test_decide_resolution_table(
    kind: str,
    acked: bool,
    fired: bool,
    clean: int,
    returned: tuple[str, ...],
    resolve: bool,
    reason: ResolutionReason,
) -> None:
    inc = _incident(_signal(kind=kind))
    if acked:
        inc = inc.with_changes(state=_State.ACKNOWLEDGED, acknowledged_by="@ana")
    decision = decide_resolution(inc, fired=fired, clean_buckets=clean, returned=returned, resolve_after=3)
    assert (decision.resolve, decision.reason) == (resolve, reason)


def test_a_level_shift_stays_open_while_the_new_level_holds() -> None:
    from alerts.incidents import group_signals as _group
    from tests.alerts.factories import BUCKET as _B
    from tests.alerts.factories import T0 as _T0

    inc = _incident(_signal(kind="level_shift"))
    for step in range(1, 10):  # observed at the new level (150) while the detector is quiet
        (change,) = _group([inc], [], _T0 + step * _B, observed={"reports/EU": 150.0}).changes
        inc = change.incident
    assert inc.active and inc.clean_buckets == 0  # a held level is not a clean bucket
    for step in range(10, 13):  # back at the old level for resolve_after_clean (3) buckets in a row
        (change,) = _group([inc], [], _T0 + step * _B, returned={"reports/EU"}).changes
        inc = change.incident
    assert not change.incident.active
    assert "returned to its previous level" in change.events[-1].detail


@pytest.mark.parametrize(
    ("kind", "score", "change_pct", "volume", "expected"),
    [
        # a lasting +60 % shift is critical although its last bucket scores only +1.8
        ("level_shift", 1.8, 60.0, 20_000.0, _Severity.CRITICAL),
        ("level_shift", 1.8, 30.0, 20_000.0, _Severity.WARNING),
        (
            "level_shift",
            2.1,
            24.9,
            235.0,
            _Severity.WARNING,
        ),  # the demo's DE policy shift: +25 % on 235 reviews
        ("level_shift", -1.2, -30.0, 20_000.0, _Severity.WARNING),  # down as well as up
        ("level_shift", 1.1, 13.1, 287.0, _Severity.WARNING),  # a lasting tenth, measured since its start
        ("level_shift", 1.8, 9.0, 20_000.0, _Severity.INFO),  # a small shift stays info
        ("level_shift", 1.8, 60.0, 50.0, _Severity.INFO),  # too little volume behind it
        # spikes keep the score rule: the same numbers give info
        ("spike", 1.8, 60.0, 20_000.0, _Severity.INFO),
    ],
)
def test_level_shift_severity_is_the_size_of_the_shift(
    kind: str, score: float, change_pct: float, volume: float, expected: _Severity
) -> None:
    sig = _signal(kind=kind, score=score, change_pct=change_pct, volume=volume)
    assert signal_severity(sig) is expected


@pytest.mark.parametrize(
    ("observed", "back", "why"),
    [
        (100.0, True, "exactly the pre-shift level"),
        (110.0, True, "80 % of the way back (shift 150 -> 100)"),
        (112.5, True, "three quarters of the way back counts"),
        (125.0, False, "half way back is not back: the new level of a ratio wanders that far"),
        (140.0, False, "still near the new level"),
        (150.0, False, "the new level holds"),
        (170.0, False, "shifted further"),
        (80.0, True, "overshot below the old level: the shift is over"),
        (float("nan"), False, "no observation: unknown, not back"),
    ],
)
def test_level_returned_table(observed: float, back: bool, why: str) -> None:
    from alerts.incidents import level_returned

    member = _signal(kind="level_shift", observed=150.0, expected=100.0)
    assert level_returned(member, observed) is back, why


def test_observed_values_end_a_level_shift_only_when_the_series_is_back() -> None:
    from alerts.incidents import group_signals as _group
    from tests.alerts.factories import BUCKET as _B
    from tests.alerts.factories import T0 as _T0

    inc = _incident(_signal(kind="level_shift", observed=150.0, expected=100.0))
    for step in range(1, 6):  # the new level holds: open however long the detector is quiet
        (change,) = _group([inc], [], _T0 + step * _B, observed={"reports/EU": 149.0}).changes
        inc = change.incident
    assert inc.active
    for step in (6, 7):  # back, but not yet for 3 buckets in a row
        (change,) = _group([inc], [], _T0 + step * _B, observed={"reports/EU": 101.0}).changes
        inc = change.incident
        assert inc.active
    (change,) = _group([inc], [], _T0 + 8 * _B, observed={"reports/EU": 149.0}).changes  # the level again
    inc = change.incident
    assert inc.active and inc.clean_buckets == 0
    for step in (9, 10, 11):
        (change,) = _group([inc], [], _T0 + step * _B, observed={"reports/EU": 101.0}).changes
        inc = change.incident
    assert not inc.active


def test_an_unobserved_level_shift_resolves_like_a_spike() -> None:
    """Self-monitoring checks and other scoring groups send no observation: no evidence the shift holds."""
    from alerts.incidents import group_signals as _group
    from tests.alerts.factories import BUCKET as _B
    from tests.alerts.factories import T0 as _T0

    inc = _incident(_signal(kind="level_shift"))
    for step in (1, 2, 3):
        (change,) = _group([inc], [], _T0 + step * _B).changes
        inc = change.incident
    assert not inc.active


@pytest.mark.parametrize(
    ("observed", "expected", "back", "why"),
    [
        # the shift is +50 % (150 vs 100); each bucket is judged against its own expectation
        (105.0, 70.0, False, "the trough of the daily cycle, still +50 % on its own hour"),
        (150.0, 100.0, False, "the new level at an ordinary hour"),
        (72.0, 70.0, True, "the trough, back at its own expectation"),
        (220.0, 200.0, True, "the peak hour, +10 %: four fifths of the way back"),
        (240.0, 200.0, False, "the peak hour, +20 %: not yet three quarters of the way back"),
        (280.0, 200.0, False, "the peak hour, +40 %: still shifted"),
        (float("nan"), 100.0, False, "no observation: unknown, not back"),
        (101.0, float("nan"), True, "no expectation: judged against the pre-shift level"),
    ],
)
def test_level_returned_judges_each_bucket_against_its_own_expectation(
    observed: float, expected: float, back: bool, why: str
) -> None:
    from alerts.incidents import level_returned

    member = _signal(kind="level_shift", observed=150.0, expected=100.0)
    assert level_returned(member, observed, expected) is back, why


def test_level_returned_in_metric_units_when_the_expectation_is_not_positive() -> None:
    from alerts.incidents import level_returned

    member = _signal(kind="level_shift", observed=5.0, expected=-5.0)  # a +10 shift around zero
    assert level_returned(member, 6.0, 0.0) is False  # +6 over its own expectation: still shifted
    assert level_returned(member, 1.0, 0.0) is True  # +1: back


@pytest.mark.parametrize(
    ("kind", "observed", "active_after_3"),
    [
        # a spike (or dip) is never held open, whatever its series shows: observations are for shifts
        ("spike", 150.0, False),
        ("dip", 50.0, False),
        # a level shift at its new level is
        ("level_shift", 150.0, True),
        ("level_shift", 101.0, False),
    ],
)
def test_only_level_shifts_are_held_open_by_observations(
    kind: str, observed: float, active_after_3: bool
) -> None:
    from alerts.incidents import group_signals as _group
    from tests.alerts.factories import BUCKET as _B
    from tests.alerts.factories import T0 as _T0

    inc = _incident(_signal(kind=kind, observed=150.0, expected=100.0))
    for step in (1, 2, 3):
        (change,) = _group(
            [inc], [], _T0 + step * _B, observed={"reports/EU": observed}, expected={"reports/EU": 100.0}
        ).changes
        inc = change.incident
    assert inc.active is active_after_3


@pytest.mark.parametrize(
    ("kind", "quiet", "metric", "region", "joins"),
    [
        # a level shift held open for hours takes only signals of its own series
        ("level_shift", 12, "reports", "EU", True),
        ("level_shift", 12, "reports", "US", False),
        ("level_shift", 12, "bans", "EU", False),
        # within the join window it groups as any incident does
        ("level_shift", 2, "reports", "US", True),
        ("level_shift", 2, "bans", "EU", True),
    ],
)
def test_a_settled_level_shift_does_not_absorb_other_series(
    kind: str, quiet: int, metric: str, region: str, joins: bool
) -> None:
    from alerts.incidents import GroupingConfig as _Config
    from alerts.incidents import group_signals as _group
    from tests.alerts.factories import BUCKET as _B
    from tests.alerts.factories import T0 as _T0

    config = _Config(resolve_after_clean=3, join_window=4 * _B)
    inc = _incident(_signal(kind=kind, observed=150.0, expected=100.0))
    for step in range(1, quiet + 1):  # held open: its series stays at the new level
        (change,) = _group([inc], [], _T0 + step * _B, config=config, observed={"reports/EU": 150.0}).changes
        inc = change.incident
    assert inc.active
    now = _T0 + (quiet + 1) * _B
    new = _signal(metric=metric, region=region, kind="spike", score=9.0, start=now - _B, end=now)
    changes = _group([inc], [new], now, config=config, observed={"reports/EU": 150.0}).changes
    assert (len(changes) == 1) is joins
    assert (new.fingerprint in {s.fingerprint for s in changes[0].incident.signals}) is joins
