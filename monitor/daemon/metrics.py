"""The daemon's figures: Prometheus collectors, and what the state store says for ``livewatch status``.

* :class:`HealthMetrics`: the Prometheus collectors of one daemon (own :class:`CollectorRegistry`, so tests
  and several daemons in one process never collide), fed after every tick by :meth:`HealthMetrics.observe`
  and :meth:`HealthMetrics.observe_store`; :meth:`HealthMetrics.serve` starts ``/metrics``.
* :func:`read_store_figures` -> :class:`StoreFigures`: ticks by status, last successful tick, incidents
  open, outbox depth, notifications sent and failed, watermark lag per metric. The daemon exports these as
  gauges and ``livewatch status`` prints the same rows (:func:`status_rows`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pandas as pd
import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from monitor.config import MetricConfig
from monitor.pipeline.tick import TickReport
from monitor.store import SqlStore, notifications, runs, watermarks

__all__ = ["EPOCH", "HealthMetrics", "StoreFigures", "human_duration", "read_store_figures", "status_rows"]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# -- store figures (shared by /metrics and `livewatch status`) --------------------------------------------
@dataclass(frozen=True)
class StoreFigures:
    """What the state store says about the daemon at ``now``.

    Attributes:
        ticks: Finished and running ticks by status (``ok``, ``partial``, ``failed``, ``running``).
        last_successful_tick: Start of the newest tick that completed (``ok`` or ``partial``), if any.
        incidents_open: Active (not resolved) incidents, self-monitoring ones included.
        outbox_depth: Notifications still pending delivery.
        notifications_sent: Notifications delivered, all time.
        notifications_failed: Notifications failed for good, all time.
        watermark_lag: Per metric, ``now`` minus the end of its oldest series watermark (seconds).
    """

    now: datetime
    ticks: Mapping[str, int]
    last_successful_tick: datetime | None
    incidents_open: int
    outbox_depth: int
    notifications_sent: int
    notifications_failed: int
    watermark_lag: Mapping[str, float]


def read_store_figures(store: SqlStore, metrics: Sequence[MetricConfig], now: datetime) -> StoreFigures:
    """Count what :class:`StoreFigures` describes, in a few aggregate queries."""
    with store.engine.connect() as connection:
        ticks = {
            status: int(count)
            for status, count in connection.execute(
                sa.select(runs.c.status, sa.func.count()).group_by(runs.c.status)
            )
        }
        last_ok = connection.execute(
            sa.select(sa.func.max(runs.c.started_at)).where(runs.c.status.in_(("ok", "partial")))
        ).scalar_one_or_none()
        outbox = {
            status: int(count)
            for status, count in connection.execute(
                sa.select(notifications.c.status, sa.func.count()).group_by(notifications.c.status)
            )
        }
        oldest = {
            metric: bucket
            for metric, bucket in connection.execute(
                sa.select(watermarks.c.metric, sa.func.min(watermarks.c.bucket)).group_by(watermarks.c.metric)
            )
        }
    lag: dict[str, float] = {}
    for metric in metrics:
        step = metric.granularity or timedelta(hours=1)
        bucket = oldest.get(metric.name)
        if bucket is not None:
            lag[metric.name] = (now - (_utc(bucket) + step)).total_seconds()
    return StoreFigures(
        now=now,
        ticks=ticks,
        last_successful_tick=None if last_ok is None else _utc(last_ok),
        incidents_open=len(store.list_active()),
        outbox_depth=outbox.get("pending", 0),
        notifications_sent=outbox.get("delivered", 0),
        notifications_failed=outbox.get("failed", 0),
        watermark_lag=lag,
    )


def _utc(value: datetime | str) -> datetime:
    """Aggregates bypass the column type on SQLite (``min``/``max`` come back as naive or text)."""
    stamp = pd.Timestamp(value)
    return (stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")).to_pydatetime()


def status_rows(figures: StoreFigures, live: Mapping[str, float] | None = None) -> list[tuple[str, str, str]]:
    """``(metric name, labels, value)`` rows for ``livewatch status``: the names ``/metrics`` uses.

    Args:
        figures: From :func:`read_store_figures`.
        live: Samples scraped from a running daemon's ``/metrics`` (name with labels -> value), e.g. tick
            durations, which only the daemon's memory holds; shown after the store rows.
    """
    statuses = ["ok", "partial", "failed", "running"]
    statuses += sorted(set(figures.ticks) - set(statuses))
    rows = [("livewatch_ticks_total", f'status="{s}"', str(figures.ticks.get(s, 0))) for s in statuses]
    last = figures.last_successful_tick
    rows += [
        ("livewatch_last_successful_tick", "", "never" if last is None else f"{last:%Y-%m-%d %H:%M:%S} UTC"),
        ("livewatch_incidents_open", "", str(figures.incidents_open)),
        ("livewatch_outbox_depth", "", str(figures.outbox_depth)),
        ("livewatch_notifications_sent_total", "", str(figures.notifications_sent)),
        ("livewatch_notifications_failed_total", "", str(figures.notifications_failed)),
    ]
    rows += [
        ("livewatch_watermark_lag_seconds", f'metric="{m}"', f"{lag:.0f} ({human_duration(lag)})")
        for m, lag in sorted(figures.watermark_lag.items())
    ]
    for name, value in sorted((live or {}).items()):
        base, _, labels = name.partition("{")
        rows.append((base, labels.rstrip("}"), f"{value:g}"))
    return rows


def human_duration(seconds: float) -> str:
    sign = "-" if seconds < 0 else ""
    minutes = int(abs(seconds) // 60)
    return f"{sign}{minutes // 1440}d {minutes // 60 % 24}h {minutes % 60}m"


# -- Prometheus --------------------------------------------------------------------------------------------
class HealthMetrics:
    """The daemon's Prometheus collectors, in their own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.ticks = Counter("livewatch_ticks", "Scoring ticks by outcome", ["status"], registry=r)
        self.tick_duration = Histogram(
            "livewatch_tick_duration_seconds",
            "Wall time of one scoring tick",
            registry=r,
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
        )
        self.series_scored = Counter("livewatch_series_scored", "Series scored by ticks", registry=r)
        self.anomalies = Counter("livewatch_anomalies", "Anomalous buckets (alert signals)", registry=r)
        self.errors = Counter(
            "livewatch_errors", "Metric or series failures in ticks", ["metric"], registry=r
        )
        self.data_problems = Counter(
            "livewatch_data_problems", "Data-quality findings (skipped buckets)", ["metric"], registry=r
        )
        self.notifications_sent = Counter(
            "livewatch_notifications_sent", "Notifications delivered", registry=r
        )
        self.notifications_failed = Counter(
            "livewatch_notifications_failed", "Notifications failed for good", registry=r
        )
        self.incidents_open = Gauge("livewatch_incidents_open", "Active incidents", registry=r)
        self.outbox_depth = Gauge("livewatch_outbox_depth", "Notifications waiting for delivery", registry=r)
        self.watermark_lag = Gauge(
            "livewatch_watermark_lag_seconds",
            "Now minus the end of the oldest scored bucket",
            ["metric"],
            registry=r,
        )
        self.last_success = Gauge(
            "livewatch_last_successful_tick_timestamp_seconds",
            "Evaluation time of the last completed tick",
            registry=r,
        )

    def observe(self, report: TickReport | None, *, duration: float, failed: bool) -> None:
        """Record one tick (``report`` is ``None`` when the tick raised before producing one)."""
        self.tick_duration.observe(duration)
        if report is None:
            self.ticks.labels(status="failed").inc()
            return
        self.ticks.labels(status="failed" if failed else ("ok" if report.errors == 0 else "partial")).inc()
        self.series_scored.inc(report.series_scored)
        self.anomalies.inc(report.signals)
        for metric in report.metric_errors:
            self.errors.labels(metric=metric).inc()
        for outcome in report.outcomes:
            if outcome.error:
                self.errors.labels(metric=outcome.metric).inc()
        for problem in report.problems:
            self.data_problems.labels(metric=problem.metric).inc()
        if report.delivery is not None:
            self.notifications_sent.inc(report.delivery.delivered)
            self.notifications_failed.inc(report.delivery.failed_permanently)
        if not failed:
            self.last_success.set((report.now - EPOCH).total_seconds())

    def observe_store(self, figures: StoreFigures) -> None:
        """Refresh the gauges that the store is the truth for."""
        self.incidents_open.set(figures.incidents_open)
        self.outbox_depth.set(figures.outbox_depth)
        for metric, lag in figures.watermark_lag.items():
            self.watermark_lag.labels(metric=metric).set(lag)

    def serve(self, port: int, addr: str = "127.0.0.1") -> int:
        """Serve ``/metrics`` in a daemon thread; returns the bound port (``port=0`` picks a free one)."""
        server, _ = start_http_server(port, addr=addr, registry=self.registry)
        return int(server.server_port)


# -- self-monitoring: pure rule ---------------------------------------------------------------------------
