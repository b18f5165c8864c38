"""Volume-aware sigma: the same relative rise means little on 40 reviews and a lot on 40,000."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from detectors.volume import combine_sigma, rescore, sampling_sigma


def _score(kind: str, observed: float, expected: float, volume: float, sigma_model: float) -> float:
    frame = pd.DataFrame(
        {"observed": [observed], "expected": [expected], "sigma": [sigma_model], "volume": [volume]},
        index=pd.DatetimeIndex(["2026-01-05"], tz="UTC"),
    )
    return float(rescore(frame, kind=kind, z=4.0)["score"].iloc[0])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("observed", "expected", "volume", "low"),
    [
        (3 / 40, 1 / 40, 40.0, True),  # 1 -> 3 violations over 40 reviews: ~2 sigma, noise
        (3000 / 40_000, 1000 / 40_000, 40_000.0, False),  # same relative rise over 40,000: ~64 sigma
        (3 / 40, 1 / 40, np.nan, False),  # unknown volume: only the (tight) model sigma is left
    ],
)
def test_ratio_rise_scores_by_volume(observed: float, expected: float, volume: float, low: bool) -> None:
    score = _score("ratio", observed, expected, volume, sigma_model=0.001)
    assert (score < 4.0) is low
    assert score > 0


def test_the_40_vs_40000_contrast_is_large() -> None:
    small = _score("ratio", 3 / 40, 1 / 40, 40.0, sigma_model=0.001)
    large = _score("ratio", 3000 / 40_000, 1000 / 40_000, 40_000.0, sigma_model=0.001)
    assert small < 2.5
    assert large > 10 * small


@pytest.mark.parametrize(
    ("kind", "expected", "volume", "sigma"),
    [
        ("ratio", 0.5, 100.0, 0.05),  # sqrt(.5 * .5 / 100)
        ("ratio", 0.0, 100.0, np.sqrt(0.005 * 0.995 / 100)),  # zero rate clipped to 0.5 / n
        ("rate", 4.0, 1000.0, 2.0),  # 4 per 1k over 1k viewers: 4 events, sd 2 events = 2 per 1k
        ("count", 25.0, np.nan, 5.0),  # Poisson: sqrt(expected), volume unused
        ("count", 0.2, np.nan, 1.0),  # Poisson floor at one event
        ("value", 25.0, 10.0, 0.0),  # gauges have no sampling noise
        ("ratio", 0.5, 0.0, np.nan),  # no denominator: unknown
    ],
)
def test_sampling_sigma(kind: str, expected: float, volume: float, sigma: float) -> None:
    got = sampling_sigma(np.array([expected]), np.array([volume]), kind)[0]  # type: ignore[arg-type]
    np.testing.assert_allclose(got, sigma, rtol=1e-12, equal_nan=True)


@pytest.mark.parametrize(
    ("kind", "model", "sampling", "inflation", "total"),
    [
        ("ratio", 3.0, 4.0, 1.0, 5.0),  # quadrature
        ("ratio", 3.0, np.nan, 1.0, 3.0),  # unknown sampling sigma leaves the model sigma
        ("ratio", 3.0, 4.0, 2.0, 5.0),  # the inflation widens a count's floor only
        ("count", 3.0, 5.0, 1.0, 5.0),  # Poisson floor wins
        ("count", 7.0, 5.0, 1.0, 7.0),  # model sigma wins when wider
        ("count", 5.5, 5.0, 1.2, 6.0),  # floor of an expectation that is a median: its noise too
        ("count", 7.0, 5.0, 1.2, 7.0),  # ... still below a wider model sigma
    ],
)
def test_combine_sigma(kind: str, model: float, sampling: float, inflation: float, total: float) -> None:
    got = combine_sigma(np.array([model]), np.array([sampling]), kind, inflation=inflation)[0]  # type: ignore[arg-type]
    assert got == pytest.approx(total)


def test_unknown_kind_is_rejected() -> None:
    with pytest.raises(ValueError, match="metric kind"):
        sampling_sigma(np.array([1.0]), np.array([1.0]), "percent")  # type: ignore[arg-type]


def test_rescore_updates_band_and_keeps_nan_for_missing() -> None:
    frame = pd.DataFrame(
        {"observed": [0.3, np.nan], "expected": [0.2, 0.2], "sigma": [0.0, 0.0], "volume": [100.0, 100.0]},
        index=pd.date_range("2026-01-05", periods=2, freq="h", tz="UTC"),
    )
    out = rescore(frame, kind="ratio", z=2.0)
    sd = np.sqrt(0.2 * 0.8 / 100)
    assert out["score"].iloc[0] == pytest.approx(0.1 / sd)
    assert out["upper"].iloc[0] == pytest.approx(0.2 + 2 * sd)
    assert np.isnan(out["score"].iloc[1])
