"""From decisions to alert signals: the one place runs are cut, classified and turned into ``AlertSignal``.

A *run* is a stretch of consecutive flagged buckets of one sign. Its kind comes from
:func:`detectors.postrules.classify_run` (spike, dip or level shift by the stability of its deviations),
and a CUSUM-confirmed run is a level shift that began at the shift's estimated start unless buckets of it
crossed the per-bucket threshold and its shape says spike or dip (a loud raid stays a spike); a
level shift's numbers are the mean observed and expected values since it began (:func:`shift_levels`), so
its size, and its severity, are the shift's, not its last bucket's. The
tick sends one signal per bucket of a run (the run so far), so incidents grow bucket by bucket; the backtest
and ``investigate`` use the same functions, so they name kinds exactly as the daemon does.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from alerts.model import AlertSignal, ChartData
from alerts.model import RootCause as AlertRootCause
from detectors.base import AnomalyKind
from detectors.postrules import PostRules, classify_run
from detectors.slicer import RootCause
from monitor.pipeline.scoring import SeriesDecisions

__all__ = [
    "CHART_CONTEXT_BUCKETS",
    "SignalUnits",
    "alert_cause",
    "anomaly_runs",
    "build_signal",
    "chart_data",
    "explain_span",
    "run_kind",
    "series_signals",
    "shift_levels",
]

#: Buckets of context before the anomaly drawn in alert charts.
CHART_CONTEXT_BUCKETS = 48
_SHAPE = PostRules()


@dataclass(frozen=True)
class SignalUnits:
    """What a signal's numbers mean: value unit, volume unit, bucket size and the |score| rule."""

    unit: str = ""
    volume_unit: str = ""
    bucket: timedelta | None = None
    threshold: float | None = None

    @classmethod
    def of(cls, metric: Any) -> SignalUnits:
        """From a resolved metric config: a count's volume is the count, a ratio's is its denominator."""
        volume_unit = metric.unit if metric.kind == "count" else str(metric.denominator or "")
        return cls(metric.unit, volume_unit, metric.granularity, metric.threshold)


def anomaly_runs(decisions: pd.DataFrame) -> list[pd.DataFrame]:
    """Consecutive flagged buckets of one sign."""
    flag = decisions["flag"].to_numpy(dtype=bool)
    sign = np.sign(decisions["score"].to_numpy(dtype=float))
    runs, i = [], 0
    while i < len(flag):
        if not flag[i]:
            i += 1
            continue
        j = i
        while j + 1 < len(flag) and flag[j + 1] and sign[j + 1] == sign[i]:
            j += 1
        runs.append(decisions.iloc[i : j + 1])
        i = j + 1
    return runs


def run_kind(run: pd.DataFrame) -> tuple[AnomalyKind, pd.Timestamp]:
    """The kind of a run and when it began (a confirmed shift began at its estimated start)."""
    deviation = (run["observed"] - run["expected"]).to_numpy(dtype=float)
    kind, _ = classify_run(deviation, min_points=_SHAPE.shift_min_points, max_spread=_SHAPE.shift_max_spread)
    start = pd.Timestamp(run.index[0])
    shift_start = run["shift_start"].dropna() if "shift_start" in run else pd.Series(dtype=object)
    if len(shift_start):  # the CUSUM's estimate of the onset holds for a loud run as well
        start = min(start, pd.Timestamp(shift_start.iloc[0]))
        if not _breaches(run):
            kind = "level_shift"
    return kind, start


def _breaches(run: pd.DataFrame) -> bool:
    """Whether buckets of the run crossed the per-bucket threshold (flagged, not by the CUSUM alone).

    A loud run the CUSUM also confirms keeps the kind of its shape (a five-hour raid of uneven size is a
    spike); the CUSUM names the kind only of what it alone found, a drift too small per bucket.
    """
    return bool((run["flag"] & run["shift_start"].isna()).any()) if "flag" in run else False


def _confirmed(run: pd.DataFrame) -> bool:
    return "shift_start" in run and bool(run["shift_start"].notna().any())


def shift_levels(
    run: pd.DataFrame, start: pd.Timestamp, trail: pd.DataFrame | None = None
) -> tuple[float, float]:
    """``(new level, old level)`` of a level shift: the mean observed and mean expected value of the buckets
    from ``start`` to the run's last one (``trail`` holds buckets before the run; NaN buckets are skipped).

    Not the last bucket: one bucket is noise around the new level (and when a CUSUM confirms a burst that
    just ended, the bucket is already back); nor the last expectation alone, which a model following the
    new level raises bucket by bucket.
    """
    frames = [f.loc[:, ["observed", "expected"]] for f in (trail, run) if f is not None and len(f)]
    span = pd.concat(frames) if len(frames) > 1 else frames[0]
    span = span[(span.index >= start) & (span.index <= run.index[-1])]
    span = span[~span.index.duplicated(keep="last")].astype(float).dropna()
    if span.empty:
        last = run.iloc[-1]
        return float(last["observed"]), float(last["expected"])
    return float(span["observed"].mean()), float(span["expected"].mean())


