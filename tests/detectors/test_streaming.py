"""Tests of the streaming detector: incremental state, chunking invariance, causality, bounds, detection.

Short series and small windows keep them fast; the NAB-sized defaults are exercised by ``benchmarks/nab.py``.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from detectors import DETECTORS, Detector
from detectors.errors import InvalidSeriesError
from detectors.streaming import (
    SPATIAL_SCORE,
    Ring,
    SortedRing,
    StreamingDetector,
    _novelty_distance,
    log_likelihood,
    nearest_window_distance,
    suppress_after_alarm,
    unit_score,
)

DAY = 96  # 15-minute buckets
N = 12 * DAY
HISTORY = 6 * DAY


def _small(**overrides: object) -> StreamingDetector:
    """The NAB configuration scaled down to 15-minute data and short tests."""
    params: dict[str, object] = {
        "window": 256,
        "min_periods": 64,
        "learning_period": 96,
        "historic_window": 1024,
        "novelty_reference": 384,
        "hold": 24,
        "granularity": "15m",
    }
    params.update(overrides)
    return StreamingDetector(**params)  # type: ignore[arg-type]


def _series(seed: int = 7, n: int = N) -> pd.Series:
    """A daily-seasonal noisy series without anomalies."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    values = 50.0 + 10.0 * np.sin(2 * np.pi * t / DAY) + rng.normal(0.0, 1.0, n)
    return pd.Series(values, index=pd.date_range("2024-01-01", periods=n, freq="15min", tz="UTC"))


def _stream(detector: StreamingDetector, series: pd.Series, chunk: int) -> np.ndarray:
    """Score then update ``chunk`` points per tick over ``series``; the scores of every tick, in order."""
    out = []
    for start in range(0, len(series), chunk):
        tick = series.iloc[start : start + chunk]
        out.append(detector.score(tick)["score"].to_numpy())
        detector.update(tick)
    return np.concatenate(out)


def test_registered_under_its_name() -> None:
    assert DETECTORS["streaming"] is StreamingDetector


@pytest.mark.parametrize("chunk", [1, 7, 96])
def test_chunked_scoring_equals_one_call(chunk: int) -> None:
    # A daemon ticking 1, 7 or 96 buckets at a time gets exactly the scores of one call over the window.
    series = _series(seed=3)
    series.iloc[900] += 25.0
    series.iloc[1000:1010] = np.nan
    whole = _small().fit(series.iloc[:HISTORY]).score(series.iloc[HISTORY:])["score"].to_numpy()
    pieces = _stream(_small().fit(series.iloc[:HISTORY]), series.iloc[HISTORY:], chunk)
    np.testing.assert_array_equal(pieces, whole)


def test_fit_on_a_prefix_then_update_equals_fit_on_everything() -> None:
    # fit(history) is the same causal stream as fit(part) + update(rest): one state, however it was reached.
    series = _series(seed=4)
    window = series.iloc[HISTORY:]
    direct = _small().fit(series.iloc[:HISTORY])
    stepped = _small().fit(series.iloc[:200]).update(series.iloc[200:HISTORY])
    pd.testing.assert_frame_equal(direct.score(window), stepped.score(window), check_exact=True)
    assert direct.to_json() == stepped.to_json()


def test_json_round_trip_mid_stream_gives_identical_scores() -> None:
    # Saving and loading the state between ticks (as the pipeline does) changes nothing.
    series = _series(seed=5)
    series.iloc[950] -= 30.0
    reference = _stream(_small().fit(series.iloc[:HISTORY]), series.iloc[HISTORY:], 48)
    detector: Detector = _small().fit(series.iloc[:HISTORY])
    got = []
    for start in range(HISTORY, N, 48):
        tick = series.iloc[start : start + 48]
        got.append(detector.score(tick)["score"].to_numpy())
        assert isinstance(detector, StreamingDetector)
        text = detector.update(tick).to_json()
        json.loads(text)  # plain JSON
        detector = Detector.from_json(text)
    np.testing.assert_array_equal(np.concatenate(got), reference)


def test_score_does_not_mutate_the_detector() -> None:
    series = _series(seed=6)
    detector = _small().fit(series.iloc[:HISTORY])
    before = detector.to_json()
    first = detector.score(series.iloc[HISTORY:])
    assert detector.to_json() == before
    pd.testing.assert_frame_equal(detector.score(series.iloc[HISTORY:]), first, check_exact=True)


def test_update_after_a_different_score_recomputes() -> None:
    # The state cached by score() is only reused for exactly the points scored.
    series = _series(seed=8)
    a = _small().fit(series.iloc[:HISTORY])
    b = _small().fit(series.iloc[:HISTORY])
    changed = series.iloc[HISTORY : HISTORY + 10] + 5.0
    a.score(changed)
    a.update(series.iloc[HISTORY : HISTORY + 10])
    b.update(series.iloc[HISTORY : HISTORY + 10])
    assert a.to_json() == b.to_json()


