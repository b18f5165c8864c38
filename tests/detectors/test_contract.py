"""The Detector contract, checked on every class registered in ``detectors.DETECTORS``.

Detectors written elsewhere (``detectors.online``) are imported when present so they are covered too.
A detector declares the anomaly kinds it is meant to find in ``Detector.detects``; only those are injected.
Prophet-backed detectors (``prophet``, ``stack`` on three weeks of history) are marked slow.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from detectors import DETECTORS, SCORE_COLUMNS, Anomaly, Detector, NotFittedError
from detectors.synthetic import Injected, inject_dip, inject_level_shift, inject_spike, make_series

with contextlib.suppress(ImportError):
    import detectors.online  # noqa: F401  (registers the online CUSUM detector when it exists)

SLOW = {"prophet", "stack"}
GOLDEN = Path(__file__).parent / "golden"
TOLERANCE = pd.Timedelta(hours=2)


def _classes() -> list[object]:
    return [
        pytest.param(cls, id=name, marks=[pytest.mark.slow] if name in SLOW else [])
        for name, cls in sorted(DETECTORS.items())
    ]


_FITTED: dict[str, Detector] = {}


def _fitted(cls: type[Detector], history: pd.DataFrame) -> Detector:
    """One fit per class on the shared clean history (fits are the slow part)."""
    if cls.name not in _FITTED:
        _FITTED[cls.name] = cls().fit(history, series_id=f"contract/{cls.name}")
    return _FITTED[cls.name]


def _overlaps(anomaly: Anomaly, label: Injected) -> bool:
    return anomaly.start <= label.end + TOLERANCE and anomaly.end >= label.start - TOLERANCE


@pytest.mark.parametrize("cls", _classes())
def test_unfitted_detector_raises_not_fitted(
    cls: type[Detector], hourly: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    _, window = hourly
    detector = cls()
    for call in (lambda: detector.score(window), lambda: detector.detect(window), detector.to_json):
        with pytest.raises(NotFittedError, match=type(detector).__name__):
            call()


@pytest.mark.parametrize("cls", _classes())
def test_refit_replaces_the_previous_fit(cls: type[Detector]) -> None:
    # Proves fit() keeps no state from an earlier fit: fit on A then B scores like a fresh fit on B.
    first = make_series(21 * 24 + 48, seed=1, level=50.0)
    second = make_series(21 * 24 + 48, seed=2, level=300.0, noise=3.0)
    window = second.iloc[21 * 24 :]
    refitted = cls().fit(first.iloc[: 21 * 24], series_id="a").fit(second.iloc[: 21 * 24], series_id="b")
    fresh = cls().fit(second.iloc[: 21 * 24], series_id="b")
    pd.testing.assert_frame_equal(refitted.score(window), fresh.score(window))
    assert refitted.series_id_ == "b"


@pytest.mark.parametrize("cls", _classes())
def test_score_frame_has_the_contract_columns(
    cls: type[Detector], hourly: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    history, window = hourly
    scores = _fitted(cls, history).score(window)
    assert tuple(scores.columns) == SCORE_COLUMNS
    assert scores.index.equals(window.index)
    assert str(pd.DatetimeIndex(scores.index).tz) == "UTC"


@pytest.mark.parametrize("cls", _classes())
def test_clean_series_stays_quiet(cls: type[Detector], hourly: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    history, window = hourly
    assert _fitted(cls, history).detect(window) == []


@pytest.mark.parametrize("kind", ["spike", "dip", "level_shift"])
@pytest.mark.parametrize("cls", _classes())
def test_injected_anomaly_is_found(
    cls: type[Detector], kind: str, hourly: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    if kind not in cls.detects:
        pytest.skip(f"{cls.name} does not claim to detect {kind}")
    history, window = hourly
    if kind == "spike":
        injected, labels = inject_spike(window, 20, magnitude=15.0)
    elif kind == "dip":
        injected, labels = inject_dip(window, 20, magnitude=15.0)
    else:
        injected, labels = inject_level_shift(window, 20, magnitude=12.0)
    found = _fitted(cls, history).detect(injected)
    label = labels[0]
    sign = np.sign(label.magnitude)
    assert any(_overlaps(a, label) and np.sign(a.score) == sign for a in found), found


@pytest.mark.parametrize("cls", _classes())
def test_json_round_trip_gives_identical_scores(
    cls: type[Detector], hourly: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    history, window = hourly
    detector = _fitted(cls, history)
    text = detector.to_json()
    json.loads(text)  # plain JSON, no pickle
    for loaded in (cls.from_json(text), Detector.from_json(text)):
        assert type(loaded) is cls
        assert loaded.get_params() == detector.get_params()
        pd.testing.assert_frame_equal(loaded.score(window), detector.score(window), check_exact=True)


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("*.json")), ids=lambda p: p.stem)
def test_golden_state_still_loads_and_scores(path: Path) -> None:
    # Backward compatibility: JSON saved by an earlier livewatch must load and score the same.
    golden = json.loads(path.read_text())
    window = pd.DataFrame(
        {"value": golden["window"]["value"], "volume": golden["window"]["volume"]},
        index=pd.DatetimeIndex(golden["window"]["ts"]),
    )
    detector = Detector.from_json(golden["detector_json"])
    assert detector.name == golden["detector"]
    scores = detector.score(window)["score"].to_numpy()
    np.testing.assert_allclose(scores, np.asarray(golden["scores"], dtype=float), rtol=1e-9, atol=1e-12)
