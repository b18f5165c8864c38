"""SQL state store of the livewatch daemon (SQLAlchemy Core; SQLite and PostgreSQL alike).

One database holds everything the daemon must remember across restarts. :class:`SqlStore` is the single
entry point; it satisfies the three storage ports of :mod:`alerts.ports` (``IncidentRepository``,
``Outbox``, ``SilenceRepository``) with exactly the semantics of the in-memory references in
:mod:`alerts.testing`, and adds the daemon's own state. Time is always passed in (``now`` / ``at``); every
timestamp must be timezone-aware and comes back as UTC-aware ``datetime``. Each call is one transaction
(unless made on a store bound by ``transaction()``).

Typical wiring (the composition root)::

    engine = make_engine(config.database_url)
    upgrade(engine)                      # `livewatch db upgrade`; idempotent, safe on every start
    store = SqlStore(engine)
    # pass `store` wherever alerts wants an IncidentRepository, Outbox or SilenceRepository

Schema and migrations:
    ``make_engine(url, **kwargs) -> Engine``: ``create_engine`` plus SQLite settings (foreign keys,
        30 s busy timeout, WAL journal).
    ``upgrade(engine_or_url, revision="head") -> None``: ``alembic upgrade`` with the scripts shipped in
        ``monitor/migrations`` (no ``alembic.ini`` needed).
    ``is_up_to_date(engine) -> bool``; ``check_up_to_date(engine)`` raises :class:`MigrationError`;
        ``current_revisions(engine) -> set[str]``.
    ``metadata``: the tables (``watermarks``, ``model_states``, ``runs``, ``incidents``,
        ``incident_members``, ``incident_events``, ``notifications``, ``slack_threads``, ``silences``).

Exactly-once scoring (watermarks, one per metric and series):
    ``get_watermark(metric, series) -> datetime | None``
    ``advance_watermark(metric, series, bucket, expected_previous, *, now) -> bool``: compare-and-set;
        of concurrent writers with the same ``expected_previous`` exactly one gets ``True``.
    ``list_watermarks(metric=None) -> list[Watermark]``; ``reset_watermark(metric, series=None) -> int``

Fitted models (JSON text per metric, series and detector):
    ``save_model_state(metric, series, detector, state, *, version, fitted_at) -> None`` (upsert)
    ``load_model_state(metric, series, detector) -> ModelState | None``
    ``delete_model_states(metric, series=None) -> int``

Self-monitoring (one row per daemon tick):
    ``start_run(run_id, *, now)``; ``finish_run(run_id, *, now, status, series_scored, errors, detail=None)``
    ``get_run(run_id) -> Run | None``; ``recent_runs(limit=20, *, status=None) -> list[Run]``

Incidents (``alerts.ports.IncidentRepository``) and their history:
    ``get``, ``get_open_by_key``, ``list_active``, ``list_incidents``, ``save``, ``record_event``,
    ``list_events`` (see :mod:`alerts.ports`), plus
    ``incident_history(*, states, metric, region, since, until, limit) -> list[IncidentHistory]``
    (events, time to acknowledge, time to resolve) and ``HistorySummary.of(histories)`` (counts, medians).

Notification outbox (``alerts.ports.Outbox``):
    ``enqueue``, ``pending``, ``mark_sending``, ``mark_delivered``, ``mark_failed``, ``thread_for``,
    ``entries``. Rows keep enqueue order, a sequence number within the incident, status, attempts, last
    error, retryable flag, delivered channel and Slack ``ts``, created / last attempt / delivered / failed
    times. Unknown ids raise :class:`UnknownNotificationError` (a ``KeyError``).

Silences (``alerts.ports.SilenceRepository``): ``add``, ``list_silences(*, active_at=None)``, ``remove``.

Atomic ticks and retention:
    ``transaction() -> ContextManager[SqlStore]``: a store whose calls share one transaction, so a
        watermark advance and the incidents / notifications it produced commit or roll back together.
    ``prune(*, before) -> dict[str, int]``: delete finished runs, delivered / failed notifications and
        resolved incidents (with their events, members, threads) older than ``before``.

Errors: :class:`StoreError` and its subclasses :class:`NaiveTimestampError`,
:class:`WatermarkRegressionError`, :class:`MigrationError`, :class:`UnknownNotificationError`.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from alerts.actions import ActionRecord
from alerts.model import (
    DeliveryStatus,
    FalsePositive,
    Incident,
    IncidentState,
    LifecycleEvent,
    LifecycleKind,
    Matcher,
    Notification,
    OutboxEntry,
    Silence,
    SlackThread,
)
from alerts.steps import StepRecord
from monitor.store.schema import (
    RUN_STATUSES,
    RunStatus,
    StoreError,
    UnknownNotificationError,
    WatermarkRegressionError,
    _to_utc,
    false_positives,
    incident_actions,
    incident_events,
    incident_members,
    incidents,
    model_states,
    notification_steps,
    notifications,
    runs,
    silences,
    slack_channels,
    slack_threads,
    watermarks,
)

__all__ = [
    "HistorySummary",
    "IncidentHistory",
    "ModelState",
    "Run",
    "SqlIncidentRepository",
    "SqlOutbox",
    "SqlSilenceRepository",
    "SqlSlackState",
    "SqlStore",
    "Watermark",
]


# -- records --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Watermark:
    """Last scored bucket of one series."""

    metric: str
    series: str
    bucket: datetime
    updated_at: datetime


@dataclass(frozen=True)
class ModelState:
    """Saved fitted detector of one series: ``state`` is the detector's JSON text."""

    metric: str
    series: str
    detector: str
    state: str
    version: int
    fitted_at: datetime


