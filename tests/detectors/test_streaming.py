"""Tests of the causal streaming scorer: no look-ahead, bounded output, spikes high, clean data low."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from detectors.streaming import (
    StreamingAnomalyScorer,
    anomaly_likelihood,
    log_likelihood,
    nearest_window_distance,
    raw_anomaly_features,
    raw_anomaly_scores,
    robust_zscores,
    suppress_after_alarm,
)

N = 3000
SPIKE = 2500
WARM_UP = 2 * 288  # two days of 5-minute points


def _clean(seed: int = 7, n: int = N) -> tuple[np.ndarray, pd.DatetimeIndex]:
    """A daily-seasonal (288 points a day) noisy series without anomalies."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    values = 50.0 + 10.0 * np.sin(2 * np.pi * t / 288) + rng.normal(0.0, 1.0, n)
    stamps = pd.date_range("2024-01-01", periods=n, freq="5min", tz="UTC")
    return values, stamps


def _scorer() -> StreamingAnomalyScorer:
    return StreamingAnomalyScorer(hold=100)  # the NAB configuration, with a round hold


def test_no_look_ahead() -> None:
    # Rewriting the future (a huge level shift and noise after t0) leaves every score up to t0 unchanged.
    values, stamps = _clean()
    t0 = 2000
    changed = values.copy()
    changed[t0 + 1 :] = changed[t0 + 1 :] * 3.0 + 100.0
    before = _scorer().score_stream(values, stamps)
    after = _scorer().score_stream(changed, stamps)
    np.testing.assert_array_equal(before[: t0 + 1], after[: t0 + 1])
    assert not np.array_equal(before[t0 + 1 :], after[t0 + 1 :])  # the change is seen once it happens


def test_prefix_gives_the_same_scores_as_the_full_stream() -> None:
    # Scoring a prefix alone equals the prefix of scoring the whole stream (streaming = batch).
    values, stamps = _clean(seed=3)
    full = _scorer().score_stream(values, stamps)
    prefix = _scorer().score_stream(values[:1500], stamps[:1500])
    np.testing.assert_allclose(prefix, full[:1500])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scores_are_within_unit_interval(seed: int) -> None:
    # Heavy-tailed data with missing values and a flat stretch still gives finite scores in [0, 1].
    rng = np.random.default_rng(seed)
    values = rng.standard_t(2, N) * 5 + 20
    values[100:400] = 20.0
    values[rng.integers(0, N, 30)] = np.nan
    scores = _scorer().score_stream(values, pd.date_range("2024-01-01", periods=N, freq="5min", tz="UTC"))
    assert scores.shape == (N,)
    assert np.all(np.isfinite(scores))
    assert scores.min() >= 0.0 and scores.max() <= 1.0


def test_clear_spike_gets_a_high_score_and_clean_series_stays_low() -> None:
    values, stamps = _clean(seed=11)
    clean_scores = _scorer().score_stream(values, stamps)
    spiked = values.copy()
    spiked[SPIKE] += 40.0  # ~40 sigma
    spike_scores = _scorer().score_stream(spiked, stamps)
    assert spike_scores[SPIKE] >= 0.9
    # No alarm once warmed up (z-scores need 256 points, the seasonal feature one more day).
    assert clean_scores[WARM_UP:].max() < 0.6
    # Exactly one alarm after the warm-up, at the spike.
    assert (np.flatnonzero(spike_scores[WARM_UP:] >= 0.6) + WARM_UP).tolist() == [SPIKE]


def test_level_shift_alarms_once_then_suppresses() -> None:
    values, stamps = _clean(seed=5)
    values[SPIKE:] += 30.0
    scores = _scorer().score_stream(values, stamps)
    alarms = np.flatnonzero(scores >= 0.6)
    assert alarms.size >= 1
    assert SPIKE <= alarms[0] <= SPIKE + 5  # detected within a few points of the shift
    assert np.all(scores[alarms[0] + 1 : alarms[0] + 101] == 0.0)  # hold: the next 100 points are silenced


