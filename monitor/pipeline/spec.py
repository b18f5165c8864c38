"""How a configured metric becomes detector inputs: its series frame, its stack and its post-rules.

The one place that maps :class:`~monitor.config.MetricConfig` onto the ``detectors`` library; the decision
rules themselves live in :mod:`detectors.postrules`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

from alerts.model import Matcher
from detectors.base import Detector
from detectors.postrules import PostRules
from detectors.stack import DetectorStack
from monitor.config import Config, Metric, MetricConfig

__all__ = [
    "DETECTOR_NAME",
    "detector_params",
    "granularity_text",
    "matchers",
    "new_detector",
    "post_rules",
    "series_frame",
    "stack_params",
]

#: Name under which a series' model is stored.
DETECTOR_NAME = "stack"


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


def detector_params(config: Config, metric: Metric, series: str) -> dict[str, Any]:
    """The hyper-parameters of the detector ``metric.detector`` names, for one series.

    ``stack``: :func:`stack_params`; ``streaming``: the metric's granularity, the rest the
    :class:`~detectors.streaming.StreamingDetector` defaults (chosen on the even NAB files).
    """
    if metric.detector == "streaming":
        return {"granularity": granularity_text(metric.granularity)}
    return stack_params(config, metric, series)


def new_detector(config: Config, metric: Metric, series: str) -> Detector:
    """The unfitted detector ``metric.detector`` names, for one series (the daemon's choice per metric):
    :class:`DetectorStack` (``stack``, the default for seasonal safety metrics) or
    :class:`~detectors.streaming.StreamingDetector` (``streaming``), with :func:`detector_params`."""
    params = detector_params(config, metric, series)
    if metric.detector == "streaming":
        from detectors.streaming import StreamingDetector

        return StreamingDetector(**params)
    return DetectorStack(**params)


def series_frame(metric: MetricConfig, tidy: pd.DataFrame) -> pd.DataFrame:
    """One series of a tidy fetch as the detectors' frame: ``value`` and ``volume`` on a UTC index.

    The volume is the denominator of a ratio; NaN for counts (their volume is the expected count itself).
    """
    values = tidy.set_index("ts").sort_index()
    volume = values["den"].astype(float) if metric.kind == "ratio" else pd.Series(np.nan, index=values.index)
    return pd.DataFrame({"value": values["value"].astype(float), "volume": volume})


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
