"""Root causes through the product path on a warehouse whose only slice dimension has three values.

Each seed builds a SQLite warehouse of five weeks of hourly moderation counts in one country (content types
video, chat and image; flags ~ Binomial(impressions, 1 %)), with chat's flag probability ``lift`` times higher
for four hours (the raid). :func:`monitor.pipeline.slicing.explain_window`, the function the daemon and
``livewatch investigate`` call, explains the raid and five quiet windows (the same hours on the days before)
for a count metric (``flags``) and a ratio (``flag_rate`` per 1k impressions), given the forecast a detector
would make (the mean of the same hours over the four previous weeks). Printed: how often chat alone is
named in the raid and how often a quiet window names anything; the last line sums them over lifts
and metrics.

Run: ``.venv/bin/python benchmarks/rca_warehouse.py [--seeds 40] [--lifts 1.5 2 3]``. This is synthetic data:
a unit-level check of a small cube, not evidence of accuracy on real incidents.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monitor.config import Config, parse_config
from monitor.pipeline.slicing import explain_window
from monitor.source import SqlMetricSource

__all__ = ["RAID", "Tally", "build_warehouse", "forecast", "main", "tally", "warehouse_config"]

END = pd.Timestamp("2026-11-30", tz="UTC")
#: Content type -> (impressions per hour, flag probability).
CONTENT = {"video": (6000, 0.01), "chat": (3000, 0.01), "image": (1000, 0.01)}
RAID = pd.date_range(END - pd.Timedelta("30h"), periods=4, freq="1h")
#: Windows of the same hours on the five days before the raid, where nothing moved.
QUIET = [RAID - pd.Timedelta(days=k) for k in range(1, 6)]
SEEDS = range(10)


def build_warehouse(path: Path, *, seed: int, lift: float) -> Path:
    """Five weeks of hourly moderation counts in one country, stamps stored as naive UTC text; chat's flag
    probability is ``lift`` times higher in the raid."""
    rng = np.random.default_rng(seed)
    hours = pd.date_range(END - pd.Timedelta("35D"), END, freq="1h", inclusive="left")
    daily = 1 + 0.4 * np.sin(2 * np.pi * (hours.hour.to_numpy() - 6) / 24)
    parts = []
    for content, (views, rate) in CONTENT.items():
        impressions = rng.poisson(views * daily)
        probability = np.where(hours.isin(RAID) & (content == "chat"), lift * rate, rate)
        parts.append(
            pd.DataFrame(
                {
                    "bucket_start": hours.tz_localize(None).strftime("%Y-%m-%d %H:%M:%S"),
                    "country": "IT",
                    "content_type": content,
                    "impressions": impressions,
                    "flags": rng.binomial(impressions, probability),
                }
            )
        )
    engine = sa.create_engine(f"sqlite:///{path}")
    pd.concat(parts).to_sql("mod_events", engine, index=False)
    engine.dispose()
    return path


def warehouse_config(warehouse: Path) -> Config:
    return parse_config(
        {
            "database": {"url": f"sqlite:///{warehouse}"},
            "defaults": {
                "time_column": "bucket_start",
                "series_dimension": "country",
                "slice_dimensions": ["content_type"],
            },
            "metrics": [
                {"name": "flags", "source": {"table": "mod_events"}, "kind": "count", "value": "flags"},
                {
                    "name": "flag_rate",
                    "source": {"table": "mod_events"},
                    "kind": "ratio",
                    "numerator": "flags",
                    "denominator": "impressions",
                    "scale": 1000,
                },
            ],
        },
        env={},
    )


def forecast(warehouse: Path, metric: str, window: pd.DatetimeIndex) -> list[float]:
    """What a detector would forecast: the mean of the same hours over the four previous weeks."""
    frame = pd.read_sql("SELECT * FROM mod_events", sa.create_engine(f"sqlite:///{warehouse}"))
    frame["ts"] = pd.to_datetime(frame["bucket_start"], utc=True)
    totals = frame.groupby("ts")[["flags", "impressions"]].sum()
    out = []
    for t in window:
        weeks = totals.loc[[t - pd.Timedelta(weeks=k) for k in range(1, 5)]].sum()
        out.append(
            float(weeks["flags"]) / 4 if metric == "flags" else 1000 * weeks["flags"] / weeks["impressions"]
        )
    return out


@dataclass(frozen=True)
class Tally:
    """Per metric: raids where chat alone was named, quiet windows that named something, windows of each."""

    named: dict[str, int]
    false_alarms: dict[str, int]
    raids: int
    quiet: int


def tally(warehouses: list[Path]) -> Tally:
    """Explain the raid and the quiet windows of every warehouse, for both metrics."""
    named = {"flags": 0, "flag_rate": 0}
    false_alarms = dict.fromkeys(named, 0)
    for warehouse in warehouses:
        config = warehouse_config(warehouse)
        source = SqlMetricSource(sa.create_engine(config.database.url))
        for metric in config.metrics:
            causes = explain_window(source, metric, "IT", list(RAID), forecast(warehouse, metric.name, RAID))
            named[metric.name] += [c.label() for c in causes] == ["content_type=chat"]
            for window in QUIET:
                expected = forecast(warehouse, metric.name, window)
                false_alarms[metric.name] += bool(
                    explain_window(source, metric, "IT", list(window), expected)
                )
    return Tally(named, false_alarms, len(warehouses), len(warehouses) * len(QUIET))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=40, help="warehouses per lift")
    parser.add_argument("--lifts", type=float, nargs="+", default=[1.5, 2.0, 3.0], help="raid multipliers")
    args = parser.parse_args(argv)
    named = raids = false_alarms = quiet = 0
    with tempfile.TemporaryDirectory() as folder:
        for lift in args.lifts:
            paths = [
                build_warehouse(Path(folder) / f"w-{lift}-{seed}.db", seed=seed, lift=lift)
                for seed in range(args.seeds)
            ]
            result = tally(paths)
            for metric in result.named:
                print(
                    f"lift {lift:4.1f}  {metric:10s} chat named in {result.named[metric]}/{result.raids} "
                    f"raids, quiet windows naming a cause {result.false_alarms[metric]}/{result.quiet}"
                )
                named, raids = named + result.named[metric], raids + result.raids
                false_alarms, quiet = false_alarms + result.false_alarms[metric], quiet + result.quiet
    summary = f"chat named in {named}/{raids} raids, quiet windows naming a cause {false_alarms}/{quiet}"
    print(f"warehouse RCA: {summary}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