@pytest.mark.parametrize(
    ("scores", "threshold", "hold", "expected"),
    [
        # An alarm silences the next `hold` points, including later alarms inside the hold.
        ([0.9, 0.8, 0.1, 0.7, 0.2], 0.5, 2, [0.9, 0.0, 0.0, 0.7, 0.0]),
        # hold = 0 leaves the scores untouched.
        ([0.9, 0.8, 0.1], 0.5, 0, [0.9, 0.8, 0.1]),
        # Points below the threshold never start a hold.
        ([0.4, 0.3, 0.6, 0.9], 0.5, 1, [0.4, 0.3, 0.6, 0.0]),
    ],
)
def test_suppress_after_alarm(
    scores: list[float], threshold: float, hold: int, expected: list[float]
) -> None:
    np.testing.assert_allclose(
        suppress_after_alarm(np.array(scores), threshold=threshold, hold=hold), expected
    )


@pytest.mark.parametrize(
    ("likelihood", "expected"),
    [
        (0.5, 0.0301),  # a coin flip is barely anomalous
        (1.0 - 1e-5, 0.5),  # a tail of 1e-5 maps to 0.5 (Numenta's scaling)
        (1.0, 1.0),  # certainty saturates at 1
    ],
)
def test_log_likelihood(likelihood: float, expected: float) -> None:
    assert float(log_likelihood(np.array([likelihood]))[0]) == pytest.approx(expected, abs=1e-3)


def test_anomaly_likelihood_learning_period_and_jump() -> None:
    # No opinion (0.5) during the learning period; a sustained jump of the raw scores is near-certain.
    rng = np.random.default_rng(0)
    raw = rng.uniform(0.0, 0.2, 1000)
    raw[900:] = 1.0
    likelihood = anomaly_likelihood(raw, learning_period=100, historic_window=500, short_window=5)
    assert np.all(likelihood[:100] == 0.5)
    assert likelihood[905] > 0.99999
    assert likelihood[500:890].max() < 0.9999


def test_robust_zscores_use_only_the_past() -> None:
    # The point being scored is excluded from its own median and scale.
    values = np.r_[np.zeros(50), 10.0]
    z = robust_zscores(values, window=50, min_periods=10, scale_floor=1.0)
    assert z[-1] == pytest.approx(10.0)
    assert np.all(z[:10] == 0.0)  # not enough history yet


def test_raw_scores_flag_range_breaks() -> None:
    # A value far outside the range seen so far is a "spatial" anomaly with raw score 1.
    values, _ = _clean(seed=9, n=600)
    values[550] = 500.0
    raw = raw_anomaly_scores(values)
    assert raw[550] == 1.0
    assert np.all((raw >= 0.0) & (raw <= 1.0))


def _brute_force_nearest(values: np.ndarray, length: int) -> np.ndarray:
    """Reference: RMS distance of each window to the nearest earlier window that does not overlap it."""
    out = np.full(len(values), np.nan)
    for t in range(2 * length - 1, len(values)):
        current = values[t - length + 1 : t + 1]
        best = min(
            float(np.sum((current - values[s - length + 1 : s + 1]) ** 2))
            for s in range(length - 1, t - length + 1)
        )
        out[t] = np.sqrt(best / length)
    return out


@pytest.mark.parametrize(("n", "length", "block"), [(200, 4, 7), (150, 8, 1000), (90, 1, 5), (40, 16, 3)])
def test_nearest_window_distance_matches_brute_force(n: int, length: int, block: int) -> None:
    # Blocked matrix products give the brute-force answer whatever the block size (small blocks exercise the
    # partly-overlapping tail of every block), and nothing before the first non-overlapping pair.
    values = np.random.default_rng(n).normal(0.0, 1.0, n)
    got = nearest_window_distance(values, length=length, block=block)
    np.testing.assert_allclose(got, _brute_force_nearest(values, length), atol=1e-9)
    assert np.isnan(got[: 2 * length - 1]).all()


