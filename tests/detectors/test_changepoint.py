"""Offline changepoints: tiny literal series with known answers, invariants over a grid of seeds."""

from __future__ import annotations

import importlib.util
import itertools
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from detectors.changepoint import CostTrend, find_changepoints, robust_noise, seasonal_period
from detectors.errors import InvalidSeriesError

NAN = float("nan")
STEP = [0.0] * 10 + [5.0] * 10


def _noisy_step(seed: int, n: int = 200, at: int = 120, size: float = 4.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    values = rng.normal(0.0, 1.0, n)
    values[at:] += size
    return values


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        # a clean step is found exactly, by both models
        (STEP, [10]),
        # two clean steps
        ([1.0] * 8 + [9.0] * 8 + [3.0] * 8, [8, 16]),
        # a constant series has no changepoint
        ([3.0] * 50, []),
        # too short for two segments of min_size (5): nothing, whatever the values
        ([0.0, 0.0, 0.0, 9.0, 9.0, 9.0], []),
        # empty and all-missing inputs
        ([], []),
        ([NAN] * 30, []),
        # NaNs inside segments are interpolated; positions stay those of the input
        ([0.0, NAN, 0.0, 0.0, NAN, 0.0, 0.0, 0.0, 0.0, 0.0, 5.0, 5.0, NAN, 5.0, 5.0, 5.0, NAN, 5.0], [10]),
        # leading and trailing NaNs are filled from the nearest value
        ([NAN, NAN, *STEP, NAN], [12]),
        # +-inf is missing, not a value (else it would open a segment of its own)
        ([0.0] * 5 + [float("inf")] + [0.0] * 4 + [5.0] * 6 + [-float("inf")] + [5.0] * 3, [10]),
        # a straight line (steady trend) is one segment, not a staircase
        (list(np.arange(40.0) * 2.5), []),
        # a kink in a noiseless trend opens a segment at the kink
        (list(np.r_[np.arange(20.0), 20.0 - 3 * np.arange(1.0, 21.0)]), [20]),
    ],
)
def test_literal_series(values: list[float], expected: list[int]) -> None:
    assert find_changepoints(np.asarray(values, dtype=float)) == expected


@pytest.mark.parametrize("model", ["trend", "level"])
def test_clean_step_found_exactly_by_each_model(model: str) -> None:
    # Proves both costs locate a clean step at the first point of the new level.
    assert find_changepoints(np.asarray(STEP), model=model) == [10]  # type: ignore[arg-type]


def test_series_input_matches_array_input() -> None:
    # Proves a pandas Series (any index, even datetimes) gives the same 0-based positions as its values.
    values = _noisy_step(0)
    index = pd.date_range("2026-01-01", periods=values.size, freq="D", tz="UTC")
    assert find_changepoints(pd.Series(values, index=index)) == find_changepoints(values)
    assert find_changepoints(values) == [120]


def test_nullable_series_with_missing_values() -> None:
    # Proves a Float64 Series with pd.NA is read as floats with NaN.
    series = pd.Series([*STEP[:3], pd.NA, *STEP[4:]], dtype="Float64")
    assert find_changepoints(series) == [10]


def test_single_outlier_is_not_a_segment() -> None:
    # Proves winsorising: one gross outlier in white noise opens no segment.
    rng = np.random.default_rng(5)
    values = rng.normal(0.0, 1.0, 150)
    values[70] = 40.0
    assert find_changepoints(values) == []


def test_autocorrelated_noise_is_not_cut_into_segments() -> None:
    # Proves the long-run scale: AR(1) noise with phi=0.8 and no change gives no changepoint.
    rng = np.random.default_rng(3)
    eps = rng.normal(0.0, 0.6, 400)
    values = np.zeros(400)
    for t in range(1, 400):
        values[t] = 0.8 * values[t - 1] + eps[t]
    assert find_changepoints(values) == []


def test_count_series_rate_change() -> None:
    # Proves counts (Anscombe-stabilised) find a Poisson rate change from 4 to 12 within 3 points.
    rng = np.random.default_rng(2)
    counts = np.r_[rng.poisson(4.0, 100), rng.poisson(12.0, 100)].astype(float)
    found = find_changepoints(counts)
    assert len(found) == 1 and abs(found[0] - 100) <= 3