@dataclass(frozen=True)
class Run:
    """One daemon tick, for self-monitoring."""

    run_id: str
    started_at: datetime
    finished_at: datetime | None
    status: str
    series_scored: int
    errors: int
    detail: Any

    @property
    def duration_seconds(self) -> float | None:
        """Wall time of the run, ``None`` while it is running."""
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


@dataclass(frozen=True)
class IncidentHistory:
    """An incident with its lifecycle events and the durations people are measured on.

    Attributes:
        time_to_acknowledge: First ``acknowledged`` event (else ``incident.acknowledged_at``) minus
            ``opened_at``; ``None`` if never acknowledged.
        time_to_resolve: First ``resolved`` event (else ``incident.resolved_at``) minus ``opened_at``;
            ``None`` while unresolved.
    """

    incident: Incident
    events: tuple[LifecycleEvent, ...]
    time_to_acknowledge: timedelta | None
    time_to_resolve: timedelta | None

    @classmethod
    def build(cls, incident: Incident, events: Sequence[LifecycleEvent]) -> IncidentHistory:
        """Derive the durations of ``incident`` from its ``events`` (in recorded order)."""

        def first(kind: LifecycleKind, fallback: datetime | None) -> timedelta | None:
            at = next((event.at for event in events if event.kind == kind), fallback)
            return None if at is None else at - incident.opened_at

        return cls(
            incident=incident,
            events=tuple(events),
            time_to_acknowledge=first(LifecycleKind.ACKNOWLEDGED, incident.acknowledged_at),
            time_to_resolve=first(LifecycleKind.RESOLVED, incident.resolved_at),
        )


@dataclass(frozen=True)
class HistorySummary:
    """Counts and median durations over a list of :class:`IncidentHistory` (``None`` when no sample)."""

    incidents: int
    acknowledged: int
    resolved: int
    median_time_to_acknowledge: timedelta | None
    median_time_to_resolve: timedelta | None

    @classmethod
    def of(cls, histories: Sequence[IncidentHistory]) -> HistorySummary:
        """Summarise ``histories``."""
        to_ack = [h.time_to_acknowledge for h in histories if h.time_to_acknowledge is not None]
        to_resolve = [h.time_to_resolve for h in histories if h.time_to_resolve is not None]

        def median(values: list[timedelta]) -> timedelta | None:
            if not values:
                return None
            return timedelta(seconds=statistics.median(value.total_seconds() for value in values))

        return cls(len(histories), len(to_ack), len(to_resolve), median(to_ack), median(to_resolve))


# -- the store ------------------------------------------------------------------------------------
class _SqlBase:
    """Engine holder and the few portable statement helpers the repositories share.

    Unbound (the default), each public call runs in its own transaction. Bound to a connection (see
    :meth:`SqlStore.transaction`), every call joins the caller's transaction instead.
    """

    def __init__(self, engine: Engine, *, connection: Connection | None = None) -> None:
        self.engine = engine
        self._connection = connection

    @property
    def in_transaction(self) -> bool:
        """True for a store bound to a caller's transaction by :meth:`SqlStore.transaction`."""
        return self._connection is not None

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        """A connection in a transaction: the bound one, or a new transaction committed on exit."""
        if self._connection is not None:
            yield self._connection
            return
        with self.engine.begin() as connection:
            yield connection

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """A connection for reads: the bound one (sees the caller's uncommitted writes), or a new one."""
        if self._connection is not None:
            yield self._connection
            return
        with self.engine.connect() as connection:
            yield connection

    @staticmethod
    def _upsert(
        connection: Connection, table: sa.Table, key: Mapping[str, Any], values: Mapping[str, Any]
    ) -> None:
        """Insert ``key | values``, or update ``values`` of the row with ``key``, in one statement."""
        statement = _dialect_insert(connection, table)
        if statement is None:  # other dialects: portable but not race-free across processes
            condition = sa.and_(*(table.c[column] == value for column, value in key.items()))
            if connection.execute(table.update().where(condition).values(**values)).rowcount == 0:
                connection.execute(table.insert().values({**key, **values}))
            return
        connection.execute(
            statement.values({**key, **values}).on_conflict_do_update(
                index_elements=list(key), set_=dict(values)
            )
        )

    @staticmethod
    def _insert_ignore(
        connection: Connection,
        table: sa.Table,
        values: Mapping[str, Any],
        *,
        conflict_on: Sequence[str] | None = None,
    ) -> bool:
        """Insert ``values`` unless a row with the same key exists; True when inserted.

        The key is the primary key, or the unique columns ``conflict_on``. Conflicts on any other
        constraint still raise ``IntegrityError``.
        """
        columns = list(conflict_on) if conflict_on is not None else [c.name for c in table.primary_key]
        statement = _dialect_insert(connection, table)
        if statement is None:
            key = sa.and_(*(table.c[name] == values[name] for name in columns))
            if connection.execute(sa.select(sa.literal(1)).select_from(table).where(key)).first():
                return False
            connection.execute(table.insert().values(dict(values)))
            return True
        statement = (
            statement.values(dict(values))
            .on_conflict_do_nothing(index_elements=columns)
            .returning(*(table.c[name] for name in columns))  # rowcount of INSERT is -1 with psycopg
        )
        return connection.execute(statement).first() is not None


