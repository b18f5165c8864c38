"""Fit once, score often, at scale: refit time, one scoring tick, peak memory, and the naive design.

    .venv/bin/python benchmarks/scale.py --series 10000 [--executor local|dask] [--fit-series 1000]

Builds a scratch SQLite warehouse of ``--series`` synthetic hourly ratio series (``--days`` days, Poisson
volumes, binomial counts, daily and weekly seasonality, one in five regions without a holiday calendar) and
a state store, then measures, in one run:

* **single fit**: one ``DetectorStack`` fit (Prophet + robust baseline), JSON and compile, inline;
* **refit**: :func:`monitor.pipeline.refit.refit_all` of ``--fit-series`` series through the executor (all
  series when ``--fit-series`` equals ``--series``), against ``single fit x series / cores``; the full
  refit time is extrapolated to ``--series`` when only a part was fitted. The other series get a copy of a
  fitted model (series ``i`` takes the state of fitted series ``i mod fit-series``): scoring cost does not
  depend on which parameters a model holds;
* **tick**: :meth:`monitor.pipeline.scoring.MetricScorer.score_metric` (pull, score, decide) of every series:
  a *cold* tick (fresh process: parse every stored model, read the level-shift context) and then a *steady*
  tick one hour later (only the new bucket is read); then one more tick under ``tracemalloc`` for the peak
  memory;
* **naive**: per series, read its history, refit the stack, ``Prophet.predict`` the new bucket, score and
  apply the post-rules, on ``--naive-sample`` series, extrapolated to ``--series`` (sequential, as the
  per-series pipeline runs).

The last line is ``tick <N> series: <seconds> s, naive <seconds> s, <ratio>x`` (steady tick).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import sqlite3
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from detectors.stack import DetectorStack
from monitor.config import Config, parse_config
from monitor.pipeline.executor import ChunkExecutor, DaskExecutor, LocalExecutor
from monitor.pipeline.models import FitTask, ModelCache, fit_chunk
from monitor.pipeline.refit import refit_all
from monitor.pipeline.scoring import MetricScorer
from monitor.pipeline.spec import DETECTOR_NAME, series_frame
from monitor.source import SqlMetricSource
from monitor.store import SqlStore, make_engine, model_states, upgrade, watermarks
from monitor.tools.investigate import series_decisions

END = datetime(2026, 3, 9, tzinfo=UTC)  # a Monday; the data runs to END + 2 h
METRIC = "violation_rate"
COUNTRIES = ("BR", "MX", "US", "DE", None)
T = TypeVar("T")


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    began = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - began


def build_warehouse(path: Path, series: int, days: int, seed: int, templates: int) -> None:
    """``facts(ts, region, num, den)``: ``series`` regions, hourly, ``days`` days up to ``END + 2 h``.

    Series ``i`` has the level, volume and phase of series ``i mod templates`` and its own noise.
    """
    rng = np.random.default_rng(seed)
    shapes = rng.uniform(0, 1, (templates, 3))
    stamps = pd.date_range(
        pd.Timestamp(END) - pd.Timedelta(days=days),
        pd.Timestamp(END) + pd.Timedelta(hours=2),
        freq="h",
        inclusive="left",
    )
    text = stamps.tz_localize(None).strftime("%Y-%m-%d %H:%M:%S.%f").to_numpy()
    hours = np.asarray(stamps.hour, dtype=float)
    days_of_week = np.asarray(stamps.day_of_week, dtype=float)
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE facts (ts TIMESTAMP, region VARCHAR(32), num FLOAT, den FLOAT)")
    for first in range(0, series, 500):
        count = min(500, series - first)
        shape = shapes[np.arange(first, first + count) % templates]
        phase = 2 * np.pi * shape[:, :1]
        volume = (200 + 19_800 * shape[:, 1:2]) * (1 + 0.4 * np.sin(2 * np.pi * hours / 24 + phase))
        rate = (0.002 + 0.018 * shape[:, 2:3]) * (
            1 + 0.2 * np.sin(2 * np.pi * hours / 24 + phase) + 0.1 * np.sin(2 * np.pi * days_of_week / 7)
        )
        den = rng.poisson(volume).astype(float)
        num = rng.binomial(den.astype(np.int64), np.clip(rate, 0, 1)).astype(float)
        names = np.array([f"r{first + i:05d}" for i in range(count)])
        rows = zip(
            np.tile(text, count),
            np.repeat(names, len(stamps)),
            num.ravel().tolist(),
            den.ravel().tolist(),
            strict=True,
        )
        connection.executemany("INSERT INTO facts VALUES (?, ?, ?, ?)", rows)
    connection.execute("CREATE INDEX facts_ts ON facts (ts)")
    connection.execute("CREATE INDEX facts_region_ts ON facts (region, ts)")
    connection.commit()
    connection.close()


def make_config(warehouse: Path, state: Path, series: int) -> Config:
    regions = {f"r{i:05d}": c for i in range(series) if (c := COUNTRIES[i % len(COUNTRIES)]) is not None}
    return parse_config(
        {
            "database": {"url": f"sqlite:///{warehouse}"},
            "state": {"url": f"sqlite:///{state}"},
            "regions": regions,
            "defaults": {"noise_floors": {"min_volume": 100, "min_rel_effect": 0.1}},
            "metrics": [
                {
                    "name": METRIC,
                    "source": {"table": "facts"},
                    "kind": "ratio",
                    "numerator": "num",
                    "denominator": "den",
                    "scale": 1000,
                    "direction": "up",
                }
            ],
            "alerts": {"jsonl_path": None},
        },
        env={},
    )


def set_watermarks(store: SqlStore, names: list[str], bucket: datetime) -> None:
    """Every series scored up to ``bucket`` (bulk: benchmark set-up, not timed)."""
    with store.engine.begin() as connection:
        connection.execute(watermarks.delete().where(watermarks.c.metric == METRIC))
        connection.execute(
            watermarks.insert(),
            [{"metric": METRIC, "series": n, "bucket": bucket, "updated_at": bucket} for n in names],
        )


def copy_models(store: SqlStore, names: list[str], fitted: list[str], at: datetime) -> None:
    """Series without a fit of their own get the state of fitted series ``i mod len(fitted)``."""
    donors = {}
    for name in fitted:
        stored = store.load_model_state(METRIC, name, DETECTOR_NAME)
        assert stored is not None
        donors[name] = stored.state
    missing = [n for n in names if n not in donors]
    for first in range(0, len(missing), 500):
        rows = [
            {
                "metric": METRIC,
                "series": n,
                "detector": DETECTOR_NAME,
                "version": DetectorStack.state_version,
                "fitted_at": at,
                "state": donors[fitted[(first + i) % len(fitted)]],
            }
            for i, n in enumerate(missing[first : first + 500])
        ]
        with store.engine.begin() as connection:
            connection.execute(model_states.insert(), rows)


def single_fit_seconds(
    config: Config, source: SqlMetricSource, names: list[str], at: datetime
) -> tuple[float, float]:
    """Mean wall and CPU seconds of one fit + JSON + compile, inline, over a few series (after a warm-up)."""
    metric = config.metrics[0]
    start = pd.Timestamp(END) - pd.Timedelta(hours=1)
    frame = source.fetch(
        metric, (start - pd.Timedelta(days=56)).to_pydatetime(), start.to_pydatetime(), series=names
    ).frame
    tasks = []
    for name, tidy in frame.groupby("series"):
        values = tidy.set_index("ts").sort_index()
        training = pd.DataFrame({"value": values["value"], "volume": values["den"].astype(float)})
        params = {
            "kind": "rate",
            "rate_per": metric.scale,
            "granularity": "1h",
            "country": config.regions.get(str(name)),
            "interval_width": metric.interval_width or 0.99,
        }
        tasks.append(FitTask(METRIC, str(name), training, params))
    fit_chunk(tasks[:1])  # imports Prophet and loads Stan once, as each pool worker does once
    cpu = _cpu_seconds()
    _, seconds = timed(lambda: fit_chunk(tasks[1:]))
    count = max(len(tasks) - 1, 1)
    return seconds / count, (_cpu_seconds() - cpu) / count


def naive_seconds(config: Config, source: SqlMetricSource, names: list[str], now: datetime) -> float:
    """Mean seconds per series of the naive tick: read history, refit, ``Prophet.predict``, score, rules."""
    metric = config.metrics[0]
    start = pd.Timestamp(END) + pd.Timedelta(hours=1)  # the bucket the steady tick scores
    total = 0.0
    for name in names:
        began = time.perf_counter()
        tidy = source.fetch(
            metric,
            (start - pd.Timedelta(days=56) - pd.Timedelta(hours=168)).to_pydatetime(),
            (start + pd.Timedelta(hours=1)).to_pydatetime(),
            series=[name],
        ).frame
        values = series_frame(metric, tidy)
        history, window = values[values.index < start], values[values.index >= start]
        stack = DetectorStack(
            kind="rate",
            rate_per=metric.scale,
            granularity="1h",
            country=config.regions.get(name),
            interval_width=metric.interval_width or 0.99,
        ).fit(history[history.index > history.index.max() - pd.Timedelta(days=56)], series_id=name)
        assert stack.prophet_ is not None
        stack.prophet_.model_.predict(pd.DataFrame({"ds": pd.DatetimeIndex(window.index).tz_localize(None)}))
        series_decisions(config, metric, name, stack.compile(), values, start, start + pd.Timedelta(hours=1))
        total += time.perf_counter() - began
    return total / len(names)


def _cpu_seconds() -> float:
    """User + system CPU of this process and its finished children (the pool workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def tick_figures(root: Path, series: int, profile: bool) -> dict[str, float]:
    """Cold tick, steady tick and memory, measured in a fresh process (run through ``spawn``)."""
    config = make_config(root / "warehouse.db", root / "state.db", series)
    store = SqlStore(make_engine(config.state.url))
    source = SqlMetricSource(make_engine(config.database.url))
    names = [f"r{i:05d}" for i in range(series)]
    metric = config.metrics[0]
    now = END + timedelta(minutes=20)
    scorer = MetricScorer(config, store, source, models=ModelCache())
    cold, cold_s = timed(lambda: scorer.score_metric(metric, now))
    assert not cold.refitted and len(cold.scored) == series, (len(cold.refitted), len(cold.scored))
    set_watermarks(store, names, END - timedelta(hours=1))
    steady, steady_s = timed(lambda: scorer.score_metric(metric, now + timedelta(hours=1)))
    assert len(steady.scored) == series and all(s.scored == 1 for s in steady.scored)
    set_watermarks(store, names, END)
    tracemalloc.start()
    traced = scorer.score_metric(metric, now + timedelta(hours=2))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(traced.scored) == series
    if profile:
        import cProfile
        import pstats

        set_watermarks(store, names, END)  # the last tick again, every cache warm
        profiler = cProfile.Profile()
        profiler.runcall(lambda: scorer.score_metric(metric, now + timedelta(hours=2)))
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
    return {
        "cold": cold_s,
        "steady": steady_s,
        "flagged": float(sum(s.flagged for s in steady.scored)),
        "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "traced": peak / 2**20,
    }


def make_executor(kind: str, workers: int, address: str | None) -> tuple[ChunkExecutor, Any]:
    if kind == "local":
        return LocalExecutor(workers), None
    import distributed

    if address:
        return DaskExecutor(address), None
    cluster = distributed.LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
    )
    return DaskExecutor(client=distributed.Client(cluster)), cluster


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, required=True)
    parser.add_argument("--executor", choices=("local", "dask"), default="local")
    parser.add_argument("--address", help="Dask scheduler (default: a LocalCluster of --workers processes)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--fit-series", type=int, default=1000, help="series refitted for real")
    parser.add_argument("--naive-sample", type=int, default=8)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--chunk-size", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", action="store_true", help="cProfile one more tick")
    parser.add_argument("--dir", type=Path, help="scratch directory (default: a temporary one)")
    args = parser.parse_args()
    fit_count = min(args.fit_series, args.series)

    with tempfile.TemporaryDirectory(dir=args.dir) as scratch:
        root = Path(scratch)
        _, build = timed(
            lambda: build_warehouse(root / "warehouse.db", args.series, args.days, args.seed, fit_count)
        )
        print(f"warehouse: {args.series} series x {args.days} days hourly built in {build:.1f} s")
        config = make_config(root / "warehouse.db", root / "state.db", args.series)
        source = SqlMetricSource(make_engine(config.database.url))
        engine = make_engine(config.state.url)
        upgrade(engine)
        store = SqlStore(engine)
        names = [f"r{i:05d}" for i in range(args.series)]
        set_watermarks(store, names, END - timedelta(hours=2))
        now = END + timedelta(minutes=20)

        single, single_cpu = single_fit_seconds(config, source, names[:6], now)
        print(
            f"single fit (stack: Prophet + robust, JSON, compile): {single * 1000:.0f} ms wall, "
            f"{single_cpu * 1000:.0f} ms CPU"
        )
        executor, cluster = make_executor(args.executor, args.workers, args.address)
        cores = executor.workers
        cache = ModelCache()
        cpu_before = _cpu_seconds()
        summary, refit = timed(
            lambda: refit_all(
                config,
                store,
                source,
                now,
                executor,
                cache=cache,
                series=names[:fit_count],
                chunk_size=args.chunk_size,
            )
        )
        executor.close()
        if cluster is not None:
            cluster.close()
        cpu = _cpu_seconds() - cpu_before
        assert not summary.errors, list(summary.errors.items())[:3]
        ideal = single * fit_count / cores
        print(
            f"refit {fit_count} series on {args.executor} ({cores} workers): {refit:.1f} s; "
            f"ideal single x N / cores = {ideal:.1f} s; ratio {refit / ideal:.2f}"
        )
        if args.executor == "local":
            print(
                f"  refit CPU (this process + pool): {cpu:.1f} s = {cpu / fit_count * 1000:.0f} ms/series; "
                f"CPU share obtained {cpu / (refit * cores):.0%} of {cores} cores (machine shared)"
            )
        full_refit = refit * args.series / fit_count
        note = "" if fit_count == args.series else f" (extrapolated from {fit_count})"
        print(f"full refit of {args.series} series: {full_refit:.0f} s{note}")
        copy_models(store, names, names[:fit_count], now)

        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(1, mp_context=spawn) as fresh:  # a fresh process: nothing parsed or cached
            ticks = fresh.submit(tick_figures, root, args.series, args.profile).result()
        print(f"cold tick (parse {args.series} stored models, read context, score): {ticks['cold']:.2f} s")
        print(
            f"steady tick (pull 1 bucket, score, post-rules): {ticks['steady']:.2f} s, "
            f"{ticks['flagged']:.0f} flagged"
        )
        print(
            f"peak memory of the tick process (max RSS, imports and cold tick included): "
            f"{ticks['rss']:.0f} MiB; a steady tick allocates at most {ticks['traced']:.0f} MiB (tracemalloc)"
        )
        steady_s = ticks["steady"]
        sample = names[fit_count - min(args.naive_sample, fit_count) : fit_count]
        per_series = naive_seconds(config, source, sample, now + timedelta(hours=1))
        naive = per_series * args.series
        print(
            f"naive (refit + predict per series, sequential): {per_series * 1000:.0f} ms/series "
            f"x {args.series} = {naive:.0f} s ({naive / cores:.0f} s over {cores} cores)"
        )
        print(f"tick {args.series} series: {steady_s:.2f} s, naive {naive:.0f} s, {naive / steady_s:.0f}x")


if __name__ == "__main__":
    main()
