"""Batched numpy scoring of stored Prophet fits vs ``Prophet.predict``: accuracy and speed.

    .venv/bin/python benchmarks/prophet_scoring.py [--series 200] [--fits 20] [--horizon 1]

Fits ``--fits`` distinct Prophet models (hourly, 3 weeks, BR holidays) and scores ``--series`` series
(series ``i`` uses fit ``i % fits``: the cost of ``predict`` does not depend on which fit it is) at the next
``--horizon`` hourly timestamps, once with one ``Prophet.predict`` per series and once with a single
:func:`detectors.prophet_expected_batch` call. Prints the max relative error and the speed ratio, then the
batched time for 10,000 series (the scale target). Finally times the vectorised robust baseline on
``--robust-series`` series at once.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from detectors import ProphetDetector, prophet_expected_batch, robust_baseline, robust_score_many
from detectors.synthetic import make_series


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=200)
    parser.add_argument("--fits", type=int, default=20)
    parser.add_argument("--horizon", type=int, default=1)
    parser.add_argument("--robust-series", type=int, default=1000)
    args = parser.parse_args()

    start = pd.Timestamp("2026-03-16", tz="UTC")
    hours = 21 * 24
    began = time.perf_counter()
    fits = [
        ProphetDetector(country="BR").fit(
            make_series(hours, "1h", seed=seed, start=start, level=50.0 + 10 * seed), series_id=f"s{seed}"
        )
        for seed in range(args.fits)
    ]
    fit_seconds = time.perf_counter() - began
    models = [fits[i % len(fits)] for i in range(args.series)]
    ts = pd.date_range(start + pd.Timedelta(hours=hours), periods=args.horizon, freq="h", tz="UTC")
    future = pd.DataFrame({"ds": ts.tz_localize(None)})

    began = time.perf_counter()
    predicted = np.stack([m.model_.predict(future)["yhat"].to_numpy() for m in models])
    predict_seconds = time.perf_counter() - began

    params = [m.params_ for m in models]
    prophet_expected_batch(params[:2], ts)  # warm the holiday cache like a running daemon would
    began = time.perf_counter()
    batched = prophet_expected_batch(params, ts)
    batch_seconds = time.perf_counter() - began

    big = [params[i % len(params)] for i in range(10_000)]
    began = time.perf_counter()
    prophet_expected_batch(big, ts)
    big_seconds = time.perf_counter() - began

    error = float(np.max(np.abs(batched - predicted) / np.abs(predicted)))
    per_fit = fit_seconds / args.fits * 1000
    print(f"fits: {args.fits} Prophet fits in {fit_seconds:.2f} s ({per_fit:.0f} ms each)")
    print(f"series: {args.series}, horizon: {args.horizon} timestamp(s)")
    print(f"Prophet.predict, one call per series: {predict_seconds * 1000:.1f} ms")
    print(f"prophet_expected_batch, one call:     {batch_seconds * 1000:.2f} ms")
    print(f"speed-up: {predict_seconds / batch_seconds:.0f}x")
    print(f"max relative error vs predict yhat: {error:.2e}")
    print(f"10,000 series batched: {big_seconds * 1000:.1f} ms")
    _robust_many(args.robust_series)


def _robust_many(count: int) -> None:
    """Time the vectorised robust baseline (fit + score one tick) for ``count`` hourly series."""
    hours = 28 * 24
    rng = np.random.default_rng(0)
    index = pd.date_range("2026-01-05", periods=hours + 1, freq="h", tz="UTC")
    shape = 100 + 20 * np.sin(2 * np.pi * np.arange(hours + 1) / 24)
    values = shape[None, :] + rng.standard_normal((count, hours + 1))
    ids = np.repeat(np.array([f"s{i}" for i in range(count)]), hours + 1)
    frame = pd.DataFrame({"series_id": ids, "ts": np.tile(index, count), "value": values.reshape(-1)})
    tick = frame["ts"] == index[-1]
    began = time.perf_counter()
    expected, sigma, _ = robust_baseline(frame.loc[~tick], season="hour_of_week")
    fitted = time.perf_counter() - began
    began = time.perf_counter()
    scored = robust_score_many(frame.loc[tick], expected, sigma, season="hour_of_week", z=4.0)
    scored_seconds = time.perf_counter() - began
    spread = float(scored["score"].std())
    print(
        f"robust baseline, {count} series x 4 weeks hourly ({len(frame):,} rows): fit {fitted:.2f} s, "
        f"score one tick {scored_seconds * 1000:.1f} ms (clean score std {spread:.2f})"
    )


if __name__ == "__main__":
    main()
