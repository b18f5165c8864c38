"""People acting on an incident from its Slack message: parse, authorise, apply. Pure; ``now`` is injected.

The living message carries an ``actions`` block (:func:`alerts.render.render_message`) whose elements have
the ``action_id`` s in :data:`ACTION_IDS` and carry the incident id in ``value`` (the snooze select's
options carry ``"<incident id>|<duration>"``, durations in :data:`SNOOZE_CHOICES`).

``parse_block_actions(payload) -> IncidentAction``
    A Slack ``block_actions`` payload (``type``, ``user{id,username}``, ``channel{id}``, ``message{ts}``,
    ``actions[{action_id, value, selected_option, action_ts}]``, ``response_url``, ``trigger_id``) into an
    :class:`IncidentAction`; anything else raises :class:`ActionPayloadError` naming what is wrong.

``authorise(action, policy, *, group_members={}) -> AuthDecision``
    Only configured Slack user ids, members of configured user groups (their members resolved beforehand
    through :class:`alerts.ports.UserGroupDirectory`, see :func:`resolve_group_members`) or anyone acting
    in a configured channel may act. An empty policy allows nobody (and says how to configure it). The
    refusal text is meant for an ephemeral reply.

``apply_action(incident, action, now) -> ActionOutcome``
    ``acknowledge`` (who, when), ``snooze`` (until ``action time + duration``; also returns one
    :class:`~alerts.model.Silence` per member metric/region so a re-opened incident stays quiet until then),
    ``resolve`` (by whom), ``false_positive`` (resolves if active, marks the incident, and returns one
    :class:`~alerts.model.FalsePositive` per member for the refit to exclude), ``investigate`` (no change;
    the reply carries the CLI commands). **Idempotent:** applying the same action again (Slack retries,
    double clicks) changes nothing and says why (``already_*``). The snooze end is computed from the
    action's own timestamp (``action_ts``) when Slack sends one, so a retried delivery gives the same end.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Self

from alerts.incidents import IncidentChange, IncidentStateError, acknowledge, resolve, snooze
from alerts.model import (
    AlertDataError,
    FalsePositive,
    Incident,
    IncidentState,
    LifecycleEvent,
    LifecycleKind,
    Matcher,
    Silence,
    ensure_utc,
)
from alerts.ports import UserGroupDirectory

__all__ = [
    "ACTION_IDS",
    "SNOOZE_CHOICES",
    "ActionKind",
    "ActionOutcome",
    "ActionPayloadError",
    "ActionPolicy",
    "ActionReason",
    "ActionRecord",
    "ActionResult",
    "AuthDecision",
    "AuthReason",
    "IncidentAction",
    "apply_action",
    "authorise",
    "false_positive_records",
    "parse_block_actions",
    "resolve_group_members",
]


class ActionPayloadError(ValueError):
    """A Slack interaction payload is not a livewatch incident action (names the field that is wrong)."""


class ActionKind(StrEnum):
    """What a person asked for."""

    ACKNOWLEDGE = "acknowledge"
    SNOOZE = "snooze"
    RESOLVE = "resolve"
    FALSE_POSITIVE = "false_positive"
    INVESTIGATE = "investigate"


#: ``action_id`` of each element in the message's actions block.
ACTION_IDS: dict[ActionKind, str] = {kind: f"livewatch_{kind.value}" for kind in ActionKind}
_KIND_BY_ID = {v: k for k, v in ACTION_IDS.items()}

#: Snooze durations offered by the select (``value`` suffix -> duration), in menu order.
SNOOZE_CHOICES: dict[str, timedelta] = {
    "1h": timedelta(hours=1),
    "4h": timedelta(hours=4),
    "24h": timedelta(hours=24),
}


@dataclass(frozen=True)
class IncidentAction:
    """One click, as plain data.

    Attributes:
        kind: What was asked.
        incident_id: From the element's ``value``.
        user_id: Slack user id of the person.
        user_name: Their Slack username ("" if Slack sent none).
        channel_id: Where the message is.
        message_ts: The living message's ts.
        response_url: Where an ephemeral reply can be posted.
        trigger_id: For opening modals (unused so far).
        action_ts: When the person clicked (Slack's ``action_ts``), if sent.
        snooze_for: The chosen snooze duration (``snooze`` only).
    """

    kind: ActionKind
    incident_id: str
    user_id: str
    user_name: str = ""
    channel_id: str = ""
    message_ts: str = ""
    response_url: str = ""
    trigger_id: str = ""
    action_ts: datetime | None = None
    snooze_for: timedelta | None = None

    @property
    def actor(self) -> str:
        """How the person is recorded on the incident: ``@username`` (or the user id)."""
        return f"@{self.user_name}" if self.user_name else self.user_id

    @property
    def key(self) -> str:
        """Identity of this click (Slack retries repeat it): incident, kind, user, action time, duration."""
        at = "" if self.action_ts is None else self.action_ts.isoformat()
        dur = "" if self.snooze_for is None else str(int(self.snooze_for.total_seconds()))
        return f"{self.incident_id}|{self.kind.value}|{self.user_id}|{at}|{dur}"


def _field(payload: Mapping[str, Any], *path: str) -> str:
    value: Any = payload
    for name in path:
        value = value.get(name) if isinstance(value, Mapping) else None
    return value if isinstance(value, str) else ""


def _action_time(raw: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(float(raw), tz=UTC) if raw not in (None, "") else None
    except (TypeError, ValueError):
        return None


def parse_block_actions(payload: Mapping[str, Any]) -> IncidentAction:
    """Read a Slack ``block_actions`` payload; see the module docstring.

    Raises:
        ActionPayloadError: not ``block_actions``, no user, no livewatch action, or a bad value.
    """
    if payload.get("type") != "block_actions":
        raise ActionPayloadError(f"interaction type {payload.get('type')!r} is not 'block_actions'")
    user_id = _field(payload, "user", "id")
    if not user_id:
        raise ActionPayloadError("block_actions payload has no user.id")
    actions = payload.get("actions")
    if not isinstance(actions, list) or not actions:
        raise ActionPayloadError("block_actions payload has no actions")
    element = next((a for a in actions if isinstance(a, Mapping) and a.get("action_id") in _KIND_BY_ID), None)
    if element is None:
        ids = [a.get("action_id") for a in actions if isinstance(a, Mapping)]
        raise ActionPayloadError(f"no livewatch action among action_ids {ids}")
    kind = _KIND_BY_ID[str(element["action_id"])]
    value = element.get("value")
    selected = element.get("selected_option")
    if isinstance(selected, Mapping) and isinstance(selected.get("value"), str):
        value = selected["value"]
    if not isinstance(value, str) or not value:
        raise ActionPayloadError(f"action {element['action_id']} carries no value (the incident id)")
    snooze_for = None
    incident_id = value
    if kind is ActionKind.SNOOZE:
        incident_id, _, choice = value.rpartition("|")
        if choice not in SNOOZE_CHOICES or not incident_id:
            raise ActionPayloadError(
                f"snooze value {value!r} is not '<incident id>|<one of {sorted(SNOOZE_CHOICES)}>'"
            )
        snooze_for = SNOOZE_CHOICES[choice]
    return IncidentAction(
        kind=kind,
        incident_id=incident_id,
        user_id=user_id,
        user_name=_field(payload, "user", "username") or _field(payload, "user", "name"),
        channel_id=_field(payload, "channel", "id") or _field(payload, "container", "channel_id"),
        message_ts=_field(payload, "message", "ts") or _field(payload, "container", "message_ts"),
        response_url=_field(payload, "response_url"),
        trigger_id=_field(payload, "trigger_id"),
        action_ts=_action_time(element.get("action_ts")),
        snooze_for=snooze_for,
    )


# -- authorisation ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ActionPolicy:
    """Who may act from Slack (any one rule suffices).

    Attributes:
        user_ids: Slack user ids (``U...``).
        usergroups: Slack user group ids (``S...``); members via ``usergroups.users.list``.
        channels: Slack channel ids (``C...``): anyone acting on a message in one of them may act.
    """

    user_ids: frozenset[str] = frozenset()
    usergroups: frozenset[str] = frozenset()
    channels: frozenset[str] = frozenset()

    @property
    def empty(self) -> bool:
        return not (self.user_ids or self.usergroups or self.channels)


class AuthReason(StrEnum):
    """Why a person may (or may not) act."""

    ALLOWED_USER = "allowed_user"
    ALLOWED_USERGROUP = "allowed_usergroup"
    ALLOWED_CHANNEL = "allowed_channel"
    NOT_ALLOWED = "not_allowed"
    NO_POLICY = "no_policy"


@dataclass(frozen=True)
class AuthDecision:
    """Whether to apply the action; ``message`` is the ephemeral refusal when not allowed."""

    allowed: bool
    reason: AuthReason
    message: str = ""


def resolve_group_members(
    policy: ActionPolicy, directory: UserGroupDirectory | None
) -> dict[str, frozenset[str]]:
    """Members of each of the policy's user groups (empty when no directory is given)."""
    if directory is None:
        return {}
    return {group: directory.members(group) for group in sorted(policy.usergroups)}


def authorise(
    action: IncidentAction,
    policy: ActionPolicy,
    *,
    group_members: Mapping[str, Collection[str]] | None = None,
) -> AuthDecision:
    """May ``action.user_id`` act? See the module docstring. Pure."""
    if policy.empty:
        return AuthDecision(
            False,
            AuthReason.NO_POLICY,
            "livewatch does not accept actions from Slack yet: configure the allowed users, user groups "
            "or channels (alerts.slack.interactivity).",
        )
    if action.user_id in policy.user_ids:
        return AuthDecision(True, AuthReason.ALLOWED_USER)
    members = group_members or {}
    if any(action.user_id in members.get(group, ()) for group in policy.usergroups):
        return AuthDecision(True, AuthReason.ALLOWED_USERGROUP)
    if action.channel_id and action.channel_id in policy.channels:
        return AuthDecision(True, AuthReason.ALLOWED_CHANNEL)
    return AuthDecision(
        False,
        AuthReason.NOT_ALLOWED,
        f"Sorry, you are not allowed to {action.kind.value.replace('_', ' ')} livewatch incidents; ask an "
        "on-call lead to add you to the allowed users or user groups.",
    )


# -- applying ---------------------------------------------------------------------------------------------
class ActionReason(StrEnum):
    """What :func:`apply_action` did (``changed`` tells whether the incident changed)."""

    ACKNOWLEDGED = "acknowledged"
    ALREADY_ACKNOWLEDGED = "already_acknowledged"
    SNOOZED = "snoozed"
    ALREADY_SNOOZED = "already_snoozed"
    SNOOZE_EXPIRED = "snooze_expired"
    RESOLVED = "resolved"
    ALREADY_RESOLVED = "already_resolved"
    MARKED_FALSE_POSITIVE = "marked_false_positive"
    ALREADY_FALSE_POSITIVE = "already_false_positive"
    INCIDENT_CLOSED = "incident_closed"
    INVESTIGATE = "investigate"

    @property
    def changed(self) -> bool:
        return self in (
            ActionReason.ACKNOWLEDGED,
            ActionReason.SNOOZED,
            ActionReason.RESOLVED,
            ActionReason.MARKED_FALSE_POSITIVE,
        )


@dataclass(frozen=True)
class ActionOutcome:
    """The incident after the action, what happened, and what else to store.

    Attributes:
        incident: New state (the same object when nothing changed).
        previous: State before.
        events: Lifecycle events to record.
        reason: What happened.
        message: One human sentence (ephemeral reply and thread note).
        silences: Snooze mutes to add (one per member metric/region).
        false_positives: Records for the refit to exclude.
    """

    incident: Incident
    previous: Incident
    events: tuple[LifecycleEvent, ...]
    reason: ActionReason
    message: str
    silences: tuple[Silence, ...] = ()
    false_positives: tuple[FalsePositive, ...] = ()

    @property
    def change(self) -> IncidentChange:
        return IncidentChange(self.incident, self.previous, self.events)


def _same(incident: Incident, reason: ActionReason, message: str) -> ActionOutcome:
    return ActionOutcome(incident, incident, (), reason, message)


def _members(incident: Incident) -> list[tuple[str, str]]:
    return sorted({(s.metric, s.region) for s in incident.signals})


def _snooze_silences(incident: Incident, actor: str, until: datetime, now: datetime) -> tuple[Silence, ...]:
    return tuple(
        Silence(
            id=f"snooze:{incident.id}:{metric}/{region}",
            matchers=(Matcher("metric", metric), Matcher("region", region)),
            reason=f"incident {incident.id} snoozed from Slack",
            created_by=actor,
            created_at=now,
            expires_at=until,
        )
        for metric, region in _members(incident)
    )


def false_positive_records(incident: Incident, actor: str, now: datetime) -> tuple[FalsePositive, ...]:
    """One :class:`FalsePositive` per member (metric, region), spanning the incident's buckets."""
    start = incident.started_at
    end = max(
        [incident.resolved_at or incident.last_signal_at, incident.last_signal_at]
        + [s.end for s in incident.signals]
    )
    return tuple(
        FalsePositive(incident.id, metric, region, start, end, actor, now)
        for metric, region in _members(incident)
    )


def apply_action(incident: Incident, action: IncidentAction, now: datetime) -> ActionOutcome:
    """Apply ``action`` to ``incident``; see the module docstring. Pure and idempotent."""
    ensure_utc(now, what="apply_action(now)")
    if action.incident_id != incident.id:
        raise AlertDataError(f"action for incident {action.incident_id!r} applied to {incident.id!r}")
    actor = action.actor
    kind = action.kind
    if kind is ActionKind.INVESTIGATE:
        commands = sorted({s.investigate for s in incident.signals if s.investigate})
        return _same(incident, ActionReason.INVESTIGATE, "Investigate with: " + "; ".join(commands))
    if incident.false_positive:
        return _same(
            incident,
            ActionReason.ALREADY_FALSE_POSITIVE,
            f"Already marked not an incident by {incident.false_positive_by}.",
        )
    if kind is ActionKind.FALSE_POSITIVE:
        change = resolve(incident, actor, now) if incident.active else None
        base = change.incident if change else incident
        marked = base.with_changes(
            false_positive=True, false_positive_by=actor, false_positive_at=now, updated_at=now
        )
        events = (
            *(change.events if change else ()),
            LifecycleEvent(incident.id, LifecycleKind.FALSE_POSITIVE, now, actor, "marked from Slack"),
        )
        return ActionOutcome(
            marked,
            incident,
            events,
            ActionReason.MARKED_FALSE_POSITIVE,
            f"Marked not an incident by {actor}; its buckets are left out of the next refit.",
            false_positives=false_positive_records(marked, actor, now),
        )
    if not incident.active:
        if kind is ActionKind.RESOLVE:
            return _same(
                incident, ActionReason.ALREADY_RESOLVED, f"Already resolved by {incident.resolved_by}."
            )
        return _same(
            incident,
            ActionReason.INCIDENT_CLOSED,
            f"Incident {incident.id} is already resolved; nothing to do.",
        )
    if kind is ActionKind.RESOLVE:
        change = resolve(incident, actor, now)
        return ActionOutcome(
            change.incident, incident, change.events, ActionReason.RESOLVED, f"Resolved by {actor}."
        )
    if kind is ActionKind.ACKNOWLEDGE:
        if incident.state is IncidentState.ACKNOWLEDGED:
            return _same(
                incident,
                ActionReason.ALREADY_ACKNOWLEDGED,
                f"Already acknowledged by {incident.acknowledged_by}.",
            )
        change = acknowledge(incident, actor, now)
        return ActionOutcome(
            change.incident, incident, change.events, ActionReason.ACKNOWLEDGED, f"Acknowledged by {actor}."
        )
    # snooze
    if action.snooze_for is None:
        raise AlertDataError(f"snooze action on {incident.id} has no duration")
    until = (action.action_ts or now) + action.snooze_for
    if incident.state is IncidentState.SNOOZED and incident.snoozed_until == until:
        return _same(
            incident, ActionReason.ALREADY_SNOOZED, f"Already snoozed until {until:%Y-%m-%d %H:%M} UTC."
        )
    try:
        change = snooze(incident, actor, until, now)
    except IncidentStateError:
        return _same(
            incident, ActionReason.SNOOZE_EXPIRED, "That snooze would already have ended; not applied."
        )
    return ActionOutcome(
        change.incident,
        incident,
        change.events,
        ActionReason.SNOOZED,
        f"Snoozed by {actor} until {until:%Y-%m-%d %H:%M} UTC.",
        silences=_snooze_silences(incident, actor, until, now),
    )


# -- results and records ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ActionResult:
    """What the interactivity transport tells the person (ephemerally) after :func:`handle` ran.

    Attributes:
        ok: The action was accepted (applied, or already in effect).
        reason: ``AuthReason`` / ``ActionReason`` value, or ``"error"``.
        text: The ephemeral reply.
        notification_ids: Notifications enqueued (message edit + thread note).
    """

    ok: bool
    reason: str
    text: str
    notification_ids: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class ActionRecord:
    """One accepted or refused action, for :class:`alerts.ports.ActionLog`."""

    key: str
    incident_id: str
    kind: ActionKind
    user_id: str
    actor: str
    at: datetime
    reason: str
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "incident_id": self.incident_id,
            "kind": self.kind.value,
            "user_id": self.user_id,
            "actor": self.actor,
            "at": self.at.isoformat(),
            "reason": self.reason,
            "detail": self.detail,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            key=data["key"],
            incident_id=data["incident_id"],
            kind=ActionKind(data["kind"]),
            user_id=data["user_id"],
            actor=data["actor"],
            at=datetime.fromisoformat(data["at"]),
            reason=data["reason"],
            detail=data.get("detail", ""),
        )
