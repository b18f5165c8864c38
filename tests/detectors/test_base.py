"""Validation, exclusions, persistence guards and missing-data handling of the Detector base."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from detectors import (
    Anomaly,
    Detector,
    InsufficientDataError,
    InvalidSeriesError,
    RobustSeasonalDetector,
)
from detectors.synthetic import inject_dip, inject_level_shift, make_series
from detectors.validation import exclusion_mask, infer_step, parse_granularity, to_frame


def test_naive_timestamps_are_rejected_naming_the_series() -> None:
    frame = make_series(48)
    frame.index = pd.DatetimeIndex(frame.index).tz_localize(None)
    with pytest.raises(InvalidSeriesError, match=r"'reports/BR'.*tz_localize"):
        RobustSeasonalDetector().fit(frame, series_id="reports/BR")


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        # A frame without the value column says which columns it had.
        (pd.DataFrame({"x": [1.0]}, index=pd.date_range("2026-01-01", periods=1, tz="UTC")), "no 'value'"),
        # A negative denominator is impossible.
        (
            pd.DataFrame(
                {"value": [0.1, 0.2], "volume": [10.0, -1.0]},
                index=pd.date_range("2026-01-01", periods=2, freq="h", tz="UTC"),
            ),
            "negative",
        ),
        # Infinity is not a missing value.
        (
            pd.Series([1.0, np.inf], index=pd.date_range("2026-01-01", periods=2, freq="h", tz="UTC")),
            "infinity",
        ),
        # Not a datetime index.
        (pd.Series([1.0, 2.0]), "DatetimeIndex"),
    ],
)
def test_invalid_input_raises_a_named_error(frame: pd.DataFrame | pd.Series, message: str) -> None:
    with pytest.raises(InvalidSeriesError, match=message):
        to_frame(frame, series_id="s", min_points=0)


def test_to_frame_sorts_deduplicates_and_converts_to_utc() -> None:
    index = pd.DatetimeIndex(["2026-01-01 03:00", "2026-01-01 01:00", "2026-01-01 01:00"]).tz_localize(
        "America/Sao_Paulo"
    )
    frame = to_frame(pd.Series([3.0, 1.0, 2.0], index=index), series_id="s", min_points=0)
    assert str(pd.DatetimeIndex(frame.index).tz) == "UTC"
    assert frame.index.is_monotonic_increasing
    assert frame["value"].tolist() == [2.0, 3.0]  # the last duplicate wins
    assert frame["volume"].isna().all()


def test_history_too_short_after_exclusions_raises_insufficient_data() -> None:
    frame = make_series(10)
    with pytest.raises(InsufficientDataError, match=r"'short'.*2 non-missing"):
        RobustSeasonalDetector().fit(frame, series_id="short", exclude=[(frame.index[2], frame.index[-1])])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5m", pd.Timedelta(minutes=5)),  # "m" means minutes, not months
        ("15min", pd.Timedelta(minutes=15)),
        ("1h", pd.Timedelta(hours=1)),
        ("1d", pd.Timedelta(days=1)),
    ],
)
def test_parse_granularity(text: str, expected: pd.Timedelta) -> None:
    assert parse_granularity(text) == expected


@pytest.mark.parametrize("text", ["hourly", "0h", "-1h"])
def test_parse_granularity_rejects_non_durations(text: str) -> None:
    with pytest.raises(InvalidSeriesError, match="granularity"):
        parse_granularity(text)


def test_infer_step_uses_the_median_spacing_and_needs_two_points() -> None:
    index = pd.DatetimeIndex(
        ["2026-01-01 00:00", "2026-01-01 01:00", "2026-01-01 02:00", "2026-01-01 05:00"], tz="UTC"
    )
    assert infer_step(index, None, series_id="s") == pd.Timedelta(hours=1)
    assert infer_step(index[:1], "1d", series_id="s") == pd.Timedelta(days=1)
    with pytest.raises(InsufficientDataError, match="granularity"):
        infer_step(index[:1], None, series_id="s")


def test_exclusion_mask_accepts_intervals_arrays_and_aligned_series() -> None:
    index = pd.date_range("2026-01-01", periods=6, freq="h", tz="UTC")
    by_interval = exclusion_mask(index, [(index[1], index[2])], series_id="s")
    by_array = exclusion_mask(index, np.array([False, True, True, False, False, False]), series_id="s")
    by_series = exclusion_mask(index, pd.Series(True, index=index[1:3]), series_id="s")
    assert by_interval.tolist() == by_array.tolist() == by_series.tolist()
    with pytest.raises(InvalidSeriesError, match="shape"):
        exclusion_mask(index, np.array([True]), series_id="s")
    with pytest.raises(InvalidSeriesError, match="naive"):
        exclusion_mask(index, [(pd.Timestamp("2026-01-01"), index[2])], series_id="s")


def test_excluded_incident_does_not_widen_the_band_and_hide_the_next() -> None:
    series = make_series(21 * 24 + 48, seed=5)
    history, window = series.iloc[: 21 * 24], series.iloc[21 * 24 :]
    # A week-long incident in the history: without exclusion it drags the slot medians and widens sigma.
    polluted, labels = inject_level_shift(history, -7 * 24, magnitude=25.0, length=6 * 24)
    interval = [(labels[0].start, labels[0].end)]
    naive = RobustSeasonalDetector().fit(polluted, series_id="s")
    hygienic = RobustSeasonalDetector().fit(polluted, series_id="s", exclude=interval)
    reference = RobustSeasonalDetector().fit(
        polluted.assign(value=polluted["value"].mask(polluted.index.to_series().between(*interval[0]))),
        series_id="s",
    )
    pd.testing.assert_frame_equal(hygienic.score(window), reference.score(window))
    assert hygienic.sigma_.median() < 0.6 * naive.sigma_.median()
    # The next incident (a -8 dip over three hours) is found by the hygienic fit only.
    next_incident, _ = inject_dip(window, 10, magnitude=8.0, width=3)
    assert hygienic.detect(next_incident)
    assert not naive.detect(next_incident)


def test_missing_bucket_gets_nan_score_and_never_flags() -> None:
    series = make_series(21 * 24 + 48, seed=6)
    history, window = series.iloc[: 21 * 24], series.iloc[21 * 24 :].copy()
    window.loc[window.index[5:8], "value"] = np.nan
    detector = RobustSeasonalDetector().fit(history, series_id="s")
    scores = detector.score(window)
    assert scores["score"].iloc[5:8].isna().all()
    assert scores["score"].drop(window.index[5:8]).notna().all()
    anomalies = detector.detect(window, detector.default_rules().replace(threshold=0.01))  # nearly all flag
    assert anomalies
    assert all(not (a.start <= ts <= a.end) for a in anomalies for ts in window.index[5:8])


def test_from_json_rejects_another_detector_and_other_versions() -> None:
    detector = RobustSeasonalDetector().fit(make_series(48), series_id="s")
    payload = json.loads(detector.to_json())
    with pytest.raises(InvalidSeriesError, match="expected 'robust'"):
        RobustSeasonalDetector.from_json(json.dumps({**payload, "detector": "prophet"}))
    with pytest.raises(InvalidSeriesError, match=r"version 99.*refit"):
        Detector.from_json(json.dumps({**payload, "version": 99}))


def test_detect_overrides_replace_default_rules() -> None:
    series = make_series(21 * 24 + 48, seed=8)
    detector = RobustSeasonalDetector().fit(series.iloc[: 21 * 24], series_id="s")
    window, _ = inject_dip(series.iloc[21 * 24 :], 10, magnitude=9.0)
    assert [a.kind for a in detector.detect(window)] == ["dip"]
    assert detector.detect(window, detector.default_rules().replace(direction="up")) == []
    assert detector.detect(window, detector.default_rules().replace(threshold=50.0)) == []
    assert (
        detector.detect(
            window, detector.default_rules().replace(suppress=tuple([(window.index[9], window.index[11])]))
        )
        == []
    )


def test_anomaly_to_dict_uses_iso_timestamps() -> None:
    start = pd.Timestamp("2026-01-01 10:00", tz="UTC")
    data = Anomaly(start, start, "spike", 5.0, 1.0, 4.2, detector="robust", reason="r").to_dict()
    assert data["start"] == "2026-01-01T10:00:00+00:00"
    assert data["kind"] == "spike"
    assert data["reason"] == "r"
