"""``monitor.tools.backtest``: the pure recommendation and scoring, the grouping replay, labels, a real replay
on the small demo warehouse (no look-ahead, the injected raid found)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from monitor.config import Config, parse_config
from monitor.pipeline.spec import series_frame
from monitor.tools.backtest import (
    BacktestError,
    Label,
    Score,
    SeriesScores,
    SeriesTask,
    SettingResult,
    evaluate_setting,
    false_positive_labels,
    load_labels,
    recommend,
    replay_incidents,
    run_backtest,
    score_series,
)
from monitor.wiring import warehouse_source
from tests.monitor.test_investigate import TRUTH, demo_config, demo_warehouse

T0 = datetime(2026, 3, 2, tzinfo=UTC)
HOUR = timedelta(hours=1)


def score(incidents: int, true: int, labels: int, detected: int, per_week: float) -> Score:
    return Score(incidents, true, labels, detected, None, None, per_week)


SWEEP = [
    SettingResult(3.0, score(20, 6, 6, 6, 10.0), {}),
    SettingResult(4.0, score(8, 5, 6, 5, 4.0), {}),
    SettingResult(6.0, score(3, 3, 6, 3, 1.5), {}),
]


@pytest.mark.parametrize(
    ("budget", "cost_ratio", "threshold", "rule", "met"),
    [
        # within 5 alerts/week, 4 sigma has the best recall
        (5.0, None, 4.0, "budget", True),
        # a generous budget takes the most sensitive setting (best recall)
        (50.0, None, 3.0, "budget", True),
        # no setting meets 1/week: the quietest is offered, flagged as not meeting it
        (1.0, None, 6.0, "budget", False),
        # a miss costs 10 false alerts: 10*1 + 3 = 13 beats 14 (3 sigma) and 30 (6 sigma)
        (None, 10.0, 4.0, "cost", True),
        # a miss costs one false alert: 3*1 + 0 = 3 is the least
        (None, 1.0, 6.0, "cost", True),
        # neither: best F1 (0.71 at 4 sigma against 0.46 and 0.67)
        (None, None, 4.0, "f1", True),
    ],
)
def test_recommend(
    budget: float | None, cost_ratio: float | None, threshold: float, rule: str, met: bool
) -> None:
    picked = recommend(SWEEP, budget=budget, cost_ratio=cost_ratio)
    assert (picked.threshold, picked.rule, picked.met) == (threshold, rule, met)
    assert picked.reason


def test_recommend_refuses_both_rules_and_no_settings() -> None:
    with pytest.raises(BacktestError, match="either"):
        recommend(SWEEP, budget=1.0, cost_ratio=2.0)
    with pytest.raises(BacktestError, match="no sensitivity settings"):
        recommend([])


def test_score_properties_handle_empty_cases() -> None:
    # no alert and no label: precision and recall undefined, nothing missed
    empty = score(0, 0, 0, 0, 0.0)
    assert np.isnan(empty.precision) and np.isnan(empty.recall) and empty.missed == 0
    # alerts but all false, labels all missed: F1 is 0, not NaN
    assert score(4, 0, 2, 0, 2.0).f1 == 0.0


def flags(index: pd.DatetimeIndex, on: list[int], score_value: float = 6.0) -> pd.DataFrame:
    frame = pd.DataFrame(
        {"observed": 10.0, "expected": 5.0, "score": 0.0, "volume": 500.0, "flag": False}, index=index
    )
    frame.loc[index[on], "flag"] = True
    frame.loc[index[on], "score"] = score_value
    return frame


def test_replay_groups_like_the_daemon() -> None:
    index = pd.date_range(T0, periods=24, freq="h")
    flagged = {
        # two metrics in one region at once, and the same metric in another region: ONE incident
        ("reports", "AA"): flags(index, [2, 3]),
        ("bans", "AA"): flags(index, [3]),
        ("reports", "BB"): flags(index, [3]),
        # after 3 clean buckets the incident resolved: a new flag opens a second incident
        ("violations", "CC"): flags(index, [12]),
    }
    opened = replay_incidents(flagged, HOUR, resolve_after=3)
    assert len(opened) == 2
    first, second = opened
    assert first.opened_at == T0 + 3 * HOUR  # evaluated at the end of bucket 2
    assert {(m, r) for m, r, _ in first.members} == {("reports", "AA"), ("bans", "AA"), ("reports", "BB")}
    assert {(m, r) for m, r, _ in second.members} == {("violations", "CC")}


def two_metric_config() -> Config:
    return parse_config(
        {
            "database": {"url": "sqlite://"},
            "metrics": [
                {"name": "reports", "source": {"table": "t"}, "kind": "count", "value": "reports"},
                {"name": "bans", "source": {"table": "t"}, "kind": "count", "value": "bans"},
            ],
        },
        env={},
    )


def scored(
    metric: str,
    region: str,
    index: pd.DatetimeIndex,
    scores: dict[int, float],
    shift: tuple[int, ...] = (),
    holiday: tuple[int, ...] = (),
    thresholds: tuple[float, ...] = (3.0, 4.0),
) -> SeriesScores:
    """Decisions per threshold as the scoring path makes them: threshold or CUSUM shift, minus holidays."""
    frame = pd.DataFrame({"observed": 100.0, "expected": 50.0, "score": 0.0, "volume": 500.0}, index=index)
    for position, value in scores.items():
        frame.loc[index[position], "score"] = value
    starts = pd.Series(pd.NaT, index=index, dtype="datetime64[us, UTC]")
    for position in shift:
        starts.iloc[position] = index[position]
    frame["shift_start"] = starts
    decisions = {}
    for threshold in thresholds:
        flag = (frame["score"].abs() >= threshold) | frame["shift_start"].notna()
        flag &= np.array([i not in holiday for i in range(len(index))])
        decisions[threshold] = frame.assign(flag=flag)
    return SeriesScores(metric, region, decisions, refits=1)


def test_evaluate_setting_counts_precision_recall_and_time_to_detect() -> None:
    config = two_metric_config()
    index = pd.date_range(T0, periods=48, freq="h")
    series = [
        # a true anomaly (score 6) at buckets 10-11, labelled from bucket 9
        scored("reports", "AA", index, {10: 6.0, 11: 6.0}),
        # a weaker false one (score 3.5) in another region, much later
        scored("reports", "BB", index, {30: 3.5}),
        # bans: a CUSUM-confirmed shift at 20 flags whatever the threshold; a big score on an unseen holiday
        # (bucket 40) never flags
        scored("bans", "AA", index, {40: 9.0}, shift=(20,), holiday=(40,)),
    ]
    labels = [
        Label("reports", "AA", T0 + 9 * HOUR, T0 + 13 * HOUR),
        Label("bans", "AA", T0 + 19 * HOUR, T0 + 30 * HOUR),
        # never flagged: a miss
        Label("bans", "CC", T0 + 5 * HOUR, T0 + 6 * HOUR),
        # should_alert=False rows never count towards recall
        Label("reports", "BB", T0 + 29 * HOUR, T0 + 31 * HOUR, should_alert=False),
    ]
    strict, loose = (
        evaluate_setting(t, series, config.metrics, labels, start=T0, end=T0 + 48 * HOUR, resolve_after=3)
        for t in (4.0, 3.0)
    )

    # at 4 sigma: the reports and bans incidents are both true; 2 of 3 labels found
    assert (strict.overall.incidents, strict.overall.true_incidents) == (2, 2)
    assert (strict.overall.labels, strict.overall.detected) == (3, 2)
    # detected at the end of bucket 10 plus the 10-minute completeness delay, labelled at bucket 9
    assert strict.per_metric["reports"].ttd_median == timedelta(hours=2, minutes=10)
    assert strict.per_metric["bans"].ttd_median == timedelta(hours=2, minutes=10)
    assert strict.overall.alerts_per_week == pytest.approx(2 / (48 / 168))
    # at 3 sigma the weak BB anomaly opens a third, false incident (its label says it must not alert)
    assert (loose.overall.incidents, loose.overall.true_incidents) == (3, 2)
    assert loose.per_metric["reports"].precision == pytest.approx(0.5)
    assert loose.per_metric["bans"].recall == pytest.approx(0.5)


def test_false_positives_marked_in_slack_are_labelled_negatives() -> None:
    from alerts.model import FalsePositive

    config = two_metric_config()
    index = pd.date_range(T0, periods=48, freq="h")
    series = [
        scored("reports", "AA", index, {10: 6.0}),  # a true anomaly
        scored("reports", "BB", index, {30: 3.5}),  # a weak one people marked "not an incident"
    ]
    fp = FalsePositive("inc-1", "reports", "BB", T0 + 30 * HOUR, T0 + 31 * HOUR, "@ana", T0 + 32 * HOUR)
    (negative,) = false_positive_labels([fp])
    assert (negative.should_alert, negative.name) == (False, "false positive inc-1")
    labels = [Label("reports", "AA", T0 + 9 * HOUR, T0 + 12 * HOUR), negative]
    strict, loose = (
        evaluate_setting(t, series, config.metrics, labels, start=T0, end=T0 + 48 * HOUR, resolve_after=3)
        for t in (4.0, 3.0)
    )
    # never counted in recall; at 3 sigma the setting alerts on it again (a false alert), at 4 it does not
    assert (strict.overall.labels, loose.overall.labels) == (1, 1)
    assert (strict.overall.negatives, strict.overall.negatives_alerted) == (1, 0)
    assert (loose.overall.negatives, loose.overall.negatives_alerted) == (1, 1)
    assert loose.overall.false_alerts == 1 and loose.per_metric["reports"].to_dict()["negatives_alerted"] == 1


@pytest.mark.parametrize(
    ("text", "error"),
    [
        # a complete file: parsed, should_alert defaults to true
        ("metric,region,start,end\nbans,MX,2026-03-01T02:00Z,2026-03-01T08:00Z\n", None),
        # a missing column names the columns needed
        ("metric,start,end\nbans,2026-03-01T02:00Z,2026-03-01T08:00Z\n", "missing column(s) region"),
        # a bad time names the row
        ("metric,region,start,end\nbans,MX,yesterday-ish,2026-03-01T08:00Z\n", "row 1: bad time"),
    ],
)
def test_load_labels_from_csv(tmp_path: Path, text: str, error: str | None) -> None:
    path = tmp_path / "labels.csv"
    path.write_text(text, encoding="utf-8")
    if error is None:
        assert load_labels(str(path)) == [
            Label("bans", "MX", datetime(2026, 3, 1, 2, tzinfo=UTC), datetime(2026, 3, 1, 8, tzinfo=UTC))
        ]
        return
    with pytest.raises(BacktestError, match=error.replace("(", r"\(").replace(")", r"\)")):
        load_labels(str(path))


def test_load_labels_unknown_source_lists_tables(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    config = demo_config(demo_warehouse(tmp_path_factory), tmp_path / "state.db")
    engine = warehouse_source(config).engine
    with pytest.raises(BacktestError, match="tables: demo_incidents, live_safety_hourly"):
        load_labels("incidents_typo", engine)
    demo = load_labels("demo_incidents", engine)
    assert {lb.name for lb in demo if not lb.should_alert} == {"ph_data_gap", "sa_noise_burst"}


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    return demo_config(demo_warehouse(tmp_path_factory), tmp_path_factory.mktemp("backtest") / "state.db")


def test_replay_never_looks_ahead(config: Config) -> None:
    metric = config.metric("user_reports")
    spike = TRUTH[("br_hate_spike", "user_reports")]
    start = spike.start.replace(hour=0)
    tidy = (
        warehouse_source(config)
        .fetch(metric, start - timedelta(days=12), start + timedelta(days=2), series=["BR"])
        .frame
    )
    frame = series_frame(metric, tidy)
    full = score_series(SeriesTask(metric, config, "BR", frame, start, start + timedelta(days=2), (4.0,)))
    # the same replay with everything after the first day removed scores the first day identically
    cut = frame[frame.index < start + timedelta(days=1)]
    truncated = score_series(SeriesTask(metric, config, "BR", cut, start, start + timedelta(days=1), (4.0,)))
    first_day = full.decisions[4.0][full.decisions[4.0].index < start + timedelta(days=1)]
    pd.testing.assert_frame_equal(first_day, truncated.decisions[4.0])
    assert full.refits == 2 and not full.errors


@pytest.mark.slow
def test_backtest_finds_the_raid_and_recommends(config: Config) -> None:
    spike = TRUTH[("br_hate_spike", "user_reports")]
    labels = load_labels("demo_incidents", warehouse_source(config).engine)
    result, series = run_backtest(
        config,
        warehouse_source(config),
        labels,
        metrics=["user_reports"],
        start=spike.start - timedelta(hours=20),
        end=spike.start + timedelta(hours=28),
        thresholds=[4.0, 30.0],
    )
    at_four = next(s for s in result.settings if s.threshold == 4.0)
    deaf = next(s for s in result.settings if s.threshold == 30.0)
    # the BR raid is the one labelled row in range; 4 sigma finds it within two hours
    assert (at_four.overall.labels, at_four.overall.detected) == (1, 1)
    assert at_four.overall.ttd_median is not None and at_four.overall.ttd_median <= timedelta(hours=2)
    # at 30 sigma no bucket passes the threshold: only the CUSUM (threshold-free) confirms it, hours later
    assert deaf.overall.ttd_median is not None and deaf.overall.ttd_median > timedelta(hours=4)
    assert result.recommendation.threshold == 4.0 and result.recommendation.rule == "f1"
    assert len(series) == 12 and result.refits == 24
    payload = json.loads(json.dumps(result.to_dict()))
    assert set(payload) >= {"start", "end", "weeks", "settings", "recommendation", "labels", "errors"}
    assert set(payload["settings"][0]["overall"]) >= {
        "precision",
        "recall",
        "f1",
        "ttd_median_minutes",
        "ttd_p90_minutes",
        "alerts_per_week",
    }


def test_unknown_metric_and_empty_range_are_one_line_errors(config: Config) -> None:
    with pytest.raises(BacktestError, match=r"unknown metric.*configured metrics: user_reports"):
        run_backtest(config, warehouse_source(config), [], metrics=["nope"], end=T0)
    with pytest.raises(BacktestError, match="empty replay range"):
        run_backtest(config, warehouse_source(config), [], start=T0, end=T0)
