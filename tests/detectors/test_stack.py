"""DetectorStack: model choice, volume-aware ratios, post-rule keywords, combination and JSON."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from detectors import DetectorStack, ProphetDetector, RobustSeasonalDetector
from detectors.synthetic import inject_level_shift, inject_spike, make_series


def _ratio_series(volume: float, seed: int, hours: int = 7 * 24 + 48) -> pd.DataFrame:
    return make_series(
        hours, "1h", seed=seed, level=0.025, daily_amp=0.1, weekly_amp=0.0, noise=0.0, volume=volume
    )


def test_short_history_uses_the_robust_baseline_only(hourly_short: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    history, window = hourly_short
    stack = DetectorStack(granularity="1h").fit(history, series_id="reports/BR")
    assert stack.prophet_ is None
    assert isinstance(stack.robust_, RobustSeasonalDetector)
    pd.testing.assert_frame_equal(stack.score(window), stack.robust_.score(window))
    assert stack.detect(window) == []


@pytest.mark.parametrize(
    ("volume", "flags"),
    [
        (40.0, False),  # 1 -> 3 violations over 40 reviews is sampling noise
        (40_000.0, True),  # 1,000 -> 3,000 over 40,000 is an incident
    ],
)
def test_ratio_rise_is_judged_by_its_volume(volume: float, flags: bool) -> None:
    series = _ratio_series(volume, seed=40)
    history, window = series.iloc[:-48].copy(), series.iloc[-48:].copy()
    window.loc[window.index[20], "value"] = 3 / 40  # the rate triples at one hour
    stack = DetectorStack(kind="ratio", granularity="1h").fit(history, series_id=f"violation_rate/{volume:g}")
    found = [a for a in stack.detect(window) if a.start <= window.index[20] <= a.end]
    assert bool(found) is flags


def test_low_volume_hour_in_a_high_volume_series_is_not_flagged_as_ratio_but_is_as_value() -> None:
    # The history is dense (tight rate), but the window hour had only 40 reviews: 3/40 is noise.
    series = _ratio_series(40_000.0, seed=41)
    history, window = series.iloc[:-48].copy(), series.iloc[-48:].copy()
    window.loc[window.index[20], ["value", "volume"]] = [3 / 40, 40.0]
    as_ratio = DetectorStack(kind="ratio").fit(history, series_id="r").detect(window)
    as_value = DetectorStack(kind="value").fit(history, series_id="r").detect(window)
    assert not any(a.start <= window.index[20] <= a.end for a in as_ratio)
    assert any(a.start <= window.index[20] <= a.end for a in as_value)


def test_counts_get_a_poisson_floor() -> None:
    index = pd.date_range("2026-01-05", periods=8 * 24, freq="h", tz="UTC")
    history = pd.Series(100.0, index=index)  # perfectly flat history: model sigma ~ 0
    window = pd.Series([112.0], index=[index[-1] + pd.Timedelta(hours=1)])
    score = DetectorStack(kind="count").fit(history, series_id="bans/BR").score(window)["score"].iloc[0]
    # sqrt(100) = 10, widened for predicting from the median of the 8 values of its hour of day
    assert score == pytest.approx(12.0 / (10.0 * np.sqrt(1 + np.pi / 16)))


def test_detect_keywords_reach_the_post_rules(hourly_short: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    history, window = hourly_short
    spiked, _ = inject_spike(window, 10, magnitude=12.0)
    stack = DetectorStack(granularity="1h").fit(history, series_id="s")
    assert [a.kind for a in stack.detect(spiked)] == ["spike"]
    assert stack.detect(spiked, stack.default_rules().replace(direction="down")) == []
    assert (
        stack.detect(spiked, stack.default_rules().replace(k=2, n=3)) == []
    )  # a single point does not make 2 of 3
    assert stack.detect(spiked, stack.default_rules().replace(min_rel_effect=0.5)) == []  # +12 on ~100 is 12%
    assert (
        stack.detect(spiked, stack.default_rules().replace(min_volume=1.0)) == []
    )  # volume unknown fails a volume floor


def test_level_shift_is_classified(hourly_short: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    history, window = hourly_short
    shifted, labels = inject_level_shift(window, 24, magnitude=-20.0)
    anomalies = DetectorStack(granularity="1h").fit(history, series_id="s").detect(shifted)
    assert [a.kind for a in anomalies] == ["level_shift"]
    assert abs(anomalies[0].start - labels[0].start) <= pd.Timedelta(hours=2)


def test_unknown_kind_is_rejected(hourly_short: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    with pytest.raises(ValueError, match="kind"):
        DetectorStack(kind="percent").fit(hourly_short[0], series_id="s")  # type: ignore[arg-type]


def test_json_round_trip_without_prophet(hourly_short: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    history, window = hourly_short
    stack = DetectorStack(kind="ratio", granularity="1h", country="BR").fit(history, series_id="s")
    loaded = DetectorStack.from_json(stack.to_json())
    assert isinstance(loaded, DetectorStack)
    assert loaded.get_params() == stack.get_params()
    pd.testing.assert_frame_equal(loaded.score(window), stack.score(window), check_exact=True)


@pytest.mark.slow
def test_long_history_combines_prophet_and_robust_by_smaller_score(
    hourly: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    history, window = hourly
    spiked, _ = inject_spike(window, 5, magnitude=15.0)
    stack = DetectorStack(granularity="1h").fit(history, series_id="s")
    assert isinstance(stack.prophet_, ProphetDetector)
    combined = stack.score(spiked)["score"].to_numpy()
    prophet = stack.prophet_.score(spiked)["score"].to_numpy()
    robust = stack.robust_.score(spiked)["score"].to_numpy()
    expected = np.where(np.abs(robust) < np.abs(prophet), robust, prophet)
    np.testing.assert_array_equal(combined, expected)
    assert [a.kind for a in stack.detect(spiked)] == ["spike"]


def test_a_state_stored_before_the_inflation_keeps_the_plain_poisson_floor() -> None:
    index = pd.date_range("2026-01-05", periods=8 * 24, freq="h", tz="UTC")
    history = pd.Series(100.0, index=index)
    window = pd.Series([112.0], index=[index[-1] + pd.Timedelta(hours=1)])
    payload = DetectorStack(kind="count").fit(history, series_id="bans/BR").to_dict()
    del payload["state"]["robust"]["state"]["inflation"]
    loaded = DetectorStack.from_dict(payload)
    assert loaded.score(window)["score"].iloc[0] == pytest.approx(12.0 / 10.0)
    compiled = DetectorStack.compile_state(payload)
    np.testing.assert_array_equal(compiled.robust_inflation, np.ones_like(compiled.robust_expected))
