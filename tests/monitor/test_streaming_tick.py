"""``detector: streaming`` in the daemon's tick: fitted once, advanced from its stored state every tick.

The warehouse of ``test_scoring`` (hourly ratio per region, a spike in BR five hours before the end) with its
ratio metric switched to the streaming detector. Ticks run through :class:`monitor.pipeline.tick.Monitor`
with a JSON-lines sink, so the state is saved in the transaction that advances the watermark.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from detectors.streaming import StreamingDetector
from monitor.config import Config, parse_config
from monitor.pipeline.executor import InlineExecutor
from monitor.pipeline.models import ModelCache, StreamCache
from monitor.pipeline.refit import refit_all
from monitor.pipeline.scoring import MetricBatch, MetricScorer
from monitor.pipeline.spec import series_frame
from monitor.pipeline.tick import Monitor
from monitor.store import SqlStore, make_engine, upgrade
from monitor.tools.backtest import SeriesTask, score_series
from monitor.tools.investigate import investigate
from monitor.wiring import build_monitor, warehouse_source
from tests.monitor.test_scoring import END, HOUR, REGIONS, build_warehouse, config_dict

START = END - 12 * HOUR  # the first tick runs here: it fits, then scores the 12 hours before (max_catchup)


def streaming_config(tmp_path: Path) -> Config:
    """The ratio metric of ``test_scoring`` with ``detector: streaming``, alerts to a JSON-lines file."""
    config = config_dict(tmp_path / "w.db", tmp_path / "state.db")
    config["metrics"] = [{**config["metrics"][0], "detector": "streaming"}]
    config["alerts"] = {"jsonl_path": str(tmp_path / "alerts.jsonl")}
    config["scheduler"]["max_catchup"] = "12h"
    return parse_config(config, env={})


@pytest.fixture
def config(tmp_path: Path) -> Config:
    build_warehouse(tmp_path / "w.db", days=20)
    config = streaming_config(tmp_path)
    upgrade(make_engine(config.state.url))
    return config


def fresh_monitor(config: Config) -> Monitor:
    """A new process: empty caches, the same state database."""
    return build_monitor(config, {}, store=SqlStore(make_engine(config.state.url)))


def ticks_at(start: datetime, end: datetime, step: timedelta) -> list[datetime]:
    return [start + i * step + timedelta(minutes=20) for i in range(1, int((end - start) / step) + 1)]


def test_the_state_is_saved_with_the_watermark_and_the_spike_alerts(config: Config) -> None:
    monitor = fresh_monitor(config)
    report = monitor.tick(END + timedelta(minutes=20))
    fitted = {o.series for o in report.outcomes if o.refitted}
    assert fitted == {"BR", "DE", "MX", "US", "XX"}  # first tick: fitted on the history before its window
    assert report.errors == 0
    for series in fitted:
        watermark = monitor.store.get_watermark("violation_rate", series)
        stored = monitor.store.load_model_state("violation_rate", series, "streaming")
        assert stored is not None and watermark is not None
        detector = StreamingDetector.from_json(stored.state)
        assert isinstance(detector, StreamingDetector)
        assert detector.last_ts_ == pd.Timestamp(watermark)  # the state ends at the last scored bucket
    assert monitor.store.load_model_state("violation_rate", "BR", "stack") is None  # no stack was fitted
    flagged = {o.series for o in report.outcomes if o.flagged}
    assert "BR" in flagged  # the injected spike
    assert any(n.incident.signals and n.incident.signals[0].region == "BR" for n in report.notifications)


def recording(monitor: Monitor) -> list[MetricBatch]:
    """Record the batches the monitor's ticks score (the real scorer, observed)."""
    batches: list[MetricBatch] = []
    score = monitor.scorer.score_metric

    def observed(*args: Any, **kwargs: Any) -> MetricBatch:
        batches.append(score(*args, **kwargs))
        return batches[-1]

    monitor.scorer.score_metric = observed  # type: ignore[method-assign]
    return batches


def stored_states(config: Config) -> dict[str, str]:
    store = SqlStore(make_engine(config.state.url))
    out = {}
    for series in REGIONS | {"XX": None}:
        stored = store.load_model_state("violation_rate", series, "streaming")
        assert stored is not None
        out[series] = stored.state
    return out


def test_hourly_ticks_and_restarts_decide_as_one_catch_up(config: Config, tmp_path: Path) -> None:
    """Chunking invariance through the product path: one tick over 12 hours == 12 hourly ticks, each in a
    new process (state read back from the store) or in the same one (state from the cache), and the
    stored states end up identical."""
    once = fresh_monitor(config)
    once.tick(START + timedelta(minutes=20))  # fits, scores the 12 hours before START
    batches = recording(once)
    once.tick(END + timedelta(minutes=20))
    catch_up = {item.series: item.decisions for item in batches[0].scored}

    other = tmp_path / "again"
    other.mkdir()
    build_warehouse(other / "w.db", days=20)
    again = streaming_config(other)
    upgrade(make_engine(again.state.url))
    warm = fresh_monitor(again)
    warm.tick(START + timedelta(minutes=20))
    pieces: dict[str, list[pd.DataFrame]] = {}
    for i, now in enumerate(ticks_at(START, END, HOUR)):
        monitor = warm if i % 2 else fresh_monitor(again)  # alternate: stored state, then cached state
        batches = recording(monitor)
        report = monitor.tick(now)
        assert report.errors == 0 and not any(o.refitted for o in report.outcomes)
        for item in batches[0].scored:
            pieces.setdefault(item.series, []).append(item.decisions)
    assert sorted(pieces) == sorted(catch_up)
    for series, frames in pieces.items():
        pd.testing.assert_frame_equal(pd.concat(frames), catch_up[series])
    assert stored_states(again) == stored_states(config)


