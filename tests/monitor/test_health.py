"""Self-monitoring rule, Prometheus figures, store figures and the self-alert path."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.request import urlopen

import pytest

from alerts.model import AlertSignal, DeliveryStatus, IncidentState, NotifyReason, Severity
from alerts.routing import Route
from alerts.testing import RecordingSink
from monitor.config import Config, MetricConfig, parse_config
from monitor.daemon.metrics import HealthMetrics, read_store_figures, status_rows
from monitor.daemon.selfmon import (
    DATA_STALE,
    TICKS_FAILING,
    HealthPolicy,
    HealthState,
    IncidentView,
    PipelineStore,
    SelfMonitor,
    assess,
    is_self_incident,
    self_signals,
    tick_failed,
)
from monitor.pipeline.tick import SeriesOutcome, TickReport
from monitor.store import SqlStore

T0 = datetime(2026, 3, 9, 12, 10, tzinfo=UTC)
H = timedelta(hours=1)


def _config() -> Config:
    metrics = [
        {"name": "hourly", "source": {"table": "t"}, "kind": "count", "value": "v"},
        {
            "name": "daily",
            "source": {"table": "t"},
            "kind": "count",
            "value": "v",
            "granularity": "1d",
            "completeness_delay": "2h",
        },
    ]
    return parse_config({"database": {"url": "sqlite://"}, "metrics": metrics}, env={})


CONFIG = _config()
HOURLY, DAILY = CONFIG.metrics
ROUTES = Route(name="root", receiver="rec", channel="#t", repeat_interval=timedelta(hours=4))


def _report(now: datetime, outcomes: list[SeriesOutcome], errors: dict[str, str] | None = None) -> TickReport:
    return TickReport(run_id="r", now=now, outcomes=outcomes, metric_errors=errors or {})


def _with_data(metric: MetricConfig) -> SeriesOutcome:
    return SeriesOutcome(metric.name, "AA", scored=1, missing=0)


# -- the pure rule -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("data_seen", "failures", "now", "expected"),
    [
        # fresh start: nothing seen yet, judged from the start time, within 3 buckets + delay: quiet
        ({}, 0, T0 + 3 * H, []),
        # hourly data last seen 3h10m+ ago: stale; the daily metric (3 days allowed) is not
        ({"hourly": T0, "daily": T0}, 0, T0 + 3 * H + 11 * timedelta(minutes=1), [(DATA_STALE, "hourly")]),
        # exactly at the limit is still fine (strictly greater means stale)
        ({"hourly": T0, "daily": T0}, 0, T0 + 3 * H + 10 * timedelta(minutes=1), []),
        # two failed ticks: below the limit of three
        ({"hourly": T0, "daily": T0}, 2, T0 + H, []),
        # three failed ticks in a row: the daemon itself is failing
        ({"hourly": T0, "daily": T0}, 3, T0 + H, [(TICKS_FAILING, "daemon")]),
    ],
)
def test_assess(
    data_seen: dict[str, datetime], failures: int, now: datetime, expected: list[tuple[str, str]]
) -> None:
    state = HealthState(
        started=T0, data_seen=dict(data_seen), failures=failures, failing_since=T0 if failures else None
    )
    problems = assess(state, now, CONFIG.metrics, HealthPolicy())
    assert [(p.check, p.subject) for p in problems] == expected
    assert all(p.reason for p in problems)


@pytest.mark.parametrize(
    ("report", "failed"),
    [
        # the tick raised: failed
        (None, True),
        # errors and nothing scored (database down): failed
        (_report(T0, [], {"hourly": "query failed"}), True),
        # one metric failed, another scored: partial, not failed
        (_report(T0, [_with_data(HOURLY)], {"daily": "query failed"}), False),
        # nothing to do and no error (all caught up): fine
        (_report(T0, []), False),
    ],
)
def test_tick_failed(report: TickReport | None, failed: bool) -> None:
    assert tick_failed(report) is failed


def test_state_records_data_failures_and_recovery() -> None:
    state = HealthState(started=T0)
    state.record(_report(T0, [_with_data(HOURLY)]), T0, [HOURLY])
    # data seen up to the end of the last complete bucket (12:10 - 10m, floored to the hour)
    assert state.data_seen == {"hourly": T0.replace(minute=0)}
    # buckets that all came back missing are not data
    state.record(_report(T0 + H, [SeriesOutcome("hourly", "AA", scored=1, missing=1)]), T0 + H, [HOURLY])
    assert state.data_seen == {"hourly": T0.replace(minute=0)}
    state.record(None, T0 + 2 * H, [HOURLY])
    state.record(None, T0 + 3 * H, [HOURLY])
    assert (state.failures, state.failing_since) == (2, T0 + 2 * H)
    state.record(_report(T0 + 4 * H, [_with_data(HOURLY)]), T0 + 4 * H, [HOURLY])
    assert (state.failures, state.failing_since) == (0, None)


def test_self_signals_severity_and_labels() -> None:
    state = HealthState(started=T0, data_seen={"hourly": T0, "daily": T0}, failures=3, failing_since=T0)
    problems = assess(state, T0 + 5 * H, CONFIG.metrics, HealthPolicy())
    signals = self_signals(problems, T0 + 5 * H)
    assert [(s.metric, s.region, s.start, s.end) for s in signals] == [
        (DATA_STALE, "hourly", T0, T0 + 5 * H),
        (TICKS_FAILING, "daemon", T0, T0 + 5 * H),
    ]
    from alerts.severity import severity_of

    # stale data warns, failing ticks are critical (under the default severity policy)
    assert [severity_of(s.score, s.volume) for s in signals] == [Severity.WARNING, Severity.CRITICAL]


# -- partition of incidents ----------------------------------------------------------------------------------
def _signal(metric: str, region: str) -> AlertSignal:
    return AlertSignal(
        metric=metric,
        region=region,
        kind="spike",
        observed=2.0,
        expected=1.0,
        change_pct=100.0,
        score=9.0,
        volume=5000.0,
        start=T0,
        end=T0,
    )


def test_incident_view_partitions_active_incidents(store: SqlStore) -> None:
    from alerts.engine import AlertRepos, process

    routes = ROUTES
    both = AlertRepos(incidents=store, outbox=store, silences=store)
    signals = [_signal("user_reports", "AA"), _signal(DATA_STALE, "user_reports")]
    process(signals, T0, repos=both, routes=routes)
    assert len(store.list_active()) == 2
    own = IncidentView(store, is_self_incident)
    others = IncidentView(store, lambda i: not is_self_incident(i))
    assert [i.metrics for i in own.list_active()] == [(DATA_STALE,)]
    assert [i.metrics for i in others.list_active()] == [("user_reports",)]
    # an evaluation through one view never counts as a clean bucket of the other's incidents
    process(
        [],
        T0 + H,
        repos=AlertRepos(incidents=own, outbox=store, silences=store),
        routes=routes,
    )
    clean = {i.metrics: i.clean_buckets for i in store.list_active()}
    assert clean == {(DATA_STALE,): 1, ("user_reports",): 0}
    # the pipeline's store hides self-incidents, also inside a transaction (which keeps the store type)
    pipeline = PipelineStore(store.engine)
    assert [i.metrics for i in pipeline.list_active()] == [("user_reports",)]
    with pipeline.transaction() as tx:
        assert [i.metrics for i in tx.list_active()] == [("user_reports",)]


# -- self-alerts end to end ----------------------------------------------------------------------------------
def test_self_monitor_alerts_through_the_sinks_and_resolves(store: SqlStore) -> None:
    sink = RecordingSink()
    monitor = SelfMonitor(CONFIG, store, {"rec": sink}, ROUTES, started=T0)
    for hour in range(3):  # three failed ticks in a row
        monitor.record(None, T0 + hour * H, [HOURLY])
        problems = monitor.check(T0 + hour * H)
    assert [p.check for p in problems] == [TICKS_FAILING]
    assert [(n.reason, n.incident.metrics) for n in sink.sent] == [(NotifyReason.FIRST, (TICKS_FAILING,))]
    # back to health: hourly data flows, daily was seen too; the incident resolves after 3 clean checks
    for hour in range(3, 6):
        now = T0 + hour * H
        monitor.record(_report(now, [_with_data(HOURLY), _with_data(DAILY)]), now, CONFIG.metrics)
        assert monitor.check(now) == []
    assert [n.reason for n in sink.sent] == [NotifyReason.FIRST, NotifyReason.RESOLVED]
    (incident,) = store.list_incidents()
    assert incident.state is IncidentState.RESOLVED and incident.severity is Severity.CRITICAL


# -- figures -------------------------------------------------------------------------------------------------
def test_read_store_figures(store: SqlStore) -> None:
    store.start_run("a", now=T0)
    store.finish_run("a", now=T0, status="ok", series_scored=2, errors=0)
    store.start_run("b", now=T0 + H)
    store.finish_run("b", now=T0 + H, status="failed", series_scored=0, errors=1)
    store.start_run("c", now=T0 + 2 * H)
    hour = T0.replace(minute=0)
    store.advance_watermark("hourly", "AA", hour - 2 * H, None, now=T0)
    store.advance_watermark("hourly", "BB", hour - H, None, now=T0)
    from alerts.engine import AlertRepos, deliver_pending, process

    repos = AlertRepos(incidents=store, outbox=store, silences=store)
    process([_signal("hourly", "AA")], T0, repos=repos, routes=ROUTES)
    figures = read_store_figures(store, CONFIG.metrics, T0 + 2 * H)
    assert figures.ticks == {"ok": 1, "failed": 1, "running": 1}
    assert figures.last_successful_tick == T0
    assert (figures.incidents_open, figures.outbox_depth) == (1, 1)
    # lag of the oldest series: now 14:10 minus the end of the 10:00 bucket (11:00) = 3h10m
    assert figures.watermark_lag == {"hourly": (3 * H + 10 * timedelta(minutes=1)).total_seconds()}
    deliver_pending(store, {"rec": RecordingSink()}, T0 + 2 * H)
    after = read_store_figures(store, CONFIG.metrics, T0 + 2 * H)
    assert (after.outbox_depth, after.notifications_sent, after.notifications_failed) == (0, 1, 0)
    assert [e.status for e in store.entries()] == [DeliveryStatus.DELIVERED]
    rows = {(name, labels): value for name, labels, value in status_rows(after)}
    assert rows[("livewatch_outbox_depth", "")] == "0"
    assert rows[("livewatch_ticks_total", 'status="failed"')] == "1"
    assert rows[("livewatch_watermark_lag_seconds", 'metric="hourly"')] == "11400 (0d 3h 10m)"


def test_prometheus_endpoint_serves_the_tick_figures() -> None:
    health = HealthMetrics()
    report = _report(T0, [_with_data(HOURLY), SeriesOutcome("hourly", "BB", error="no fit")])
    report.signals = 4
    health.observe(report, duration=0.5, failed=False)
    health.observe(None, duration=0.1, failed=True)
    port = health.serve(0)
    with urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    for line in (
        'livewatch_ticks_total{status="partial"} 1.0',
        'livewatch_ticks_total{status="failed"} 1.0',
        "livewatch_tick_duration_seconds_count 2.0",
        "livewatch_series_scored_total 1.0",
        "livewatch_anomalies_total 4.0",
        'livewatch_errors_total{metric="hourly"} 1.0',
    ):
        assert line in text, line
    assert f"livewatch_last_successful_tick_timestamp_seconds {T0.timestamp():.7e}" in text
    for name in (
        "livewatch_incidents_open",
        "livewatch_outbox_depth",
        "livewatch_notifications_sent_total",
        "livewatch_notifications_failed_total",
    ):
        assert f"\n{name} " in text, name


def test_status_command_prints_store_and_live_figures(tmp_path: Path, store_path_config: Path) -> None:
    from click.testing import CliRunner

    from monitor.cli.daemon import status

    health = HealthMetrics()
    health.observe(_report(T0, [_with_data(HOURLY)]), duration=0.25, failed=False)
    port = health.serve(0)
    runner = CliRunner()
    result = runner.invoke(
        status,
        [
            "--config",
            str(store_path_config),
            "--at",
            "2026-03-09T12:10Z",
            "--url",
            f"http://127.0.0.1:{port}/metrics",
        ],
    )
    assert result.exit_code == 0, result.output
    for text in (
        "livewatch_outbox_depth",
        "livewatch_ticks_total",
        "livewatch_tick_duration_seconds_sum",
        "0.25",
        "livewatch_series_scored_total",
    ):
        assert text in result.output, text
    offline = runner.invoke(status, ["--config", str(store_path_config), "--url", "http://127.0.0.1:9/none"])
    assert offline.exit_code == 0 and "not reachable" in offline.output


@pytest.fixture
def store_path_config(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        "database: {url: 'sqlite://'}\n"
        f"state: {{url: 'sqlite:///{tmp_path / 'state.db'}'}}\n"
        "metrics: [{name: hourly, source: {table: t}, kind: count, value: v}]\n",
        encoding="utf-8",
    )
    return path
