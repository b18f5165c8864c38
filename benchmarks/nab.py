"""Run the product streaming detector over the Numenta Anomaly Benchmark (NAB v1.1) and print its NAB scores.

Usage (from the repository root)::

    .venv/bin/python benchmarks/nab.py --data ../shared/data/nab --out /tmp/nab_results [--chunk 12]

Every file goes through the detector the daemon builds for a metric configured ``detector: streaming``
(:func:`product_detector`: a parsed livewatch config and :func:`monitor.pipeline.spec.new_detector`), one
configuration for all 58 files (:data:`CONFIG`, the product defaults), as a daemon would run it: ``fit`` on
NAB's probationary period (the first ``min(15 %, 750)`` rows, which NAB does not score), then ``score`` and
``update`` over the rest ``--chunk`` rows per tick. The loop is :func:`stream_scores`, the one function to
swap for the product pipeline. ``--compare-chunk N`` scores every file a second time ``N`` rows per tick and
fails unless the scores are identical.

Scores (sigmas) are mapped to NAB's [0, 1] with :func:`detectors.streaming.unit_score` and written as
``OUT/<category>/<file>.csv`` (``timestamp,value,anomaly_score``), then scored with
:mod:`benchmarks.nab_scoring` (one corpus-wide threshold per profile). To expose over-fitting each half of the
corpus is scored alone too (files sorted by path; even positions are the half settings were chosen on, odd
positions the held-out half). The last printed line is ``NAB standard: <score>``.

Measured (defaults, 12 points per tick, 2 workers): standard / low FP / low FN 71.00 / 63.62 / 75.50 on all
58 files, 75.38 / 70.42 / 79.21 on the even (tuning) half, 66.27 / 58.30 / 71.38 on the odd (held-out) half
(the 24- and 96-point mean features; without them 70.12 / 60.27 / 75.48, 73.86 / 65.65 / 78.75 and
66.54 / 55.63 / 72.24); 1 point per tick gives identical scores (``--compare-chunk 1``); about 75 s
wall-clock and 140 s CPU on an idle 2-core machine before the mean features (not re-measured on an idle
machine since); JSON state about 236 kB per file at most.

NAB files repeat or step back a timestamp around daylight-saving changes; such a row is given the previous
timestamp plus one second, so the detector sees every row, in file order, as the next bucket.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.nab_scoring import load_profiles, load_windows, probationary_length, score_corpus
from detectors.base import Detector
from detectors.streaming import StreamingDetector, unit_score
from monitor.config import SchedulerConfig, parse_config, parse_duration
from monitor.pipeline.spec import new_detector

__all__ = ["CONFIG", "FileRun", "main", "monotone_stamps", "run_file", "stream_scores"]

#: The one detector configuration used for the whole corpus (no per-file tuning): the product's defaults
#: (the granularity comes from each file's config, built in :func:`product_detector`).
CONFIG: dict[str, Any] = {k: v for k, v in StreamingDetector().get_params().items() if k != "granularity"}


def monotone_stamps(stamps: pd.DatetimeIndex) -> pd.DatetimeIndex:
    """UTC timestamps made strictly increasing: a repeated or earlier one becomes the previous plus 1 s."""
    index = pd.DatetimeIndex(stamps)
    index = (index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")).as_unit("ns")
    values = index.asi8.copy()
    second = 1_000_000_000
    for i in range(1, len(values)):
        if values[i] <= values[i - 1]:
            values[i] = values[i - 1] + second
    return pd.DatetimeIndex(pd.to_datetime(values, utc=True))


#: Minutes that divide a day: a NAB file's bucket size is its median spacing rounded to one of these.
_DAY_DIVISORS = [m for m in range(1, 1441) if 1440 % m == 0]


def product_detector(
    series: pd.Series, overrides: Mapping[str, Any], series_id: str, detector: str = "streaming"
) -> tuple[Detector, pd.Timedelta]:
    """The detector the daemon builds for a metric configured ``detector: <detector>`` at this file's step,
    and the metric's ``history`` (what a refit trains on).

    A livewatch config with one such metric is parsed and validated as ``config.yaml`` would be, and
    :func:`monitor.pipeline.spec.new_detector` builds the detector from it; ``overrides`` (tuning runs only)
    replace hyper-parameters that differ from the product defaults. The stack keeps the product's default
    history; the streaming scorer's state is its own memory, so its history only bounds the first fit.
    """
    step = pd.Series(series.index).diff().median()
    minutes = min(_DAY_DIVISORS, key=lambda m: abs(m - pd.Timedelta(step) / pd.Timedelta(minutes=1)))
    metric: dict[str, Any] = {
        "name": "nab",
        "source": {"table": "nab"},
        "kind": "count",
        "value": "value",
        "granularity": f"{minutes}m",
        "detector": detector,
    }
    if detector == "streaming":
        metric["history"] = "14d" if minutes >= 1440 else "2d"
    config = parse_config({"database": {"url": "sqlite://"}, "metrics": [metric]}, env={})
    built = new_detector(config, config.metrics[0], series_id)
    changed = {k: v for k, v in overrides.items() if built.get_params().get(k) != v}
    if changed:
        built = type(built)(**{**built.get_params(), **changed})
    return built, pd.Timedelta(config.metrics[0].history)


def stream_scores(
    series: pd.Series,
    config: Mapping[str, Any],
    *,
    probation: int,
    chunk: int,
    series_id: str,
    detector: str = "streaming",
    refit_every: pd.Timedelta | None = None,
) -> tuple[np.ndarray, int]:
    """Fit on ``series[:probation]``, then score ``chunk`` points per tick over the rest, as the daemon would.

    The streaming scorer ``update``s its state with each tick. The stack, like the daemon's refit job,
    is fitted again on the metric's ``history`` before a tick once ``refit_every`` has passed since its
    last fit (``None``: never; with under 14 days seen the stack is its robust baseline alone).

    Returns the sigma score of every row (0 in the probationary period, which NAB does not score) and the
    size in bytes of the detector's JSON state after the last tick.
    """
    model, history = product_detector(series, config, series_id, detector)
    model.fit(series.iloc[:probation], series_id=series_id)
    fitted_at = series.index[probation]
    scores = np.zeros(len(series))
    for start in range(probation, len(series), chunk):
        tick = series.iloc[start : start + chunk]
        if refit_every is not None and tick.index[0] - fitted_at >= refit_every:
            seen = series.iloc[:start]
            model = type(model)(**model.get_params())  # unfitted, same settings
            model.fit(seen[seen.index >= tick.index[0] - history], series_id=series_id)
            fitted_at = tick.index[0]
        scores[start : start + len(tick)] = model.score(tick)["score"].to_numpy()
        if isinstance(model, StreamingDetector):
            model.update(tick)
    return scores, len(model.to_json())


def tie_free_unit_score(sigma: np.ndarray) -> np.ndarray:
    """``|s| / (1 + |s|)``: monotone in ``|score|`` with no cap, NaN -> 0.

    :func:`unit_score` maps every ``|score| >= SPATIAL_SCORE`` to exactly 1 (the streaming scorer's range
    breaks). The stack's bands are narrow on NAB's non-seasonal machine data, so about 2 % of all rows
    reach that cap; NAB's threshold sweep then cannot tell them apart and the best it finds is no alarm
    at all (standard 0.00). Keeping the order of the scores lets the sweep rank them.
    """
    magnitude = np.nan_to_num(np.abs(np.asarray(sigma, dtype=float)), nan=0.0)
    return magnitude / (1.0 + magnitude)


FileRun = tuple[str, pd.DatetimeIndex, np.ndarray, int, float]


def run_file(
    path: Path,
    data_dir: Path,
    out_dir: Path | None,
    config: Mapping[str, Any],
    chunk: int,
    detector: str = "streaming",
    refit_every: pd.Timedelta | None = None,
) -> FileRun:
    """Stream one NAB file; write ``out_dir/<category>/<file>.csv`` unless ``out_dir`` is None.

    Returns ``(name, timestamps, anomaly scores in [0, 1], state bytes, seconds)``.
    """
    start = time.perf_counter()
    frame = pd.read_csv(path)
    stamps = pd.DatetimeIndex(pd.to_datetime(frame["timestamp"]))
    name = path.relative_to(data_dir).as_posix()
    series = pd.Series(frame["value"].to_numpy(dtype=float), index=monotone_stamps(stamps))
    sigma, state_bytes = stream_scores(
        series,
        config,
        probation=max(probationary_length(len(series)), 2),
        chunk=chunk,
        series_id=name,
        detector=detector,
        refit_every=refit_every,
    )
    scores = unit_score(sigma) if detector == "streaming" else tie_free_unit_score(sigma)
    if out_dir is not None:
        target = out_dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(
            {"timestamp": frame["timestamp"], "value": frame["value"], "anomaly_score": scores}
        ).to_csv(target, index=False)
    return name, stamps, scores, state_bytes, time.perf_counter() - start


def run_corpus(
    files: list[Path],
    data_dir: Path,
    out_dir: Path | None,
    config: Mapping[str, Any],
    chunk: int,
    workers: int,
    detector: str = "streaming",
    refit_every: pd.Timedelta | None = None,
) -> list[FileRun]:
    """:func:`run_file` over ``files`` in ``workers`` processes, in file order."""
    n = len(files)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(
            pool.map(
                run_file,
                files,
                [data_dir] * n,
                [out_dir] * n,
                [config] * n,
                [chunk] * n,
                [detector] * n,
                [refit_every] * n,
            )
        )


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, score the corpus, print the three normalised NAB scores per half and the run time."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="NAB root (with data/, labels/, config/)")
    parser.add_argument("--out", type=Path, required=True, help="directory for the per-file result CSVs")
    parser.add_argument("--workers", type=int, default=2, help="processes scoring files in parallel")
    parser.add_argument("--chunk", type=int, default=12, help="points per score+update tick")
    parser.add_argument(
        "--compare-chunk", type=int, default=None, help="score again, this many points per tick, and compare"
    )
    parser.add_argument("--config", type=str, default=None, help="JSON object overriding CONFIG keys")
    parser.add_argument(
        "--detector",
        choices=["streaming", "stack"],
        default="streaming",
        help="the product detector to run (a metric's `detector:`); the stack is refitted like the daemon",
    )
    parser.add_argument(
        "--refit-every",
        default=None,
        help="stack only: refit cadence (default: the daemon's scheduler.refit_every default)",
    )
    parser.add_argument(
        "--files", choices=["all", "even", "odd"], default="all", help="score only one half of the corpus"
    )
    args = parser.parse_args(argv)

    data_dir = args.data / "data"
    files = sorted(data_dir.glob("*/*.csv"))
    if not files:
        parser.error(f"no NAB series under {data_dir}; --data must point at the NAB root holding data/")
    files = {"all": files, "even": files[0::2], "odd": files[1::2]}[args.files]
    windows = load_windows(args.data / "labels" / "combined_windows.json")
    profiles = load_profiles(args.data / "config" / "profiles.json")
    defaults = CONFIG if args.detector == "streaming" else {}
    config = {**defaults, **(json.loads(args.config) if args.config else {})}
    cadence = parse_duration(args.refit_every) if args.refit_every else SchedulerConfig().refit_every
    refit_every = pd.Timedelta(cadence) if args.detector == "stack" else None

    start = time.perf_counter()
    outputs = run_corpus(
        files, data_dir, args.out, config, args.chunk, args.workers, args.detector, refit_every
    )
    elapsed = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # the pool's workers, finished and reaped
    rows = sum(len(scores) for _, _, scores, _, _ in outputs)
    results = {name: (stamps, scores) for name, stamps, scores, _, _ in outputs}
    result = score_corpus(results, windows, profiles)

    print(
        f"files: {len(outputs)}  rows: {rows}  detector run time: {elapsed:.1f} s ({args.workers} workers, "
        f"{usage.ru_utime + usage.ru_stime:.1f} s CPU, {args.chunk} points per tick, fit + score + update)"
    )
    sizes = np.array([size for _, _, _, size, _ in outputs])
    print(
        f"JSON state after the last tick: median {np.median(sizes) / 1e3:.0f} kB, "
        f"max {sizes.max() / 1e3:.0f} kB"
    )
    print(
        f"detector: {args.detector}  config: {config}"
        + (f"  refit every {refit_every}" if refit_every is not None else "")
    )
    if args.compare_chunk is not None:
        other = run_corpus(
            files, data_dir, None, config, args.compare_chunk, args.workers, args.detector, refit_every
        )
        pairs = zip(outputs, other, strict=True)
        worst = max(float(np.max(np.abs(a[2] - b[2]), initial=0.0)) for a, b in pairs)
        print(f"chunk {args.chunk} vs chunk {args.compare_chunk}: largest score difference {worst:g}")
        if worst != 0.0:
            print("chunking changed the scores", file=sys.stderr)
            return 1
    for name, res in result.profiles.items():
        print(
            f"{name:20s} score {res.normalised:6.2f}  threshold {res.threshold:.4f}  raw {res.raw:8.2f}  "
            f"windows detected {res.detected_windows}/{res.n_windows}  "
            f"false-positive rows {res.false_positives}"
        )
    names = sorted(results) if args.files == "all" else []
    for half, label in ((names[0::2], "even files (tuning half)"), (names[1::2], "odd files (held out)")):
        if not half:  # one half only was scored (--files even|odd): it is the corpus line above
            continue
        split = score_corpus({name: results[name] for name in half}, windows, profiles)
        scores = "  ".join(f"{name} {res.normalised:6.2f}" for name, res in split.profiles.items())
        print(f"{label:26s} {scores}")
    print(f"NAB standard: {result.profiles['standard'].normalised:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