def test_columns_are_segmented_alone_and_merged() -> None:
    # Proves the 2-D path: a change in either column is reported, near-duplicates merged.
    first, second = _noisy_step(1), _noisy_step(2, at=60)
    found = find_changepoints(np.column_stack([first, second]))
    assert found == sorted(set(find_changepoints(first)) | set(find_changepoints(second)))
    assert len(found) == 2


@pytest.mark.parametrize(
    ("values", "params", "message"),
    [
        # non-numeric values
        (np.array(["a", "b"]), {}, "not numeric"),
        # three dimensions
        (np.zeros((4, 4, 4)), {}, "shape"),
        # unknown model
        (np.zeros(20), {"model": "spline"}, "model"),
        # a penalty must be positive
        (np.zeros(20), {"penalty": 0.0}, "penalty"),
        # the trend cost needs three points per segment
        (np.zeros(20), {"min_size": 2}, "min_size"),
        # phi of 1 is a random walk: no long-run scale
        (np.zeros(20), {"max_phi": 1.0}, "max_phi"),
    ],
)
def test_invalid_input_raises_named_error(
    values: np.ndarray, params: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidSeriesError, match=message):
        find_changepoints(values, **params)  # type: ignore[arg-type]


@pytest.mark.parametrize("model", ["auto", "trend", "level"])
@pytest.mark.parametrize("n", [7, 10, 11, 37, 150])
@pytest.mark.parametrize("seed", range(4))
def test_invariants(model: str, n: int, seed: int) -> None:
    # Proves, over a grid (ruptures-style): sorted, unique, strictly inside (0, n), segments >= min_size.
    rng = np.random.default_rng(seed)
    values = np.cumsum(rng.normal(0.0, 1.0, n)) + rng.standard_t(2, n)
    values[rng.random(n) < 0.1] = np.nan
    found = find_changepoints(values, model=model)  # type: ignore[arg-type]
    assert found == sorted(set(found))
    assert all(0 < p < n for p in found)
    bounds = [0, *found, n]
    assert all(b - a >= 5 for a, b in itertools.pairwise(bounds))


def test_noisy_step_located_within_margin_over_seeds() -> None:
    # Proves recovery on seeded data: a 4-sigma step at 120 is found within 2 points, and only it.
    for seed in range(10):
        found = find_changepoints(_noisy_step(seed))
        assert len(found) == 1 and abs(found[0] - 120) <= 2, (seed, found)


@pytest.mark.parametrize(
    ("values", "sigma", "phi"),
    [
        # a constant series has zero noise and no autocorrelation
        ([2.0] * 10, 0.0, 0.0),
        # one value: no differences
        ([1.0], 0.0, 0.0),
        # a clean step: most differences are 0, sigma falls back to their standard deviation
        (STEP, float(np.std(np.diff(STEP)) / np.sqrt(2)), 0.0),
    ],
)
def test_robust_noise_edge_cases(values: list[float], sigma: float, phi: float) -> None:
    assert robust_noise(np.asarray(values)) == pytest.approx((sigma, phi))


def test_robust_noise_reads_autocorrelation() -> None:
    # Proves phi from differences: white noise reads ~0, a random walk reaches the cap (less the small bias
    # of taking the local median off the differences).
    rng = np.random.default_rng(0)
    assert robust_noise(rng.normal(size=2000))[1] < 0.1
    assert robust_noise(np.cumsum(rng.normal(size=2000)))[1] > 0.85


def test_robust_noise_is_not_fooled_by_a_change_of_slope() -> None:
    # Proves the local median comes off the differences: a kink from flat to a slope of 2 noise SDs per
    # step shifts the differences' level, which read raw as a random walk's persistence (phi at the cap).
    t = np.arange(200.0)
    kink = np.where(t < 100, 0.0, 2.0 * (t - 100)) + np.random.default_rng(1).normal(size=200)
    assert robust_noise(kink)[1] < 0.3
    assert find_changepoints(kink) == [101]


