"""ProphetDetector: seasonality by granularity, holidays offline, numpy scoring equal to Prophet.predict."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from detectors import InsufficientDataError, InvalidSeriesError, ProphetDetector, prophet_expected_batch
from detectors.prophet import ProphetParams, _fourier, holiday_names_by_date, learned_holidays_only
from detectors.synthetic import inject_spike, make_series

BR_START = pd.Timestamp("2026-03-16", tz="UTC")  # history covers Good Friday, window covers Tiradentes


def test_sub_daily_history_shorter_than_two_days_is_insufficient() -> None:
    with pytest.raises(InsufficientDataError, match=r"'short'.*2 days.*robust"):
        ProphetDetector().fit(make_series(30), series_id="short")


def test_unknown_country_is_named() -> None:
    with pytest.raises(InvalidSeriesError, match="'XX'"):
        ProphetDetector(country="XX").fit(make_series(72), series_id="s")


@pytest.mark.filterwarnings("ignore:.*inplace.*")  # pandas deprecations inside prophet.make_holidays
def test_holiday_names_match_prophet_make_holidays_df() -> None:
    from prophet.make_holidays import make_holidays_df

    reference = make_holidays_df(year_list=[2026, 2027], country="BR")
    dates = pd.DatetimeIndex(reference["ds"].unique())
    mine = dict(zip(dates, holiday_names_by_date("BR", dates), strict=True))
    for ds, name in zip(reference["ds"], reference["holiday"], strict=True):
        assert name in mine[ds]
    assert holiday_names_by_date("BR", pd.DatetimeIndex(["2026-03-17"])) == [()]


def test_fourier_features_match_prophet() -> None:
    from prophet import Prophet

    ts = pd.date_range("2026-01-01", periods=50, freq="7h")
    days = np.asarray((ts - pd.Timestamp("1970-01-01")) / pd.Timedelta(days=1))
    np.testing.assert_allclose(
        _fourier(days, 7.0, 3), Prophet.fourier_series(pd.Series(ts), 7.0, 3), rtol=1e-12
    )


@pytest.fixture(scope="module")
def fitted() -> dict[str, ProphetDetector]:
    hourly = make_series(28 * 24, "1h", seed=31, start=BR_START)
    daily = make_series(120, "1d", seed=32, start=BR_START, noise=3.0)
    return {
        "hourly_br": ProphetDetector(country="BR").fit(hourly, series_id="hourly"),
        "daily_mult": ProphetDetector(granularity="1d", seasonality_mode="multiplicative").fit(
            daily, series_id="daily"
        ),
    }


@pytest.mark.slow
def test_seasonalities_follow_the_granularity(fitted: dict[str, ProphetDetector]) -> None:
    assert set(fitted["hourly_br"].model_.seasonalities) == {"daily", "weekly"}
    assert set(fitted["daily_mult"].model_.seasonalities) == {"weekly"}
    assert fitted["hourly_br"].params_.holiday_betas  # BR holidays were modelled


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*inplace.*")  # pandas deprecations inside Prophet.predict
def test_numpy_expectation_equals_prophet_predict(fitted: dict[str, ProphetDetector]) -> None:
    # Over the history and 90 days ahead (holidays, changepoints, both seasonality modes).
    for detector in fitted.values():
        ts = pd.date_range(BR_START - pd.Timedelta(days=3), periods=24 * 150, freq="h", tz="UTC")
        mine = prophet_expected_batch([detector.params_], ts)[0]
        theirs = detector.model_.predict(pd.DataFrame({"ds": ts.tz_localize(None)}))["yhat"].to_numpy()
        assert np.max(np.abs(mine - theirs) / np.abs(theirs)) < 1e-6


@pytest.mark.slow
def test_batch_equals_one_model_at_a_time(fitted: dict[str, ProphetDetector]) -> None:
    params = [d.params_ for d in fitted.values()]
    ts = pd.date_range("2026-04-20", periods=72, freq="h", tz="UTC")
    batch = prophet_expected_batch(params, ts)
    for row, p in enumerate(params):
        np.testing.assert_allclose(batch[row], prophet_expected_batch([p], ts)[0], rtol=1e-12)


@pytest.mark.slow
def test_band_comes_from_residual_scale_and_interval_width(fitted: dict[str, ProphetDetector]) -> None:
    detector = fitted["hourly_br"]
    window = make_series(28 * 24 + 48, "1h", seed=31, start=BR_START).iloc[-48:]
    scores = detector.score(window)
    half_width = (scores["upper"] - scores["expected"]).to_numpy()
    sigma = detector.sigma_by_hour_[np.asarray(pd.DatetimeIndex(window.index).hour)]
    np.testing.assert_allclose(half_width, detector.z_ * sigma)
    assert detector.z_ == pytest.approx(3.8906, abs=1e-3)  # interval_width 0.9999
    assert 0.5 < float(np.median(detector.sigma_by_hour_)) < 1.6  # the generator's noise is 1
    spiked, labels = inject_spike(window, 12, magnitude=12.0)
    assert [a.start for a in detector.detect(spiked)] == [labels[0].start]


def _params_with_holidays(betas: dict[str, float]) -> ProphetParams:
    return ProphetParams(
        start=0.0,
        t_scale=1.0,
        y_scale=1.0,
        floor=0.0,
        growth="linear",
        k=0.0,
        m=0.0,
        deltas=np.zeros(0),
        changepoints_t=np.zeros(0),
        seasonalities=(),
        country="BR",
        holiday_mode="additive",
        holiday_betas=betas,
    )


@pytest.mark.parametrize(
    ("last", "step", "kept"),
    [
        # three hours of the holiday at the end of training: its effect is noise, dropped
        ("2026-11-20 02:00", "1h", {"Republic Proclamation Day"}),
        # half a day of it is enough to keep it
        (
            "2026-11-20 11:00",
            "1h",
            {"Republic Proclamation Day", "National Day of Zumbi and Black Awareness"},
        ),
        # daily data: the one point of the day is the whole day
        ("2026-11-20", "1D", {"Republic Proclamation Day", "National Day of Zumbi and Black Awareness"}),
    ],
)
def test_a_holiday_is_learned_only_from_half_a_day_of_training(last: str, step: str, kept: set[str]) -> None:
    params = _params_with_holidays(
        {"Republic Proclamation Day": 0.13, "National Day of Zumbi and Black Awareness": -0.07}
    )
    trained = pd.date_range("2026-11-10", last, freq=step, tz="UTC")
    learned = learned_holidays_only(params, trained, pd.Timedelta(step))
    assert set(learned.holiday_betas) == kept
    assert learned.holiday_betas["Republic Proclamation Day"] == 0.13