def _dialect_insert(connection: Connection, table: sa.Table) -> Any:
    """``INSERT`` with ``ON CONFLICT`` support on SQLite and PostgreSQL, ``None`` elsewhere."""
    if connection.dialect.name == "sqlite":
        from sqlalchemy.dialects import sqlite

        return sqlite.insert(table)
    if connection.dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table)
    return None


class SqlIncidentRepository(_SqlBase):
    """:class:`alerts.ports.IncidentRepository` on SQL: one JSON row per incident plus key columns."""

    #: Incidents whose events :meth:`incident_history` loads per query.
    history_batch = 500

    def get(self, incident_id: str) -> Incident | None:
        """The incident with ``incident_id``, or ``None``."""
        with self._read() as connection:
            payload = connection.execute(
                sa.select(incidents.c.payload).where(incidents.c.id == incident_id)
            ).scalar_one_or_none()
        return None if payload is None else Incident.from_dict(payload)

    def get_open_by_key(self, group_key: str) -> Incident | None:
        """The newest active (not resolved) incident opened for ``group_key``, or ``None``."""
        query = (
            sa.select(incidents.c.payload)
            .where(incidents.c.group_key == group_key, incidents.c.state != IncidentState.RESOLVED.value)
            .order_by(incidents.c.opened_at.desc(), incidents.c.id.desc())
            .limit(1)
        )
        with self._read() as connection:
            payload = connection.execute(query).scalar_one_or_none()
        return None if payload is None else Incident.from_dict(payload)

    def list_active(self) -> list[Incident]:
        """Every incident not resolved, oldest first (by ``opened_at``, then ``id``)."""
        query = (
            sa.select(incidents.c.payload)
            .where(incidents.c.state != IncidentState.RESOLVED.value)
            .order_by(incidents.c.opened_at, incidents.c.id)
        )
        with self._read() as connection:
            return [Incident.from_dict(payload) for payload in connection.execute(query).scalars()]

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
        """Incidents newest first (by ``opened_at``, then ``id``), filtered.

        Args:
            states: Keep only these states.
            metric: Keep incidents with a member signal on this metric.
            region: Keep incidents with a member signal in this region.
            since: Keep ``opened_at >= since``.
            until: Keep ``opened_at < until``.
            limit: At most this many.
        """
        query = self._incident_query(states=states, metric=metric, region=region, since=since, until=until)
        query = query.order_by(incidents.c.opened_at.desc(), incidents.c.id.desc()).limit(limit)
        with self._read() as connection:
            return [Incident.from_dict(payload) for payload in connection.execute(query).scalars()]

    def save(self, incident: Incident) -> None:
        """Insert or replace ``incident`` (by ``id``) and its member index, in one transaction."""
        values = {
            "group_key": incident.group_key,
            "state": incident.state.value,
            "severity": incident.severity.value,
            "opened_at": _to_utc(incident.opened_at, f"opened_at of incident {incident.id}"),
            "updated_at": _to_utc(incident.updated_at, f"updated_at of incident {incident.id}"),
            "acknowledged_at": incident.acknowledged_at,
            "acknowledged_by": incident.acknowledged_by,
            "resolved_at": incident.resolved_at,
            "snoozed_until": incident.snoozed_until,
            "payload": incident.to_dict(),
        }
        members = sorted({(signal.metric, signal.region) for signal in incident.signals})
        with self._tx() as connection:
            self._upsert(connection, incidents, {"id": incident.id}, values)
            connection.execute(incident_members.delete().where(incident_members.c.incident_id == incident.id))
            if members:
                connection.execute(
                    incident_members.insert(),
                    [{"incident_id": incident.id, "metric": m, "region": r} for m, r in members],
                )

    def record_event(self, event: LifecycleEvent) -> None:
        """Append ``event`` to the audit log."""
        with self._tx() as connection:
            connection.execute(
                incident_events.insert().values(
                    incident_id=event.incident_id,
                    kind=event.kind.value,
                    at=_to_utc(event.at, f"{event.kind.value} event of incident {event.incident_id}"),
                    actor=event.actor,
                    detail=event.detail,
                )
            )

    def list_events(self, incident_id: str) -> list[LifecycleEvent]:
        """Events of ``incident_id`` in the order they were recorded."""
        query = (
            sa.select(incident_events)
            .where(incident_events.c.incident_id == incident_id)
            .order_by(incident_events.c.seq)
        )
        with self._read() as connection:
            return [_event(row) for row in connection.execute(query)]

    def incident_history(
        self,
        *,
        states: Collection[IncidentState] | None = None,
        metric: str | None = None,
        region: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
    ) -> list[IncidentHistory]:
        """Incidents as :meth:`list_incidents` selects them, each with its events and durations."""
        found = self.list_incidents(
            states=states, metric=metric, region=region, since=since, until=until, limit=limit
        )
        events: dict[str, list[LifecycleEvent]] = {incident.id: [] for incident in found}
        ids = list(events)
        with self._read() as connection:
            for start in range(0, len(ids), self.history_batch):  # bounded IN lists
                query = (
                    sa.select(incident_events)
                    .where(incident_events.c.incident_id.in_(ids[start : start + self.history_batch]))
                    .order_by(incident_events.c.seq)
                )
                for row in connection.execute(query):
                    events[row.incident_id].append(_event(row))
        return [IncidentHistory.build(incident, events[incident.id]) for incident in found]

    @staticmethod
    def _incident_query(
        *,
        states: Collection[IncidentState] | None,
        metric: str | None,
        region: str | None,
        since: datetime | None,
        until: datetime | None,
    ) -> sa.Select[tuple[Any]]:
        query = sa.select(incidents.c.payload)
        if states is not None:
            query = query.where(incidents.c.state.in_([IncidentState(state).value for state in states]))
        for column, value in ((incident_members.c.metric, metric), (incident_members.c.region, region)):
            if value is not None:
                query = query.where(
                    sa.exists().where(incident_members.c.incident_id == incidents.c.id, column == value)
                )
        if since is not None:
            query = query.where(incidents.c.opened_at >= since)
        if until is not None:
            query = query.where(incidents.c.opened_at < until)
        return query