@pytest.mark.parametrize("seed", [0, 1])
def test_auto_model_keeps_a_step_that_a_line_absorbs(seed: int) -> None:
    # Proves model="auto": a drop of a count rate from 3 to 1 (coal-mine disasters) is fitted well enough by
    # one line that the trend model finds nothing; the steps fit down to the noise and win on BIC.
    rng = np.random.default_rng(seed)
    counts = np.concatenate([rng.poisson(3.0, 40), rng.poisson(1.0, 72)]).astype(float)
    assert find_changepoints(counts, model="trend") == []
    assert find_changepoints(counts) == [40]


def test_cost_trend_matches_least_squares() -> None:
    # Proves the closed-form cost equals numpy's least-squares residual on random segments.
    rng = np.random.default_rng(4)
    y = rng.normal(size=60).cumsum()
    cost = CostTrend().fit(y)
    for start, end in [(0, 60), (3, 9), (10, 13), (25, 58)]:
        t = np.arange(start, end, dtype=float)
        design = np.column_stack([np.ones_like(t), t])
        coef = np.linalg.lstsq(design, y[start:end], rcond=None)[0]
        assert cost.error(start, end) == pytest.approx(float(np.sum((y[start:end] - design @ coef) ** 2)))


def _cycle(period: int, n: int, seed: int, amplitude: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return amplitude * np.sin(2 * np.pi * np.arange(n) / period) + rng.normal(0.0, 1.0, n)


@pytest.mark.parametrize(
    ("values", "period"),
    [
        # a monthly cycle in noise is found
        (_cycle(12, 240, 0, 3.0), 12),
        # a weekly cycle, with a level shift on top (differences ignore the shift)
        (_cycle(7, 200, 1, 2.0) + np.r_[np.zeros(100), np.full(100, 6.0)], 7),
        # white noise has no season
        (np.random.default_rng(2).normal(size=300), None),
        # a random walk has no season
        (np.cumsum(np.random.default_rng(3).normal(size=300)), None),
        # too short for three cycles of any period >= 3
        (np.arange(8.0), None),
    ],
)
def test_seasonal_period(values: np.ndarray, period: int | None) -> None:
    assert seasonal_period(values) == period


def test_shift_under_a_strong_cycle_is_found() -> None:
    # Proves deseasonalising: a 4-sigma shift under a 3-sigma monthly cycle is found within 2 points, alone.
    values = _cycle(12, 240, 4, 3.0)
    values[150:] += 4.0
    found = find_changepoints(values)
    assert len(found) == 1 and abs(found[0] - 150) <= 2, found


# -- behaviour on the shapes real annotated series have -------------------------------------------------
def test_trend_change_is_found() -> None:
    # Proves slope changes: a flat series that starts climbing at 120 (a continuous kink, no jump) is split
    # once, near the kink (a kink is located less sharply than a step: within 10 points).
    for seed in range(5):
        rng = np.random.default_rng(seed)
        t = np.arange(240.0)
        values = 0.2 * np.clip(t - 120, 0, None) + rng.normal(0.0, 1.0, t.size)
        found = find_changepoints(values)
        assert len(found) == 1 and abs(found[0] - 120) <= 10, (seed, found)


def test_variance_change_is_found() -> None:
    # Proves the spread step: the noise's standard deviation quadruples at 100 with no change of level. It
    # is found within the margin, alone: the noisier regime is down-weighted, so its wanders are not shifts.
    for seed in range(5):
        rng = np.random.default_rng(seed)
        values = 50.0 + rng.normal(0.0, 1.0, 220) * np.r_[np.ones(100), np.full(120, 4.0)]
        found = find_changepoints(values)
        assert len(found) == 1 and abs(found[0] - 100) <= 5, (seed, found)


@pytest.mark.parametrize(
    "values",
    [
        # exponential growth with 0.5% multiplicative noise (a population): logs make it a line
        1000.0 * np.exp(0.02 * np.arange(150.0)) * (1 + 0.005 * np.random.default_rng(0).normal(size=150)),
        # quadratic growth with noise: its misfit to one line is not a regime change
        100 + 0.01 * np.arange(200.0) ** 2 + np.random.default_rng(1).normal(size=200),
        # saturating (logistic) growth, noiseless and noisy
        50 + 100 / (1 + np.exp(-(np.arange(120.0) - 60) / 12)),
        50 + 100 / (1 + np.exp(-(np.arange(120.0) - 60) / 12)) + np.random.default_rng(2).normal(size=120),
    ],
)
def test_smooth_trend_is_not_split(values: np.ndarray) -> None:
    assert find_changepoints(values) == []


def test_strongly_curved_trend_gets_at_most_one_changepoint() -> None:
    # Documents the limit: a cubic that falls then rises tenfold is cut once (near its bend), not stepped.
    t = np.arange(200.0) / 20
    assert len(find_changepoints(t**3 - 30 * t + np.random.default_rng(1).normal(size=200))) <= 1


def test_white_noise_gives_no_changepoint() -> None:
    # Proves quiet on clean data, over seeds and lengths.
    for seed, n in itertools.product(range(5), (60, 300, 1000)):
        assert find_changepoints(np.random.default_rng(seed).normal(size=n)) == [], (seed, n)


def test_random_walk_is_not_cut_into_pieces() -> None:
    # Proves the visibility threshold: a price-like random walk gets a handful of changepoints at most.
    for seed in range(3):
        walk = 100.0 + np.cumsum(np.random.default_rng(seed).normal(size=600))
        assert len(find_changepoints(walk)) <= 2, seed


def test_min_gain_zero_keeps_only_the_statistical_penalty() -> None:
    # Proves min_gain is the threshold that keeps a random walk whole: without it the walk is cut often.
    walk = np.cumsum(np.random.default_rng(0).normal(size=1000))
    assert len(find_changepoints(walk, min_gain=0.0)) > len(find_changepoints(walk))


# -- TCPD metrics (benchmarks/cpd_data.py) ---------------------------------------------------------------
_CPD_DATA = Path(__file__).resolve().parents[2] / "benchmarks" / "cpd_data.py"
_SPEC = importlib.util.spec_from_file_location("cpd_data_under_test", _CPD_DATA)
assert _SPEC is not None and _SPEC.loader is not None
cpd_data = importlib.util.module_from_spec(_SPEC)
sys.modules[_SPEC.name] = cpd_data
_SPEC.loader.exec_module(cpd_data)


@pytest.mark.parametrize(
    ("annotations", "predicted", "f1", "cover"),
    [
        # exact hit: P = R = 1 (0 counts on both sides); one segment each side covers its twin
        ({"a": [50]}, [50], 1.0, 1.0),
        # predicting nothing: P = 1/1 (the start), R = 1/2, F1 = 2/3; each half covered at Jaccard 1/2
        ({"a": [50]}, [], 2 / 3, 0.5),
        # 5 points off is inside the margin: still a hit
        ({"a": [50]}, [55], 1.0, 0.5 * 50 / 55 + 0.5 * 45 / 50),
        # 6 points off is a miss and a false alarm: P = 1/2, R = 1/2
        ({"a": [50]}, [56], 0.5, 0.5 * 50 / 56 + 0.5 * 44 / 50),
        # an annotator who marked nothing, and no prediction: perfect
        ({"a": []}, [], 1.0, 1.0),
        # two annotators, one silent: precision against the union, recall per annotator averaged; the
        # silent annotator's single segment is covered at Jaccard 1/2
        ({"a": [50], "b": []}, [50], 1.0, 0.75),
        # two predictions around one annotation: only one may match it, P = 2/3, R = 1, F1 = 0.8
        ({"a": [50]}, [48, 52], 0.8, (50 * 48 / 50 + 50 * 48 / 50) / 100),
        # partial overlap: [0,30) in [0,40) at 0.75, [30,100) in [40,100) at 60/70
        ({"a": [30]}, [40], 0.5, (30 * 0.75 + 70 * 60 / 70) / 100),
    ],
)
def test_tcpd_metrics(
    annotations: dict[str, list[int]], predicted: list[int], f1: float, cover: float
) -> None:
    assert cpd_data.f_measure(annotations, predicted) == pytest.approx(f1)
    assert cpd_data.covering(annotations, predicted, 100) == pytest.approx(cover)
