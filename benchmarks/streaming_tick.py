"""Ticks of a ``detector: streaming`` metric through the daemon's own pipeline: fit once, then steady ticks.

    .venv/bin/python benchmarks/streaming_tick.py [--series 50] [--days 14] [--ticks 12]

Builds a scratch SQLite warehouse of ``--series`` synthetic 5-minute count series (``--days`` of history
plus ``--ticks`` more buckets, daily seasonality, Poisson noise) and a config whose one metric has
``detector: streaming``, then runs :meth:`monitor.pipeline.tick.Monitor.tick` (the monitor ``build_monitor``
makes from that config, as the daemon does) at successive bucket ends:

* **first tick**: every series is fitted on its history (through the executor) and its window scored;
* **steady ticks**: one new bucket per series, each detector advanced from its cached state, the states
  saved with the watermarks in the tick's transaction; then one tick in a **new process's** monitor (states
  read back from the store).

A steady tick's cost must not grow with the history: the last line compares the mean steady tick with the
series' history length (``O(new points x bounded state)``, not ``O(history)``), and prints the stored state
size per series.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from monitor.config import parse_config
from monitor.store import SqlStore, make_engine, model_states, upgrade
from monitor.wiring import build_monitor

END = datetime(2026, 3, 9, tzinfo=UTC)
STEP = timedelta(minutes=5)


def build_warehouse(path: Path, series: int, days: int, extra: int) -> None:
    rng = np.random.default_rng(7)
    stamps = pd.date_range(
        pd.Timestamp(END) - pd.Timedelta(days=days), periods=days * 288 + extra, freq="5min"
    )
    phase = 2 * np.pi * (stamps.hour * 60 + stamps.minute).to_numpy() / 1440
    frames = []
    for i in range(series):
        level = 20 + 5 * i % 50
        counts = rng.poisson(level * (1 + 0.4 * np.sin(phase + i)))
        frames.append(
            pd.DataFrame({"ts": stamps.tz_localize(None), "region": f"R{i:04d}", "reports": counts})
        )
    engine = sa.create_engine(f"sqlite:///{path}")
    pd.concat(frames).to_sql("facts", engine, index=False, chunksize=50_000)
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--series", type=int, default=50)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--ticks", type=int, default=12)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        build_warehouse(root / "w.db", args.series, args.days, args.ticks)
        config = parse_config(
            {
                "database": {"url": f"sqlite:///{root / 'w.db'}"},
                "state": {"url": f"sqlite:///{root / 'state.db'}"},
                "defaults": {"granularity": "5m", "completeness_delay": "1m", "history": f"{args.days}d"},
                "metrics": [
                    {
                        "name": "reports",
                        "source": {"table": "facts"},
                        "kind": "count",
                        "value": "reports",
                        "detector": "streaming",
                    }
                ],
                "alerts": {"console": False, "jsonl_path": str(root / "alerts.jsonl")},
                "scheduler": {"max_catchup": "1h"},
            },
            env={},
        )
        upgrade(make_engine(config.state.url))
        monitor = build_monitor(config, {})
        first = END + timedelta(minutes=1)
        started = time.perf_counter()
        report = monitor.tick(first)
        fit_seconds = time.perf_counter() - started
        assert report.errors == 0, report.metric_errors
        print(f"first tick: {args.series} series fitted on {args.days} d, scored: {fit_seconds:.2f} s")
        steady = []
        for k in range(1, args.ticks):
            started = time.perf_counter()
            report = monitor.tick(first + k * STEP)
            steady.append(time.perf_counter() - started)
            assert report.errors == 0 and report.series_scored == args.series, report.metric_errors
        fresh = build_monitor(config, {})
        started = time.perf_counter()
        report = fresh.tick(first + args.ticks * STEP)
        restart = time.perf_counter() - started
        assert report.errors == 0 and not any(o.refitted for o in report.outcomes)
        store = SqlStore(make_engine(config.state.url))
        with store.engine.connect() as connection:
            sizes = [len(r.state) for r in connection.execute(sa.select(model_states.c.state))]
        mean = float(np.mean(steady))
        print(
            f"steady tick (1 new bucket x {args.series} series, states saved): mean {mean:.3f} s, "
            f"max {max(steady):.3f} s over {len(steady)} ticks"
        )
        print(f"tick after a restart (states read from the store): {restart:.3f} s")
        print(f"stored state: mean {np.mean(sizes) / 1e3:.0f} kB, max {max(sizes) / 1e3:.0f} kB per series")
        history = args.days * 288
        print(
            f"streaming tick {args.series} series: {mean * 1e3 / args.series:.1f} ms per series per tick "
            f"with {history} points of history (no rescan: cost per new point, not per history point)"
        )


if __name__ == "__main__":
    main()
