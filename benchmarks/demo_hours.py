"""The demo's incidents and false alerts by the hour the demo warehouse is built.

The demo warehouse is generated relative to the hour it is built (``build_demo(end=...)``), so its noise, the
local hours its incidents hit and the holidays inside its 14-day catch-up all move with that hour. For each
build hour this script builds the warehouse in a fresh directory, runs one tick exactly as
``livewatch run --once`` does (the daemon built from the repository's ``config.yaml``, evaluated 6 minutes
after the build hour), and matches the incidents it opened against the ``demo_incidents`` ground truth: an
incident is true when it shares a metric and a region with an injected incident and starts between 3 hours
before and 2 hours after its window; experiment incidents are true for the harmful experiment only.

Run: ``.venv/bin/python benchmarks/demo_hours.py [--end 2026-12-04T00:00Z] [--builds 12] [--every 2]``
(about 40 s per build on 2 cores). This is the demo's own synthetic data: a check that its story holds at
every build hour, not evidence of accuracy elsewhere.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alerts.model import Incident
from monitor.config import load_config
from monitor.daemon.scheduler import build_daemon
from monitor.tools.demo import (
    DEMO_EXPERIMENT_UNITS,
    DemoExperiment,
    DemoIncident,
    build_demo,
    demo_experiments,
    demo_incidents,
)
from monitor.wiring import open_store

__all__ = ["BuildOutcome", "Opened", "main", "match", "run_build"]

CONFIG = Path(__file__).resolve().parent.parent / "config.yaml"
#: The tick runs this long after the build hour (as a user who starts the demo a few minutes past it).
TICK_DELAY = pd.Timedelta(minutes=6)


@dataclass(frozen=True)
class BuildOutcome:
    """What one build hour's tick opened, against the ground truth."""

    end: pd.Timestamp
    found: frozenset[str]
    missed: tuple[str, ...]
    false: tuple[str, ...]


@dataclass(frozen=True)
class Opened:
    """What matching needs of an incident the tick opened."""

    metrics: tuple[str, ...]
    regions: tuple[str, ...]
    kind: str
    started: pd.Timestamp

    @classmethod
    def of(cls, incident: Incident) -> Opened:
        return cls(incident.metrics, incident.regions, incident.kind, pd.Timestamp(incident.started_at))


def match(
    incidents: list[Opened], truth: list[DemoIncident], experiments: list[DemoExperiment]
) -> tuple[set[str], list[str]]:
    """The injected incidents found, and a line per incident that matches none of them."""
    alerting = [t for t in truth if t.should_alert]
    harmful = {e.name for e in experiments if e.harmful}
    found: set[str] = set()
    false: list[str] = []
    for incident in incidents:
        started = incident.started
        experiment = [r.split("/")[1] for r in incident.regions if r.startswith("experiment/")]
        if experiment:
            hits = {name for name in experiment if name in harmful}
        else:
            hits = {
                t.incident
                for t in alerting
                if t.metric in incident.metrics
                and t.region in incident.regions
                and pd.Timestamp(t.start) - pd.Timedelta(hours=3)
                <= started
                <= pd.Timestamp(t.end) + pd.Timedelta(hours=2)
            }
        found |= hits
        if not hits:
            false.append(
                f"{', '.join(incident.metrics)} {incident.kind} in {', '.join(incident.regions)} "
                f"from {started:%m-%d %H:%M}"
            )
    return found, false


def run_build(end: pd.Timestamp, workdir: Path) -> BuildOutcome:
    """Build the demo ending at ``end`` in ``workdir``, run one tick, match what it opened."""
    shutil.copy(CONFIG, workdir / "config.yaml")
    previous = Path.cwd()
    os.chdir(workdir)  # the config's SQLite URLs are relative to the working directory
    try:
        engine = sa.create_engine("sqlite:///livewatch-demo.db")
        build_demo(engine, end=end.to_pydatetime(), experiment_units=DEMO_EXPERIMENT_UNITS)
        engine.dispose()
        config = load_config("config.yaml", env={})
        at = (end + TICK_DELAY).to_pydatetime()
        # the console sink prints every alert (it holds the stream it was built with)
        with contextlib.redirect_stdout(io.StringIO()):
            daemon = build_daemon(config, env={}, clock=lambda: at, started=at)
            for group in daemon.groups:
                daemon.score(group, at)
        incidents = [Opened.of(h.incident) for h in open_store(config).incident_history()]
    finally:
        os.chdir(previous)
    truth = demo_incidents(end.to_pydatetime())
    experiments = demo_experiments(end.to_pydatetime())
    found, false = match(incidents, truth, experiments)
    expected = {t.incident for t in truth if t.should_alert} | {e.name for e in experiments if e.harmful}
    return BuildOutcome(end, frozenset(found), tuple(sorted(expected - found)), tuple(false))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--end", default="2026-12-04T00:00Z", help="First build hour (UTC).")
    parser.add_argument("--builds", type=int, default=12, help="Number of build hours.")
    parser.add_argument("--every", type=int, default=2, help="Hours between build hours.")
    args = parser.parse_args(argv)
    first = pd.Timestamp(args.end).tz_convert("UTC").floor("h")
    outcomes = []
    for i in range(args.builds):
        end = first + pd.Timedelta(hours=i * args.every)
        with tempfile.TemporaryDirectory(prefix="livewatch-demo-hours-") as tmp:
            outcome = run_build(end, Path(tmp))
        outcomes.append(outcome)
        print(
            f"built {end:%Y-%m-%d %H:%M}: {len(outcome.found)} found, missed {list(outcome.missed)}, "
            f"{len(outcome.false)} false",
            flush=True,
        )
        for line in outcome.false:
            print(f"    false: {line}", flush=True)
    false = sum(len(o.false) for o in outcomes)
    missed = sum(len(o.missed) for o in outcomes)
    clean = sum(1 for o in outcomes if not o.false and not o.missed)
    print(
        f"{len(outcomes)} build hours: {false} false incidents ({false / len(outcomes):.2f} per build), "
        f"{missed} injected incidents missed, {clean} builds exactly right"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
