"""Regenerate the golden detector states (run only when the state layout version is bumped).

    .venv/bin/python tests/detectors/golden/make_golden.py

Each file holds a detector's JSON, a scoring window and the scores it gave; ``test_contract`` checks that
every file still loads and scores the same. Never overwrite a file of an older version: add a new one.
"""

from __future__ import annotations

import json
from pathlib import Path

from detectors import Detector, DetectorStack, ProphetDetector, RobustSeasonalDetector
from detectors.synthetic import make_series

HERE = Path(__file__).parent


def _write(name: str, detector: Detector, window_frame: object) -> None:
    window = window_frame  # a DataFrame with value and volume
    scores = detector.score(window)["score"]  # type: ignore[arg-type]
    payload = {
        "detector": detector.name,
        "detector_json": detector.to_json(),
        "window": {
            "ts": [ts.isoformat() for ts in window.index],  # type: ignore[attr-defined]
            "value": [float(v) for v in window["value"]],  # type: ignore[index]
            "volume": [float(v) for v in window["volume"]],  # type: ignore[index]
        },
        "scores": [float(s) for s in scores],
    }
    (HERE / f"{name}.json").write_text(json.dumps(payload, indent=1) + "\n")


def main() -> None:
    series = make_series(4 * 24 + 24, "1h", seed=7, level=0.03, volume=2000.0, noise=0.002)
    history, window = series.iloc[: 4 * 24], series.iloc[4 * 24 :]
    _write(
        "robust_v1", RobustSeasonalDetector(granularity="1h").fit(history, series_id="golden/robust"), window
    )
    _write(
        "prophet_v1",
        ProphetDetector(granularity="1h", country="BR").fit(history, series_id="golden/prophet"),
        window,
    )
    stack = DetectorStack(kind="ratio", granularity="1h", country="BR", prophet_min_days=3.0)
    _write("stack_v1", stack.fit(history, series_id="golden/stack"), window)


if __name__ == "__main__":
    main()
