"""Run the streaming anomaly scorer over the Numenta Anomaly Benchmark (NAB v1.1) and print its NAB scores.

Usage (from the repository root)::

    .venv/bin/python benchmarks/nab.py --data ../shared/data/nab --out /tmp/nab_results

Every series is streamed through one :class:`detectors.streaming.StreamingAnomalyScorer` configuration
(:data:`CONFIG`, the same for every file): the score of a row depends only on that row and the rows before
it. Results are written as ``OUT/<category>/<file>.csv`` with columns ``timestamp,value,anomaly_score`` and
scored with :mod:`benchmarks.nab_scoring` (one corpus-wide threshold per profile). To expose over-fitting,
each half of the corpus is also scored alone (files sorted by path; even positions are the half design
choices were tuned on, odd positions the held-out half). The last printed line is ``NAB standard: <score>``.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.nab_scoring import load_profiles, load_windows, score_corpus
from detectors.streaming import StreamingAnomalyScorer

__all__ = ["CONFIG", "main", "run_file"]

#: The one detector configuration used for the whole corpus (no per-file tuning).
CONFIG: dict[str, Any] = {
    "window": 1024,
    "min_periods": 256,
    "short_window": 3,
    "z_scale": 10.0,
    "std_weight": 1.0,
    "seasonal_period": pd.Timedelta("1D"),
    "seasonal_slack": 0,
    "spatial_tolerance": 0.05,
    "novelty_length": 16,
    "novelty_z_scale": 7.5,
    "novelty_floor": 0.5,
    "spatial_alarm": True,
    "learning_period": 288,
    "historic_window": 8640,
    "likelihood_window": 5,
    "min_std": 0.01,
    "alarm_threshold": 0.6,
    "hold": 75,
}


def run_file(path: Path, data_dir: Path, out_dir: Path) -> tuple[str, pd.DatetimeIndex, np.ndarray]:
    """Stream one NAB file through the scorer and write ``out_dir/<category>/<file>.csv``."""
    frame = pd.read_csv(path)
    stamps = pd.DatetimeIndex(pd.to_datetime(frame["timestamp"]))
    values = frame["value"].to_numpy(dtype=float)
    scores = StreamingAnomalyScorer(**CONFIG).score_stream(values, stamps, series_id=str(path.name))
    name = path.relative_to(data_dir).as_posix()
    target = out_dir / name
    target.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"timestamp": frame["timestamp"], "value": frame["value"], "anomaly_score": scores}).to_csv(
        target, index=False
    )
    return name, stamps, scores


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, score the corpus, print the three normalised NAB scores and the run time."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="NAB root (with data/, labels/, config/)")
    parser.add_argument("--out", type=Path, required=True, help="directory for the per-file result CSVs")
    parser.add_argument("--workers", type=int, default=2, help="processes scoring files in parallel")
    args = parser.parse_args(argv)

    data_dir = args.data / "data"
    files = sorted(data_dir.glob("*/*.csv"))
    if not files:
        parser.error(f"no NAB series under {data_dir}; --data must point at the NAB root holding data/")
    windows = load_windows(args.data / "labels" / "combined_windows.json")
    profiles = load_profiles(args.data / "config" / "profiles.json")

    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        outputs = list(pool.map(run_file, files, [data_dir] * len(files), [args.out] * len(files)))
    elapsed = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # the pool's workers, finished and reaped
    rows = sum(len(scores) for _, _, scores in outputs)
    results = {name: (stamps, scores) for name, stamps, scores in outputs}
    result = score_corpus(results, windows, profiles)

    print(
        f"files: {len(outputs)}  rows: {rows}  detector run time: {elapsed:.1f} s ({args.workers} workers, "
        f"{usage.ru_utime + usage.ru_stime:.1f} s CPU)"
    )
    print(f"config: {CONFIG}")
    for name, res in result.profiles.items():
        print(
            f"{name:20s} score {res.normalised:6.2f}  threshold {res.threshold:.4f}  raw {res.raw:8.2f}  "
            f"windows detected {res.detected_windows}/{res.n_windows}  "
            f"false-positive rows {res.false_positives}"
        )
    names = sorted(results)
    for half, label in ((names[0::2], "even files (tuning half)"), (names[1::2], "odd files (held out)")):
        split = score_corpus({name: results[name] for name in half}, windows, profiles)
        scores = "  ".join(f"{name} {res.normalised:6.2f}" for name, res in split.profiles.items())
        print(f"{label:26s} {scores}")
    print(f"NAB standard: {result.profiles['standard'].normalised:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
