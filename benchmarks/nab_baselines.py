"""NAB's reference detectors, reimplemented to check :mod:`benchmarks.nab_scoring` against published scores.

Usage (from the repository root)::

    .venv/bin/python benchmarks/nab_baselines.py --data ../shared/data/nab

* ``windowed_gaussian`` follows NAB's ``WindowedGaussianDetector``: the score of a value is
  ``1 - Q(|x - mean| / std)`` against the mean and (population) standard deviation of a window that grows to
  6400 values and then slides forward 100 values at a time (std 0 becomes 1e-6; the first value scores 0).
* ``null`` emits 0.5 everywhere (NAB's null detector); its normalised score is 0 by construction.

Published NAB v1.1 scores (standard / low FP / low FN): Windowed Gaussian 39.6 / 20.9 / 47.4.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.nab_scoring import load_profiles, load_windows, score_corpus

__all__ = ["PUBLISHED", "main", "windowed_gaussian"]

#: Published NAB v1.1 scoreboard rows (standard, reward_low_FP_rate, reward_low_FN_rate).
PUBLISHED: dict[str, tuple[float, float, float]] = {
    "windowed_gaussian": (39.6, 20.9, 47.4),
    "null": (0.0, 0.0, 0.0),
}


def windowed_gaussian(values: np.ndarray, *, window_size: int = 6400, step_size: int = 100) -> np.ndarray:
    """Scores of NAB's windowed Gaussian detector (see the module docstring), record by record."""
    x = np.asarray(values, dtype=float)
    out = np.zeros(len(x))
    window: list[float] = []
    buffer: list[float] = []
    mean, std = 0.0, 1.0
    for i, value in enumerate(x.tolist()):
        if window:
            z = abs(value - mean) / std
            out[i] = 1.0 - 0.5 * math.erfc(z / math.sqrt(2.0))
        if len(window) < window_size:
            window.append(value)
            mean, std = float(np.mean(window)), float(np.std(window))
        else:
            buffer.append(value)
            if len(buffer) == step_size:
                window = window[step_size:] + buffer
                buffer = []
                mean, std = float(np.mean(window)), float(np.std(window))
        if std == 0.0:
            std = 0.000001
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="NAB root (with data/, labels/, config/)")
    args = parser.parse_args(argv)
    windows = load_windows(args.data / "labels" / "combined_windows.json")
    profiles = load_profiles(args.data / "config" / "profiles.json")
    frames = {
        path.relative_to(args.data / "data").as_posix(): pd.read_csv(path)
        for path in sorted((args.data / "data").glob("*/*.csv"))
    }
    detectors = {
        "windowed_gaussian": lambda v: windowed_gaussian(v),
        "null": lambda v: np.full(len(v), 0.5),
    }
    for name, detect in detectors.items():
        results = {
            file: (pd.DatetimeIndex(pd.to_datetime(f["timestamp"])), detect(f["value"].to_numpy(dtype=float)))
            for file, f in frames.items()
        }
        scored = score_corpus(results, windows, profiles)
        ours = "  ".join(f"{p} {r.normalised:6.2f}" for p, r in scored.profiles.items())
        published = " / ".join(f"{v:.1f}" for v in PUBLISHED[name])
        print(f"{name:18s} {ours}   published {published}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
