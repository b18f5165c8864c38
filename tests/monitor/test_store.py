"""Tests of :mod:`monitor.store` on SQLite and PostgreSQL (see ``conftest.py`` for the engines).

The alerts ports are checked two ways: direct assertions on the SQL store, and parity scripts that run the
same calls on the in-memory reference implementations of :mod:`alerts.testing` and compare every result.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Engine

from alerts.model import (
    AlertSignal,
    DeliveryStatus,
    Incident,
    IncidentState,
    LifecycleEvent,
    LifecycleKind,
    Matcher,
    Notification,
    NotifyReason,
    RootCause,
    Severity,
    Silence,
    SlackThread,
)
from alerts.ports import IncidentRepository, Outbox, SilenceRepository
from alerts.testing import (
    InMemoryIncidentRepository,
    InMemoryOutbox,
    InMemorySilenceRepository,
    check_incident_repository,
    check_outbox,
    check_silence_repository,
)
from monitor.store import (
    HistorySummary,
    IncidentHistory,
    MigrationError,
    NaiveTimestampError,
    SqlStore,
    StoreError,
    UnknownNotificationError,
    WatermarkRegressionError,
    check_up_to_date,
    is_up_to_date,
    metadata,
    notifications,
    upgrade,
)
from monitor.store import migrate as store_module

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


# -- builders -------------------------------------------------------------------------------------
def make_signal(metric: str, region: str, start: datetime, *, score: float = 5.0) -> AlertSignal:
    return AlertSignal(
        metric=metric,
        region=region,
        kind="spike",
        observed=120.0,
        expected=100.0,
        change_pct=20.0,
        score=score,
        volume=50.0,
        start=start,
        end=start + 5 * MIN,
        root_causes=(RootCause("category=gambling", 0.6, mix=0.2, rate=0.4),),
    )


def make_incident(
    metric: str = "reports",
    region: str = "br",
    opened: datetime = T0,
    *,
    state: IncidentState = IncidentState.OPEN,
    also: tuple[tuple[str, str], ...] = (),
    **changes: Any,
) -> Incident:
    signals = (make_signal(metric, region, opened), *(make_signal(m, r, opened) for m, r in also))
    return Incident(
        id=f"{metric}/{region}/{opened:%Y%m%dT%H%MZ}",
        group_key=f"{metric}/{region}",
        state=state,
        severity=Severity.WARNING,
        opened_at=opened,
        updated_at=opened,
        signals=signals,
        last_signal_at=opened,
        **changes,
    )


def make_notification(
    incident: Incident,
    *,
    receiver: str = "slack-ts",
    at: datetime = T0,
    reason: NotifyReason = NotifyReason.FIRST,
) -> Notification:
    return Notification(
        id=f"{incident.id}#{receiver}#{at.isoformat()}#{reason.value}",
        incident_id=incident.id,
        receiver=receiver,
        channel="#ts-alerts",
        reason=reason,
        created_at=at,
        incident=incident,
    )


def run_concurrently(count: int, call: Callable[[int], Any]) -> list[Any]:
    """Run ``call(i)`` in ``count`` threads released together; results in thread order."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        barrier.wait()
        try:
            results[i] = call(i)
        except BaseException as exc:  # re-raised in the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    stuck = sum(thread.is_alive() for thread in threads)
    assert stuck == 0, f"{stuck} of {count} threads still running after 60 s (deadlock?)"
    if errors:
        raise errors[0]
    return results


# -- protocols ------------------------------------------------------------------------------------
def test_sql_store_satisfies_the_alerts_ports(store: SqlStore) -> None:
    incidents: IncidentRepository = store
    outbox: Outbox = store
    silences: SilenceRepository = store
    assert isinstance(incidents, IncidentRepository)
    assert isinstance(outbox, Outbox)
    assert isinstance(silences, SilenceRepository)


@pytest.mark.parametrize(
    "check",
    [check_incident_repository, check_outbox, check_silence_repository],
    ids=["incidents", "outbox", "silences"],
)
def test_sql_store_passes_the_shipped_port_contract_checks(
    store: SqlStore, check: Callable[[Any], None]
) -> None:
    check(store)


