"""Storage protocols :mod:`alerts` needs; :mod:`monitor.store` implements them (SQLAlchemy), and
:mod:`alerts.testing` ships in-memory versions for tests.

The protocols are deliberately narrow and speak only :mod:`alerts.model` types. A store is expected to
persist each value as its ``to_dict()`` JSON plus a few key columns for indexing/filtering (listed per
method below), and rebuild it with ``from_dict()``. No method takes or returns ORM objects.

Times are UTC-aware ``datetime``; methods never read the clock themselves (``at`` / ``now`` are passed).

``IncidentRepository``
    ``get(incident_id) -> Incident | None``
    ``get_open_by_key(group_key) -> Incident | None``  -- newest *active* incident with that group key
    ``list_active() -> list[Incident]``                  -- state != resolved, ordered by (opened_at, id)
    ``list_incidents(*, states=None, metric=None, region=None, since=None, until=None, limit=None)``
        -> ``list[Incident]`` newest first by opened_at; ``metric`` / ``region`` match any member signal
        (store ``incident.metrics`` / ``incident.regions`` as columns or a link table); ``since`` / ``until``
        bound ``opened_at`` (``since <= opened_at < until``).
    ``save(incident) -> None``                           -- upsert by ``incident.id``
    ``record_event(event) -> None``                      -- append-only audit log
    ``list_events(incident_id) -> list[LifecycleEvent]`` -- in insertion order

``Outbox`` (a notification is enqueued BEFORE it is sent; ordering = enqueue order)
    ``enqueue(notification) -> bool``   -- insert as pending; idempotent on ``notification.id`` (returns
        False and changes nothing if that id exists)
    ``pending() -> list[Notification]`` -- status pending, in enqueue order, each with ``attempts`` filled
    ``mark_sending(notification_id, at) -> None`` -- attempts += 1, called right before the send, so after a
        crash a later delivery knows the message may already be out
    ``mark_delivered(notification_id, channel, ts, at) -> None`` -- status delivered; when ``ts`` is not
        None, also records ``SlackThread(channel, ts)`` as the thread of (incident_id, receiver) if none is
        recorded yet (sinks without message ids, e.g. webhooks or the console, pass ``ts=None``)
    ``mark_failed(notification_id, error, retryable, at) -> None`` -- retryable: stays pending (error kept);
        not retryable: status failed (never retried)
    ``thread_for(incident_id, receiver) -> SlackThread | None`` -- the idempotency key: once an incident has
        a message in a receiver, every later notification edits it instead of posting a new one
    ``entries(incident_id=None) -> list[OutboxEntry]`` -- everything (any status), enqueue order

``SilenceRepository``
    ``add(silence) -> None``  -- upsert by ``silence.id``
    ``list_silences(*, active_at=None) -> list[Silence]`` -- all, or those with
        ``created_at <= active_at < expires_at``; ordered by (created_at, id)
    ``remove(silence_id) -> bool`` -- True when something was removed

Added for exactly-once Slack delivery (issue 14) and actions from Slack (issue 16). Every write below must be
**committed before the method returns** (its own short transaction, not the tick's): the Slack sink calls
them between Slack calls, and a ``kill -9`` right after must find them.

``StepLog`` (the outbox's per-step records, see :mod:`alerts.steps`)
    ``record_step(record: StepRecord) -> None`` -- append; key columns ``notification_id``, ``step``,
        ``status``, ``at``; the whole record as ``to_dict()`` JSON
    ``steps_for(notification_id) -> list[StepRecord]`` -- that notification's records, insertion order

``ChannelDirectory`` (Slack channel name -> id cache; names are stored without the leading ``#``)
    ``get_channel_id(name) -> str | None``
    ``put_channel_id(name, channel_id) -> None`` -- upsert (a renamed channel gets its new id)

``ActionLog`` (people's actions from Slack: audit and retry detection)
    ``record_action(record: ActionRecord) -> bool`` -- insert; idempotent on ``record.key`` (returns False
        and changes nothing if that key exists: Slack delivered the same click again)
    ``list_actions(incident_id) -> list[ActionRecord]`` -- insertion order

``FalsePositiveRepository`` (buckets people marked "not an incident": the refit excludes them)
    ``record_false_positive(fp: FalsePositive) -> None`` -- upsert by ``fp.key`` (incident, metric, region)
    ``list_false_positives(*, metric=None, region=None) -> list[FalsePositive]`` -- ordered by
        (start, metric, region); the refit drops ``start <= bucket < end`` of that metric and region

``UserGroupDirectory`` (not storage: :class:`alerts.sinks.slack.SlackUserGroups` implements it with
``usergroups.users.list``; tests use :class:`alerts.testing.StaticUserGroups`)
    ``members(usergroup_id) -> frozenset[str]`` -- user ids of the Slack user group (empty if unknown)
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from alerts.model import (
    FalsePositive,
    Incident,
    IncidentState,
    LifecycleEvent,
    Notification,
    OutboxEntry,
    Silence,
    SlackThread,
)
from alerts.steps import StepRecord

if TYPE_CHECKING:
    from alerts.actions import ActionRecord

__all__ = [
    "ActionLog",
    "ChannelDirectory",
    "FalsePositiveRepository",
    "IncidentRepository",
    "Outbox",
    "SilenceRepository",
    "StepLog",
    "UserGroupDirectory",
]


@runtime_checkable
class IncidentRepository(Protocol):
    """Incidents and their lifecycle audit log. See the module docstring for the contract of each method."""

    def get(self, incident_id: str) -> Incident | None: ...

    def get_open_by_key(self, group_key: str) -> Incident | None: ...

    def list_active(self) -> list[Incident]: ...

    def list_incidents(
        self,
        *,
        states: Collection[IncidentState] | None = None,
        metric: str | None = None,
        region: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
    ) -> list[Incident]: ...

    def save(self, incident: Incident) -> None: ...

    def record_event(self, event: LifecycleEvent) -> None: ...

    def list_events(self, incident_id: str) -> list[LifecycleEvent]: ...


@runtime_checkable
class Outbox(Protocol):
    """Durable queue of notifications; see the module docstring for the contract of each method."""

    def enqueue(self, notification: Notification) -> bool: ...

    def pending(self) -> list[Notification]: ...

    def mark_sending(self, notification_id: str, at: datetime) -> None: ...

    def mark_delivered(self, notification_id: str, channel: str, ts: str | None, at: datetime) -> None: ...

    def mark_failed(self, notification_id: str, error: str, retryable: bool, at: datetime) -> None: ...

    def thread_for(self, incident_id: str, receiver: str) -> SlackThread | None: ...

    def entries(self, incident_id: str | None = None) -> list[OutboxEntry]: ...


@runtime_checkable
class SilenceRepository(Protocol):
    """People's silences; see the module docstring for the contract of each method."""

    def add(self, silence: Silence) -> None: ...

    def list_silences(self, *, active_at: datetime | None = None) -> list[Silence]: ...

    def remove(self, silence_id: str) -> bool: ...