def build_signal(
    metric: str,
    series: str,
    run: pd.DataFrame,
    *,
    causes: tuple[AlertRootCause, ...] = (),
    chart: ChartData | None = None,
    units: SignalUnits | None = None,
    trail: pd.DataFrame | None = None,
) -> AlertSignal:
    """The signal of a run so far (its last bucket is the one being evaluated).

    A level shift is measured over everything since it began (:func:`shift_levels`; ``trail`` holds the
    buckets before the run, ``observed`` and ``expected``), so its size (and severity) is the shift's.
    """
    units = units or SignalUnits()
    last = run.iloc[-1]
    kind, start = run_kind(run)
    expected, observed = float(last["expected"]), float(last["observed"])
    threshold = units.threshold
    if kind == "level_shift":
        observed, expected = shift_levels(run, start, trail)
        if _confirmed(run):
            threshold = None  # the CUSUM confirmed it: its rule is not the per-bucket |score|
    volume = float(last["volume"]) if np.isfinite(last["volume"]) else float(last["observed"])
    score = float(last["score"])
    begin: datetime = start.to_pydatetime()
    return AlertSignal(
        metric=metric,
        region=series,
        kind=kind,
        observed=observed,
        expected=expected,
        change_pct=100.0 * (observed - expected) / expected if expected else float("nan"),
        score=score if np.isfinite(score) else 0.0,
        volume=volume,
        start=begin,
        end=pd.Timestamp(run.index[-1]).to_pydatetime(),
        root_causes=causes,
        chart=chart,
        investigate=f"livewatch investigate {shlex.quote(metric)} --region {shlex.quote(series)} "
        f"--at {begin:%Y-%m-%dT%H:%MZ}",
        unit=units.unit,
        volume_unit=units.volume_unit,
        bucket=units.bucket,
        threshold=threshold,
    )


def series_signals(
    metric: str,
    item: SeriesDecisions,
    *,
    explain: Callable[[pd.DataFrame], tuple[AlertRootCause, ...]] | None = None,
    charts: bool = True,
    units: SignalUnits | None = None,
) -> list[AlertSignal]:
    """One signal per flagged bucket of ``item``: the run up to that bucket, with causes and chart."""
    signals = []
    trail = (
        pd.concat([f.loc[:, ["observed", "expected"]] for f in (item.context, item.decisions) if len(f)])
        if len(item.context) or len(item.decisions)
        else None
    )
    for run in anomaly_runs(item.decisions):
        causes = explain(run) if explain is not None else ()
        for position in range(len(run)):
            prefix = run.iloc[: position + 1]
            chart = chart_data(item, prefix.index[-1]) if charts else None
            signals.append(
                build_signal(
                    metric, item.series, prefix, causes=causes, chart=chart, units=units, trail=trail
                )
            )
    return signals


def chart_data(item: SeriesDecisions, until: pd.Timestamp) -> ChartData | None:
    """Observed, expected and band up to ``until`` with the flagged buckets, for the alert chart."""
    frames = [f for f in (item.context, item.decisions) if len(f)]
    if not frames:
        return None
    frame = pd.concat([f.loc[:, ["observed", "expected", "lower", "upper"]] for f in frames])
    frame = frame[frame.index <= until].tail(CHART_CONTEXT_BUCKETS + 24)
    flags = item.decisions["flag"].reindex(frame.index, fill_value=False)
    clean = frame.astype(float)
    return ChartData(
        timestamps=tuple(t.to_pydatetime() for t in frame.index),
        observed=tuple(clean["observed"]),
        expected=tuple(clean["expected"]),
        lower=tuple(clean["lower"]),
        upper=tuple(clean["upper"]),
        anomalous=tuple(bool(f) for f in flags),
    )


def alert_cause(cause: RootCause) -> AlertRootCause:
    """A slicer cause as the alert model carries it."""
    return AlertRootCause(
        segment=cause.label(),
        share=float(cause.deviation_share),
        mix=None if cause.mix_share is None else float(cause.mix_share),
        rate=None if cause.rate_share is None else float(cause.rate_share),
    )


def explain_span(item: SeriesDecisions, run: pd.DataFrame) -> tuple[Sequence[pd.Timestamp], list[float]]:
    """The buckets and expectations a run's root causes are computed over.

    A confirmed level shift is explained over everything since its estimated start.
    """
    shift_start = run["shift_start"].dropna()
    if len(shift_start):
        trail = pd.concat([f.loc[:, ["expected"]] for f in (item.context, item.decisions) if len(f)])
        run = trail[(trail.index >= shift_start.iloc[0]) & (trail.index <= run.index[-1])]
    return list(run.index), run["expected"].astype(float).tolist()
