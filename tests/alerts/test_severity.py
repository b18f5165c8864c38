"""Severity from score and volume at stake (table-driven)."""

from __future__ import annotations

import math

import pytest

from alerts.model import AlertDataError, Severity
from alerts.severity import SeverityPolicy, SeverityRule, incident_severity, severity_of
from tests.alerts.factories import signal

CASES = [
    # (score, volume, expected, what it proves)
    (9.0, 5_000.0, Severity.CRITICAL, "huge score on real volume is critical"),
    (-9.0, 5_000.0, Severity.CRITICAL, "dips count by |score|"),
    (9.0, 50.0, Severity.INFO, "a loud score on a handful of events is not an emergency"),
    (5.5, 25_000.0, Severity.CRITICAL, "a moderate score over a huge volume is critical"),
    (5.5, 1_500.0, Severity.WARNING, "moderate score, moderate volume: warning"),
    (3.5, 6_000.0, Severity.WARNING, "mild shift on large volume warns"),
    (3.5, 500.0, Severity.INFO, "mild shift on small volume is info"),
    (8.0, 1_000.0, Severity.CRITICAL, "thresholds are inclusive"),
    (math.nan, 10_000.0, Severity.INFO, "a NaN score never escalates"),
    (9.0, math.nan, Severity.INFO, "a NaN volume never escalates"),
]


@pytest.mark.parametrize(("score", "volume", "expected", "why"), CASES, ids=[c[3] for c in CASES])
def test_severity_table(score: float, volume: float, expected: Severity, why: str) -> None:
    assert severity_of(score, volume) is expected, why


def test_custom_policy_first_matching_rule_wins() -> None:
    policy = SeverityPolicy((SeverityRule(Severity.WARNING, 1.0), SeverityRule(Severity.CRITICAL, 1.0)))
    assert severity_of(2.0, 0.0, policy) is Severity.WARNING


def test_incident_severity_is_the_worst_member() -> None:
    members = [signal(score=3.0, volume=10.0), signal("bans", score=9.0, volume=5_000.0)]
    assert incident_severity(members) is Severity.CRITICAL
    assert incident_severity([]) is Severity.INFO


def test_negative_thresholds_are_rejected() -> None:
    with pytest.raises(AlertDataError, match="min_score"):
        SeverityRule(Severity.WARNING, -1.0)
