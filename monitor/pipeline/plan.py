"""Which buckets a metric scores at ``now``: the one planning rule of the tick, the refit and the daemon.

The complete buckets of a metric end at ``floor(now - completeness_delay)`` (exclusive). Each series resumes
after its watermark (the last bucket it scored), never earlier than ``max_catchup`` before that end; a series
with no watermark starts ``max_catchup`` back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd

from monitor.config import Metric
from monitor.source import floor_time

__all__ = ["MetricPlan", "plan_metric"]


@dataclass(frozen=True)
class MetricPlan:
    """The scoring plan of one metric at one moment.

    Attributes:
        metric: Metric name.
        step: Bucket size.
        end: Exclusive end of the complete buckets.
        earliest: No bucket before this is scored (``end - max_catchup``).
        watermarks: Last scored bucket per series.
    """

    metric: str
    step: pd.Timedelta
    end: pd.Timestamp
    earliest: pd.Timestamp
    watermarks: Mapping[str, datetime]

    def start_of(self, series: str) -> pd.Timestamp:
        """First bucket ``series`` scores (``end`` or later means nothing to score)."""
        previous = self.watermarks.get(series)
        if previous is None:
            return self.earliest
        return max(self.earliest, pd.Timestamp(previous) + self.step)

    @property
    def first_start(self) -> pd.Timestamp:
        """The earliest start of the series with a watermark (``earliest`` when none has one)."""
        if not self.watermarks:
            return self.earliest
        return min(self.start_of(series) for series in self.watermarks)


def plan_metric(
    metric: Metric, now: datetime, watermarks: Mapping[str, datetime], max_catchup: timedelta
) -> MetricPlan:
    """The :class:`MetricPlan` of ``metric`` at ``now`` (UTC-aware)."""
    step = pd.Timedelta(metric.granularity)
    end = floor_time(pd.Timestamp(now) - pd.Timedelta(metric.completeness_delay), step.to_pytimedelta())
    return MetricPlan(metric.name, step, end, end - pd.Timedelta(max_catchup), dict(watermarks))
