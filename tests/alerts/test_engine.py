"""process(): group -> inhibit -> severity -> route -> mute -> dedup -> enqueue, end to end in memory."""

from __future__ import annotations

from datetime import timedelta

import pytest

from alerts.engine import (
    AlertRepos,
    IncidentNotFoundError,
    acknowledge_incident,
    process,
    resolve_incident,
    snooze_incident,
)
from alerts.model import IncidentState, LifecycleKind, Matcher, NotifyReason, Silence
from alerts.muting import MaintenanceWindow
from alerts.routing import Route
from tests.alerts.factories import BUCKET, T0, signal

H = timedelta(hours=1)


def _reasons(result: object) -> list[tuple[str, NotifyReason]]:
    return [(n.receiver, n.reason) for n in result.notifications]  # type: ignore[attr-defined]


def test_incident_lifecycle_notifies_with_reasons(repos: AlertRepos, routes: Route) -> None:
    first = process([signal("reports", "EU")], T0, repos=repos, routes=routes)
    assert _reasons(first) == [("slack", NotifyReason.FIRST)]
    (inc,) = first.incidents

    same = process([signal("reports", "EU")], T0 + BUCKET, repos=repos, routes=routes)
    assert same.notifications == ()
    assert [d.reason for d in same.decisions] == [NotifyReason.NOTHING_NEW]

    critical = signal("reports", "US", score=9.0, volume=50_000.0)
    spread = process([signal("reports", "EU"), critical], T0 + 2 * BUCKET, repos=repos, routes=routes)
    assert _reasons(spread) == [("oncall", NotifyReason.FIRST), ("slack", NotifyReason.SPREAD)]
    assert spread.decisions[0].route_path == ("root", "oncall")

    for step in (3, 4):
        assert process([], T0 + step * BUCKET, repos=repos, routes=routes).notifications == ()
    done = process([], T0 + 5 * BUCKET, repos=repos, routes=routes)
    assert sorted(_reasons(done)) == [("oncall", NotifyReason.RESOLVED), ("slack", NotifyReason.RESOLVED)]
    assert repos.incidents.list_active() == []

    kinds = [e.kind for e in repos.incidents.list_events(inc.id)]
    assert kinds == [
        LifecycleKind.OPENED,
        LifecycleKind.NOTIFIED,
        LifecycleKind.UPDATED,
        LifecycleKind.NOTIFIED,
        LifecycleKind.NOTIFIED,
        LifecycleKind.RESOLVED,
        LifecycleKind.NOTIFIED,
        LifecycleKind.NOTIFIED,
    ]
    assert len(repos.outbox.pending()) == 5


def test_rerunning_a_bucket_enqueues_nothing_twice(repos: AlertRepos, routes: Route) -> None:
    process([signal()], T0, repos=repos, routes=routes)
    again = process([signal()], T0, repos=repos, routes=routes)
    assert again.notifications == () and len(repos.outbox.entries()) == 1


def test_repeat_interval_reminds_and_acknowledgement_stops_reminders(
    repos: AlertRepos, routes: Route
) -> None:
    (inc,) = process([signal()], T0, repos=repos, routes=routes).incidents
    reminder = process([signal()], T0 + 4 * H, repos=repos, routes=routes)
    assert _reasons(reminder) == [("slack", NotifyReason.REPEAT_ELAPSED)]

    acked = acknowledge_incident(repos, inc.id, "ana", T0 + 4 * H)
    assert acked.state is IncidentState.ACKNOWLEDGED
    quiet = process([signal()], T0 + 9 * H, repos=repos, routes=routes)
    assert quiet.notifications == () and quiet.decisions[0].reason is NotifyReason.ACKNOWLEDGED
    grown = process([signal(), signal("bans")], T0 + 10 * H, repos=repos, routes=routes)
    assert _reasons(grown) == [("slack", NotifyReason.NEW_METRIC_JOINED)]


def test_snooze_mutes_until_it_ends(repos: AlertRepos, routes: Route) -> None:
    (inc,) = process([signal()], T0, repos=repos, routes=routes).incidents
    snooze_incident(repos, inc.id, "bo", T0 + 2 * H, T0)
    during = process([signal(), signal(region="US")], T0 + H, repos=repos, routes=routes)
    assert during.notifications == () and during.decisions[0].reason is NotifyReason.SNOOZED
    after = process([signal(), signal(region="US")], T0 + 2 * H, repos=repos, routes=routes)
    assert _reasons(after) == [("slack", NotifyReason.SPREAD)]


def test_silence_mutes_and_the_first_message_after_it_is_first(repos: AlertRepos, routes: Route) -> None:
    repos.silences.add(Silence("s1", (Matcher("metric", "reports"),), "bot wave", "ana", T0 - H, T0 + H))
    muted = process([signal()], T0, repos=repos, routes=routes)
    assert muted.notifications == ()
    (decision,) = muted.decisions
    assert decision.reason is NotifyReason.FIRST and decision.muted_by is not None
    assert decision.muted_by.startswith("silence s1 (metric=reports) by ana")
    after = process([signal()], T0 + H, repos=repos, routes=routes)
    assert _reasons(after) == [("slack", NotifyReason.FIRST)]


def test_resolution_of_an_announced_incident_passes_a_silence(repos: AlertRepos, routes: Route) -> None:
    process([signal()], T0, repos=repos, routes=routes)
    repos.silences.add(Silence("s1", (Matcher("metric", "reports"),), "noise", "ana", T0, T0 + 9 * H))
    for step in (1, 2):
        process([], T0 + step * BUCKET, repos=repos, routes=routes)
    done = process([], T0 + 3 * BUCKET, repos=repos, routes=routes)
    assert _reasons(done) == [("slack", NotifyReason.RESOLVED)]


def test_annotating_window_travels_with_the_notification(repos: AlertRepos, routes: Route) -> None:
    launch = MaintenanceWindow(
        "policy launch", T0 - H, T0 + H, (Matcher("metric", "reports"),), suppress=False
    )
    (note,) = process([signal()], T0, repos=repos, routes=routes, windows=[launch]).notifications
    assert note.annotation == "during policy launch (until 2026-02-02T13:00:00+00:00)"


def test_segment_noise_is_absorbed_not_notified(repos: AlertRepos, routes: Route) -> None:
    result = process(
        [signal(), signal(segment="category=gambling"), signal(segment="language=pt")],
        T0,
        repos=repos,
        routes=routes,
    )
    assert len(result.notifications) == 1 and len(result.absorbed) == 2
    assert result.incidents[0].absorbed == 2


def test_manual_resolution_notifies_and_unknown_ids_are_named(repos: AlertRepos, routes: Route) -> None:
    (inc,) = process([signal()], T0, repos=repos, routes=routes).incidents
    done = resolve_incident(repos, inc.id, "cy", T0 + H, routes=routes)
    assert _reasons(done) == [("slack", NotifyReason.RESOLVED)]
    assert done.notifications[0].incident.resolved_by == "cy"
    with pytest.raises(IncidentNotFoundError, match="no incident 'nope'"):
        acknowledge_incident(repos, "nope", "ana", T0)
