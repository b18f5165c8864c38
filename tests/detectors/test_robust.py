"""Robust seasonal baseline: slots, short-history fallback, calibration and the vectorised path."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from detectors import RobustSeasonalDetector, robust_baseline, robust_score_many
from detectors.robust import season_for_step, slot_of
from detectors.synthetic import inject_spike, make_series


@pytest.mark.parametrize(
    ("step", "season"),
    [
        (pd.Timedelta(minutes=5), "hour_of_week"),  # sub-hourly shares the hour's slot
        (pd.Timedelta(hours=1), "hour_of_week"),
        (pd.Timedelta(days=1), "day_of_week"),
    ],
)
def test_season_follows_the_granularity(step: pd.Timedelta, season: str) -> None:
    assert season_for_step(step) == season


@pytest.mark.parametrize(
    ("timestamp", "season", "slot"),
    [
        ("2026-01-05 00:00", "hour_of_week", 0),  # Monday midnight UTC is the first slot
        ("2026-01-11 23:30", "hour_of_week", 167),  # Sunday 23h is the last
        ("2026-01-07 13:00", "day_of_week", 2),  # Wednesday
        ("2026-01-07 13:00", "hour_of_day", 13),
        ("2026-01-07 13:00", "global", 0),
    ],
)
def test_slot_of(timestamp: str, season: str, slot: int) -> None:
    index = pd.DatetimeIndex([timestamp], tz="UTC")
    assert slot_of(index, season)[0] == slot  # type: ignore[arg-type]


@pytest.mark.parametrize("weeks_of_history", [4, 2])
def test_clean_scores_are_calibrated(weeks_of_history: int) -> None:
    # Scores are standard-normal deviations: on clean data their spread is about one.
    hours = weeks_of_history * 7 * 24
    scores = []
    for seed in range(4):
        series = make_series(hours + 48, seed=seed)
        detector = RobustSeasonalDetector().fit(series.iloc[:hours], series_id="s")
        scores.append(detector.score(series.iloc[hours:])["score"].to_numpy())
    spread = float(np.std(np.concatenate(scores)))
    assert 0.7 < spread < 1.4


def test_short_history_falls_back_to_hour_of_day_and_still_detects() -> None:
    series = make_series(3 * 24 + 48, seed=3, weekly_amp=0.0)
    history, window = series.iloc[: 3 * 24], series.iloc[3 * 24 :]
    detector = RobustSeasonalDetector().fit(history, series_id="short")
    assert np.isfinite(detector.expected_.to_numpy()).all()  # every hour-of-week slot has a value
    # Slots never seen fall back to the hour of day: Thursday 10:00 expects what 10:00 looked like.
    thursday_10 = detector.expected_.loc[("short", 3 * 24 + 10)]
    assert thursday_10 == pytest.approx(history["value"][pd.DatetimeIndex(history.index).hour == 10].median())
    assert detector.detect(window) == []
    spiked, labels = inject_spike(window, 30, magnitude=15.0)
    assert [a.start for a in detector.detect(spiked)] == [labels[0].start]


def test_daily_series_uses_day_of_week() -> None:
    series = make_series(8 * 7 + 7, "1d", seed=4, noise=2.0)
    detector = RobustSeasonalDetector().fit(series.iloc[:56], series_id="daily")
    assert detector.season_ == "day_of_week"
    assert len(detector.expected_) == 7
    assert detector.detect(series.iloc[56:]) == []


def test_vectorised_baseline_equals_one_detector_per_series() -> None:
    frames = {f"s{i}": make_series(15 * 24 + 24, seed=20 + i, level=50.0 * (i + 1)) for i in range(3)}
    long_history = pd.concat(
        [
            pd.DataFrame({"series_id": k, "ts": f.index[:-24], "value": f["value"].iloc[:-24]})
            for k, f in frames.items()
        ],
        ignore_index=True,
    )
    long_window = pd.concat(
        [
            pd.DataFrame({"series_id": k, "ts": f.index[-24:], "value": f["value"].iloc[-24:]})
            for k, f in frames.items()
        ],
        ignore_index=True,
    )
    expected, sigma, _ = robust_baseline(long_history, season="hour_of_week", weeks=4, min_slot_points=2)
    scored = robust_score_many(long_window, expected, sigma, season="hour_of_week", z=4.0)
    for key, frame in frames.items():
        single = RobustSeasonalDetector().fit(frame.iloc[:-24], series_id=key).score(frame.iloc[-24:])
        mine = scored.loc[scored["series_id"] == key]
        np.testing.assert_array_equal(mine["score"].to_numpy(), single["score"].to_numpy())
        np.testing.assert_array_equal(mine["expected"].to_numpy(), single["expected"].to_numpy())


def test_series_missing_from_the_baseline_score_nan() -> None:
    history = pd.DataFrame(
        {"series_id": "a", "ts": pd.date_range("2026-01-05", periods=48, freq="h", tz="UTC"), "value": 1.0}
    )
    expected, sigma, _ = robust_baseline(history, season="hour_of_week")
    window = pd.DataFrame({"series_id": ["b"], "ts": [history["ts"].iloc[0]], "value": [1.0]})
    assert robust_score_many(window, expected, sigma, season="hour_of_week", z=4.0)["score"].isna().all()


def test_constant_history_gets_a_floor_sigma_not_zero() -> None:
    index = pd.date_range("2026-01-05", periods=48, freq="h", tz="UTC")
    detector = RobustSeasonalDetector().fit(pd.Series(5.0, index=index), series_id="flat")
    scores = detector.score(pd.Series([5.0, 6.0], index=index[:2] + pd.Timedelta(days=7)))
    assert scores["score"].iloc[0] == 0.0
    assert np.isfinite(scores["score"].iloc[1]) and scores["score"].iloc[1] > 1e3