@runtime_checkable
class StepLog(Protocol):
    """Durable per-step records of notifications (:mod:`alerts.steps`); commit on every write."""

    def record_step(self, record: StepRecord) -> None: ...

    def steps_for(self, notification_id: str) -> list[StepRecord]: ...


@runtime_checkable
class ChannelDirectory(Protocol):
    """Slack channel name -> id cache (names without ``#``); commit on every write."""

    def get_channel_id(self, name: str) -> str | None: ...

    def put_channel_id(self, name: str, channel_id: str) -> None: ...


@runtime_checkable
class ActionLog(Protocol):
    """People's actions from Slack, idempotent on the action key; commit on every write."""

    def record_action(self, record: ActionRecord) -> bool: ...

    def list_actions(self, incident_id: str) -> list[ActionRecord]: ...


@runtime_checkable
class FalsePositiveRepository(Protocol):
    """Incident members marked "not an incident", for the refit to exclude."""

    def record_false_positive(self, fp: FalsePositive) -> None: ...

    def list_false_positives(
        self, *, metric: str | None = None, region: str | None = None
    ) -> list[FalsePositive]: ...


@runtime_checkable
class UserGroupDirectory(Protocol):
    """Members of Slack user groups (``usergroups.users.list``)."""

    def members(self, usergroup_id: str) -> frozenset[str]: ...