def test_a_tick_that_did_not_commit_resumes_from_the_stored_state(config: Config) -> None:
    source = warehouse_source(config)
    store = SqlStore(make_engine(config.state.url))
    scorer = MetricScorer(config, store, source, models=ModelCache())
    metric = config.metrics[0]
    first = scorer.score_metric(metric, START + timedelta(minutes=20))
    for item in first.scored:  # commit the first tick's watermarks and states by hand
        state = first.states[item.series]
        store.advance_watermark(metric.name, item.series, item.last_bucket.to_pydatetime(), None, now=END)
        store.save_model_state(metric.name, item.series, state.detector, state.text, version=1, fitted_at=END)
    lost = scorer.score_metric(metric, END + timedelta(minutes=20))  # scored, advanced, never committed
    again = scorer.score_metric(metric, END + timedelta(minutes=20))
    assert not again.refitted and not again.errors
    for a, b in zip(lost.scored, again.scored, strict=True):
        pd.testing.assert_frame_equal(a.decisions, b.decisions)


def test_a_stored_state_that_does_not_end_where_scoring_resumes_is_refitted(config: Config) -> None:
    store = SqlStore(make_engine(config.state.url))
    metric = config.metrics[0]
    frame = pd.DataFrame(
        {"value": [1.0] * 400, "volume": [10.0] * 400},
        index=pd.date_range(START - 500 * HOUR, periods=400, freq="1h"),
    )
    old = StreamingDetector(granularity="1h").fit(frame, series_id="violation_rate/BR")
    store.save_model_state(metric.name, "BR", "streaming", old.to_json(), version=1, fitted_at=START)
    ready, to_fit, errors = StreamCache().ready(
        store, metric, {"BR": pd.Timestamp(START), "MX": pd.Timestamp(START)}
    )
    assert ready == {} and errors == {}
    assert to_fit == {"BR": pd.Timestamp(START), "MX": pd.Timestamp(START)}
    store.save_model_state(
        metric.name, "MX", "streaming", '{"name": "streaming"}', version=1, fitted_at=START
    )
    _, to_fit, errors = StreamCache().ready(store, metric, {"MX": pd.Timestamp(START)})
    assert set(to_fit) == {"MX"} and "MX" in errors  # unreadable: reported, then fitted again


def test_the_refit_job_leaves_streaming_metrics_alone(config: Config) -> None:
    store = SqlStore(make_engine(config.state.url))
    summary = refit_all(config, store, warehouse_source(config), END, InlineExecutor(), cache=ModelCache())
    assert summary.fitted == [] and summary.errors == {}


def test_the_backtest_replays_a_streaming_metric_as_its_ticks_decided(config: Config) -> None:
    """Fitted at the start of the first tick's window and advanced over two ticks == the backtest's one
    fit at that start, streamed over the same range (and one frame per swept threshold)."""
    monitor = fresh_monitor(config)
    batches = recording(monitor)
    monitor.tick(START + timedelta(minutes=20))
    monitor.tick(END + timedelta(minutes=20))
    first, second = batches
    metric = config.metrics[0]
    begin, end = first.plan.earliest, second.plan.end
    history = warehouse_source(config).fetch(
        metric, (begin - pd.Timedelta(metric.history)).to_pydatetime(), end.to_pydatetime()
    )
    ticks = {item.series: [item.decisions] for item in first.scored}
    for item in second.scored:
        ticks[item.series].append(item.decisions)
    for series, parts in ticks.items():
        frame = series_frame(metric, history.frame[history.frame["series"] == series])
        replay = score_series(
            SeriesTask(metric, config, series, frame, begin.to_pydatetime(), end.to_pydatetime(), (4.0, 6.0))
        )
        assert replay.errors == () and replay.refits == 1
        pd.testing.assert_frame_equal(replay.decisions[4.0], pd.concat(parts), check_freq=False, obj=series)
        assert replay.decisions[6.0]["flag"].sum() <= replay.decisions[4.0]["flag"].sum()
    assert ticks["BR"][-1]["flag"].any()


def test_investigate_decides_a_streaming_window_as_its_ticks_did(config: Config) -> None:
    monitor = fresh_monitor(config)
    batches = recording(monitor)
    monitor.tick(START + timedelta(minutes=20))
    monitor.tick(END + timedelta(minutes=20))
    first, second = batches
    begin, end = first.plan.earliest, second.plan.end
    ticks = {item.series: [item.decisions] for item in first.scored}
    for item in second.scored:
        ticks[item.series].append(item.decisions)
    source, store = warehouse_source(config), SqlStore(make_engine(config.state.url))
    for series in ("BR", "MX"):
        found = investigate(
            config, source, store, "violation_rate", series, start=begin, end=end, now=END, related=False
        )
        tick = pd.concat(ticks[series])
        window = found.window.loc[:, tick.columns]
        pd.testing.assert_frame_equal(window, tick, check_freq=False, obj=series)
        assert [v.name for v in found.detectors] == ["streaming"]
        assert found.model.startswith("streaming detector fitted now")
    assert found.kind == "none" or found.kind in {"spike", "dip", "level_shift"}