def test_no_look_ahead() -> None:
    # Rewriting the future (a level shift and more noise after t0) leaves every score up to t0 unchanged.
    series = _series(seed=9)
    t0 = 900
    changed = series.copy()
    changed.iloc[t0 + 1 :] = changed.iloc[t0 + 1 :] * 3.0 + 100.0
    before = _small().fit(series.iloc[:HISTORY]).score(series.iloc[HISTORY:])["score"].to_numpy()
    after = _small().fit(changed.iloc[:HISTORY]).score(changed.iloc[HISTORY:])["score"].to_numpy()
    k = t0 + 1 - HISTORY
    np.testing.assert_array_equal(before[:k], after[:k])
    assert not np.array_equal(before[k:], after[k:])


def test_points_not_after_the_state_are_rejected() -> None:
    series = _series(seed=10)
    detector = _small().fit(series.iloc[:HISTORY])
    with pytest.raises(InvalidSeriesError, match="not after the state's last point"):
        detector.score(series.iloc[HISTORY - 5 : HISTORY + 5])
    with pytest.raises(InvalidSeriesError, match="not after"):
        detector.update(series.iloc[:HISTORY])


def test_state_size_is_bounded() -> None:
    # The JSON state stops growing once every ring is full: two and four times as much data, same size.
    series = _series(seed=11, n=5000)
    short = _small().fit(series.iloc[:2500])
    long = _small().fit(series)
    assert abs(len(long.to_json()) - len(short.to_json())) < 200
    assert len(long.to_json()) < 60_000


def test_spike_is_flagged_once_with_its_sign() -> None:
    series = _series(seed=12)
    series.iloc[1000] += 30.0
    series.iloc[1060] -= 30.0
    anomalies = _small().fit(series.iloc[:HISTORY]).detect(series.iloc[HISTORY:])
    starts = [(a.start, np.sign(a.score)) for a in anomalies]
    assert starts == [(series.index[1000], 1.0), (series.index[1060], -1.0)], anomalies


def test_level_shift_is_flagged_once_then_held() -> None:
    series = _series(seed=13)
    series.iloc[1000:] += 8.0  # within the range seen so far at the daily trough, not a range break
    scores = _small().fit(series.iloc[:HISTORY]).score(series.iloc[HISTORY:])["score"]
    alarms = scores.index[scores.abs() >= 4.75]
    assert len(alarms) >= 1
    first = series.index.get_loc(alarms[0])
    assert 1000 <= first <= 1010
    assert (scores.iloc[first - HISTORY + 1 : first - HISTORY + 25] == 0.0).all()  # the hold


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_white_noise_is_quiet_at_the_default_threshold(seed: int) -> None:
    rng = np.random.default_rng(seed)
    values = pd.Series(
        rng.normal(100.0, 5.0, N), index=pd.date_range("2024-01-01", periods=N, freq="15min", tz="UTC")
    )
    detector = _small().fit(values.iloc[:HISTORY])
    assert detector.detect(values.iloc[HISTORY:]) == []


def test_missing_values_score_nan_and_keep_the_band() -> None:
    series = _series(seed=14)
    series.iloc[700:705] = np.nan
    scores = _small().fit(series.iloc[:HISTORY]).score(series.iloc[HISTORY:])
    gap = scores.iloc[700 - HISTORY : 705 - HISTORY]
    assert gap["score"].isna().all()
    assert gap["expected"].notna().all()
    assert scores["score"].drop(gap.index).notna().all()


def test_expected_and_band_follow_the_trailing_level() -> None:
    series = _series(seed=15)
    scores = _small().fit(series.iloc[:HISTORY]).score(series.iloc[HISTORY:])
    assert (scores["lower"] < scores["expected"]).all() and (scores["expected"] < scores["upper"]).all()
    assert abs(float(scores["expected"].median()) - 50.0) < 3.0


def test_invalid_hyper_parameters_are_named() -> None:
    with pytest.raises(InvalidSeriesError, match="window=0"):
        StreamingDetector(window=0).fit(_series().iloc[:100], series_id="s")
    with pytest.raises(InvalidSeriesError, match=r"mean_windows=\(24, 0\)"):
        StreamingDetector(mean_windows=(24, 0)).fit(_series().iloc[:100], series_id="s")


def test_a_version_1_state_loads_without_the_mean_features() -> None:
    # A model stored before the longer means existed keeps its features and scores as it did.
    series = _series(seed=3)
    old = _small(mean_windows=()).fit(series.iloc[:HISTORY])
    payload = json.loads(old.to_json())
    payload["version"] = 1
    del payload["params"]["mean_windows"]
    loaded = Detector.from_json(json.dumps(payload))
    assert isinstance(loaded, StreamingDetector)
    assert loaded.mean_windows == ()
    np.testing.assert_array_equal(
        loaded.score(series.iloc[HISTORY:])["score"].to_numpy(),
        old.score(series.iloc[HISTORY:])["score"].to_numpy(),
    )


