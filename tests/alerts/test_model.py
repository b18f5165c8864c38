"""Value objects: identity vs annotations, validation, JSON round trips."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from alerts.dedup import snapshot
from alerts.incidents import acknowledge
from alerts.model import (
    AlertDataError,
    AlertSignal,
    ChartData,
    FalsePositive,
    Incident,
    LifecycleEvent,
    LifecycleKind,
    Matcher,
    Notification,
    NotifyReason,
    RootCause,
    Silence,
)
from tests.alerts.factories import T0, chart, incident, notification, signal


def test_numbers_are_annotations_not_identity() -> None:
    a = signal(score=5.0, observed=150.0)
    b = signal(score=9.0, observed=400.0, volume=99.0)
    assert a.labels == b.labels == {"metric": "reports", "region": "EU", "kind": "spike"}
    assert a.fingerprint == b.fingerprint == "kind=spike,metric=reports,region=EU"
    assert signal(segment="category=x").labels["segment"] == "category=x"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"kind": "blip"}, "kind 'blip'"),
        ({"metric": ""}, "needs a metric"),
        ({"start": T0.replace(tzinfo=None)}, "naive"),
        ({"end": T0.astimezone(timezone(timedelta(hours=2)))}, "not UTC"),
        ({"end": T0 - timedelta(days=1)}, "before start"),
    ],
    ids=["unknown kind", "empty metric", "naive start", "non-UTC end", "end before start"],
)
def test_signal_validation_names_the_problem(changes: dict[str, object], message: str) -> None:
    with pytest.raises(AlertDataError, match=message):
        replace(signal(), **changes)  # type: ignore[arg-type]


def test_chart_lengths_must_agree() -> None:
    c = chart(4)
    with pytest.raises(AlertDataError, match="observed has 3 values but timestamps has 4"):
        replace(c, observed=c.observed[:3])


def test_incident_and_notification_round_trip_through_json() -> None:
    inc = incident(
        signal(causes=(RootCause("category=gambling", 0.6, mix=0.1, rate=0.5),), chart=chart(6)),
        signal("bans", segment="language=pt"),
    )
    inc = acknowledge(inc, "ana", T0).incident.with_notified(snapshot(inc, "slack", NotifyReason.FIRST, T0))
    note = replace(notification(inc, annotation="during launch"), attempts=2)
    again = Notification.from_dict(json.loads(json.dumps(note.to_dict())), attempts=2)
    assert again == note
    assert Incident.from_dict(json.loads(json.dumps(inc.to_dict()))) == inc
    assert again.incident.signals[0].chart == inc.signals[0].chart


def test_other_values_round_trip() -> None:
    silence = Silence(
        "s1", (Matcher("region", "E.*", regex=True, negate=True),), "why", "ana", T0, T0 + timedelta(1)
    )
    assert Silence.from_dict(json.loads(json.dumps(silence.to_dict()))) == silence
    event = LifecycleEvent("i", LifecycleKind.RESOLVED, T0, "bo", "by hand")
    assert LifecycleEvent.from_dict(json.loads(json.dumps(event.to_dict()))) == event
    sig = signal(kind="level_shift")
    assert AlertSignal.from_dict(sig.to_dict()) == sig
    fp = FalsePositive("i", "reports", "EU", T0, T0 + timedelta(hours=1), "@ana", T0)
    assert FalsePositive.from_dict(json.loads(json.dumps(fp.to_dict()))) == fp
    action = replace(notification(incident(signal()), NotifyReason.ACTION), note="Acknowledged by @ana.")
    assert Notification.from_dict(json.loads(json.dumps(action.to_dict()))) == action
    old = {k: v for k, v in action.to_dict().items() if k != "note"}
    assert Notification.from_dict(old).note is None  # rows written before `note` still load


def test_incident_views_derive_from_members() -> None:
    inc = incident(
        signal(
            "reports", "EU", score=4.0, change_pct=30.0, causes=(RootCause("a", 0.2), RootCause("b", 0.5))
        ),
        signal("reports", "US", score=-8.0, change_pct=-60.0, causes=(RootCause("a", 0.4),)),
    )
    assert inc.metrics == ("reports",) and inc.regions == ("EU", "US")
    assert inc.headline.region == "US"
    assert inc.magnitude == 60.0
    assert [(rc.segment, rc.share) for rc in inc.root_causes] == [("b", 0.5), ("a", 0.4)]
    assert inc.top_segments(1) == frozenset({"b"})
    assert inc.started_at == T0 - timedelta(minutes=15)


def test_chart_rejects_naive_timestamps() -> None:
    with pytest.raises(AlertDataError, match=r"timestamps\[0\]"):
        ChartData((datetime(2026, 1, 1),), (1.0,), (1.0,), (0.0,), (2.0,), (False,))


def test_non_finite_numbers_survive_strict_json() -> None:
    nan, inf = float("nan"), float("inf")
    c = chart(3)
    sig = replace(
        signal(change_pct=inf, causes=(RootCause("a", 0.5, mix=nan, rate=None),)),
        chart=replace(c, observed=(nan, 1.0, 2.0)),
    )
    text = json.dumps(sig.to_dict(), allow_nan=False)  # raises if a NaN/Infinity leaked
    back = AlertSignal.from_dict(json.loads(text))
    assert (
        back.change_pct == inf and back.chart is not None and back.chart.observed[0] != back.chart.observed[0]
    )
    assert back.root_causes[0].mix != back.root_causes[0].mix and back.root_causes[0].rate is None
