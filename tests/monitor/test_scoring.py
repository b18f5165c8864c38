"""The one scoring path: ticks read only new buckets, and investigate and the backtest decide as a tick does.

A small seeded warehouse holds a ratio metric and a count metric over a few regions with ground truth
injected: a spike (BR), a level shift too small per point for the threshold (MX, confirmed by the CUSUM),
and hours that never arrived (US). Ten days of history keep every fit on the robust baseline (fast).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from detectors.synthetic import make_series
from monitor.config import Config, parse_config
from monitor.pipeline.models import ModelCache
from monitor.pipeline.scoring import MetricScorer
from monitor.pipeline.signals import series_signals
from monitor.source import FetchResult, SqlMetricSource
from monitor.store import SqlStore, make_engine, upgrade
from monitor.tools.backtest import SeriesTask, score_series
from monitor.tools.investigate import investigate

END = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday
NOW = END + timedelta(minutes=20)
HOUR = timedelta(hours=1)
REGIONS = {"BR": "BR", "MX": "MX", "US": "US", "DE": "DE"}  # plus "XX": a region without holidays


def build_warehouse(path: Path, days: int, seed: int = 3) -> None:
    """Hourly ``num``/``den`` per region ending at ``END``; spike in BR, level shift in MX, gaps in US."""
    rows = []
    for i, region in enumerate([*REGIONS, "XX"]):
        start = pd.Timestamp(END) - pd.Timedelta(days=days)
        frame = make_series(days * 24, "1h", seed=seed + i, start=start, volume=4000.0 * (i + 1))
        den = frame["volume"].to_numpy()
        num = np.round(frame["value"].to_numpy() * den)
        if region == "BR":
            num[-5] *= 3  # a spike five hours before the end
        if region == "MX":
            num[-30:] = np.round(num[-30:] * 1.25)  # a level shift over the last 30 hours
        keep = np.ones(len(frame), dtype=bool)
        if region == "US":
            keep[-12:-9] = False  # three hours that never arrived
        for ts, n, d in zip(frame.index[keep], num[keep], den[keep], strict=True):
            rows.append({"ts": ts.to_pydatetime().replace(tzinfo=None), "region": region, "num": n, "den": d})
    engine = sa.create_engine(f"sqlite:///{path}")
    pd.DataFrame(rows).to_sql("facts", engine, index=False)
    engine.dispose()


def make_config(warehouse: Path, state: Path) -> Config:
    return parse_config(config_dict(warehouse, state), env={})


def config_dict(warehouse: Path, state: Path) -> dict[str, Any]:
    """The configuration of :func:`make_config`, before parsing (other tests vary it)."""
    return {
        "database": {"url": f"sqlite:///{warehouse}"},
        "state": {"url": f"sqlite:///{state}"},
        "regions": REGIONS,
        "defaults": {"noise_floors": {"min_volume": 50, "min_rel_effect": 0.05}, "history": "15d"},
        "metrics": [
            {
                "name": "violation_rate",
                "source": {"table": "facts"},
                "kind": "ratio",
                "numerator": "num",
                "denominator": "den",
                "scale": 1000,
            },
            {"name": "violations", "source": {"table": "facts"}, "kind": "count", "value": "num"},
        ],
        "alerts": {"jsonl_path": None},
        "scheduler": {"max_catchup": "2d", "refit_every": "7d"},
    }


class RecordingSource:
    """A metric source that records the time ranges of full (all-series) fetches."""

    def __init__(self, inner: SqlMetricSource) -> None:
        self.inner = inner
        self.ranges: list[tuple[datetime, datetime]] = []

    def fetch(self, metric: Any, start: datetime, end: datetime, **kwargs: Any) -> FetchResult:
        if kwargs.get("series") is None:
            self.ranges.append((start, end))
        return self.inner.fetch(metric, start, end, **kwargs)


@pytest.fixture
def parts(tmp_path: Path) -> tuple[Config, SqlMetricSource, SqlStore]:
    build_warehouse(tmp_path / "w.db", days=10)
    config = make_config(tmp_path / "w.db", tmp_path / "state.db")
    engine = make_engine(config.state.url)
    upgrade(engine)
    return config, SqlMetricSource(make_engine(config.database.url)), SqlStore(engine)


def test_steady_ticks_read_only_new_buckets_and_decide_as_a_cold_start(
    parts: tuple[Config, SqlMetricSource, SqlStore],
) -> None:
    config, inner, store = parts
    metric = config.metrics[0]
    source = RecordingSource(inner)
    warm = MetricScorer(config, store, source, models=ModelCache())
    first = warm.score_metric(metric, END - 2 * HOUR + timedelta(minutes=20))
    assert sorted(first.refitted) == ["BR", "DE", "MX", "US", "XX"]  # no model yet: fitted, then scored
    for item in first.scored:
        assert store.advance_watermark(
            metric.name, item.series, item.last_bucket.to_pydatetime(), None, now=NOW
        )
    source.ranges.clear()
    second = warm.score_metric(metric, NOW, full_context=True)
    assert second.refitted == set()  # fresh stored models: nothing is fitted
    assert source.ranges == [(END - 2 * HOUR, END)]  # only the two new buckets were pulled
    cold = MetricScorer(config, store, inner, models=ModelCache()).score_metric(
        metric, NOW, full_context=True
    )
    assert (
        [i.series for i in second.scored] == [i.series for i in cold.scored] == ["BR", "DE", "MX", "US", "XX"]
    )
    for warm_item, cold_item in zip(second.scored, cold.scored, strict=True):
        pd.testing.assert_frame_equal(warm_item.decisions, cold_item.decisions)
        pd.testing.assert_frame_equal(warm_item.context, cold_item.context)
        assert warm_item.scored == 2


def test_investigate_and_backtest_decide_exactly_as_the_tick(
    parts: tuple[Config, SqlMetricSource, SqlStore],
) -> None:
    config, source, store = parts
    scorer = MetricScorer(config, store, source, models=ModelCache())
    flagged_somewhere = set()
    for metric in config.metrics:
        batch = scorer.score_metric(metric, NOW)
        start, end = batch.plan.earliest, batch.plan.end
        history = source.fetch(metric, (start - pd.Timedelta(days=15)).to_pydatetime(), end.to_pydatetime())
        for item in batch.scored:
            tick = item.decisions
            if tick["flag"].any():
                flagged_somewhere.add((metric.name, item.series))
            # investigate over the same window with the stored model: the same flags, scores and kinds
            found = investigate(
                config, source, store, metric.name, item.series, start=start, end=end, now=NOW, related=False
            )
            window = found.window.loc[:, tick.columns]
            pd.testing.assert_frame_equal(window, tick, check_freq=False, obj=f"{metric.name}/{item.series}")
            tick_kinds = {s.kind for s in series_signals(metric.name, item, charts=False) if s.end >= start}
            assert (found.kind in tick_kinds) if tick_kinds else found.kind == "none"
            # the backtest replays the same window with a model fitted on the history before it
            frame = history.frame[history.frame["series"] == item.series]
            from monitor.pipeline.spec import series_frame

            replay = score_series(
                SeriesTask(
                    metric,
                    config,
                    item.series,
                    series_frame(metric, frame),
                    start.to_pydatetime(),
                    end.to_pydatetime(),
                    (metric.threshold,),
                )
            )
            pd.testing.assert_frame_equal(
                replay.decisions[metric.threshold], tick, check_freq=False, obj=f"backtest {item.series}"
            )
    # the fixture's injected anomalies are found: the BR spike and the MX level shift
    assert ("violation_rate", "BR") in flagged_somewhere and ("violation_rate", "MX") in flagged_somewhere