def _event(row: sa.Row[Any]) -> LifecycleEvent:
    return LifecycleEvent(row.incident_id, LifecycleKind(row.kind), row.at, row.actor, row.detail)


class SqlOutbox(_SqlBase):
    """:class:`alerts.ports.Outbox` on SQL: notifications are rows, delivered in enqueue order."""

    #: How many times :meth:`enqueue` retries when a concurrent enqueue took the same ``incident_seq``.
    enqueue_retries = 5

    def enqueue(self, notification: Notification) -> bool:
        """Store ``notification`` as pending; ``False`` (and no change) if its id is already in the outbox."""
        values = {
            "id": notification.id,
            "incident_id": notification.incident_id,
            "receiver": notification.receiver,
            "channel": notification.channel,
            "reason": notification.reason.value,
            "payload": notification.to_dict(),
            "status": DeliveryStatus.PENDING.value,
            "attempts": 0,
            "created_at": _to_utc(notification.created_at, f"created_at of notification {notification.id}"),
        }
        next_seq = (
            sa.select(sa.func.coalesce(sa.func.max(notifications.c.incident_seq), 0) + 1)
            .where(notifications.c.incident_id == notification.incident_id)
            .scalar_subquery()
        )
        row = {**values, "incident_seq": next_seq}
        attempts = 1 if self.in_transaction else self.enqueue_retries
        for _ in range(attempts):
            try:
                with self._tx() as connection:
                    return self._insert_ignore(connection, notifications, row, conflict_on=["id"])
            except sa.exc.IntegrityError:
                # A concurrent enqueue for the same incident committed the same incident_seq first.
                # Alone, retry (the number is recomputed); inside a caller's transaction, which the
                # database has aborted, the caller must retry the whole transaction.
                continue
        raise StoreError(
            f"could not enqueue notification {notification.id}: concurrent enqueues for incident "
            f"{notification.incident_id} took its sequence number; retry "
            + ("the transaction" if self.in_transaction else "later")
        )

    def pending(self) -> list[Notification]:
        """Pending notifications in enqueue order, with ``attempts`` filled."""
        query = (
            sa.select(notifications.c.payload, notifications.c.attempts)
            .where(notifications.c.status == DeliveryStatus.PENDING.value)
            .order_by(notifications.c.seq)
        )
        with self._read() as connection:
            return [
                Notification.from_dict(row.payload, attempts=row.attempts)
                for row in connection.execute(query)
            ]

    def mark_sending(self, notification_id: str, at: datetime) -> None:
        """Count a send attempt (``attempts += 1``) right before sending."""
        self._update(
            notification_id,
            attempts=notifications.c.attempts + 1,
            last_attempt_at=_to_utc(at, f"send time of notification {notification_id}"),
        )

    def mark_delivered(self, notification_id: str, channel: str, ts: str | None, at: datetime) -> None:
        """Mark delivered at ``(channel, ts)`` and clear the last error.

        The first delivery with a ``ts`` of an incident to a receiver becomes its thread (see
        :meth:`thread_for`); later ones never replace it.
        """
        at = _to_utc(at, f"delivery time of notification {notification_id}")
        with self._tx() as connection:
            row = self._update(
                notification_id,
                connection=connection,
                status=DeliveryStatus.DELIVERED.value,
                delivered_channel=channel,
                slack_ts=ts,
                delivered_at=at,
                last_error=None,
                retryable=None,
            )
            if ts is not None:
                self._insert_ignore(
                    connection,
                    slack_threads,
                    {
                        "incident_id": row.incident_id,
                        "receiver": row.receiver,
                        "channel": channel,
                        "ts": ts,
                        "created_at": at,
                    },
                )

    def mark_failed(self, notification_id: str, error: str, retryable: bool, at: datetime) -> None:
        """Record a failed send: retryable stays pending, otherwise status ``failed`` for good."""
        at = _to_utc(at, f"failure time of notification {notification_id}")
        if retryable:
            self._update(notification_id, last_error=error, retryable=True)
        else:
            self._update(
                notification_id,
                status=DeliveryStatus.FAILED.value,
                last_error=error,
                retryable=False,
                failed_at=at,
            )

    def thread_for(self, incident_id: str, receiver: str) -> SlackThread | None:
        """Where the incident's message to ``receiver`` is, or ``None`` before its first delivery."""
        query = sa.select(slack_threads.c.channel, slack_threads.c.ts).where(
            slack_threads.c.incident_id == incident_id, slack_threads.c.receiver == receiver
        )
        with self._read() as connection:
            row = connection.execute(query).one_or_none()
        return None if row is None else SlackThread(row.channel, row.ts)

    def entries(self, incident_id: str | None = None) -> list[OutboxEntry]:
        """Every notification (of ``incident_id`` if given) with its delivery state, in enqueue order."""
        query = sa.select(notifications).order_by(notifications.c.seq)
        if incident_id is not None:
            query = query.where(notifications.c.incident_id == incident_id)
        with self._read() as connection:
            return [
                OutboxEntry(
                    notification=Notification.from_dict(row.payload, attempts=row.attempts),
                    status=DeliveryStatus(row.status),
                    attempts=row.attempts,
                    error=row.last_error,
                    retryable=row.retryable,
                    channel=row.delivered_channel,
                    ts=row.slack_ts,
                    delivered_at=row.delivered_at,
                )
                for row in connection.execute(query)
            ]

    def _update(
        self, notification_id: str, *, connection: Connection | None = None, **values: Any
    ) -> sa.Row[Any]:
        """Apply ``values`` to one notification; returns its ``(incident_id, receiver)``."""
        statement = (
            notifications.update()
            .where(notifications.c.id == notification_id)
            .values(**values)
            .returning(notifications.c.incident_id, notifications.c.receiver)
        )
        if connection is None:
            with self._tx() as own:
                row = own.execute(statement).one_or_none()
        else:
            row = connection.execute(statement).one_or_none()
        if row is None:
            raise UnknownNotificationError(
                f"notification {notification_id!r} is not in the outbox; enqueue() it before delivering"
            )
        return row