# -- timestamps -----------------------------------------------------------------------------------
def test_timestamps_come_back_utc_aware_whatever_offset_went_in(store: SqlStore) -> None:
    # 14:00 at +02:00 is 12:00 UTC; a pandas Timestamp is accepted as a datetime.
    plus_two = datetime(2026, 3, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    assert store.advance_watermark("reports", "br", plus_two, None, now=pd.Timestamp(T0))
    stored = store.get_watermark("reports", "br")
    assert stored == T0
    assert stored is not None and stored.utcoffset() == timedelta(0)
    assert type(stored) is datetime


def test_naive_timestamps_are_rejected_with_the_key_in_the_message(store: SqlStore) -> None:
    with pytest.raises(NaiveTimestampError, match="reports/br"):
        store.advance_watermark("reports", "br", datetime(2026, 3, 1), None, now=T0)
    assert store.get_watermark("reports", "br") is None


# -- watermarks -----------------------------------------------------------------------------------
def test_watermark_compare_and_set_only_moves_from_the_expected_value(store: SqlStore) -> None:
    assert store.get_watermark("reports", "br") is None
    # First write: only from "no watermark".
    assert store.advance_watermark("reports", "br", T0, None, now=T0)
    assert not store.advance_watermark("reports", "br", T0 + MIN, None, now=T0)
    # Two writers that both read T0: the first wins, the second sees a stale expectation.
    assert store.advance_watermark("reports", "br", T0 + MIN, T0, now=T0 + MIN)
    assert not store.advance_watermark("reports", "br", T0 + 2 * MIN, T0, now=T0 + MIN)
    assert store.get_watermark("reports", "br") == T0 + MIN
    # Other series are independent.
    assert store.get_watermark("reports", "us") is None
    assert store.advance_watermark("reports", "us", T0, None, now=T0)
    assert [(w.series, w.bucket, w.updated_at) for w in store.list_watermarks("reports")] == [
        ("br", T0 + MIN, T0 + MIN),
        ("us", T0, T0),
    ]


def test_watermark_cannot_move_backwards_or_stay(store: SqlStore) -> None:
    store.advance_watermark("reports", "br", T0, None, now=T0)
    for bucket in (T0, T0 - MIN):
        with pytest.raises(WatermarkRegressionError, match="reports/br"):
            store.advance_watermark("reports", "br", bucket, T0, now=T0)
    assert store.get_watermark("reports", "br") == T0


@pytest.mark.parametrize("first", [None, T0], ids=["initial", "advance"])
def test_concurrent_watermark_writers_exactly_one_wins(store: SqlStore, first: datetime | None) -> None:
    if first is not None:
        store.advance_watermark("reports", "br", first, None, now=T0)
    buckets = [T0 + (i + 1) * MIN for i in range(4)]
    won = run_concurrently(4, lambda i: store.advance_watermark("reports", "br", buckets[i], first, now=T0))
    assert won.count(True) == 1
    assert store.get_watermark("reports", "br") == buckets[won.index(True)]


def test_reset_watermark_allows_rescoring(store: SqlStore) -> None:
    for series in ("br", "us"):
        store.advance_watermark("reports", series, T0, None, now=T0)
    store.advance_watermark("bans", "br", T0, None, now=T0)
    assert store.reset_watermark("reports", "br") == 1
    assert store.get_watermark("reports", "br") is None
    assert store.reset_watermark("reports") == 1  # only "us" was left
    assert [w.metric for w in store.list_watermarks()] == ["bans"]


# -- model states ---------------------------------------------------------------------------------
def test_model_state_round_trip_and_replace(store: SqlStore) -> None:
    state = '{"detector": "robust_z", "version": 2, "state": {"median": 0.125, "mad": 1e-9, "s": "\\u00e9"}}'
    assert store.load_model_state("reports", "br", "robust_z") is None
    store.save_model_state("reports", "br", "robust_z", state, version=2, fitted_at=T0)
    loaded = store.load_model_state("reports", "br", "robust_z")
    assert loaded is not None
    assert (loaded.state, loaded.version, loaded.fitted_at) == (state, 2, T0)
    # Saving again replaces (one row per metric/series/detector).
    store.save_model_state("reports", "br", "robust_z", '{"v": 3}', version=3, fitted_at=T0 + MIN)
    replaced = store.load_model_state("reports", "br", "robust_z")
    assert replaced is not None and (replaced.state, replaced.version, replaced.fitted_at) == (
        '{"v": 3}',
        3,
        T0 + MIN,
    )
    # Other detectors and series are separate.
    assert store.load_model_state("reports", "br", "prophet") is None
    assert store.load_model_state("reports", "us", "robust_z") is None


def test_model_state_must_be_json_text(store: SqlStore) -> None:
    with pytest.raises(StoreError, match="robust_z on reports/br"):
        store.save_model_state("reports", "br", "robust_z", "not json", version=1, fitted_at=T0)


def test_model_state_large_prophet_sized_text(store: SqlStore) -> None:
    # Prophet models serialise to hundreds of kB; Text must hold them on both backends.
    state = '{"params": [' + ",".join("0.123456789" for _ in range(40_000)) + "]}"
    store.save_model_state("reports", "br", "prophet", state, version=1, fitted_at=T0)
    loaded = store.load_model_state("reports", "br", "prophet")
    assert loaded is not None and loaded.state == state


def test_delete_model_states(store: SqlStore) -> None:
    for series in ("br", "us"):
        store.save_model_state("reports", series, "robust_z", "{}", version=1, fitted_at=T0)
    assert store.delete_model_states("reports", "br") == 1
    assert store.delete_model_states("reports") == 1
    assert store.load_model_state("reports", "us", "robust_z") is None


# -- runs -----------------------------------------------------------------------------------------
def test_runs_record_ticks_newest_first(store: SqlStore) -> None:
    store.start_run("r1", now=T0)
    store.finish_run("r1", now=T0 + 30 * timedelta(seconds=1), status="ok", series_scored=12, errors=0)
    store.start_run("r2", now=T0 + 5 * MIN)
    store.finish_run(
        "r2",
        now=T0 + 6 * MIN,
        status="partial",
        series_scored=11,
        errors=1,
        detail=[{"series": "reports/br"}],
    )
    store.start_run("r3", now=T0 + 10 * MIN)
    r1 = store.get_run("r1")
    assert r1 is not None and r1.duration_seconds == 30.0 and r1.series_scored == 12
    assert [r.run_id for r in store.recent_runs()] == ["r3", "r2", "r1"]
    assert [r.run_id for r in store.recent_runs(limit=1)] == ["r3"]
    assert [r.run_id for r in store.recent_runs(status="ok")] == ["r1"]
    r2, r3 = store.get_run("r2"), store.get_run("r3")
    assert r2 is not None and r2.detail == [{"series": "reports/br"}]
    assert r3 is not None and (r3.status, r3.finished_at, r3.duration_seconds) == ("running", None, None)


def test_run_errors_name_the_run(store: SqlStore) -> None:
    store.start_run("r1", now=T0)
    with pytest.raises(StoreError, match="'r1' already exists"):
        store.start_run("r1", now=T0)
    with pytest.raises(StoreError, match="status must be"):
        store.finish_run("r1", now=T0, status="running", series_scored=0, errors=0)
    store.finish_run("r1", now=T0, status="failed", series_scored=0, errors=3)
    with pytest.raises(StoreError, match="'r1' is unknown or already finished"):
        store.finish_run("r1", now=T0, status="ok", series_scored=0, errors=0)
    with pytest.raises(StoreError, match="'nope' is unknown"):
        store.finish_run("nope", now=T0, status="ok", series_scored=0, errors=0)


# -- incidents ------------------------------------------------------------------------------------
def test_incident_save_get_round_trip_and_upsert(store: SqlStore) -> None:
    incident = make_incident(also=(("bans", "br"),), acknowledged_by="ana", acknowledged_at=T0 + MIN)
    store.save(incident)
    assert store.get(incident.id) == incident
    assert store.get("missing") is None
    resolved = incident.with_changes(
        state=IncidentState.RESOLVED, resolved_at=T0 + 9 * MIN, signals=incident.signals[:1]
    )
    store.save(resolved)
    assert store.get(incident.id) == resolved
    # The member index follows the saved signals: "bans" left the incident.
    assert store.list_incidents(metric="bans") == []


def test_get_open_by_key_is_the_newest_active(store: SqlStore) -> None:
    old = make_incident(opened=T0 - 60 * MIN, state=IncidentState.RESOLVED)
    acked = make_incident(opened=T0, state=IncidentState.ACKNOWLEDGED)
    newer_resolved = make_incident(opened=T0 + 60 * MIN, state=IncidentState.RESOLVED)
    for incident in (old, acked, newer_resolved, make_incident("bans", opened=T0 + MIN)):
        store.save(incident)
    assert store.get_open_by_key("reports/br") == acked
    assert store.get_open_by_key("reports/us") is None


LISTINGS: list[tuple[str, dict[str, Any]]] = [
    ("everything, newest first with id tie-break", {}),
    ("only resolved", {"states": [IncidentState.RESOLVED]}),
    ("active states", {"states": [IncidentState.OPEN, IncidentState.ACKNOWLEDGED, IncidentState.SNOOZED]}),
    ("metric matches any member, not just the first", {"metric": "bans"}),
    ("region matches any member", {"region": "us"}),
    ("metric and region together", {"metric": "reports", "region": "us"}),
    ("since is inclusive", {"since": T0 + MIN}),
    ("until is exclusive", {"until": T0 + MIN}),
    ("window and limit", {"since": T0, "until": T0 + 3 * MIN, "limit": 2}),
    ("no match", {"metric": "nothing"}),
]


@pytest.mark.parametrize(("case", "filters"), LISTINGS, ids=[case for case, _ in LISTINGS])
def test_list_incidents_matches_the_reference_repository(
    store: SqlStore, case: str, filters: dict[str, Any]
) -> None:
    reference = InMemoryIncidentRepository()
    population = [
        make_incident("reports", "br", T0, also=(("bans", "mx"),)),
        make_incident("reports", "us", T0 + MIN, state=IncidentState.RESOLVED),
        make_incident(
            "bans", "br", T0 + MIN, state=IncidentState.SNOOZED
        ),  # same opened_at: id breaks the tie
        make_incident("Reports", "br", T0 + MIN),  # upper case sorts before lower case in both
        make_incident(
            "latency", "de", T0 + 2 * MIN, state=IncidentState.ACKNOWLEDGED, also=(("reports", "us"),)
        ),
        make_incident("reports", "br", T0 + 3 * MIN, state=IncidentState.RESOLVED),
    ]
    for incident in population:
        reference.save(incident)
        store.save(incident)
    assert [i.id for i in store.list_incidents(**filters)] == [
        i.id for i in reference.list_incidents(**filters)
    ]
    assert store.list_active() == reference.list_active()


def test_lifecycle_events_in_insertion_order_and_history_durations(store: SqlStore) -> None:
    fast = make_incident("reports", "br", T0)
    slow = make_incident("bans", "us", T0 + MIN)
    never_acked = make_incident("latency", "de", T0 + 2 * MIN)
    for incident in (fast, slow, never_acked):
        store.save(incident)
        store.record_event(LifecycleEvent(incident.id, LifecycleKind.OPENED, incident.opened_at, "livewatch"))
    script = [
        (fast, LifecycleKind.ACKNOWLEDGED, T0 + 4 * MIN, "ana"),
        (slow, LifecycleKind.SNOOZED, T0 + 5 * MIN, "bo"),
        (fast, LifecycleKind.ACKNOWLEDGED, T0 + 7 * MIN, "bo"),  # a second ack does not reset the clock
        (fast, LifecycleKind.RESOLVED, T0 + 20 * MIN, "livewatch"),
        (slow, LifecycleKind.ACKNOWLEDGED, T0 + 31 * MIN, "bo"),
        (slow, LifecycleKind.RESOLVED, T0 + 61 * MIN, "livewatch"),
    ]
    for incident, kind, at, actor in script:
        store.record_event(LifecycleEvent(incident.id, kind, at, actor, detail=f"{kind.value} by {actor}"))
    assert [(e.kind, e.actor) for e in store.list_events(fast.id)] == [
        (LifecycleKind.OPENED, "livewatch"),
        (LifecycleKind.ACKNOWLEDGED, "ana"),
        (LifecycleKind.ACKNOWLEDGED, "bo"),
        (LifecycleKind.RESOLVED, "livewatch"),
    ]
    assert store.list_events("missing") == []

    store.history_batch = 2  # 3 incidents: events load in two queries
    history = {h.incident.id: h for h in store.incident_history()}
    assert (history[fast.id].time_to_acknowledge, history[fast.id].time_to_resolve) == (4 * MIN, 20 * MIN)
    assert (history[slow.id].time_to_acknowledge, history[slow.id].time_to_resolve) == (30 * MIN, 60 * MIN)
    assert (history[never_acked.id].time_to_acknowledge, history[never_acked.id].time_to_resolve) == (
        None,
        None,
    )
    assert len(history[slow.id].events) == 4
    assert [h.incident.id for h in store.incident_history(metric="bans")] == [slow.id]

    summary = HistorySummary.of(list(history.values()))
    assert summary == HistorySummary(3, 2, 2, 17 * MIN, 40 * MIN)
    assert HistorySummary.of([]) == HistorySummary(0, 0, 0, None, None)


def test_history_falls_back_to_incident_fields_without_events() -> None:
    # Incidents saved before events were recorded still report durations from their own fields.
    incident = make_incident(
        acknowledged_at=T0 + 2 * MIN, resolved_at=T0 + 9 * MIN, state=IncidentState.RESOLVED
    )
    history = IncidentHistory.build(incident, [])
    assert (history.time_to_acknowledge, history.time_to_resolve) == (2 * MIN, 9 * MIN)


# -- outbox ---------------------------------------------------------------------------------------
def test_outbox_keeps_enqueue_order_and_numbers_within_incident(
    store: SqlStore, store_engine: Engine
) -> None:
    first, second = make_incident("reports", "br"), make_incident("bans", "us")
    queue = [
        make_notification(first, at=T0),
        make_notification(second, at=T0 - MIN),  # created earlier but enqueued later: enqueue order wins
        make_notification(first, at=T0 + MIN, reason=NotifyReason.GREW),
    ]
    assert [store.enqueue(n) for n in queue] == [True, True, True]
    assert not store.enqueue(queue[0])  # idempotent on id
    assert [n.id for n in store.pending()] == [n.id for n in queue]
    with store_engine.connect() as connection:
        numbers = connection.execute(
            sa.select(notifications.c.id, notifications.c.incident_seq).order_by(notifications.c.seq)
        ).all()
    assert [seq for _, seq in numbers] == [1, 1, 2]


def test_outbox_status_transitions(store: SqlStore) -> None:
    incident = make_incident()
    first = make_notification(incident, at=T0)
    update = make_notification(incident, at=T0 + MIN, reason=NotifyReason.GREW)
    doomed = make_notification(incident, receiver="webhook", at=T0 + MIN)
    for notification in (first, update, doomed):
        store.enqueue(notification)

    store.mark_sending(first.id, T0)
    store.mark_failed(first.id, "rate limited", True, T0)  # retryable: still pending, error kept
    assert [(n.id, n.attempts) for n in store.pending()] == [(first.id, 1), (update.id, 0), (doomed.id, 0)]
    entry = store.entries(incident.id)[0]
    assert (entry.status, entry.error, entry.retryable) == (DeliveryStatus.PENDING, "rate limited", True)

    store.mark_sending(first.id, T0 + MIN)
    store.mark_delivered(first.id, "C1", "111.1", T0 + MIN)
    assert store.thread_for(incident.id, "slack-ts") == SlackThread("C1", "111.1")
    store.mark_sending(update.id, T0 + 2 * MIN)
    store.mark_delivered(update.id, "C1", "222.2", T0 + 2 * MIN)
    assert store.thread_for(incident.id, "slack-ts") == SlackThread("C1", "111.1")  # first delivery wins

    store.mark_sending(doomed.id, T0 + 2 * MIN)
    store.mark_failed(doomed.id, "invalid_auth", False, T0 + 2 * MIN)  # not retryable: failed for good
    assert store.pending() == []
    assert store.thread_for(incident.id, "webhook") is None

    by_id = {e.notification.id: e for e in store.entries()}
    assert (by_id[first.id].status, by_id[first.id].attempts, by_id[first.id].error) == (
        DeliveryStatus.DELIVERED,
        2,
        None,
    )
    assert (by_id[first.id].channel, by_id[first.id].ts, by_id[first.id].delivered_at) == (
        "C1",
        "111.1",
        T0 + MIN,
    )
    assert (by_id[doomed.id].status, by_id[doomed.id].retryable) == (DeliveryStatus.FAILED, False)
    assert store.entries("other") == []


def test_outbox_unknown_id_is_a_named_key_error(store: SqlStore) -> None:
    for call in (
        lambda: store.mark_sending("nope", T0),
        lambda: store.mark_delivered("nope", "C1", "1.1", T0),
        lambda: store.mark_failed("nope", "boom", True, T0),
    ):
        with pytest.raises(UnknownNotificationError, match="'nope' is not in the outbox") as info:
            call()
        assert isinstance(info.value, KeyError)


def test_concurrent_enqueues_of_one_incident_get_distinct_sequence_numbers(
    store: SqlStore, store_engine: Engine
) -> None:
    incident = make_incident()
    queue = [make_notification(incident, at=T0 + i * MIN) for i in range(4)]
    assert run_concurrently(4, lambda i: store.enqueue(queue[i])) == [True] * 4
    assert run_concurrently(4, lambda i: store.enqueue(queue[0])).count(True) == 0
    with store_engine.connect() as connection:
        numbers = connection.execute(sa.select(notifications.c.incident_seq)).scalars().all()
    assert sorted(numbers) == [1, 2, 3, 4]


def _outbox_script(outbox: Outbox) -> list[Any]:
    """A delivery story; returns everything observable after each step."""
    incident, other = make_incident(), make_incident("bans", "us")
    a = make_notification(incident, at=T0)
    b = make_notification(other, at=T0)
    c = make_notification(incident, at=T0 + MIN, reason=NotifyReason.RESOLVED)
    d = make_notification(incident, receiver="console", at=T0 + MIN)
    steps: list[Callable[[], Any]] = [
        lambda: outbox.enqueue(a),
        lambda: outbox.enqueue(b),
        lambda: outbox.enqueue(a),
        lambda: outbox.mark_sending(a.id, T0),
        lambda: outbox.mark_failed(a.id, "timeout", True, T0),
        lambda: outbox.enqueue(c),
        lambda: outbox.enqueue(d),
        lambda: outbox.mark_sending(a.id, T0 + MIN),
        lambda: outbox.mark_delivered(a.id, "C1", "1.1", T0 + MIN),
        lambda: outbox.mark_sending(d.id, T0 + MIN),
        lambda: outbox.mark_delivered(d.id, "console", None, T0 + MIN),  # sinks without ts: no thread
        lambda: outbox.mark_sending(b.id, T0 + MIN),
        lambda: outbox.mark_failed(b.id, "channel_not_found", False, T0 + MIN),
        lambda: outbox.mark_sending(c.id, T0 + 2 * MIN),
        lambda: outbox.mark_delivered(c.id, "C1", "1.2", T0 + 2 * MIN),
    ]
    observed: list[Any] = []
    for step in steps:
        observed.append(
            (
                step(),
                [(n.id, n.attempts, n.thread) for n in outbox.pending()],
                outbox.entries(),
                outbox.entries(incident.id),
                [outbox.thread_for(i.id, r) for i in (incident, other) for r in ("slack-ts", "console")],
            )
        )
    return observed


def test_outbox_matches_the_reference_outbox_step_by_step(store: SqlStore) -> None:
    expected = _outbox_script(InMemoryOutbox())
    actual = _outbox_script(store)
    for step, (want, got) in enumerate(zip(expected, actual, strict=True)):
        assert got == want, f"step {step} differs"


# -- transactions ---------------------------------------------------------------------------------
def test_transaction_commits_a_bucket_and_its_consequences_together(store: SqlStore) -> None:
    incident = make_incident()
    with store.transaction() as tx:
        assert tx.in_transaction and not store.in_transaction
        assert tx.advance_watermark("reports", "br", T0, None, now=T0)
        tx.save(incident)
        assert tx.enqueue(make_notification(incident))
        assert tx.get_watermark("reports", "br") == T0  # the bound store reads its own writes
        assert store.get_watermark("reports", "br") is None  # others do not, until commit
    assert store.get_watermark("reports", "br") == T0
    assert store.get(incident.id) == incident
    assert len(store.pending()) == 1


def test_transaction_rolls_everything_back_on_error(store: SqlStore) -> None:
    incident = make_incident()
    with pytest.raises(RuntimeError, match="crash"), store.transaction() as tx:
        tx.advance_watermark("reports", "br", T0, None, now=T0)
        tx.save(incident)
        tx.enqueue(make_notification(incident))
        raise RuntimeError("crash after writing, before commit")
    assert store.get_watermark("reports", "br") is None  # the bucket will be scored again
    assert store.get(incident.id) is None
    assert store.entries() == []


def test_losing_compare_and_set_leaves_the_transaction_usable(store: SqlStore) -> None:
    # PostgreSQL aborts a transaction on any failed statement; the store must report losses without one.
    store.advance_watermark("reports", "br", T0, None, now=T0)
    store.start_run("r1", now=T0)
    incident = make_incident()
    store.enqueue(make_notification(incident))
    with store.transaction() as tx:
        assert not tx.advance_watermark("reports", "br", T0 + MIN, None, now=T0)
        assert not tx.advance_watermark("reports", "br", T0 + MIN, T0 - MIN, now=T0)
        assert not tx.enqueue(make_notification(incident))
        with pytest.raises(StoreError, match="already exists"):
            tx.start_run("r1", now=T0)
        tx.save(incident)
    assert store.get(incident.id) == incident


def test_transactions_do_not_nest(store: SqlStore) -> None:
    with store.transaction() as tx, pytest.raises(StoreError, match="does not nest"), tx.transaction():
        pass


def test_concurrent_transactions_only_the_watermark_winner_writes(store: SqlStore) -> None:
    store.advance_watermark("reports", "br", T0, None, now=T0)
    candidates = [make_incident("reports", "br", T0 + (i + 1) * MIN) for i in range(3)]

    def tick(i: int) -> bool:
        with store.transaction() as tx:
            won = tx.advance_watermark("reports", "br", T0 + (i + 1) * MIN, T0, now=T0)
            if won:
                tx.save(candidates[i])
            return won

    won = run_concurrently(3, tick)
    assert won.count(True) == 1
    assert store.list_incidents() == [candidates[won.index(True)]]


# -- retention ------------------------------------------------------------------------------------
def test_prune_deletes_only_finished_history_older_than_the_cutoff(store: SqlStore) -> None:
    day = timedelta(days=1)
    cutoff = T0
    store.start_run("old", now=T0 - 9 * day)
    store.finish_run("old", now=T0 - 9 * day, status="ok", series_scored=1, errors=0)
    store.start_run("stuck", now=T0 - 9 * day)  # still "running": kept so it can be closed
    store.start_run("new", now=T0 + MIN)
    gone = make_incident(
        "reports", "br", T0 - 10 * day, state=IncidentState.RESOLVED, resolved_at=T0 - 9 * day
    )
    waiting = make_incident(
        "bans", "br", T0 - 10 * day, state=IncidentState.RESOLVED, resolved_at=T0 - 9 * day
    )
    recent = make_incident("reports", "us", T0 - 10 * day, state=IncidentState.RESOLVED, resolved_at=T0 + MIN)
    active = make_incident("latency", "de", T0 - 10 * day)
    for incident in (gone, waiting, recent, active):
        store.save(incident)
        store.record_event(LifecycleEvent(incident.id, LifecycleKind.OPENED, incident.opened_at, "livewatch"))
        note = make_notification(incident, at=T0 - 10 * day)
        store.enqueue(note)
        store.mark_delivered(note.id, "C1", f"{len(incident.id)}.1", T0 - 10 * day)
    resolution = make_notification(waiting, at=T0 - 9 * day, reason=NotifyReason.RESOLVED)
    store.enqueue(resolution)  # still pending: its incident must stay
    store.advance_watermark("reports", "br", T0 - 9 * day, None, now=T0 - 9 * day)
    store.add(make_silence("s-old", T0 - 9 * day, T0 - 8 * day))

    deleted = store.prune(before=cutoff)

    assert deleted == {
        "runs": 1,
        "notifications": 4,  # the 4 old delivered ones (one of them is gone's)
        "incident_events": 1,
        "slack_threads": 1,
        "incident_members": 1,
        "incidents": 1,
    }
    assert [r.run_id for r in store.recent_runs()] == ["new", "stuck"]
    assert store.get(gone.id) is None and store.list_events(gone.id) == []
    assert store.thread_for(gone.id, "slack-ts") is None
    assert {i.id for i in store.list_incidents()} == {waiting.id, recent.id, active.id}
    assert store.thread_for(waiting.id, "slack-ts") is not None  # its pending resolution edits that message
    assert [n.id for n in store.pending()] == [resolution.id]
    assert store.get_watermark("reports", "br") is not None
    assert [s.id for s in store.list_silences()] == ["s-old"]
    assert store.prune(before=cutoff) == dict.fromkeys(deleted, 0)  # idempotent


# -- silences -------------------------------------------------------------------------------------
def make_silence(silence_id: str, created: datetime, expires: datetime) -> Silence:
    return Silence(
        id=silence_id,
        matchers=(Matcher("region", "br"), Matcher("metric", "re.*", regex=True, negate=True)),
        reason="maintenance",
        created_by="ana",
        created_at=created,
        expires_at=expires,
    )


def test_silences_filter_by_now_and_match_the_reference(store: SqlStore) -> None:
    reference = InMemorySilenceRepository()
    population = [
        make_silence("s-past", T0 - 60 * MIN, T0),  # expired exactly at T0: expires_at is exclusive
        make_silence("s-now", T0, T0 + 60 * MIN),  # starts exactly at T0: created_at is inclusive
        make_silence("s-also", T0, T0 + MIN),  # same created_at: id breaks the tie
        make_silence("s-future", T0 + 30 * MIN, T0 + 90 * MIN),
    ]
    for silence in population:
        store.add(silence)
        reference.add(silence)
    assert [s.id for s in store.list_silences(active_at=T0)] == ["s-also", "s-now"]
    for now in (None, T0 - 61 * MIN, T0, T0 + MIN, T0 + 45 * MIN, T0 + 90 * MIN):
        assert store.list_silences(active_at=now) == reference.list_silences(active_at=now), now
    # Upsert by id, then remove.
    extended = make_silence("s-now", T0, T0 + 120 * MIN)
    store.add(extended)
    assert store.list_silences(active_at=T0 + 100 * MIN) == [extended]
    assert store.remove("s-now") is True
    assert store.remove("s-now") is False
    assert [s.id for s in store.list_silences()] == ["s-past", "s-also", "s-future"]


# -- migrations -----------------------------------------------------------------------------------
def _schema_diff(engine: Engine) -> list[Any]:
    with engine.connect() as connection:
        return compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}), metadata)


