"""Seeded generators and labelled injections."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from detectors.synthetic import inject_dip, inject_level_shift, inject_spike, labels_mask, make_series


def test_same_seed_same_series_other_seed_other_series() -> None:
    pd.testing.assert_frame_equal(make_series(100, seed=1), make_series(100, seed=1))
    assert not make_series(100, seed=1).equals(make_series(100, seed=2))


def test_series_shape_and_index() -> None:
    frame = make_series(30, "5m", seed=0)
    assert list(frame.columns) == ["value", "volume"]
    assert str(pd.DatetimeIndex(frame.index).tz) == "UTC"
    assert (frame.index[1] - frame.index[0]) == pd.Timedelta(minutes=5)
    assert frame["volume"].isna().all()
    assert abs(frame["value"].mean() - 100.0) < 15


def test_ratio_series_is_a_proportion_of_its_volume() -> None:
    frame = make_series(500, seed=3, level=0.025, volume=40_000.0, noise=0.0)
    assert frame["value"].between(0, 1).all()
    assert frame["volume"].gt(0).all()
    assert frame["value"].mean() == pytest.approx(0.025, rel=0.05)


def test_missing_fraction_produces_nan_buckets() -> None:
    frame = make_series(1000, seed=3, missing=0.1)
    assert 50 < frame["value"].isna().sum() < 150


@pytest.mark.parametrize(
    ("inject", "kwargs", "delta", "points"),
    [
        (inject_spike, {"magnitude": 7.0, "width": 2}, 7.0, 2),  # spike adds for width points
        (inject_dip, {"magnitude": 7.0}, -7.0, 1),  # dip subtracts (sign of magnitude ignored)
        (inject_level_shift, {"magnitude": -3.0}, -3.0, 90),  # level shift lasts to the end by default
        (inject_level_shift, {"magnitude": 3.0, "length": 5}, 3.0, 5),
    ],
)
def test_injections_return_changed_copy_and_labels(inject, kwargs, delta, points) -> None:  # type: ignore[no-untyped-def]
    clean = make_series(100, seed=9)
    changed, labels = inject(clean, 10, **kwargs)
    difference = (changed["value"] - clean["value"]).to_numpy()
    assert np.count_nonzero(difference) == points
    assert np.allclose(difference[difference != 0], delta)
    assert labels[0].start == clean.index[10]
    assert labels[0].magnitude == delta
    assert labels_mask(pd.DatetimeIndex(clean.index), labels).sum() == points
    assert not changed.equals(clean)  # the input is left untouched
    assert make_series(100, seed=9).equals(clean)


def test_injection_works_on_series_and_timestamps() -> None:
    series = make_series(20, seed=1)["value"]
    changed, labels = inject_spike(series, series.index[-1], magnitude=5.0)
    assert isinstance(changed, pd.Series)
    assert changed.iloc[-1] == pytest.approx(series.iloc[-1] + 5.0)
    assert labels[0].kind == "spike"
