"""Builders of alert values for tests: every field has a sensible default, tests override what they prove."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alerts.incidents import group_signals
from alerts.model import AlertSignal, ChartData, Incident, Notification, NotifyReason, RootCause

#: The suite's fixed clock (same instant as ``tests.conftest.FIXED_NOW``), as a stdlib datetime.
T0 = datetime(2026, 2, 2, 12, 0, tzinfo=UTC)
BUCKET = timedelta(minutes=15)


def signal(
    metric: str = "reports",
    region: str = "EU",
    *,
    kind: str = "spike",
    score: float = 6.0,
    volume: float = 2_000.0,
    observed: float = 150.0,
    expected: float = 100.0,
    change_pct: float | None = None,
    segment: str | None = None,
    causes: tuple[RootCause, ...] = (),
    start: datetime = T0 - BUCKET,
    end: datetime = T0,
    chart: ChartData | None = None,
    unit: str = "",
    volume_unit: str = "",
    bucket: timedelta | None = None,
    threshold: float | None = None,
) -> AlertSignal:
    """One signal; ``change_pct`` defaults to the one implied by observed/expected."""
    if change_pct is None:
        change_pct = 100.0 * (observed - expected) / expected
    return AlertSignal(
        metric=metric,
        region=region,
        kind=kind,
        observed=observed,
        expected=expected,
        change_pct=change_pct,
        score=score,
        volume=volume,
        start=start,
        end=end,
        segment=segment,
        root_causes=causes,
        chart=chart,
        investigate=f"livewatch investigate {metric} --region {region} --at {start:%Y-%m-%dT%H:%MZ}",
        unit=unit,
        volume_unit=volume_unit,
        bucket=bucket,
        threshold=threshold,
    )


def chart(points: int = 48, *, spike_at: int = 44) -> ChartData:
    """A flat forecast with a band and a spike in the last points (deterministic)."""
    times = tuple(T0 - BUCKET * (points - 1 - i) for i in range(points))
    expected = tuple(100.0 + 10.0 * ((i % 12) / 12.0) for i in range(points))
    observed = tuple(e + (60.0 if i >= spike_at else ((i * 7) % 5) - 2.0) for i, e in enumerate(expected))
    return ChartData(
        timestamps=times,
        observed=observed,
        expected=expected,
        lower=tuple(e - 8.0 for e in expected),
        upper=tuple(e + 8.0 for e in expected),
        anomalous=tuple(i >= spike_at for i in range(points)),
    )


def incident(*signals: AlertSignal, now: datetime = T0) -> Incident:
    """The single incident ``group_signals`` opens for ``signals`` (they must group together)."""
    result = group_signals([], list(signals) or [signal()], now)
    (change,) = result.changes
    return change.incident


def notification(
    inc: Incident,
    reason: NotifyReason = NotifyReason.FIRST,
    *,
    receiver: str = "slack",
    channel: str = "#tns-alerts",
    now: datetime = T0,
    annotation: str | None = None,
) -> Notification:
    return Notification(
        id=f"{inc.id}#{receiver}#{now.isoformat()}#{reason.value}",
        incident_id=inc.id,
        receiver=receiver,
        channel=channel,
        reason=reason,
        created_at=now,
        incident=inc,
        annotation=annotation,
    )