@pytest.mark.parametrize(
    ("values", "length", "expected_last"),
    [
        # A window that repeats an earlier non-overlapping one exactly is at distance 0.
        ([1.0, 2.0, 3.0, 9.0, 1.0, 2.0, 3.0], 3, 0.0),
        # A constant offset of 2 on every point of the window is an RMS distance of 2.
        ([0.0, 0.0, 5.0, 2.0, 2.0], 2, 2.0),
        # A missing value is carried forward: [4, 4] matches the earlier [4, 4].
        ([4.0, 4.0, 7.0, 4.0, np.nan], 2, 0.0),
        # A large offset costs no precision: [1e9+1, 1e9+1] is at RMS distance 1 from [1e9, 1e9] (squared
        # norms of 2e18 would round that difference away).
        ([1e9, 1e9, 1e9 + 5.0, 1e9 + 1.0, 1e9 + 1.0], 2, 1.0),
        # Leading missing values count as the first value: [5, 5] matches the earlier (missing, 5).
        ([np.nan, 5.0, 8.0, 5.0, 5.0], 2, 0.0),
        # Too short for two non-overlapping windows: no distance yet.
        ([1.0, 2.0, 3.0], 2, np.nan),
    ],
)
def test_nearest_window_distance_cases(values: list[float], length: int, expected_last: float) -> None:
    got = nearest_window_distance(np.array(values), length=length)
    np.testing.assert_allclose(got[-1], expected_last, atol=1e-12)


@pytest.mark.parametrize(("length", "block"), [(0, 512), (4, 0)])
def test_nearest_window_distance_rejects_empty_windows(length: int, block: int) -> None:
    # A window or block of no points is a configuration error, not a silent "no novelty".
    with pytest.raises(ValueError, match="must be at least 1"):
        nearest_window_distance(np.arange(50.0), length=length, block=block)


def test_novelty_feature_ignores_a_recurring_pulse_and_flags_a_new_shape() -> None:
    # A triangular pulse every day is expected after its first occurrence; a rectangular pulse of similar
    # size on day 8 is a shape never seen before. The value z-scores fire on both; novelty tells them apart.
    rng = np.random.default_rng(0)
    values = rng.normal(0.0, 0.1, 288 * 10)
    triangle = np.r_[np.arange(0.0, 10.0, 2.0), 10.0, np.arange(8.0, -1.0, -2.0)]
    for day in range(10):
        start = day * 288 + 100
        values[start : start + 11] += 8.0 if day == 8 else triangle
    novelty = raw_anomaly_features(values, novelty_length=16)[:, -1]
    for day in range(1, 10):
        start = day * 288 + 100
        peak = novelty[start : start + 27].max()  # every window that contains part of the pulse
        assert peak > 0.9 if day == 8 else peak < 0.5, (day, peak)


def test_novelty_detects_a_stuck_sensor_sooner() -> None:
    # The signal freezes at its last value for 200 points, inside the usual range. The novelty feature
    # (16-point windows unlike anything seen) raises the alarm within 40 points; without it the z-scores
    # only react once the frozen value has drifted far from the seasonal expectation.
    values, stamps = _clean(seed=7)
    values[SPIKE : SPIKE + 200] = values[SPIKE - 1]
    with_novelty = _scorer().score_stream(values, stamps)
    without = StreamingAnomalyScorer(hold=100, novelty_length=None).score_stream(values, stamps)
    first_with = int(np.flatnonzero(with_novelty[WARM_UP:] >= 0.6)[0]) + WARM_UP
    first_without = int(np.flatnonzero(without[WARM_UP:] >= 0.6)[0]) + WARM_UP
    assert SPIKE <= first_with <= SPIKE + 40
    assert first_with < first_without