def test_upgrade_creates_exactly_the_metadata_and_is_idempotent(blank_engine: Engine) -> None:
    assert not is_up_to_date(blank_engine)
    with pytest.raises(MigrationError, match="livewatch db upgrade"):
        check_up_to_date(blank_engine)
    upgrade(blank_engine)
    assert is_up_to_date(blank_engine)
    check_up_to_date(blank_engine)
    assert _schema_diff(blank_engine) == []
    SqlStore(blank_engine).advance_watermark("reports", "br", T0, None, now=T0)
    upgrade(blank_engine)  # second run: nothing to do, data kept
    assert is_up_to_date(blank_engine)
    assert SqlStore(blank_engine).get_watermark("reports", "br") == T0
    tables = set(sa.inspect(blank_engine).get_table_names())
    assert tables == set(metadata.tables) | {"alembic_version"}


def test_downgrade_to_base_removes_every_table(blank_engine: Engine) -> None:
    upgrade(blank_engine)
    with blank_engine.begin() as connection:
        command.downgrade(store_module._alembic_config(connection), "base")
    assert set(sa.inspect(blank_engine).get_table_names()) <= {"alembic_version"}
    assert not is_up_to_date(blank_engine)


def test_database_migrated_by_a_newer_livewatch_is_refused(blank_engine: Engine) -> None:
    upgrade(blank_engine)
    with blank_engine.begin() as connection:
        connection.execute(sa.text("UPDATE alembic_version SET version_num = :future"), {"future": "9999"})
    assert not is_up_to_date(blank_engine)
    for call in (check_up_to_date, upgrade):
        with pytest.raises(MigrationError, match=r"\['9999'\].*newer livewatch"):
            call(blank_engine)


