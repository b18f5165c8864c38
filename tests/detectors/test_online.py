"""Online CUSUM: one alarm per permanent shift, quiet on clean noise, vectorised, and the Detector wrapper."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from detectors import DETECTORS, Detector
from detectors.errors import InvalidSeriesError
from detectors.online import CusumDetector, online_cusum
from detectors.synthetic import make_series

CHANGE = 300
TOLERANCE = 40  # points: the mean delay for a 1-sigma shift is about 22 (module docstring)


def _shifted(seed: int, size: float, n: int = 800, at: int = CHANGE) -> np.ndarray:
    rng = np.random.default_rng(seed)
    residuals = rng.normal(0.0, 1.0, n)
    residuals[at:] += size
    return residuals


@pytest.mark.parametrize(
    "size",
    [
        2.0,  # upward shift, moderate
        -2.0,  # downward shift: the other side of the CUSUM
        1.0,  # small shift: slower, still one alarm
        -8.0,  # huge shift: confirmed within a few points, re-baselined in one step
    ],
)
def test_permanent_shift_alerts_once_then_stops(size: float) -> None:
    # Proves: one alarm, after the change and within TOLERANCE, start estimated near the change,
    # new level ~ size, score of the right sign and above 4 sigmas, then quiet for 500 points.
    for seed in range(5):
        result = online_cusum(_shifted(seed, size))
        alarms = result.alarm_positions()
        assert len(alarms) == 1, (seed, alarms)
        (alarm,) = alarms
        assert CHANGE <= alarm <= CHANGE + TOLERANCE
        assert abs(int(result.starts[alarm]) - CHANGE) <= 8
        assert np.sign(result.score[alarm]) == np.sign(size)
        assert abs(result.score[alarm]) >= 2 * np.sqrt(10.0 * 0.5)
        assert result.level[-1] == pytest.approx(size, abs=0.35)
        assert result.expected[alarm] == 0.0 and result.level[alarm] != 0.0


def test_clean_noise_stays_quiet() -> None:
    # Proves quiet on clean data: one seeded white-noise series of 3,000 points raises no alarm.
    result = online_cusum(np.random.default_rng(7).normal(0.0, 1.0, 3_000))
    assert result.alarm_positions() == []
    assert np.all(result.level == 0.0)


def test_false_alarm_rate_on_white_noise() -> None:
    # Proves the calibration: over 400,000 points of white noise (200 series), at most one alarm per
    # 20,000 points (the first-alarm run length is ~70,000; a false alarm may be followed by one back).
    noise = np.random.default_rng(8).normal(0.0, 1.0, (2_000, 200))
    assert int(online_cusum(noise).alarms.sum()) <= 400_000 // 20_000


@pytest.mark.parametrize(
    ("burst", "alarms"),
    [
        ([12.0], 0),  # a single 12-sigma spike: clipped at 3, cannot confirm
        ([12.0] * 4, 0),  # four points: 4 * (3 - 0.5) = 10 does not exceed the threshold
        ([12.0] * 5, 1),  # five points: confirmed (and the burst then ends: back to 0 is a shift too)
    ],
)
def test_short_bursts_need_five_points(burst: list[float], alarms: int) -> None:
    residuals = np.zeros(60)
    residuals[20 : 20 + len(burst)] = burst
    result = online_cusum(residuals)
    assert int(result.alarms[:26].sum()) == alarms


def test_matrix_run_equals_column_runs() -> None:
    # Proves the (n, m) path is the per-series computation, vectorised.
    rng = np.random.default_rng(1)
    matrix = rng.normal(0.0, 1.0, (400, 6))
    matrix[200:, :3] += np.array([3.0, -2.0, 1.5])
    matrix[rng.random(matrix.shape) < 0.05] = np.nan
    together = online_cusum(matrix)
    for j in range(matrix.shape[1]):
        alone = online_cusum(matrix[:, j])
        for field in ("alarms", "starts", "level", "expected", "score"):
            np.testing.assert_array_equal(getattr(together, field)[:, j], getattr(alone, field))
    assert together.alarms[:, :3].sum(axis=0).tolist() == [1, 1, 1]
    assert not together.alarms[:, 3:].any()


def test_missing_residuals_carry_the_state() -> None:
    # Proves NaN means "no information": the score is NaN there and the shift is still confirmed.
    residuals = _shifted(3, 3.0)
    residuals[CHANGE + 1 : CHANGE + 4] = np.nan
    result = online_cusum(residuals)
    assert np.isnan(result.score[CHANGE + 1 : CHANGE + 4]).all()
    assert len(result.alarm_positions()) == 1


def test_initial_level_per_series() -> None:
    # Proves ``level`` sets the starting baseline: residuals around 5 are quiet against level 5.
    residuals = np.random.default_rng(2).normal(5.0, 1.0, (300, 2))
    result = online_cusum(residuals, level=np.array([5.0, 0.0]))
    assert result.alarms.sum(axis=0).tolist() == [0, 1]


@pytest.mark.parametrize(
    "params",
    [
        {"drift": -0.1},  # negative allowance
        {"threshold": 0.0},  # no decision interval
        {"clip": 0.0},  # clipping everything away
        {"settle": -1},  # negative settle period
    ],
)
def test_invalid_parameters_raise(params: dict[str, float]) -> None:
    with pytest.raises(InvalidSeriesError, match="CUSUM needs"):
        online_cusum(np.zeros(10), **params)  # type: ignore[arg-type]


def test_three_dimensional_residuals_raise() -> None:
    with pytest.raises(InvalidSeriesError, match="1-D or 2-D"):
        online_cusum(np.zeros((2, 2, 2)))


# -- the Detector -----------------------------------------------------------------------------------
HISTORY = 21 * 24


@pytest.fixture(scope="module")
def series() -> pd.DataFrame:
    """Three weeks of hourly history with daily/weekly seasonality, then four days to watch."""
    return make_series(HISTORY + 96, "1h", seed=21)


@pytest.fixture(scope="module")
def fitted(series: pd.DataFrame) -> CusumDetector:
    return CusumDetector().fit(series.iloc[:HISTORY], series_id="bans/eu")


def test_registered_under_its_name() -> None:
    assert DETECTORS["cusum"] is CusumDetector


@pytest.mark.parametrize("magnitude", [10.0, -10.0])
def test_detector_reports_one_level_shift_near_the_change(
    fitted: CusumDetector, series: pd.DataFrame, magnitude: float
) -> None:
    # Proves detect: a permanent shift in the seasonal series gives exactly one level_shift, starting
    # within 2 hours of the change, confirmed within 12 hours, with the new level in ``observed``.
    window = series.iloc[HISTORY:].copy()
    change = window.index[30]
    window.loc[window.index >= change, "value"] += magnitude
    found = fitted.detect(window)
    assert len(found) == 1, found
    anomaly = found[0]
    assert anomaly.kind == "level_shift" and anomaly.detector == "cusum"
    assert abs(anomaly.start - change) <= pd.Timedelta(hours=2)
    assert change <= anomaly.end <= change + pd.Timedelta(hours=12)
    assert np.sign(anomaly.score) == np.sign(magnitude) and abs(anomaly.score) >= 4
    assert anomaly.observed - anomaly.expected == pytest.approx(magnitude, rel=0.3)
    # after the confirmation the expectation has moved with the shift (re-baselined), so it stops alerting
    moved = fitted.score(window)["expected"] - fitted.score(series.iloc[HISTORY:])["expected"]
    assert (moved.loc[moved.index > anomaly.end].abs() > abs(magnitude) / 2).all()


def test_detector_post_rules_apply_to_confirmations(fitted: CusumDetector, series: pd.DataFrame) -> None:
    # Proves the post-rules: direction "down" drops an upward shift; a suppression window over it too.
    window = series.iloc[HISTORY:].copy()
    window.iloc[30:, 0] += 10.0
    assert len(fitted.detect(window)) == 1
    assert fitted.detect(window, fitted.default_rules().replace(direction="down")) == []
    assert (
        fitted.detect(
            window, fitted.default_rules().replace(suppress=tuple([(window.index[0], window.index[-1])]))
        )
        == []
    )


def test_detector_quiet_on_clean_window(fitted: CusumDetector, series: pd.DataFrame) -> None:
    assert fitted.detect(series.iloc[HISTORY:]) == []


def test_detector_json_round_trip(fitted: CusumDetector, series: pd.DataFrame) -> None:
    # Proves the state is plain JSON and reloads to identical scores and parameters.
    text = fitted.to_json()
    assert json.loads(text)["state"]["baseline"]["detector"] == "robust"
    loaded = Detector.from_json(text)
    assert isinstance(loaded, CusumDetector)
    assert loaded.get_params() == fitted.get_params()
    window = series.iloc[HISTORY:]
    pd.testing.assert_frame_equal(loaded.score(window), fitted.score(window), check_exact=True)


def test_detector_rejects_bad_parameters_at_fit(series: pd.DataFrame) -> None:
    with pytest.raises(InvalidSeriesError, match="threshold > 0"):
        CusumDetector(threshold=-1.0).fit(series.iloc[:HISTORY])
