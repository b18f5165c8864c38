"""Test helpers shipped with the library (like ``structlog.testing``).

In-memory implementations of the :mod:`alerts.ports` protocols, with exactly the contract documented
there, so tests of :mod:`alerts` (and of code that uses it) need no database; and :class:`RecordingSink`,
a sink that records what it was asked to send and can be told to fail.

``monitor.store`` can run the same contract checks against its SQL implementations.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from datetime import datetime

from alerts.model import (
    DeliveryStatus,
    Incident,
    IncidentState,
    LifecycleEvent,
    Notification,
    OutboxEntry,
    Silence,
    SlackThread,
)
from alerts.sinks.base import DeliveryResult

__all__ = [
    "InMemoryIncidentRepository",
    "InMemoryOutbox",
    "InMemorySilenceRepository",
    "RecordingSink",
    "UnknownNotificationError",
]


class UnknownNotificationError(KeyError):
    """An outbox method was called with a notification id that was never enqueued."""


class InMemoryIncidentRepository:
    """:class:`alerts.ports.IncidentRepository` in a dict."""

    def __init__(self) -> None:
        self._incidents: dict[str, Incident] = {}
        self._events: list[LifecycleEvent] = []

    def get(self, incident_id: str) -> Incident | None:
        return self._incidents.get(incident_id)

    def get_open_by_key(self, group_key: str) -> Incident | None:
        matches = [i for i in self.list_active() if i.group_key == group_key]
        return matches[-1] if matches else None

    def list_active(self) -> list[Incident]:
        active = [i for i in self._incidents.values() if i.active]
        return sorted(active, key=lambda i: (i.opened_at, i.id))

    def list_incidents(
        self,
        *,
        states: Collection[IncidentState] | None = None,
        metric: str | None = None,
        region: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
    ) -> list[Incident]:
        found = [
            i
            for i in self._incidents.values()
            if (states is None or i.state in states)
            and (metric is None or metric in i.metrics)
            and (region is None or region in i.regions)
            and (since is None or i.opened_at >= since)
            and (until is None or i.opened_at < until)
        ]
        found.sort(key=lambda i: (i.opened_at, i.id), reverse=True)
        return found if limit is None else found[:limit]

    def save(self, incident: Incident) -> None:
        self._incidents[incident.id] = incident

    def record_event(self, event: LifecycleEvent) -> None:
        self._events.append(event)

    def list_events(self, incident_id: str) -> list[LifecycleEvent]:
        return [e for e in self._events if e.incident_id == incident_id]


@dataclass
class _Row:
    notification: Notification
    status: DeliveryStatus = DeliveryStatus.PENDING
    attempts: int = 0
    error: str | None = None
    retryable: bool | None = None
    channel: str | None = None
    ts: str | None = None
    delivered_at: datetime | None = None


class InMemoryOutbox:
    """:class:`alerts.ports.Outbox` in lists; ordering is enqueue order."""

    def __init__(self) -> None:
        self._rows: dict[str, _Row] = {}
        self._threads: dict[tuple[str, str], SlackThread] = {}

    def _row(self, notification_id: str) -> _Row:
        try:
            return self._rows[notification_id]
        except KeyError:
            raise UnknownNotificationError(
                f"notification {notification_id!r} is not in the outbox; enqueue it before sending"
            ) from None

    def enqueue(self, notification: Notification) -> bool:
        if notification.id in self._rows:
            return False
        self._rows[notification.id] = _Row(replace(notification, attempts=0, thread=None))
        return True

    def pending(self) -> list[Notification]:
        return [
            replace(r.notification, attempts=r.attempts)
            for r in self._rows.values()
            if r.status is DeliveryStatus.PENDING
        ]

    def mark_sending(self, notification_id: str, at: datetime) -> None:
        self._row(notification_id).attempts += 1

    def mark_delivered(self, notification_id: str, channel: str, ts: str | None, at: datetime) -> None:
        row = self._row(notification_id)
        row.status, row.channel, row.ts, row.delivered_at = DeliveryStatus.DELIVERED, channel, ts, at
        row.error, row.retryable = None, None
        key = (row.notification.incident_id, row.notification.receiver)
        if ts is not None and key not in self._threads:
            self._threads[key] = SlackThread(channel, ts)

    def mark_failed(self, notification_id: str, error: str, retryable: bool, at: datetime) -> None:
        row = self._row(notification_id)
        row.error, row.retryable = error, retryable
        if not retryable:
            row.status = DeliveryStatus.FAILED

    def thread_for(self, incident_id: str, receiver: str) -> SlackThread | None:
        return self._threads.get((incident_id, receiver))

    def entries(self, incident_id: str | None = None) -> list[OutboxEntry]:
        return [
            OutboxEntry(
                notification=replace(r.notification, attempts=r.attempts),
                status=r.status,
                attempts=r.attempts,
                error=r.error,
                retryable=r.retryable,
                channel=r.channel,
                ts=r.ts,
                delivered_at=r.delivered_at,
            )
            for r in self._rows.values()
            if incident_id is None or r.notification.incident_id == incident_id
        ]


class InMemorySilenceRepository:
    """:class:`alerts.ports.SilenceRepository` in a dict."""

    def __init__(self) -> None:
        self._silences: dict[str, Silence] = {}

    def add(self, silence: Silence) -> None:
        self._silences[silence.id] = silence

    def list_silences(self, *, active_at: datetime | None = None) -> list[Silence]:
        found = [s for s in self._silences.values() if active_at is None or s.active_at(active_at)]
        return sorted(found, key=lambda s: (s.created_at, s.id))

    def remove(self, silence_id: str) -> bool:
        return self._silences.pop(silence_id, None) is not None


@dataclass
class RecordingSink:
    """A sink that records every notification it receives.

    ``script`` holds results to return for the next calls (consumed first-in first-out); when it is empty
    the sink succeeds, giving each incident one stable fake ``ts`` (so delivery edits rather than posts).

    Attributes:
        channel: Channel reported on success.
        sent: Every notification passed to :meth:`send`, successful or not.
        script: Results to return next.
    """

    channel: str = "C-RECORDING"
    sent: list[Notification] = field(default_factory=list)
    script: deque[DeliveryResult] = field(default_factory=deque)
    _ts: dict[str, str] = field(default_factory=dict)

    def fail_next(self, count: int, error: str = "simulated outage", *, retryable: bool = True) -> None:
        """Make the next ``count`` sends fail."""
        for _ in range(count):
            self.script.append(DeliveryResult.failure(error, retryable=retryable))

    def send(self, notification: Notification) -> DeliveryResult:
        self.sent.append(notification)
        if self.script:
            return self.script.popleft()
        if notification.thread is not None:
            return DeliveryResult.success(notification.thread.channel, notification.thread.ts)
        ts = self._ts.setdefault(notification.incident_id, f"{1_700_000_000 + len(self._ts)}.000100")
        return DeliveryResult.success(self.channel, ts)
