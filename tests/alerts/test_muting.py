"""Silences and maintenance/event windows (table-driven)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from alerts.model import AlertDataError, Matcher, Silence
from alerts.muting import MaintenanceWindow, MuteDecision, is_incident_muted, is_muted
from tests.alerts.factories import T0, incident, signal

H = timedelta(hours=1)
SIL_EU = Silence(
    "s1", (Matcher("metric", "reports"), Matcher("region", "EU")), "known bot wave", "ana", T0 - H, T0 + H
)
SIL_OLD = Silence("s2", (Matcher("metric", "reports"),), "expired", "bo", T0 - 3 * H, T0 - H)
LAUNCH = MaintenanceWindow(
    "policy launch", T0 - H, T0 + H, (Matcher("metric", "violations"),), suppress=False
)
MAINT = MaintenanceWindow("db maintenance", T0 - H, T0 + H, (Matcher("region", "US"),), suppress=True)
LIVE = MaintenanceWindow("world cup final", T0 + H, T0 + 3 * H)

REPORTS_EU = {"metric": "reports", "region": "EU", "kind": "spike"}
CASES = [
    # (labels, silences, windows, now, muted, reason fragment, annotations, what it proves)
    (REPORTS_EU, [SIL_EU], [], T0, True, "silence s1", (), "an active matching silence mutes, naming itself"),
    (REPORTS_EU, [SIL_EU], [], T0 + H, False, None, (), "expires_at is exclusive"),
    (REPORTS_EU, [SIL_EU], [], T0 - 2 * H, False, None, (), "a silence does nothing before it was created"),
    ({**REPORTS_EU, "region": "US"}, [SIL_EU], [], T0, False, None, (), "all matchers must match"),
    (REPORTS_EU, [SIL_OLD], [], T0, False, None, (), "an expired silence does nothing"),
    (
        {"metric": "bans", "region": "US"},
        [],
        [MAINT],
        T0,
        True,
        "window db maintenance",
        (),
        "suppressing window",
    ),
    (
        {"metric": "violations", "region": "EU"},
        [],
        [LAUNCH],
        T0,
        False,
        None,
        ("during policy launch (until 2026-02-02T13:00:00+00:00)",),
        "an annotate-only window never mutes but explains",
    ),
    (REPORTS_EU, [], [LIVE], T0, False, None, (), "a window in the future does nothing"),
    (REPORTS_EU, [], [LIVE], T0 + 2 * H, True, "world cup final", (), "a window without matchers covers all"),
]


@pytest.mark.parametrize(
    ("labels", "silences", "windows", "now", "muted", "reason", "notes", "why"),
    CASES,
    ids=[c[-1] for c in CASES],
)
def test_is_muted_table(
    labels: dict[str, str],
    silences: list[Silence],
    windows: list[MaintenanceWindow],
    now: object,
    muted: bool,
    reason: str | None,
    notes: tuple[str, ...],
    why: str,
) -> None:
    decision = is_muted(labels, silences, windows, now)  # type: ignore[arg-type]
    assert decision.muted is muted, why
    if reason is None:
        assert decision.reason is None
    else:
        assert decision.reason is not None and reason in decision.reason
    assert decision.annotations == notes


def test_incident_is_muted_only_when_every_member_is() -> None:
    both = incident(signal(region="EU"), signal(region="US"))
    assert is_incident_muted(both, [SIL_EU], [], T0) == MuteDecision(False, None, ())
    eu_only = incident(signal(region="EU"))
    assert is_incident_muted(eu_only, [SIL_EU], [], T0).muted


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Silence("x", (), "r", "ana", T0, T0 + H), "no matchers"),
        (lambda: Silence("x", (Matcher("a", "b"),), "r", "", T0, T0 + H), "created_by"),
        (lambda: MaintenanceWindow("w", T0, T0 - H), "ends"),
        (lambda: Matcher("metric", "(", regex=True), "not a valid regex"),
    ],
    ids=["silence without matchers", "silence without author", "window backwards", "bad regex"],
)
def test_bad_mutes_are_rejected(build: object, message: str) -> None:
    with pytest.raises(AlertDataError, match=message):
        build()  # type: ignore[operator]
