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

People's actions: ``acknowledge_incident(repos, incident_id, actor, now) -> Incident``,
``snooze_incident(repos, incident_id, actor, until, now) -> Incident`` and
``resolve_incident(repos, incident_id, actor, now, *, routes, windows=(), config=EngineConfig())
-> ProcessResult`` (a manual resolution notifies like an automatic one).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import structlog

from alerts.dedup import should_notify, snapshot
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
from alerts.ports import IncidentRepository, Outbox, SilenceRepository
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
    in-memory ones."""

    incidents: IncidentRepository
    outbox: Outbox
    silences: SilenceRepository


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
) -> ProcessResult:
    """Run one bucket through the pipeline; see the module docstring.

    Args:
        signals: Every anomaly signal of this evaluation (an empty list is a clean bucket).
        now: Evaluation time (UTC-aware).
        repos: Storage.
        routes: Validated route tree (:func:`alerts.routing.validate_tree`).
        windows: Maintenance / event windows from config.
        config: Stage settings.

    Returns:
        The enqueued notifications, every decision with its reason, and the incidents after this bucket.
    """
    ensure_utc(now, what="process(now)")
    config = config or EngineConfig()
    grouped = group_signals(
        repos.incidents.list_active(), signals, now, config=config.grouping, policy=config.severity
    )
    for change in grouped.changes:
        _save(repos, change)
    notifications, decisions, incidents = _notify(
        [c.incident for c in grouped.changes], now, repos=repos, routes=routes, windows=windows, config=config
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
