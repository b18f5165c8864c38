"""Feeds the root-cause slicer: sliced leaves of an anomalous window and their expectations.

Expected leaf values come from a *seasonal baseline*: the same hours of the week over the previous
``baseline_weeks`` weeks. The region's expected total is the detector's forecast (counts), or, for ratios,
the baseline's denominator with the forecast rate on top; :func:`detectors.slicer.expected_from_baseline`
then spreads the total over leaves by their baseline shares (see its docstring for why). Each baseline week,
forecast from the others the same way (:func:`detectors.slicer.reference_from_baseline`), tells the slicer
how far leaves stray when nothing is wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

import pandas as pd

from detectors.slicer import RootCause, expected_from_baseline, localize, reference_from_baseline
from monitor.config import MetricConfig
from monitor.source import MetricSource

__all__ = ["baseline_spans", "explain_window"]

WEEK = timedelta(days=7)


def baseline_spans(first: datetime, end: datetime, weeks: int) -> list[tuple[datetime, datetime]]:
    """The ranges the slicer reads: ``[first, end)`` and the same span ``1..weeks`` weeks earlier.

    Spans that touch or overlap (a window of a week or more) merge into one, so no bucket is read twice;
    returned oldest first. Reading only these, not every bucket of the baseline weeks, keeps a one-hour
    explanation to a few hundred sliced rows per week.
    """
    spans = sorted((first - k * WEEK, end - k * WEEK) for k in range(weeks + 1))
    merged: list[tuple[datetime, datetime]] = []
    for lo, hi in spans:
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


def explain_window(
    source: MetricSource,
    metric: MetricConfig,
    series: str,
    timestamps: Sequence[pd.Timestamp],
    expected_values: Sequence[float],
    *,
    baseline_weeks: int = 4,
    top_k: int = 5,
) -> list[RootCause]:
    """Root causes of ``metric`` in ``series`` over the buckets ``timestamps`` (UTC, ascending).

    Args:
        source: Where sliced aggregates come from.
        metric: The metric; its ``slice_dimensions`` are the candidate dimensions.
        series: The series value (region).
        timestamps: Anomalous bucket starts.
        expected_values: The detector's expected metric value at each of ``timestamps``.
        baseline_weeks: Weeks of same-hour-of-week history forming the baseline.
        top_k: Maximum number of segments.

    Returns:
        The slicer's causes; a ratio segment's ``actual`` and ``expected`` are in the metric's unit
        (``scale`` applied: per 1k views, percent).
    """
    dims = list(metric.slice_dimensions or ())
    if not dims or not timestamps:
        return []
    step = metric.granularity or timedelta(hours=1)
    first, last = pd.Timestamp(timestamps[0]), pd.Timestamp(timestamps[-1])
    week = pd.Timedelta(WEEK)
    spans = baseline_spans(first.to_pydatetime(), (last + pd.Timedelta(step)).to_pydatetime(), baseline_weeks)
    parts = [source.fetch(metric, lo, hi, slices=True, series=[series]).frame for lo, hi in spans]
    frame = pd.concat([p for p in parts if not p.empty] or parts[:1], ignore_index=True)
    wanted = set(pd.DatetimeIndex(list(timestamps)))
    weeks_back = {t - k * week: k for t in wanted for k in range(1, baseline_weeks + 1)}
    current = frame[frame["ts"].isin(wanted)]
    baseline = frame[frame["ts"].isin(weeks_back)].assign(__week=lambda rows: rows["ts"].map(weeks_back))
    weeks_seen = max(1, baseline["ts"].nunique() / max(1, len(wanted)))
    if current.empty or baseline.empty:
        return []
    if metric.kind == "count":
        renamed = {"num": "actual"}
        leaves = expected_from_baseline(
            current.rename(columns=renamed),
            baseline.rename(columns=renamed),
            dims,
            expected_totals={"actual": float(sum(expected_values))},
        )
        reference = reference_from_baseline(
            baseline.rename(columns=renamed), dims, period="__week", columns=["actual"]
        )
        return localize(leaves, dims, top_k=top_k, reference=reference)
    renamed = {"num": "actual_num", "den": "actual_den"}
    expected_den = float(baseline["den"].sum()) / weeks_seen
    mean_rate = float(pd.Series(expected_values, dtype=float).mean()) / metric.scale
    leaves = expected_from_baseline(
        current.rename(columns=renamed),
        baseline.rename(columns=renamed),
        dims,
        expected_totals={"actual_num": mean_rate * expected_den, "actual_den": expected_den},
    )
    reference = reference_from_baseline(
        baseline.rename(columns=renamed), dims, period="__week", columns=["actual_num", "actual_den"]
    )
    causes = localize(leaves, dims, top_k=top_k, reference=reference)
    # segment rates in the metric's unit (per 1k views, percent), as the rest of an investigation shows them
    return [replace(c, actual=c.actual * metric.scale, expected=c.expected * metric.scale) for c in causes]