class SqlSilenceRepository(_SqlBase):
    """:class:`alerts.ports.SilenceRepository` on SQL."""

    def add(self, silence: Silence) -> None:
        """Insert or replace ``silence`` (by ``id``)."""
        values = {
            "matchers": [matcher.to_dict() for matcher in silence.matchers],
            "reason": silence.reason,
            "created_by": silence.created_by,
            "created_at": silence.created_at,
            "expires_at": silence.expires_at,
        }
        with self._tx() as connection:
            self._upsert(connection, silences, {"id": silence.id}, values)

    def list_silences(self, *, active_at: datetime | None = None) -> list[Silence]:
        """All silences, or those active at ``active_at`` (``created_at <= active_at < expires_at``)."""
        query = sa.select(silences).order_by(silences.c.created_at, silences.c.id)
        if active_at is not None:
            active_at = _to_utc(active_at, "active_at")
            query = query.where(silences.c.created_at <= active_at, silences.c.expires_at > active_at)
        with self._read() as connection:
            return [
                Silence(
                    id=row.id,
                    matchers=tuple(Matcher.from_dict(matcher) for matcher in row.matchers),
                    reason=row.reason,
                    created_by=row.created_by,
                    created_at=row.created_at,
                    expires_at=row.expires_at,
                )
                for row in connection.execute(query)
            ]

    def remove(self, silence_id: str) -> bool:
        """Delete a silence; ``True`` when it existed."""
        with self._tx() as connection:
            return connection.execute(silences.delete().where(silences.c.id == silence_id)).rowcount == 1


