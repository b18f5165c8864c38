"""Test helpers shipped with the library (like ``structlog.testing``).

In-memory implementations of the :mod:`alerts.ports` protocols, with exactly the contract documented
there, so tests of :mod:`alerts` (and of code that uses it) need no database; and :class:`RecordingSink`,
a sink that records what it was asked to send and can be told to fail.

Also in memory: :class:`InMemoryStepLog`, :class:`InMemoryChannelDirectory`, :class:`InMemoryActionLog`,
:class:`InMemoryFalsePositives` and :class:`StaticUserGroups` (the ports added for issues 14 and 16).

Contract checks ``check_incident_repository(repo)``, ``check_outbox(outbox)``,
``check_silence_repository(repo)``, ``check_step_log(log)``, ``check_channel_directory(directory)``,
``check_action_log(log)`` and ``check_false_positive_repository(repo)`` exercise any implementation of the
ports (given empty) and raise ``AssertionError`` naming the broken rule: ``monitor.store``'s tests can run
them on the SQL versions.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from alerts.actions import ActionKind, ActionRecord
from alerts.model import (
    AlertSignal,
    DeliveryStatus,
    FalsePositive,
    Incident,
    IncidentState,
    LifecycleEvent,
    LifecycleKind,
    Matcher,
    Notification,
    NotifyReason,
    OutboxEntry,
    RootCause,
    Severity,
    Silence,
    SlackThread,
)
from alerts.ports import (
    ActionLog,
    ChannelDirectory,
    FalsePositiveRepository,
    IncidentRepository,
    Outbox,
    SilenceRepository,
    StepLog,
)
from alerts.sinks.base import DeliveryResult
from alerts.steps import StepKind, StepRecord, StepStatus

__all__ = [
    "InMemoryActionLog",
    "InMemoryChannelDirectory",
    "InMemoryFalsePositives",
    "InMemoryIncidentRepository",
    "InMemoryOutbox",
    "InMemorySilenceRepository",
    "InMemoryStepLog",
    "RecordingSink",
    "StaticUserGroups",
    "UnknownNotificationError",
    "check_action_log",
    "check_channel_directory",
    "check_false_positive_repository",
    "check_incident_repository",
    "check_outbox",
    "check_silence_repository",
    "check_step_log",
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


class InMemoryStepLog:
    """:class:`alerts.ports.StepLog` in a list."""

    def __init__(self) -> None:
        self._records: list[StepRecord] = []

    def record_step(self, record: StepRecord) -> None:
        self._records.append(record)

    def steps_for(self, notification_id: str) -> list[StepRecord]:
        return [r for r in self._records if r.notification_id == notification_id]

    @property
    def records(self) -> list[StepRecord]:
        return list(self._records)


class InMemoryChannelDirectory:
    """:class:`alerts.ports.ChannelDirectory` in a dict (names without ``#``)."""

    def __init__(self, channels: dict[str, str] | None = None) -> None:
        self._ids = {k.lstrip("#"): v for k, v in (channels or {}).items()}

    def get_channel_id(self, name: str) -> str | None:
        return self._ids.get(name.lstrip("#"))

    def put_channel_id(self, name: str, channel_id: str) -> None:
        self._ids[name.lstrip("#")] = channel_id


class InMemoryActionLog:
    """:class:`alerts.ports.ActionLog` in a dict."""

    def __init__(self) -> None:
        self._records: dict[str, ActionRecord] = {}

    def record_action(self, record: ActionRecord) -> bool:
        if record.key in self._records:
            return False
        self._records[record.key] = record
        return True

    def list_actions(self, incident_id: str) -> list[ActionRecord]:
        return [r for r in self._records.values() if r.incident_id == incident_id]


class InMemoryFalsePositives:
    """:class:`alerts.ports.FalsePositiveRepository` in a dict."""

    def __init__(self) -> None:
        self._records: dict[tuple[str, str, str], FalsePositive] = {}

    def record_false_positive(self, fp: FalsePositive) -> None:
        self._records[fp.key] = fp

    def list_false_positives(
        self, *, metric: str | None = None, region: str | None = None
    ) -> list[FalsePositive]:
        found = [
            fp
            for fp in self._records.values()
            if (metric is None or fp.metric == metric) and (region is None or fp.region == region)
        ]
        return sorted(found, key=lambda fp: (fp.start, fp.metric, fp.region))


class StaticUserGroups:
    """:class:`alerts.ports.UserGroupDirectory` from a fixed mapping (group id -> user ids)."""

    def __init__(self, groups: dict[str, Collection[str]] | None = None) -> None:
        self._groups = {k: frozenset(v) for k, v in (groups or {}).items()}

    def members(self, usergroup_id: str) -> frozenset[str]:
        return self._groups.get(usergroup_id, frozenset())


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


# -- contract checks: run them against any implementation of the ports (e.g. monitor.store) -------------
_T = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def _sample_signal(metric: str, region: str) -> AlertSignal:
    return AlertSignal(
        metric=metric,
        region=region,
        kind="spike",
        observed=150.0,
        expected=100.0,
        change_pct=50.0,
        score=6.0,
        volume=2_000.0,
        start=_T - timedelta(minutes=15),
        end=_T,
        root_causes=(RootCause("category=gambling", 0.6, mix=0.2, rate=0.4),),
        investigate=f"livewatch investigate {metric} --region {region} --at 2026-01-05T11:45Z",
    )


def _sample_incident(metric: str, region: str, opened: datetime, **changes: Any) -> Incident:
    incident = Incident(
        id=f"{metric}/{region}/{opened:%Y%m%dT%H%M%SZ}",
        group_key=f"{metric}/{region}",
        state=IncidentState.OPEN,
        severity=Severity.WARNING,
        opened_at=opened,
        updated_at=opened,
        signals=(_sample_signal(metric, region),),
        last_signal_at=opened,
    )
    return replace(incident, **changes)


def _check(condition: bool, what: str) -> None:
    if not condition:
        raise AssertionError(f"port contract broken: {what} (see alerts.ports)")


def check_incident_repository(repo: IncidentRepository) -> None:
    """Exercise an EMPTY :class:`~alerts.ports.IncidentRepository` against its contract.

    Raises:
        AssertionError: naming the broken rule.
    """
    a = _sample_incident("reports", "EU", _T)
    b = _sample_incident("bans", "US", _T + timedelta(minutes=15))
    c = _sample_incident(
        "reports",
        "EU",
        _T - timedelta(days=1),
        state=IncidentState.RESOLVED,
        resolved_at=_T - timedelta(hours=20),
    )
    for incident in (a, b, c):
        repo.save(incident)
    _check(repo.get(a.id) == a, "get() returns the saved incident unchanged (round trip)")
    _check(repo.get("missing") is None, "get() of an unknown id is None")
    _check([i.id for i in repo.list_active()] == [a.id, b.id], "list_active() is active only, by opened_at")
    _check(repo.get_open_by_key("reports/EU") == a, "get_open_by_key() ignores resolved incidents")
    _check(repo.get_open_by_key("views/JP") is None, "get_open_by_key() of an unknown key is None")
    updated = a.with_changes(clean_buckets=2, acknowledged_by="ana", acknowledged_at=_T)
    repo.save(updated)
    _check(repo.get(a.id) == updated, "save() upserts by id")
    _check(len(repo.list_incidents()) == 3, "save() of an existing id does not add a row")
    _check([i.id for i in repo.list_incidents()] == [b.id, a.id, c.id], "list_incidents() is newest first")
    _check(
        [i.id for i in repo.list_incidents(states=[IncidentState.RESOLVED])] == [c.id],
        "list_incidents(states=...) filters by state",
    )
    _check([i.id for i in repo.list_incidents(metric="bans")] == [b.id], "list_incidents(metric=...)")
    _check([i.id for i in repo.list_incidents(region="EU")] == [a.id, c.id], "list_incidents(region=...)")
    _check(
        [i.id for i in repo.list_incidents(since=_T, until=_T + timedelta(minutes=15))] == [a.id],
        "list_incidents(since, until) bounds opened_at as since <= opened_at < until",
    )
    _check(len(repo.list_incidents(limit=1)) == 1, "list_incidents(limit=...)")
    events = [
        LifecycleEvent(a.id, LifecycleKind.OPENED, _T, "livewatch", "1 signal(s)"),
        LifecycleEvent(b.id, LifecycleKind.OPENED, _T, "livewatch"),
        LifecycleEvent(a.id, LifecycleKind.ACKNOWLEDGED, _T + timedelta(minutes=1), "ana"),
    ]
    for event in events:
        repo.record_event(event)
    _check(repo.list_events(a.id) == [events[0], events[2]], "list_events() in insertion order, per incident")


def check_outbox(outbox: Outbox) -> None:
    """Exercise an EMPTY :class:`~alerts.ports.Outbox` against its contract.

    Raises:
        AssertionError: naming the broken rule.
    """
    a = _sample_incident("reports", "EU", _T)
    b = _sample_incident("bans", "US", _T)
    notes = [
        Notification(
            f"{inc.id}#slack#{i}", inc.id, "slack", "#alerts", reason, _T + timedelta(minutes=i), inc
        )
        for i, (inc, reason) in enumerate(
            [
                (a, NotifyReason.FIRST),
                (b, NotifyReason.FIRST),
                (a, NotifyReason.GREW),
                (a, NotifyReason.RESOLVED),
            ]
        )
    ]
    for note in notes:
        _check(outbox.enqueue(note) is True, "enqueue() of a new id returns True")
    _check(outbox.enqueue(notes[0]) is False, "enqueue() is idempotent on the notification id")
    _check(outbox.pending() == notes, "pending() returns notifications unchanged, in enqueue order")
    _check(all(n.attempts == 0 for n in outbox.pending()), "pending() fills attempts (0 before any send)")

    outbox.mark_sending(notes[0].id, _T)
    _check(outbox.pending()[0].attempts == 1, "mark_sending() increments attempts")
    _check(outbox.thread_for(a.id, "slack") is None, "no thread before the first delivery")
    outbox.mark_delivered(notes[0].id, "C1", "111.1", _T)
    _check(
        outbox.thread_for(a.id, "slack") == SlackThread("C1", "111.1"), "mark_delivered() records the thread"
    )
    _check(outbox.thread_for(a.id, "webhook") is None, "threads are per (incident, receiver)")

    outbox.mark_sending(notes[2].id, _T)
    outbox.mark_delivered(notes[2].id, "C1", "111.1", _T)
    outbox.mark_sending(notes[1].id, _T)
    outbox.mark_failed(notes[1].id, "HTTP 503; will retry", True, _T)
    _check([n.id for n in outbox.pending()] == [notes[1].id, notes[3].id], "retryable failures stay pending")
    outbox.mark_sending(notes[3].id, _T)
    outbox.mark_failed(notes[3].id, "channel_not_found", False, _T)
    _check([n.id for n in outbox.pending()] == [notes[1].id], "permanent failures leave pending")
    outbox.mark_sending(notes[1].id, _T)
    outbox.mark_delivered(notes[1].id, "webhook", None, _T + timedelta(minutes=5))
    _check(outbox.thread_for(b.id, "slack") is None, "a delivery without ts records no thread")

    entries = {e.notification.id: e for e in outbox.entries()}
    _check(list(entries) == [n.id for n in notes], "entries() lists everything in enqueue order")
    _check([e.notification.id for e in outbox.entries(a.id)] == [notes[0].id, notes[2].id, notes[3].id],
           "entries(incident_id) filters by incident")  # fmt: skip
    first, retried, failed = entries[notes[0].id], entries[notes[1].id], entries[notes[3].id]
    _check(
        (first.status, first.channel, first.ts, first.delivered_at)
        == (DeliveryStatus.DELIVERED, "C1", "111.1", _T),
        "a delivered entry keeps channel, ts and delivery time",
    )
    _check((retried.status, retried.attempts) == (DeliveryStatus.DELIVERED, 2), "attempts survive a retry")
    _check(
        (failed.status, failed.error, failed.retryable)
        == (DeliveryStatus.FAILED, "channel_not_found", False),
        "a failed entry keeps its error and retryable flag",
    )


def check_silence_repository(repo: SilenceRepository) -> None:
    """Exercise an EMPTY :class:`~alerts.ports.SilenceRepository` against its contract.

    Raises:
        AssertionError: naming the broken rule.
    """
    day = timedelta(days=1)
    old = Silence("s-old", (Matcher("metric", "reports"),), "expired", "ana", _T - 2 * day, _T - day)
    now = Silence("s-now", (Matcher("region", "E.*", regex=True),), "bot wave", "bo", _T - day, _T + day)
    later = Silence(
        "s-later", (Matcher("metric", "bans", negate=True),), "launch", "cy", _T + day, _T + 2 * day
    )
    for silence in (now, later, old):
        repo.add(silence)
    _check(repo.list_silences() == [old, now, later], "list_silences() returns all, by created_at, unchanged")
    _check(
        repo.list_silences(active_at=_T) == [now], "list_silences(active_at) is created_at <= t < expires_at"
    )
    _check(repo.list_silences(active_at=_T + day) == [later], "expires_at is exclusive")
    edited = replace(now, reason="bot wave (extended)", expires_at=_T + 3 * day)
    repo.add(edited)
    _check(repo.list_silences(active_at=_T) == [edited], "add() upserts by id")
    _check(repo.remove("s-now") is True and repo.remove("s-now") is False, "remove() says whether it removed")
    _check([s.id for s in repo.list_silences()] == ["s-old", "s-later"], "remove() removes only that silence")


def check_step_log(log: StepLog) -> None:
    """Exercise an EMPTY :class:`~alerts.ports.StepLog` against its contract."""
    started = StepRecord("n1", StepKind.POST, StepStatus.STARTED, _T, channel="C1")
    done = StepRecord("n1", StepKind.POST, StepStatus.DONE, _T, channel="C1", ts="111.1")
    other = StepRecord("n2", StepKind.UPDATE, StepStatus.STARTED, _T, channel="C1", ts="111.1")
    upload = StepRecord("n1", StepKind.UPLOAD, StepStatus.DONE, _T, channel="C1", ts="111.1", file_id="F1")
    for record in (started, other, done, upload):
        log.record_step(record)
    _check(log.steps_for("n1") == [started, done, upload], "steps_for() in insertion order, unchanged")
    _check(log.steps_for("n2") == [other], "steps_for() filters by notification")
    _check(log.steps_for("missing") == [], "steps_for() of an unknown notification is empty")


def check_channel_directory(directory: ChannelDirectory) -> None:
    """Exercise an EMPTY :class:`~alerts.ports.ChannelDirectory` against its contract."""
    _check(directory.get_channel_id("alerts") is None, "get_channel_id() of an unknown name is None")
    directory.put_channel_id("alerts", "C1")
    _check(directory.get_channel_id("alerts") == "C1", "put_channel_id() then get_channel_id()")
    directory.put_channel_id("alerts", "C2")
    _check(directory.get_channel_id("alerts") == "C2", "put_channel_id() upserts")


def check_action_log(log: ActionLog) -> None:
    """Exercise an EMPTY :class:`~alerts.ports.ActionLog` against its contract."""
    a = ActionRecord("i1|acknowledge|U1||", "i1", ActionKind.ACKNOWLEDGE, "U1", "@ana", _T, "acknowledged")
    b = ActionRecord("i1|resolve|U2||", "i1", ActionKind.RESOLVE, "U2", "@bo", _T, "resolved")
    _check(log.record_action(a) is True, "record_action() of a new key returns True")
    _check(log.record_action(a) is False, "record_action() is idempotent on the key")
    log.record_action(b)
    _check(log.list_actions("i1") == [a, b], "list_actions() in insertion order, unchanged")
    _check(log.list_actions("i2") == [], "list_actions() filters by incident")


def check_false_positive_repository(repo: FalsePositiveRepository) -> None:
    """Exercise an EMPTY :class:`~alerts.ports.FalsePositiveRepository` against its contract."""
    hour = timedelta(hours=1)
    late = FalsePositive("i2", "reports", "US", _T + hour, _T + 2 * hour, "@ana", _T)
    early = FalsePositive("i1", "reports", "EU", _T, _T + hour, "@ana", _T)
    for fp in (late, early):
        repo.record_false_positive(fp)
    _check(repo.list_false_positives() == [early, late], "list_false_positives() by start")
    _check(repo.list_false_positives(region="US") == [late], "list_false_positives(region=...)")
    _check(repo.list_false_positives(metric="bans") == [], "list_false_positives(metric=...)")
    moved = FalsePositive("i1", "reports", "EU", _T, _T + 3 * hour, "@bo", _T)
    repo.record_false_positive(moved)
    _check(repo.list_false_positives(region="EU") == [moved], "record_false_positive() upserts by key")