def test_mean_features_flag_a_sustained_shift_within_the_noise() -> None:
    # A 1.5-sigma shift that lasts: no single value stands out, its long means do.
    rng = np.random.default_rng(21)
    values = rng.normal(100.0, 5.0, N)
    values[900:] += 7.5
    series = pd.Series(values, index=pd.date_range("2024-01-01", periods=N, freq="15min", tz="UTC"))
    without = _small(mean_windows=()).fit(series.iloc[:HISTORY]).score(series.iloc[HISTORY:])["score"]
    with_means = _small().fit(series.iloc[:HISTORY]).score(series.iloc[HISTORY:])["score"]
    assert without.abs().max() < 4.75
    alarms = with_means.index[with_means.abs() >= 4.75]
    assert len(alarms) >= 1
    assert 900 <= series.index.get_loc(alarms[0]) <= 1000
    assert with_means[alarms[0]] > 0


# -- pure parts ------------------------------------------------------------------------------------
@pytest.mark.parametrize("capacity", [1, 3, 10])
def test_rings_keep_the_last_values_and_their_order(capacity: int) -> None:
    rng = np.random.default_rng(capacity)
    ring, ordered = Ring(capacity), SortedRing(capacity)
    seen: list[float] = []
    for value in rng.integers(0, 5, 40).astype(float):  # ties exercise the sorted deletion
        ring.append(value)
        ordered.append(value)
        seen.append(value)
        np.testing.assert_array_equal(ring.values(), seen[-capacity:])
        np.testing.assert_array_equal(ordered.sorted_values(), np.sort(seen[-capacity:]))


@pytest.mark.parametrize(("n", "length", "reference"), [(200, 4, None), (150, 8, 30), (60, 1, 5)])
def test_incremental_novelty_matches_brute_force(n: int, length: int, reference: int | None) -> None:
    # The ring-based distance (norms and correlations) equals the brute force over the same reference set,
    # on values far from zero (the ring holds values minus the first one).
    values = 1e6 + np.random.default_rng(n).normal(0.0, 1.0, n)
    expected = nearest_window_distance(values, length=length, reference=reference)
    capacity = (reference if reference is not None else n) + 2 * length - 1
    ring = Ring(capacity)
    got = []
    for x in values:
        ring.append(x - values[0])
        got.append(_novelty_distance(ring, length))
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_novelty_ignores_a_recurring_shape_and_flags_a_new_one() -> None:
    # A triangular pulse every day is known after its first days; a rectangular pulse of similar height on
    # day 10 is a new shape. With the seasonal and value features off, only the novelty feature scores.
    rng = np.random.default_rng(0)
    n = 12 * DAY
    values = rng.normal(0.0, 0.1, n)
    triangle = np.r_[np.arange(0.0, 10.0, 2.0), 10.0, np.arange(8.0, -1.0, -2.0)]
    for day in range(12):
        start = day * DAY + 40
        values[start : start + 11] += 8.0 if day == 10 else triangle
    series = pd.Series(values, index=pd.date_range("2024-01-01", periods=n, freq="15min", tz="UTC"))
    detector = _small(season=None, z_scale=1e9, spatial_alarm=False, hold=0, novelty_length=16)
    scores = detector.fit(series.iloc[: 6 * DAY]).score(series.iloc[6 * DAY :])["score"].abs()
    for day in range(6, 12):
        start = day * DAY + 40
        peak = float(scores.iloc[start - 6 * DAY : start - 6 * DAY + 27].max())
        assert peak >= 4.75 if day == 10 else peak < 4.75, (day, peak)


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


def test_unit_score_is_monotone_and_puts_range_breaks_on_top() -> None:
    sigmas = np.array([0.0, 2.0, -4.26, 4.75, 8.0, 9.0, SPATIAL_SCORE, np.nan])
    unit = unit_score(sigmas)
    assert unit[2] == pytest.approx(0.5, abs=0.01) and unit[3] == pytest.approx(0.6, abs=0.01)
    assert np.all(np.diff(unit[:6]) >= 0) and unit[5] < unit[6] == 1.0
    assert unit[7] == 0.0


@pytest.mark.parametrize(
    ("scores", "threshold", "hold", "expected"),
    [
        # An alarm silences the next `hold` points, including later alarms inside the hold.
        ([0.9, 0.8, 0.1, 0.7, 0.2], 0.5, 2, [0.9, 0.0, 0.0, 0.7, 0.0]),
        # hold = 0 leaves the scores untouched.
        ([0.9, 0.8, 0.1], 0.5, 0, [0.9, 0.8, 0.1]),
        # Negative scores alarm by magnitude.
        ([0.4, -0.6, 0.9], 0.5, 1, [0.4, -0.6, 0.0]),
    ],
)
def test_suppress_after_alarm(
    scores: list[float], threshold: float, hold: int, expected: list[float]
) -> None:
    got = suppress_after_alarm(np.array(scores), threshold=threshold, hold=hold)
    np.testing.assert_allclose(got, expected)