class SqlSlackState(_SqlBase):
    """Delivery steps, channel ids, actions and false positives (:mod:`alerts.ports`' Slack ports).

    Step and channel records are written in their own short transaction even on a bound store, so a crash
    right after a Slack call still finds what was recorded before it.
    """

    @contextmanager
    def _own_tx(self) -> Iterator[Connection]:
        with self.engine.begin() as connection:
            yield connection

    # -- StepLog ----------------------------------------------------------------------------------
    def record_step(self, record: StepRecord) -> None:
        """Append a step record (committed before returning)."""
        with self._own_tx() as connection:
            connection.execute(
                notification_steps.insert().values(
                    notification_id=record.notification_id, payload=record.to_dict()
                )
            )

    def steps_for(self, notification_id: str) -> list[StepRecord]:
        """Every step record of ``notification_id`` in insertion order."""
        query = (
            sa.select(notification_steps.c.payload)
            .where(notification_steps.c.notification_id == notification_id)
            .order_by(notification_steps.c.id)
        )
        with self.engine.connect() as connection:
            return [StepRecord.from_dict(row.payload) for row in connection.execute(query)]

    # -- ChannelDirectory -------------------------------------------------------------------------
    def get_channel_id(self, name: str) -> str | None:
        """The cached id of channel ``name`` (without ``#``)."""
        query = sa.select(slack_channels.c.channel_id).where(slack_channels.c.name == name.lstrip("#"))
        with self.engine.connect() as connection:
            found = connection.execute(query).scalar()
        return None if found is None else str(found)

    def put_channel_id(self, name: str, channel_id: str) -> None:
        """Remember the id of channel ``name`` (committed before returning)."""
        with self._own_tx() as connection:
            self._upsert(connection, slack_channels, {"name": name.lstrip("#")}, {"channel_id": channel_id})

    # -- ActionLog --------------------------------------------------------------------------------
    def record_action(self, record: ActionRecord) -> bool:
        """Record an action once per key; ``False`` when the key was already recorded (a Slack retry)."""
        with self._tx() as connection:
            return self._insert_ignore(
                connection,
                incident_actions,
                {
                    "key": record.key,
                    "incident_id": record.incident_id,
                    "at": _to_utc(record.at, f"at of action {record.key}"),
                    "payload": record.to_dict(),
                },
            )

    def list_actions(self, incident_id: str) -> list[ActionRecord]:
        """Actions on ``incident_id``, oldest first."""
        query = (
            sa.select(incident_actions.c.payload)
            .where(incident_actions.c.incident_id == incident_id)
            .order_by(incident_actions.c.at, incident_actions.c.key)
        )
        with self._read() as connection:
            return [ActionRecord.from_dict(row.payload) for row in connection.execute(query)]

    # -- FalsePositiveRepository ------------------------------------------------------------------
    def record_false_positive(self, fp: FalsePositive) -> None:
        """Insert or replace the false-positive record of one incident member."""
        with self._tx() as connection:
            self._upsert(
                connection,
                false_positives,
                {"incident_id": fp.incident_id, "metric": fp.metric, "region": fp.region},
                {
                    "start": _to_utc(fp.start, "start of a false positive"),
                    "end": _to_utc(fp.end, "end of a false positive"),
                    "marked_by": fp.marked_by,
                    "marked_at": _to_utc(fp.marked_at, "marked_at of a false positive"),
                },
            )

    def list_false_positives(
        self, *, metric: str | None = None, region: str | None = None
    ) -> list[FalsePositive]:
        """False positives, optionally of one metric and region, ordered by (start, metric, region)."""
        table = false_positives
        query = sa.select(table)
        if metric is not None:
            query = query.where(table.c.metric == metric)
        if region is not None:
            query = query.where(table.c.region == region)
        query = query.order_by(table.c.start, table.c.metric, table.c.region)
        with self._read() as connection:
            return [
                FalsePositive(
                    incident_id=row.incident_id,
                    metric=row.metric,
                    region=row.region,
                    start=row.start,
                    end=row.end,
                    marked_by=row.marked_by,
                    marked_at=row.marked_at,
                )
                for row in connection.execute(query)
            ]


