"""Per-series detection rules shared by the tick, the batch scorer, investigation and the backtest.

One place decides how a metric's series becomes a detector input, which :class:`DetectorStack` models it,
which post-rules flag it, and the two rules on top of them (confirmed level shifts, unseen holidays).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

from alerts.model import Matcher
from detectors.postrules import PostRules
from detectors.stack import DetectorStack
from monitor.config import Config, MetricConfig

__all__ = [
    "CUSUM_CONTEXT_BUCKETS",
    "DETECTOR_NAME",
    "HOLIDAY_MIN_REL_EFFECT",
    "granularity_text",
    "holiday_floor",
    "level_shifts",
    "matchers",
    "new_stack",
    "post_rules",
    "series_frame",
    "stack_params",
]

#: Name under which a series' model is stored.
DETECTOR_NAME = "stack"
#: Buckets of already-scored history the online CUSUM re-reads each tick (its state is re-derived from the
#: stored model's residuals, so nothing extra needs persisting and a refit restarts it cleanly).
CUSUM_CONTEXT_BUCKETS = 168


def post_rules(metric: MetricConfig, *, threshold: float | None = None) -> PostRules:
    """The post-rules of a resolved metric (``threshold`` overrides the configured one)."""
    floors = metric.noise_floors
    if floors is None or metric.direction is None or metric.threshold is None:
        raise ValueError(f"metric {metric.name!r} is not resolved against the defaults; load it via Config")
    return PostRules(
        threshold=metric.threshold if threshold is None else threshold,
        direction=metric.direction,
        min_volume=floors.min_volume,
        min_abs_effect=floors.min_abs_effect,
        min_rel_effect=floors.min_rel_effect,
    )


def stack_params(config: Config, metric: MetricConfig, series: str) -> dict[str, Any]:
    """The :class:`DetectorStack` hyper-parameters of one series."""
    return {
        # A ratio's value is scale * num / den: events per `scale` units of volume (Poisson sampling).
        "kind": "count" if metric.kind == "count" else "rate",
        "rate_per": metric.scale,
        "granularity": granularity_text(metric.granularity),
        "country": config.regions.get(series),
        "interval_width": metric.interval_width or 0.99,
    }


def new_stack(config: Config, metric: MetricConfig, series: str, **overrides: Any) -> DetectorStack:
    """An unfitted stack for one series; ``overrides`` replace hyper-parameters (``prophet_min_days``)."""
    return DetectorStack(**{**stack_params(config, metric, series), **overrides})


def series_frame(metric: MetricConfig, tidy: pd.DataFrame) -> pd.DataFrame:
    """One series of a tidy fetch as the detectors' frame: ``value`` and ``volume`` on a UTC index.

    The volume is the denominator of a ratio; NaN for counts (their volume is the expected count itself).
    """
    values = tidy.set_index("ts").sort_index()
    volume = values["den"].astype(float) if metric.kind == "ratio" else pd.Series(np.nan, index=values.index)
    return pd.DataFrame({"value": values["value"].astype(float), "volume": volume})


#: On a public holiday absent from the training history the model cannot know the holiday's effect, so an
#: anomaly there must move the metric by at least this much (relative) to flag.
HOLIDAY_MIN_REL_EFFECT = 0.5


def holiday_floor(
    decisions: pd.DataFrame,
    country: str | None,
    trained_on: pd.DatetimeIndex,
    *,
    min_rel_effect: float = HOLIDAY_MIN_REL_EFFECT,
) -> pd.DataFrame:
    """Unflag small effects on holidays the model never saw (a pure post-rule with its reason).

    A bucket counts as a holiday when its UTC date, or the date 12 hours either side (regions span time
    zones), is a public holiday of ``country``.
    """
    if country is None or decisions.empty or not decisions["flag"].any():
        return decisions
    from detectors.prophet import holiday_names_by_date

    index = pd.DatetimeIndex(decisions.index).tz_convert("UTC").tz_localize(None)
    names: list[set[str]] = [set() for _ in range(len(index))]
    for shift in (-12, 0, 12):
        days = (index + pd.Timedelta(hours=shift)).normalize()
        for i, found in enumerate(holiday_names_by_date(country, pd.DatetimeIndex(days))):
            names[i].update(found)
    if trained_on.size:
        days = pd.DatetimeIndex(trained_on).tz_convert("UTC").tz_localize(None).normalize().unique()
        # The last training day may hold only a few hours of a holiday: that does not teach its effect.
        seen_days = days[days < days.max()]
        seen = {n for found in holiday_names_by_date(country, seen_days) for n in found}
        names = [found - seen for found in names]
    expected = decisions["expected"].to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = np.abs(decisions["observed"].to_numpy(dtype=float) - expected) / np.abs(expected)
    small = np.array([bool(found) for found in names]) & (relative < min_rel_effect)
    unflag = small & decisions["flag"].to_numpy(dtype=bool)
    if not unflag.any():
        return decisions
    out = decisions.copy()
    out.loc[unflag, "flag"] = False
    reasons = [
        f"holiday unseen in training ({', '.join(sorted(n))}): effect < {min_rel_effect:.0%}"
        for n, u in zip(names, unflag, strict=True)
        if u
    ]
    out.loc[unflag, "reason"] = reasons
    return out


def level_shifts(decisions: pd.DataFrame, context: pd.DataFrame, rules: PostRules) -> pd.DataFrame:
    """Flag confirmed level shifts: an online CUSUM over the residuals (in sigmas) of the context and window.

    A persistent deviation too small to cross the per-point threshold (say +1.5 sigma for hours) is
    confirmed by the CUSUM; it re-baselines afterwards, so a permanent new level alerts once and stops.
    The shift must still pass the direction filter and the relative-effect floor, measured as the mean
    deviation since the estimated start. Adds ``shift_start`` (NaT unless a shift was confirmed there).
    """
    from detectors.online import online_cusum

    out = decisions.copy()
    out["shift_start"] = pd.Series(pd.NaT, index=out.index, dtype="datetime64[us, UTC]")
    frames = [f for f in (context, decisions) if len(f)]
    trail = pd.concat([f.loc[:, ["observed", "expected", "score"]] for f in frames])
    result = online_cusum(trail["score"].to_numpy(dtype=float))
    offset = len(trail) - len(decisions)
    for position in np.flatnonzero(result.alarms[offset:]):
        begin = int(result.starts[offset + position])
        since = trail.iloc[max(begin, 0) : offset + position + 1]
        deviation = float((since["observed"] - since["expected"]).mean())
        expected = float(since["expected"].mean())
        if (rules.direction == "up" and deviation < 0) or (rules.direction == "down" and deviation > 0):
            continue
        if expected and abs(deviation) / abs(expected) < rules.min_rel_effect:
            continue
        bucket = out.index[int(position)]
        out.loc[bucket, "flag"] = True
        out.loc[bucket, "reason"] = (
            f"level shift confirmed by CUSUM ({deviation / expected:+.0%} since start)"
        )
        out.loc[bucket, "shift_start"] = trail.index[max(begin, 0)]
    return out


def granularity_text(step: timedelta | None) -> str:
    seconds = int((step or timedelta(hours=1)).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def matchers(match: Mapping[Any, str | list[str]]) -> tuple[Matcher, ...]:
    matchers = []
    for name, value in match.items():
        if isinstance(value, list):
            pattern = "|".join(re.escape(v) for v in value)
            matchers.append(Matcher(name, pattern, regex=True))
        else:
            matchers.append(Matcher(name, value))
    return tuple(matchers)
