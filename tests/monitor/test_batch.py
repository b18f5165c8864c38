"""The batch scoring path decides exactly as the per-series path; refits go through an executor.

The reference is ``Monitor._score_metric`` (one ``DetectorStack.score`` + post-rules per series). A small
seeded warehouse holds a ratio metric and a count metric over a few regions with ground truth injected: a
spike, a level shift too small per point for the threshold (confirmed by the CUSUM), and hours that never
arrived.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from alerts.sinks.console import ConsoleSink
from detectors.postrules import PostRules, evaluate
from detectors.prophet import params_from_prophet
from detectors.stack import DetectorStack
from detectors.synthetic import make_series
from monitor.pipeline.scoring import (
    BatchScorer,
    ModelCache,
    SeriesDecisions,
    compile_stack,
    compile_state,
    evaluate_batch,
    refit_all,
    score_stack_batch,
)
from monitor.config import Config, MetricConfig, parse_config
from monitor.pipeline.executor import InlineExecutor
from monitor.pipeline.tick import Monitor, TickReport
from monitor.source import FetchResult, SqlMetricSource
from monitor.store import SqlStore, make_engine, upgrade
from monitor.wiring import build_routes

END = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday
NOW = END + timedelta(minutes=20)
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
            num[-30:] = np.round(num[-30:] * 1.5)  # a level shift over the last 30 hours
        keep = np.ones(len(frame), dtype=bool)
        if region == "US":
            keep[-12:-9] = False  # three hours that never arrived
        for ts, n, d in zip(frame.index[keep], num[keep], den[keep], strict=True):
            rows.append({"ts": ts.to_pydatetime().replace(tzinfo=None), "region": region, "num": n, "den": d})
    engine = sa.create_engine(f"sqlite:///{path}")
    pd.DataFrame(rows).to_sql("facts", engine, index=False)
    engine.dispose()


def make_config(warehouse: Path, state: Path) -> Config:
    return parse_config(
        {
            "database": {"url": f"sqlite:///{warehouse}"},
            "state": {"url": f"sqlite:///{state}"},
            "regions": REGIONS,
            "defaults": {"noise_floors": {"min_volume": 50, "min_rel_effect": 0.05}},
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
            "scheduler": {"max_catchup": "2d"},
        },
        env={},
    )


def open_parts(config: Config) -> tuple[SqlMetricSource, SqlStore]:
    source = SqlMetricSource(make_engine(config.database.url))
    engine = make_engine(config.state.url)
    upgrade(engine)
    return source, SqlStore(engine)


def per_series(config: Config) -> dict[tuple[str, str], tuple[pd.DataFrame, pd.DataFrame]]:
    """Decisions and context of every series from the per-series path (fits and stores the models)."""
    source, store = open_parts(config)
    sinks = {"console": ConsoleSink()}
    monitor = Monitor(config, source, store, sinks, build_routes(config, sinks, "console"))
    out = {}
    for metric in config.metrics:
        report = TickReport(run_id="reference", now=NOW)
        for item in monitor._score_metric(metric, NOW, report):
            out[(metric.name, item.series)] = (item.decisions, item.context)
        assert not report.errors, report.outcomes
    return out


def batched(
    config: Config, store: SqlStore, source: SqlMetricSource
) -> dict[tuple[str, str], SeriesDecisions]:
    scorer = BatchScorer(config, store, source)
    out = {}
    for metric in config.metrics:
        batch = scorer.score_metric(metric, NOW, full_context=True)
        assert batch.pending == [] and batch.model_errors == {}
        out.update({(metric.name, item.series): item for item in batch.scored})
    return out


def assert_same(
    reference: dict[tuple[str, str], tuple[pd.DataFrame, pd.DataFrame]],
    batch: dict[tuple[str, str], SeriesDecisions],
) -> None:
    assert sorted(reference) == sorted(batch)
    for key, (decisions, context) in reference.items():
        item = batch[key]
        pd.testing.assert_frame_equal(
            item.decisions, decisions, rtol=1e-9, atol=0, check_freq=False, obj=str(key)
        )
        pd.testing.assert_frame_equal(
            item.context, context, rtol=1e-9, atol=0, check_freq=False, obj=str(key)
        )
        assert item.flagged == int(decisions["flag"].sum())


def test_batch_equals_per_series_path_on_robust_only_history(tmp_path: Path) -> None:
    # 10 days of history: below Prophet's 14 days, so the stacks hold the robust baseline only (fast).
    build_warehouse(tmp_path / "w.db", days=10)
    config = make_config(tmp_path / "w.db", tmp_path / "state.db")
    reference = per_series(config)  # fits inline and stores the models, fitted_at = NOW
    source, store = open_parts(config)
    result = batched(config, store, source)
    assert_same(reference, result)
    # the injected anomalies are there: the BR spike flags, the MX shift is confirmed by the CUSUM
    br = result[("violation_rate", "BR")].decisions
    assert br["flag"].iloc[-5] and not br["flag"].iloc[:-6].any()
    mx = result[("violation_rate", "MX")].decisions
    assert mx["shift_start"].notna().any()
    assert result[("violation_rate", "US")].missing == 3
    # models older than refit_every (1 day) go to the per-series path, unless the scorer allows more
    later = NOW + timedelta(days=2)
    assert len(BatchScorer(config, store, source).score_metric(config.metrics[0], later).pending) == 5
    lenient = BatchScorer(config, store, source, max_model_age=timedelta(days=3))
    assert lenient.score_metric(config.metrics[0], later).pending == []
    # by default only series with a flag carry their context (the alert stage's charts need no other);
    # scoring the series two at a time (bounded arrays) decides the same
    lean = BatchScorer(config, store, source, chunk_series=2).score_metric(config.metrics[0], NOW)
    assert len(lean.scored) == 5
    for item in lean.scored:
        context = reference[("violation_rate", item.series)][1]
        decisions = reference[("violation_rate", item.series)][0]
        pd.testing.assert_frame_equal(item.decisions, decisions, rtol=1e-9, check_freq=False)
        if item.flagged:
            pd.testing.assert_frame_equal(item.context, context, rtol=1e-9, check_freq=False)
        else:
            assert item.context.empty


class RecordingSource:
    """A metric source that records the ranges it was asked for."""

    def __init__(self, inner: SqlMetricSource) -> None:
        self.inner = inner
        self.ranges: list[tuple[datetime, datetime]] = []

    def fetch(self, metric: MetricConfig, start: datetime, end: datetime, **kwargs: Any) -> FetchResult:
        self.ranges.append((start, end))
        return self.inner.fetch(metric, start, end, **kwargs)


def test_steady_ticks_read_only_new_buckets_and_decide_as_a_cold_start(tmp_path: Path) -> None:
    build_warehouse(tmp_path / "w.db", days=10)
    config = make_config(tmp_path / "w.db", tmp_path / "state.db")
    per_series(config)  # stores the models
    inner, store = open_parts(config)
    metric = config.metrics[0]
    hour = timedelta(hours=1)
    for name in ["BR", "DE", "MX", "US"]:  # XX has never been scored
        assert store.advance_watermark(metric.name, name, END - 4 * hour, None, now=NOW)
    source = RecordingSource(inner)
    warm = BatchScorer(config, store, source)
    first = warm.score_metric(metric, END - 2 * hour + timedelta(minutes=20))
    assert [i.scored for i in first.scored] == [1, 1, 1, 1]
    # a new series among scored ones starts days earlier than the rows read: the per-series path
    assert first.pending == ["XX"]
    for name in ["BR", "DE", "MX", "US"]:
        assert store.advance_watermark(metric.name, name, END - 3 * hour, END - 4 * hour, now=NOW)
    source.ranges.clear()
    second = warm.score_metric(metric, NOW, full_context=True)
    assert source.ranges == [(END - 2 * hour, END)]  # only the two new buckets were pulled
    cold = BatchScorer(config, store, inner).score_metric(metric, NOW, full_context=True)
    assert [i.series for i in second.scored] == [i.series for i in cold.scored] == ["BR", "DE", "MX", "US"]
    for warm_item, cold_item in zip(second.scored, cold.scored, strict=True):
        pd.testing.assert_frame_equal(warm_item.decisions, cold_item.decisions)
        pd.testing.assert_frame_equal(warm_item.context, cold_item.context)
        assert warm_item.scored == 2 and warm_item.previous_watermark == END - 3 * hour


@pytest.mark.slow
def test_refit_all_then_batch_equals_per_series_path_with_prophet(tmp_path: Path) -> None:
    # 20 days: Prophet is fitted too (BR/MX/US/DE holidays); ~20 Prophet fits in all.
    build_warehouse(tmp_path / "w.db", days=20)
    reference = per_series(make_config(tmp_path / "w.db", tmp_path / "a.db"))
    config = make_config(tmp_path / "w.db", tmp_path / "b.db")
    source, store = open_parts(config)
    cache = ModelCache()
    summary = refit_all(config, store, source, NOW, InlineExecutor(), cache=cache, chunk_size=3, fetch_size=2)
    assert summary.errors == {} and len(summary.fitted) == 10 and len(cache) == 10
    # the batch path reads the refitted models from the store (a fresh cache), parsed without Prophet
    assert_same(reference, batched(config, store, source))
    stored = store.load_model_state("violation_rate", "BR", "stack")
    assert stored is not None
    stack = DetectorStack.from_json(stored.state)
    assert isinstance(stack, DetectorStack) and stack.prophet_ is not None
    fast = compile_state(stored.state, stored.fitted_at).prophet
    slow = params_from_prophet(stack.prophet_.model_)
    assert fast is not None and slow.holiday_betas and fast.holiday_betas == slow.holiday_betas
    for name in ("start", "t_scale", "y_scale", "k", "m", "country", "holiday_mode"):
        assert getattr(fast, name) == getattr(slow, name), name
    np.testing.assert_array_equal(fast.deltas, slow.deltas)
    assert [s.beta.tolist() for s in fast.seasonalities] == [s.beta.tolist() for s in slow.seasonalities]


def test_stack_scores_match_detector_stack_score_for_each_kind() -> None:
    # Each kind exercises another volume rule; a stack without Prophet takes the robust member as is.
    start = pd.Timestamp("2026-01-05", tz="UTC")
    history = make_series(9 * 24, seed=1, start=start, volume=500.0)
    window = make_series(11 * 24, seed=2, start=start, volume=500.0).iloc[-48:]
    window.iloc[5, 0] = np.nan  # a missing bucket scores NaN
    at = datetime(2026, 1, 1, tzinfo=UTC)
    for kind in ("value", "ratio", "rate", "count"):
        stack = DetectorStack(kind=kind, interval_width=0.99).fit(history, series_id=kind)
        expected = stack.score(window)
        got = score_stack_batch(
            [compile_stack(stack, at)],
            pd.DatetimeIndex(window.index),
            window["value"].to_numpy()[None, :],
            window["volume"].to_numpy()[None, :],
        )
        for column in ("observed", "expected", "lower", "upper", "score"):
            np.testing.assert_allclose(getattr(got, column)[0], expected[column], rtol=1e-12, err_msg=kind)
        assert (
            compile_state(stack.to_json(), at).robust_expected.tolist()
            == compile_stack(stack, at).robust_expected.tolist()
        )


@pytest.mark.parametrize(
    "rules",
    [
        PostRules(threshold=2.0),  # threshold only, both directions
        PostRules(threshold=2.0, direction="up", min_abs_effect=0.5),  # direction and absolute floor
        PostRules(threshold=1.5, k=2, n=3, min_volume=10.0, min_rel_effect=0.01),  # k-of-n runs per series
    ],
)
def test_evaluate_batch_equals_evaluate_per_series(rules: PostRules) -> None:
    rng = np.random.default_rng(0)
    index = pd.date_range("2026-01-05", periods=24, freq="h", tz="UTC")
    observed = rng.normal(10, 3, (5, 24))
    observed[1, 4] = np.nan
    expected = np.full((5, 24), 10.0)
    score = (observed - expected) / 1.5
    volume = rng.uniform(0, 20, (5, 24))
    flag, reason = evaluate_batch(observed, expected, score, volume, rules, index)
    for row in range(5):
        frame = pd.DataFrame(
            {
                "observed": observed[row],
                "expected": expected[row],
                "score": score[row],
                "volume": volume[row],
            },
            index=index,
        )
        one = evaluate(frame, rules)
        assert flag[row].tolist() == one["flag"].tolist()
        assert reason[row].tolist() == one["reason"].tolist()
    assert flag.any()  # the cases do flag something