class SqlStore(SqlIncidentRepository, SqlOutbox, SqlSilenceRepository, SqlSlackState):
    """State of the daemon in one SQL database. See the module docstring for the API.

    Args:
        engine: Engine of a database upgraded to head (see :func:`make_engine` and :func:`upgrade`).
        connection: Internal; set by :meth:`transaction`.
    """

    @contextmanager
    def transaction(self) -> Iterator[SqlStore]:
        """A store whose calls all join one transaction, committed when the block exits normally.

        This makes a scored bucket and its consequences all-or-nothing: advance the watermark and, only if
        that returned ``True``, save incidents and enqueue notifications in the same block. A crash (or an
        exception) anywhere rolls everything back, so the bucket is scored again and nothing is lost or
        doubled. Keep slow work (fetching, scoring) outside the block: on SQLite it holds the write lock.
        The bound store belongs to the calling thread and is unusable after the block.

        Raises:
            StoreError: this store is already bound to a transaction (they do not nest).
        """
        if self._connection is not None:
            raise StoreError("SqlStore.transaction() does not nest; use the bound store you already have")
        with self.engine.begin() as connection:
            yield type(self)(self.engine, connection=connection)

    # -- watermarks -------------------------------------------------------------------------------
    def get_watermark(self, metric: str, series: str) -> datetime | None:
        """Last scored bucket of ``(metric, series)``, or ``None`` if it was never scored."""
        query = sa.select(watermarks.c.bucket).where(
            watermarks.c.metric == metric, watermarks.c.series == series
        )
        with self._read() as connection:
            return connection.execute(query).scalar_one_or_none()

    def list_watermarks(self, metric: str | None = None) -> list[Watermark]:
        """All watermarks (of one ``metric`` if given), ordered by metric then series."""
        query = sa.select(watermarks).order_by(watermarks.c.metric, watermarks.c.series)
        if metric is not None:
            query = query.where(watermarks.c.metric == metric)
        with self._read() as connection:
            return [Watermark(**row._mapping) for row in connection.execute(query)]

    def advance_watermark(
        self,
        metric: str,
        series: str,
        bucket: datetime,
        expected_previous: datetime | None,
        *,
        now: datetime,
    ) -> bool:
        """Compare-and-set the last scored bucket of ``(metric, series)``.

        The watermark moves to ``bucket`` only if it currently equals ``expected_previous`` (``None``: no
        watermark yet). Of concurrent callers with the same ``expected_previous`` exactly one wins, so a
        bucket is never scored twice. Call it inside :meth:`SqlStore.transaction` together with the writes
        the scored buckets produced (incidents, notifications), and write those only if it returned
        ``True``: then a crash or a lost race can neither lose nor double them.

        Returns:
            ``True`` if this call moved the watermark, ``False`` if another writer got there first.

        Raises:
            WatermarkRegressionError: ``bucket`` is not after ``expected_previous``.
            NaiveTimestampError: a timestamp has no timezone.
        """
        new = _to_utc(bucket, f"watermark bucket of {metric}/{series}")
        now = _to_utc(now, "now")
        if expected_previous is None:
            with self._tx() as connection:
                return self._insert_ignore(
                    connection,
                    watermarks,
                    {"metric": metric, "series": series, "bucket": new, "updated_at": now},
                )
        previous = _to_utc(expected_previous, f"expected previous watermark of {metric}/{series}")
        if new <= previous:
            raise WatermarkRegressionError(
                f"watermark of {metric}/{series} cannot move from {previous.isoformat()} to "
                f"{new.isoformat()}: buckets must advance; reset it with reset_watermark() to rescore"
            )
        statement = (
            watermarks.update()
            .where(
                watermarks.c.metric == metric,
                watermarks.c.series == series,
                watermarks.c.bucket == previous,
            )
            .values(bucket=new, updated_at=now)
        )
        with self._tx() as connection:
            return connection.execute(statement).rowcount == 1

    def reset_watermark(self, metric: str, series: str | None = None) -> int:
        """Forget the watermark of one series (or every series of ``metric``) so it is scored again.

        Returns:
            Number of watermarks removed.
        """
        statement = watermarks.delete().where(watermarks.c.metric == metric)
        if series is not None:
            statement = statement.where(watermarks.c.series == series)
        with self._tx() as connection:
            return connection.execute(statement).rowcount

    # -- model states -----------------------------------------------------------------------------
    def save_model_state(
        self,
        metric: str,
        series: str,
        detector: str,
        state: str,
        *,
        version: int,
        fitted_at: datetime,
    ) -> None:
        """Insert or replace the fitted state of ``detector`` on ``(metric, series)``.

        Args:
            state: The detector's JSON text (``Detector.to_json()``); checked to be valid JSON.
            version: Version of the JSON layout (``Detector.state_version``).
            fitted_at: When the model was fitted (UTC-aware).
        """
        key = f"model state of {detector} on {metric}/{series}"
        if not isinstance(state, str):
            raise TypeError(f"{key} must be JSON text (Detector.to_json()), got {type(state).__name__}")
        try:
            json.loads(state)
        except ValueError as exc:
            raise StoreError(f"{key} is not valid JSON ({exc}); save Detector.to_json() output") from exc
        values = {"state": state, "version": version, "fitted_at": _to_utc(fitted_at, f"fitted_at of {key}")}
        with self._tx() as connection:
            self._upsert(
                connection,
                model_states,
                {"metric": metric, "series": series, "detector": detector},
                values,
            )

    def load_model_state(self, metric: str, series: str, detector: str) -> ModelState | None:
        """The saved state of ``detector`` on ``(metric, series)``, or ``None``."""
        query = sa.select(model_states).where(
            model_states.c.metric == metric,
            model_states.c.series == series,
            model_states.c.detector == detector,
        )
        with self._read() as connection:
            row = connection.execute(query).one_or_none()
        return None if row is None else ModelState(**row._mapping)

    def delete_model_states(self, metric: str, series: str | None = None) -> int:
        """Drop saved models of ``metric`` (one ``series`` if given) to force a refit; returns the count."""
        statement = model_states.delete().where(model_states.c.metric == metric)
        if series is not None:
            statement = statement.where(model_states.c.series == series)
        with self._tx() as connection:
            return connection.execute(statement).rowcount

    # -- runs -------------------------------------------------------------------------------------
    def start_run(self, run_id: str, *, now: datetime) -> None:
        """Record the start of a daemon tick (status ``running``).

        Raises:
            StoreError: ``run_id`` was already used.
        """
        values = {
            "run_id": run_id,
            "started_at": _to_utc(now, f"start of run {run_id}"),
            "status": "running",
            "series_scored": 0,
            "errors": 0,
        }
        with self._tx() as connection:
            if not self._insert_ignore(connection, runs, values):
                raise StoreError(f"run {run_id!r} already exists; use a fresh run id per tick")

    def finish_run(
        self,
        run_id: str,
        *,
        now: datetime,
        status: RunStatus,
        series_scored: int,
        errors: int,
        detail: Any = None,
    ) -> None:
        """Close a running tick with its outcome; ``detail`` is any JSON-compatible value (e.g. error list).

        Raises:
            StoreError: unknown ``status``, or ``run_id`` is unknown or already finished.
        """
        if status not in RUN_STATUSES or status == "running":
            raise StoreError(f"run {run_id!r}: status must be one of ok, partial, failed; got {status!r}")
        statement = (
            runs.update()
            .where(runs.c.run_id == run_id, runs.c.status == "running")
            .values(
                finished_at=_to_utc(now, f"end of run {run_id}"),
                status=status,
                series_scored=series_scored,
                errors=errors,
                detail=detail,
            )
        )
        with self._tx() as connection:
            if connection.execute(statement).rowcount != 1:
                raise StoreError(f"run {run_id!r} is unknown or already finished; call start_run first")

    def get_run(self, run_id: str) -> Run | None:
        """One run by id, or ``None``."""
        with self._read() as connection:
            row = connection.execute(sa.select(runs).where(runs.c.run_id == run_id)).one_or_none()
        return None if row is None else Run(**row._mapping)

    def recent_runs(self, limit: int = 20, *, status: RunStatus | None = None) -> list[Run]:
        """The latest runs, newest first (only those with ``status`` if given)."""
        query = sa.select(runs).order_by(runs.c.started_at.desc(), runs.c.run_id.desc()).limit(limit)
        if status is not None:
            query = query.where(runs.c.status == status)
        with self._read() as connection:
            return [Run(**row._mapping) for row in connection.execute(query)]

    # -- retention --------------------------------------------------------------------------------
    def prune(self, *, before: datetime) -> dict[str, int]:
        """Delete history older than ``before``, in one transaction; returns rows deleted per table.

        Removed: finished runs started before ``before``; delivered or failed notifications created before
        it; resolved incidents resolved before it (``updated_at`` if ``resolved_at`` is unset) that have
        no pending notification, with their members, events, Slack threads and notifications. Never
        touched: active incidents, pending notifications, watermarks, model states, silences.
        """
        cutoff = _to_utc(before, "prune cutoff")
        finished = (DeliveryStatus.DELIVERED.value, DeliveryStatus.FAILED.value)
        # Aliases keep the subquery from correlating with the table a DELETE below targets.
        old, waiting = incidents.alias("old_incident"), notifications.alias("waiting")
        doomed = sa.select(old.c.id).where(
            old.c.state == IncidentState.RESOLVED.value,
            sa.func.coalesce(old.c.resolved_at, old.c.updated_at) < cutoff,
            ~sa.exists().where(
                waiting.c.incident_id == old.c.id, waiting.c.status == DeliveryStatus.PENDING.value
            ),
        )
        statements = [
            ("runs", runs.delete().where(runs.c.status != "running", runs.c.started_at < cutoff)),
            (
                "notifications",
                notifications.delete().where(
                    notifications.c.status.in_(finished),
                    sa.or_(notifications.c.created_at < cutoff, notifications.c.incident_id.in_(doomed)),
                ),
            ),
            ("incident_events", incident_events.delete().where(incident_events.c.incident_id.in_(doomed))),
            ("slack_threads", slack_threads.delete().where(slack_threads.c.incident_id.in_(doomed))),
            ("incident_members", incident_members.delete().where(incident_members.c.incident_id.in_(doomed))),
            ("incidents", incidents.delete().where(incidents.c.id.in_(doomed))),
        ]
        with self._tx() as connection:
            return {name: connection.execute(statement).rowcount for name, statement in statements}