def test_concurrent_upgrades_are_serialised(blank_engine: Engine) -> None:
    # Separate processes, as in production (two daemons starting, or `livewatch db upgrade` during a
    # start): Alembic's module-level context cannot run two migrations in one process at once.
    if blank_engine.dialect.name != "postgresql":
        pytest.skip("only PostgreSQL serialises upgrades (advisory lock); SQLite has one daemon per file")
    url = blank_engine.url.render_as_string(hide_password=False)
    blank_engine.dispose()  # no pooled connection may be shared with the forked children
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=upgrade, args=(url,)) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert [worker.exitcode for worker in workers] == [0, 0, 0]
    assert is_up_to_date(blank_engine)
    assert _schema_diff(blank_engine) == []


def test_the_head_revision_constant_is_alembics_head() -> None:
    assert store_module._heads() == {store_module.HEAD_REVISION}  # update HEAD_REVISION with a migration


def test_an_up_to_date_database_is_checked_without_importing_alembic(tmp_path: Any) -> None:
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'current.db'}"
    upgrade(url)
    script = (
        "import sys; from monitor.store.migrate import upgrade; "
        f"upgrade({url!r}); print('alembic' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_upgrade_accepts_a_url(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'by-url.db'}"
    upgrade(url)
    engine = store_module.make_engine(url)
    try:
        assert is_up_to_date(engine)
    finally:
        engine.dispose()


# -- Slack state: steps, channel ids, actions, false positives (the alerts ports' own contract checks) ------
def test_slack_state_ports_satisfy_their_contracts(store: SqlStore) -> None:
    from alerts.ports import ActionLog, ChannelDirectory, FalsePositiveRepository, StepLog
    from alerts.testing import (
        check_action_log,
        check_channel_directory,
        check_false_positive_repository,
        check_step_log,
    )

    assert isinstance(store, StepLog | ChannelDirectory | ActionLog | FalsePositiveRepository)
    check_step_log(store)
    check_channel_directory(store)
    check_action_log(store)
    check_false_positive_repository(store)


def test_steps_are_durable_outside_the_tick_transaction(store: SqlStore) -> None:
    # A step recorded inside a bound store commits at once: a crash of the outer transaction keeps it.
    from alerts.steps import StepKind, StepRecord, StepStatus

    record = StepRecord("n-1", StepKind.POST, StepStatus.STARTED, T0, channel="C1")
    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.put_channel_id("#alerts", "C1")
        tx.record_step(record)
        raise RuntimeError("crash after the Slack call")
    assert store.steps_for("n-1") == [record]
    assert store.get_channel_id("alerts") == "C1"
