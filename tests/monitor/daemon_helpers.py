"""A tiny seeded warehouse and config for daemon tests (scheduler, health, fault injection).

Two regions of hourly ``reports`` (Poisson around a daily cycle) over ten days, with ground truth:

* :data:`SPIKE_AA`: region AA reports x3 for 4 hours;
* :data:`SPIKE_BB`: region BB reports x3 for 5 hours, later the same day.

A ``bans`` column holds numbers as text; ``corrupt=True`` writes ``'n/a'`` in region BB from
:data:`CORRUPT_FROM` on, so a ``bans`` metric has corrupt rows next to healthy ones. Slicing is off and the
history is short, so a tick takes a fraction of a second and models are the robust baseline only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa
import yaml

END = datetime(2026, 3, 11, tzinfo=UTC)  # exclusive end of the data
DAYS = 10
HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class Spike:
    region: str
    start: datetime
    hours: int

    @property
    def end(self) -> datetime:
        return self.start + self.hours * HOUR


SPIKE_AA = Spike("AA", datetime(2026, 3, 9, 3, tzinfo=UTC), 4)
SPIKE_BB = Spike("BB", datetime(2026, 3, 9, 14, tzinfo=UTC), 5)
CORRUPT_FROM = datetime(2026, 3, 8, tzinfo=UTC)


def build_warehouse(path: Path, *, seed: int = 11, corrupt: bool = False) -> Path:
    """Write the ``facts`` table to a SQLite file (rollback journal, like a plain warehouse)."""
    rng = np.random.default_rng(seed)
    hours = pd.date_range(END - timedelta(days=DAYS), END, freq="h", inclusive="left")
    rows = []
    for region, level in (("AA", 400.0), ("BB", 300.0)):
        cycle = 1.0 + 0.3 * np.sin(2 * np.pi * (hours.hour.to_numpy() - 6) / 24)
        mean = level * cycle
        for spike in (SPIKE_AA, SPIKE_BB):
            if spike.region == region:
                inside = (hours >= pd.Timestamp(spike.start)) & (hours < pd.Timestamp(spike.end))
                mean = np.where(inside, 3.0 * mean, mean)
        reports = rng.poisson(mean)
        bans = rng.poisson(mean / 20)
        for ts, count, ban in zip(hours, reports, bans, strict=True):
            bad = corrupt and region == "BB" and ts >= CORRUPT_FROM
            rows.append(
                (ts.strftime("%Y-%m-%d %H:%M:%S.000000"), region, int(count), "n/a" if bad else str(ban))
            )
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS facts")
        conn.exec_driver_sql(
            "CREATE TABLE facts (ts DATETIME NOT NULL, region VARCHAR(8) NOT NULL, "
            "reports INTEGER NOT NULL, bans TEXT NOT NULL)"
        )
        conn.exec_driver_sql("INSERT INTO facts VALUES (?, ?, ?, ?)", rows)
        conn.exec_driver_sql("CREATE INDEX ix_facts_ts ON facts (ts, region)")
    engine.dispose()
    return path


def write_config(
    directory: Path,
    warehouse: Path,
    *,
    metrics: tuple[str, ...] = ("user_reports",),
    max_catchup: str = "6h",
    refit_every: str = "1d",
    state: str = "state.db",
    busy_timeout: float = 0.2,
) -> Path:
    """A config for the tiny warehouse; the state database and ``<state stem>.jsonl`` go in ``directory``."""
    known = {
        "user_reports": {
            "name": "user_reports",
            "source": {"table": "facts"},
            "kind": "count",
            "value": "reports",
            "direction": "up",
        },
        "bans": {
            "name": "bans",
            "source": {"table": "facts"},
            "kind": "count",
            "value": "bans",
            "direction": "up",
            "noise_floors": {"min_volume": 5, "min_rel_effect": 0.3},
        },
    }
    config = {
        "version": 1,
        "database": {"url": f"sqlite:///{warehouse}?timeout={busy_timeout}"},
        "state": {"url": f"sqlite:///{directory / state}"},
        "defaults": {
            "slice_dimensions": [],
            "history": "7d",
            "noise_floors": {"min_volume": 50, "min_rel_effect": 0.15},
        },
        "metrics": [known[name] for name in metrics],
        "alerts": {
            "console": False,
            "jsonl_path": str(directory / f"{Path(state).stem}.jsonl"),
            "resolve_after": 2,
        },
        "scheduler": {
            "refit_every": refit_every,
            "max_catchup": max_catchup,
            "misfire_grace": "5m",
            "metrics_port": None,
        },
    }
    path = directory / f"{Path(state).stem}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path
