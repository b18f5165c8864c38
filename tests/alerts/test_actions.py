"""People acting from Slack: parsing block_actions, authorisation, applying (idempotent), the engine path."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from alerts.actions import (
    ACTION_IDS,
    ActionKind,
    ActionPayloadError,
    ActionPolicy,
    ActionReason,
    AuthReason,
    IncidentAction,
    apply_action,
    authorise,
    parse_block_actions,
    resolve_group_members,
)
from alerts.engine import AlertRepos, handle_action, process
from alerts.incidents import acknowledge, resolve
from alerts.model import Incident, IncidentState, LifecycleKind, NotifyReason
from alerts.outbox import deliver_pending
from alerts.routing import Route
from alerts.testing import (
    InMemoryActionLog,
    InMemoryFalsePositives,
    InMemoryIncidentRepository,
    InMemoryOutbox,
    InMemorySilenceRepository,
    RecordingSink,
    StaticUserGroups,
)
from tests.alerts.factories import BUCKET, T0, incident, signal

ACTION_TS = T0 + timedelta(minutes=3)


def payload(
    action_id: str,
    value: str | None = None,
    *,
    selected: str | None = None,
    user: str = "U1",
    ts: str = "1770033780.000100",
) -> dict[str, Any]:
    """A block_actions payload shaped as Slack sends it."""
    element: dict[str, Any] = {"action_id": action_id, "block_id": "livewatch_actions", "action_ts": ts}
    if value is not None:
        element["value"] = value
    if selected is not None:
        element["selected_option"] = {"text": {"type": "plain_text", "text": "x"}, "value": selected}
        element["type"] = "static_select"
    return {
        "type": "block_actions",
        "user": {"id": user, "username": "ana", "team_id": "T1"},
        "api_app_id": "A1",
        "team": {"id": "T1"},
        "channel": {"id": "C00000001", "name": "tns-alerts"},
        "message": {"ts": "1700000001.000001", "type": "message"},
        "container": {"type": "message", "message_ts": "1700000001.000001", "channel_id": "C00000001"},
        "response_url": "https://hooks.slack.test/actions/T1/1/x",
        "trigger_id": "123.456",
        "actions": [element],
    }


INC = incident(signal())


def act(kind: ActionKind, *, snooze: str | None = None, user: str = "U1") -> IncidentAction:
    if kind is ActionKind.SNOOZE:
        return parse_block_actions(payload(ACTION_IDS[kind], selected=f"{INC.id}|{snooze}", user=user))
    return parse_block_actions(payload(ACTION_IDS[kind], INC.id, user=user))


# -- parsing ---------------------------------------------------------------------------------------------
def test_parse_button() -> None:
    action = act(ActionKind.ACKNOWLEDGE)
    assert action == IncidentAction(
        kind=ActionKind.ACKNOWLEDGE,
        incident_id=INC.id,
        user_id="U1",
        user_name="ana",
        channel_id="C00000001",
        message_ts="1700000001.000001",
        response_url="https://hooks.slack.test/actions/T1/1/x",
        trigger_id="123.456",
        action_ts=ACTION_TS.replace(microsecond=100),
    )
    assert action.actor == "@ana"


def test_parse_snooze_select_carries_the_duration() -> None:
    action = act(ActionKind.SNOOZE, snooze="4h")
    assert (action.incident_id, action.snooze_for) == (INC.id, timedelta(hours=4))


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        ({"type": "view_submission"}, "is not 'block_actions'"),
        ({"user": {}}, "no user.id"),
        ({"actions": []}, "no actions"),
        ({"actions": [{"action_id": "other_app_button", "value": "x"}]}, "no livewatch action"),
        ({"actions": [{"action_id": "livewatch_resolve"}]}, "carries no value"),
        ({"actions": [{"action_id": "livewatch_snooze", "selected_option": {"value": "i|2h"}}]}, "is not"),
    ],
    ids=["not_block_actions", "no_user", "no_actions", "foreign_action", "no_value", "bad_duration"],
)
def test_parse_rejects_with_a_named_reason(broken: dict[str, Any], message: str) -> None:
    with pytest.raises(ActionPayloadError, match=message):
        parse_block_actions({**payload("livewatch_resolve", "i"), **broken})


# -- authorisation ---------------------------------------------------------------------------------------
POLICY = ActionPolicy(user_ids=frozenset({"U1"}), usergroups=frozenset({"S1"}), channels=frozenset({"C9"}))
AUTH_CASES = [
    # (user, channel, policy) -> (allowed, reason)   # what it proves
    ("U1", "C00000001", POLICY, True, AuthReason.ALLOWED_USER),  # a listed user
    ("U2", "C00000001", POLICY, True, AuthReason.ALLOWED_USERGROUP),  # a member of a listed group
    ("U3", "C9", POLICY, True, AuthReason.ALLOWED_CHANNEL),  # anyone in a listed channel
    ("U3", "C00000001", POLICY, False, AuthReason.NOT_ALLOWED),  # nobody else
    ("U1", "C00000001", ActionPolicy(), False, AuthReason.NO_POLICY),  # no policy: nobody, says how
]


@pytest.mark.parametrize(("user", "channel", "policy", "allowed", "reason"), AUTH_CASES)
def test_authorise(user: str, channel: str, policy: ActionPolicy, allowed: bool, reason: AuthReason) -> None:
    action = replace(act(ActionKind.RESOLVE, user=user), channel_id=channel)
    members = resolve_group_members(policy, StaticUserGroups({"S1": ["U2"]}))
    decision = authorise(action, policy, group_members=members)
    assert (decision.allowed, decision.reason) == (allowed, reason)
    assert bool(decision.message) != allowed  # refusals say why (ephemeral text)


# -- applying --------------------------------------------------------------------------------------------
NOW = T0 + timedelta(minutes=5)
ACKED = acknowledge(INC, "@bo", T0).incident
RESOLVED = resolve(INC, "livewatch", T0).incident
FP = RESOLVED.with_changes(false_positive=True, false_positive_by="@cy", false_positive_at=T0)

APPLY_CASES = [
    # (incident, action) -> (reason, state after)   # what it proves
    (INC, act(ActionKind.ACKNOWLEDGE), ActionReason.ACKNOWLEDGED, IncidentState.ACKNOWLEDGED),
    (ACKED, act(ActionKind.ACKNOWLEDGE), ActionReason.ALREADY_ACKNOWLEDGED, IncidentState.ACKNOWLEDGED),
    (INC, act(ActionKind.SNOOZE, snooze="1h"), ActionReason.SNOOZED, IncidentState.SNOOZED),
    (INC, act(ActionKind.RESOLVE), ActionReason.RESOLVED, IncidentState.RESOLVED),
    (RESOLVED, act(ActionKind.RESOLVE), ActionReason.ALREADY_RESOLVED, IncidentState.RESOLVED),
    (RESOLVED, act(ActionKind.ACKNOWLEDGE), ActionReason.INCIDENT_CLOSED, IncidentState.RESOLVED),
    (INC, act(ActionKind.FALSE_POSITIVE), ActionReason.MARKED_FALSE_POSITIVE, IncidentState.RESOLVED),
    (RESOLVED, act(ActionKind.FALSE_POSITIVE), ActionReason.MARKED_FALSE_POSITIVE, IncidentState.RESOLVED),
    (FP, act(ActionKind.FALSE_POSITIVE), ActionReason.ALREADY_FALSE_POSITIVE, IncidentState.RESOLVED),
    (FP, act(ActionKind.RESOLVE), ActionReason.ALREADY_FALSE_POSITIVE, IncidentState.RESOLVED),
    (INC, act(ActionKind.INVESTIGATE), ActionReason.INVESTIGATE, IncidentState.OPEN),
]


@pytest.mark.parametrize(("inc", "action", "reason", "state"), APPLY_CASES)
def test_apply_action(
    inc: Incident, action: IncidentAction, reason: ActionReason, state: IncidentState
) -> None:
    outcome = apply_action(inc, action, NOW)
    assert (outcome.reason, outcome.incident.state) == (reason, state)
    assert (outcome.incident is inc) != reason.changed
    assert bool(outcome.events) == reason.changed


@pytest.mark.parametrize("kind", [k for k in ActionKind if k is not ActionKind.INVESTIGATE])
def test_the_same_action_twice_changes_nothing_the_second_time(kind: ActionKind) -> None:
    action = act(kind, snooze="4h")
    once = apply_action(INC, action, NOW)
    twice = apply_action(once.incident, action, NOW + timedelta(seconds=30))  # Slack retried
    assert once.reason.changed and not twice.reason.changed
    assert twice.incident is once.incident and twice.events == ()
    assert twice.reason.value.startswith("already_")


def test_snooze_ends_at_click_time_plus_duration_and_mutes_each_member() -> None:
    inc = incident(signal(), signal(region="US"))
    action = replace(act(ActionKind.SNOOZE, snooze="24h"), incident_id=inc.id)
    outcome = apply_action(inc, action, NOW)
    until = action.action_ts + timedelta(hours=24)  # type: ignore[operator]
    assert outcome.incident.snoozed_until == until and outcome.incident.snoozed_by == "@ana"
    assert [(s.matchers[1].value, s.expires_at) for s in outcome.silences] == [("EU", until), ("US", until)]


def test_false_positive_records_each_member_for_the_refit() -> None:
    inc = incident(signal(), signal("violations"))
    outcome = apply_action(inc, replace(act(ActionKind.FALSE_POSITIVE), incident_id=inc.id), NOW)
    assert outcome.incident.false_positive and outcome.incident.false_positive_by == "@ana"
    assert [(f.metric, f.region, f.start, f.end) for f in outcome.false_positives] == [
        ("reports", "EU", T0 - BUCKET, NOW),
        ("violations", "EU", T0 - BUCKET, NOW),
    ]
    assert [e.kind for e in outcome.events] == [LifecycleKind.RESOLVED, LifecycleKind.FALSE_POSITIVE]


def test_model_round_trip_keeps_the_new_fields() -> None:
    marked = apply_action(INC, act(ActionKind.FALSE_POSITIVE), NOW).incident
    assert Incident.from_dict(marked.to_dict()) == marked
    old = {k: v for k, v in INC.to_dict().items() if not k.startswith("false_positive")}
    assert Incident.from_dict(old) == INC  # JSON written before these fields still loads


# -- the engine path -------------------------------------------------------------------------------------
ROUTE = Route(receiver="slack", channel="#tns-alerts", repeat_interval=timedelta(hours=4))


@pytest.fixture
def world() -> AlertRepos:
    repos = AlertRepos(
        InMemoryIncidentRepository(),
        InMemoryOutbox(),
        InMemorySilenceRepository(),
        actions=InMemoryActionLog(),
        false_positives=InMemoryFalsePositives(),
    )
    process([signal()], T0, repos=repos, routes=ROUTE)
    deliver_pending(repos.outbox, {"slack": RecordingSink()}, T0)
    return repos


def _only_incident(repos: AlertRepos) -> Incident:
    (inc,) = repos.incidents.list_incidents()
    return inc


def _handle(repos: AlertRepos, action: IncidentAction, now: Any = NOW, policy: ActionPolicy = POLICY) -> Any:
    return handle_action(action, now, repos=repos, routes=ROUTE, policy=policy)


def test_acknowledge_from_slack_edits_the_message_and_notes_it_once(world: AlertRepos) -> None:
    inc = _only_incident(world)
    action = replace(act(ActionKind.ACKNOWLEDGE), incident_id=inc.id)
    result = _handle(world, action)
    assert result.ok and result.reason == "acknowledged" and result.text == "Acknowledged by @ana."
    (note,) = world.outbox.pending()
    assert (note.reason, note.note, note.id) == (
        NotifyReason.ACTION,
        "Acknowledged by @ana.",
        result.notification_ids[0],
    )
    again = _handle(world, action, NOW + timedelta(seconds=20))  # Slack retried the delivery
    assert again.ok and again.reason == "already_acknowledged" and again.notification_ids == ()
    assert len(world.outbox.pending()) == 1
    assert _only_incident(world).acknowledged_by == "@ana"
    assert world.actions is not None and len(world.actions.list_actions(inc.id)) == 1


def test_resolve_and_false_positive_go_through_the_resolution_path(world: AlertRepos) -> None:
    inc = _only_incident(world)
    result = _handle(world, replace(act(ActionKind.FALSE_POSITIVE), incident_id=inc.id))
    assert result.reason == "marked_false_positive"
    (note,) = world.outbox.pending()
    assert note.reason is NotifyReason.RESOLVED and note.incident.false_positive
    assert world.false_positives is not None
    assert [fp.incident_id for fp in world.false_positives.list_false_positives()] == [inc.id]


def test_snooze_adds_the_silences(world: AlertRepos) -> None:
    inc = _only_incident(world)
    _handle(world, replace(act(ActionKind.SNOOZE, snooze="1h"), incident_id=inc.id))
    assert [s.id for s in world.silences.list_silences(active_at=NOW)] == [f"snooze:{inc.id}:reports/EU"]


def test_refused_and_unknown_actions_change_nothing(world: AlertRepos) -> None:
    inc = _only_incident(world)
    refused = _handle(world, replace(act(ActionKind.RESOLVE, user="U7"), incident_id=inc.id))
    assert not refused.ok and refused.reason == "not_allowed" and "not allowed" in refused.text
    unknown = _handle(world, replace(act(ActionKind.RESOLVE), incident_id="nope"))
    assert not unknown.ok and unknown.reason == "unknown_incident"
    assert _only_incident(world) == inc and world.outbox.pending() == []
