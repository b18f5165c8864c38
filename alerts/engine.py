"""The alerting pipeline the daemon calls once per evaluated bucket.

``process(signals, now, *, repos, routes, windows=(), config=EngineConfig()) -> ProcessResult``
    group (+ inhibit per-segment noise) -> severity -> route -> mute -> dedup -> enqueue, in that order:

    1. :func:`alerts.incidents.group_signals` over ``repos.incidents.list_active()``; every changed
       incident is saved and its lifecycle events recorded;
    2. for each incident, :func:`alerts.routing.route_incident` gives the receivers;
    3. per receiver, :func:`alerts.muting.is_incident_muted` (silences from ``repos.silences`` active at
       ``now`` and the given windows). A muted incident is not notified and its snapshot is kept, so the
       first message after the silence says what is new. Exception: the resolution of an incident that was
       announced is always sent, so the living message never stays "open";
    4. :func:`alerts.dedup.should_notify` against that receiver's last snapshot;
    5. a notification is enqueued in ``repos.outbox`` (not sent) and the incident's snapshot updated.

    Notification ids are deterministic (incident, receiver, ``now``, reason), so re-running ``process`` for
    the same bucket after a crash enqueues nothing twice. Every decision, sent or not, is returned with its
    reason for logging.

``deliver_pending(...)`` is :func:`alerts.outbox.deliver_pending` (re-exported): send what is enqueued.

``process(..., live=False)`` is the catch-up: buckets older than the live edge. Each incident is then
delivered once, as its final state (:func:`alerts.dedup.catch_up_gate`): a resolution of an incident
announced before is sent, an incident that began and ended during the catch-up gets one
``catch_up_summary`` with a short timeline, everything else waits for the first live bucket (which diffs
against the last snapshot); no reminders. (This replaces muting catch-up buckets with a window.)

Actions from Slack: ``handle_action(action, now, *, repos, routes, policy, group_members=None, windows=(),
config=None) -> ActionResult`` authorises (:func:`alerts.actions.authorise`), applies
(:func:`alerts.actions.apply_action`), saves the incident and its events, adds the snooze silences, records
false positives (``repos.false_positives``) and the action (``repos.actions``), and enqueues the message
edit + thread note for every receiver that has the incident's message (a resolution or a false positive of
an active incident goes through the normal resolution path). The same click twice changes nothing the
second time. Call :func:`deliver_pending` afterwards so the message follows at once.

People's actions (CLI): ``acknowledge_incident(repos, incident_id, actor, now) -> Incident``,
``snooze_incident(repos, incident_id, actor, until, now) -> Incident`` and
``resolve_incident(repos, incident_id, actor, now, *, routes, windows=(), config=EngineConfig())
-> ProcessResult`` (a manual resolution notifies like an automatic one).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import structlog

from alerts.actions import (
    ActionPolicy,
    ActionReason,
    ActionRecord,
    ActionResult,
    IncidentAction,
    apply_action,
    authorise,
)
from alerts.dedup import catch_up_gate, should_notify, snapshot, summarise_timeline
from alerts.incidents import (
    SYSTEM_ACTOR,
    GroupingConfig,
    IncidentChange,
    acknowledge,
    group_signals,
    resolve,
    snooze,
)
from alerts.model import (
    AlertSignal,
    Incident,
    LifecycleEvent,
    LifecycleKind,
    Notification,
    NotifyReason,
    ensure_utc,
)
from alerts.muting import MaintenanceWindow, is_incident_muted
from alerts.outbox import DeliveryReport, deliver_pending
from alerts.ports import ActionLog, FalsePositiveRepository, IncidentRepository, Outbox, SilenceRepository
from alerts.routing import Route, route_incident
from alerts.severity import DEFAULT_SEVERITY_POLICY, SeverityPolicy

__all__ = [
    "AlertRepos",
    "Decision",
    "DeliveryReport",
    "EngineConfig",
    "IncidentNotFoundError",
    "ProcessResult",
    "acknowledge_incident",
    "deliver_pending",
    "handle_action",
    "process",
    "resolve_incident",
    "snooze_incident",
]

log = structlog.get_logger(__name__)


class IncidentNotFoundError(LookupError):
    """No incident has the given id."""


@dataclass(frozen=True)
class AlertRepos:
    """The storage :mod:`alerts` needs; :mod:`monitor.store` provides SQL versions, :mod:`alerts.testing`
    in-memory ones. ``actions`` and ``false_positives`` are only used by :func:`handle_action` (optional:
    without them actions are not logged / false positives not recorded for the refit)."""

    incidents: IncidentRepository
    outbox: Outbox
    silences: SilenceRepository
    actions: ActionLog | None = None
    false_positives: FalsePositiveRepository | None = None


@dataclass(frozen=True)
class EngineConfig:
    """Settings of the pipeline stages (each stage's own config object)."""

    grouping: GroupingConfig = field(default_factory=GroupingConfig)
    severity: SeverityPolicy = DEFAULT_SEVERITY_POLICY
    grow_factor: float = 1.5


@dataclass(frozen=True)
class Decision:
    """One (incident, receiver) decision and why.

    Attributes:
        reason: The dedup reason (``nothing_new`` etc. when not sent).
        muted_by: The silence/window that muted it, when muted.
        route_path: Route node names that chose the receiver.
        notification_id: Set when a notification was enqueued.
    """

    incident_id: str
    receiver: str
    channel: str
    reason: NotifyReason
    muted_by: str | None
    route_path: tuple[str, ...]
    notification_id: str | None


@dataclass(frozen=True)
class ProcessResult:
    """What one :func:`process` call did."""

    notifications: tuple[Notification, ...]
    decisions: tuple[Decision, ...]
    incidents: tuple[Incident, ...]
    absorbed: tuple[tuple[AlertSignal, str], ...] = ()


def _save(repos: AlertRepos, change: IncidentChange) -> None:
    if change.previous != change.incident:
        repos.incidents.save(change.incident)
    for event in change.events:
        repos.incidents.record_event(event)


def _notify(
    incidents: Sequence[Incident],
    now: datetime,
    *,
    repos: AlertRepos,
    routes: Route,
    windows: Sequence[MaintenanceWindow],
    config: EngineConfig,
    live: bool = True,
    note: str | None = None,
) -> tuple[list[Notification], list[Decision], list[Incident]]:
    silences = repos.silences.list_silences(active_at=now)
    notifications: list[Notification] = []
    decisions: list[Decision] = []
    final: list[Incident] = []
    for incident in incidents:
        mute = is_incident_muted(incident, silences, windows, now)
        current = incident
        for match in route_incident(routes, incident):
            previous = current.notified_for(match.receiver)
            reason = should_notify(
                previous, current, now, match.repeat_interval, grow_factor=config.grow_factor
            )
            reason = catch_up_gate(reason, previous, current, live=live)
            muted_by = mute.reason if mute.muted and reason is not NotifyReason.RESOLVED else None
            notification_id = None
            if reason.notify and muted_by is None:
                notification_id = f"{current.id}#{match.receiver}#{now.isoformat()}#{reason.value}"
                notification = Notification(
                    id=notification_id,
                    incident_id=current.id,
                    receiver=match.receiver,
                    channel=match.channel,
                    reason=reason,
                    created_at=now,
                    incident=current,
                    annotation="; ".join(mute.annotations) or None,
                    note=(
                        summarise_timeline(repos.incidents.list_events(current.id))
                        if reason is NotifyReason.CATCH_UP_SUMMARY
                        else note
                    ),
                )
                repos.outbox.enqueue(notification)
                notifications.append(notification)
                current = current.with_notified(snapshot(current, match.receiver, reason, now))
                repos.incidents.record_event(
                    LifecycleEvent(
                        current.id,
                        LifecycleKind.NOTIFIED,
                        now,
                        SYSTEM_ACTOR,
                        f"{reason.value} -> {match.receiver} {match.channel} via {'/'.join(match.path)}",
                    )
                )
            decision = Decision(
                current.id, match.receiver, match.channel, reason, muted_by, match.path, notification_id
            )
            decisions.append(decision)
            (log.info if notification_id or muted_by else log.debug)(
                "alert_decision",
                incident_id=current.id,
                receiver=match.receiver,
                reason=reason.value,
                muted_by=muted_by,
                notification_id=notification_id,
            )
        if current is not incident:
            repos.incidents.save(current)
        final.append(current)
    return notifications, decisions, final


def process(
    signals: Sequence[AlertSignal],
    now: datetime,
    *,
    repos: AlertRepos,
    routes: Route,
    windows: Sequence[MaintenanceWindow] = (),
    config: EngineConfig | None = None,
    live: bool = True,
    observed: Mapping[str, float] | None = None,
    expected: Mapping[str, float] | None = None,
) -> ProcessResult:
    """Run one bucket through the pipeline; see the module docstring.

    Args:
        signals: Every anomaly signal of this evaluation (an empty list is a clean bucket).
        now: Evaluation time (UTC-aware).
        repos: Storage.
        routes: Validated route tree (:func:`alerts.routing.validate_tree`).
        windows: Maintenance / event windows from config.
        config: Stage settings.
        live: False for catch-up buckets (older than the live edge): final states only, no reminders.
        observed: ``"metric/region"`` -> observed value of every series scored in this bucket (what tells
            a level shift's return; see :func:`alerts.incidents.decide_resolution`).
        expected: ``"metric/region"`` -> the model's expectation of those series in this bucket (a seasonal
            series' return is judged against its own hour; see :func:`alerts.incidents.level_returned`).

    Returns:
        The enqueued notifications, every decision with its reason, and the incidents after this bucket.
    """
    ensure_utc(now, what="process(now)")
    config = config or EngineConfig()
    grouped = group_signals(
        repos.incidents.list_active(),
        signals,
        now,
        config=config.grouping,
        policy=config.severity,
        observed=observed or {},
        expected=expected or {},
    )
    for change in grouped.changes:
        _save(repos, change)
    notifications, decisions, incidents = _notify(
        [c.incident for c in grouped.changes],
        now,
        repos=repos,
        routes=routes,
        windows=windows,
        config=config,
        live=live,
    )
    return ProcessResult(tuple(notifications), tuple(decisions), tuple(incidents), grouped.absorbed)


def _load(repos: AlertRepos, incident_id: str) -> Incident:
    incident = repos.incidents.get(incident_id)
    if incident is None:
        raise IncidentNotFoundError(f"no incident {incident_id!r}; list them with `livewatch incidents`")
    return incident


def acknowledge_incident(repos: AlertRepos, incident_id: str, actor: str, now: datetime) -> Incident:
    """``actor`` takes the incident: reminders stop (growth and resolution still notify)."""
    change = acknowledge(_load(repos, incident_id), actor, now)
    _save(repos, change)
    return change.incident


def snooze_incident(
    repos: AlertRepos, incident_id: str, actor: str, until: datetime, now: datetime
) -> Incident:
    """``actor`` snoozes the incident until ``until``: no messages meanwhile except its resolution."""
    change = snooze(_load(repos, incident_id), actor, until, now)
    _save(repos, change)
    return change.incident


def resolve_incident(
    repos: AlertRepos,
    incident_id: str,
    actor: str,
    now: datetime,
    *,
    routes: Route,
    windows: Sequence[MaintenanceWindow] = (),
    config: EngineConfig | None = None,
) -> ProcessResult:
    """``actor`` closes the incident; the resolution is enqueued for every receiver that was told."""
    change = resolve(_load(repos, incident_id), actor, now)
    _save(repos, change)
    notifications, decisions, incidents = _notify(
        [change.incident], now, repos=repos, routes=routes, windows=windows, config=config or EngineConfig()
    )
    return ProcessResult(tuple(notifications), tuple(decisions), tuple(incidents))


def _action_notes(
    incident: Incident, action: IncidentAction, note: str, now: datetime, *, repos: AlertRepos, routes: Route
) -> list[Notification]:
    """Message edit + thread note for every receiver that already has the incident's message."""
    notes: list[Notification] = []
    for match in route_incident(routes, incident):
        if incident.notified_for(match.receiver) is None:
            continue
        notification = Notification(
            id=f"{incident.id}#{match.receiver}#{now.isoformat()}#action:{action.kind.value}",
            incident_id=incident.id,
            receiver=match.receiver,
            channel=match.channel,
            reason=NotifyReason.ACTION,
            created_at=now,
            incident=incident,
            note=note,
        )
        if repos.outbox.enqueue(notification):
            notes.append(notification)
            repos.incidents.record_event(
                LifecycleEvent(
                    incident.id,
                    LifecycleKind.NOTIFIED,
                    now,
                    SYSTEM_ACTOR,
                    f"action {action.kind.value} -> {match.receiver} {match.channel}",
                )
            )
    return notes


def handle_action(
    action: IncidentAction,
    now: datetime,
    *,
    repos: AlertRepos,
    routes: Route,
    policy: ActionPolicy,
    group_members: Mapping[str, Collection[str]] | None = None,
    windows: Sequence[MaintenanceWindow] = (),
    config: EngineConfig | None = None,
) -> ActionResult:
    """Apply a person's action from Slack; see the module docstring. Never raises for a bad action.

    Args:
        action: Parsed by :func:`alerts.actions.parse_block_actions`.
        now: Current time (UTC-aware).
        repos: Storage (``actions`` / ``false_positives`` used when set).
        routes: Route tree (finds the receivers that have the incident's message).
        policy: Who may act.
        group_members: Members of the policy's user groups (:func:`alerts.actions.resolve_group_members`).
        windows: Maintenance windows (for the resolution path).
        config: Stage settings.
    """
    ensure_utc(now, what="handle_action(now)")
    bound = log.bind(incident_id=action.incident_id, action=action.kind.value, user_id=action.user_id)

    def record(reason: str, detail: str = "") -> None:
        if repos.actions is not None:
            repos.actions.record_action(
                ActionRecord(
                    action.key,
                    action.incident_id,
                    action.kind,
                    action.user_id,
                    action.actor,
                    now,
                    reason,
                    detail,
                )
            )

    auth = authorise(action, policy, group_members=group_members)
    if not auth.allowed:
        bound.warning("slack_action_refused", reason=auth.reason.value)
        record(auth.reason.value)
        return ActionResult(False, auth.reason.value, auth.message)
    incident = repos.incidents.get(action.incident_id)
    if incident is None:
        bound.warning("slack_action_unknown_incident")
        return ActionResult(False, "unknown_incident", f"livewatch has no incident {action.incident_id}.")
    outcome = apply_action(incident, action, now)
    bound.info("slack_action", reason=outcome.reason.value, changed=outcome.reason.changed)
    ids: list[str] = []
    if outcome.reason.changed:
        _save(repos, outcome.change)
        for silence in outcome.silences:
            repos.silences.add(silence)
        if repos.false_positives is not None:
            for fp in outcome.false_positives:
                repos.false_positives.record_false_positive(fp)
        closed_now = incident.active and not outcome.incident.active
        if closed_now:
            notes, _, _ = _notify(
                [outcome.incident],
                now,
                repos=repos,
                routes=routes,
                windows=windows,
                config=config or EngineConfig(),
                note=outcome.message,
            )
            ids = [n.id for n in notes]
        else:
            ids = [
                n.id
                for n in _action_notes(
                    outcome.incident, action, outcome.message, now, repos=repos, routes=routes
                )
            ]
    record(outcome.reason.value, outcome.message)
    ok = outcome.reason is not ActionReason.SNOOZE_EXPIRED
    return ActionResult(ok, outcome.reason.value, outcome.message, tuple(ids))
