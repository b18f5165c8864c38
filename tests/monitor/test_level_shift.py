"""A level shift through the real daemon tick: it opens within hours, stays open while the new level
persists (the detector long quiet), and resolves once the series is back; a spike beside it resolves as
spikes always have, in its own incident."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import yaml

from alerts.engine import AlertRepos, acknowledge_incident
from alerts.model import IncidentState, LifecycleKind
from monitor.config import load_config
from monitor.daemon.scheduler import Daemon, build_daemon, replay
from tests.monitor.daemon_helpers import write_config

H = timedelta(hours=1)
END = datetime(2026, 3, 12, tzinfo=UTC)  # exclusive end of the data
SHIFT = 1.12  # region AA: reports +12 % for 30 hours, under the per-bucket threshold
SHIFT_FROM = datetime(2026, 3, 9, 4, tzinfo=UTC)
SHIFT_UNTIL = SHIFT_FROM + 30 * H
SPIKE_FROM = datetime(2026, 3, 9, 20, tzinfo=UTC)  # region BB: reports x3 for 3 hours, during the shift
SPIKE_UNTIL = SPIKE_FROM + 3 * H


def build(
    path: Path,
    *,
    seed: int = 5,
    shift: float = SHIFT,
    shift_until: datetime = SHIFT_UNTIL,
    end: datetime = END,
) -> Path:
    rng = np.random.default_rng(seed)
    hours = pd.date_range(end - timedelta(days=12), end, freq="h", inclusive="left")
    rows = []
    for region, level in (("AA", 400.0), ("BB", 300.0)):
        mean = level * (1.0 + 0.3 * np.sin(2 * np.pi * (hours.hour.to_numpy() - 6) / 24))
        if region == "AA":
            inside = (hours >= pd.Timestamp(SHIFT_FROM)) & (hours < pd.Timestamp(shift_until))
            mean = np.where(inside, shift * mean, mean)
        else:
            inside = (hours >= pd.Timestamp(SPIKE_FROM)) & (hours < pd.Timestamp(SPIKE_UNTIL))
            mean = np.where(inside, 3.0 * mean, mean)
        for ts, count in zip(hours, rng.poisson(mean), strict=True):
            rows.append((ts.strftime("%Y-%m-%d %H:%M:%S.000000"), region, int(count), "0"))
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE facts (ts DATETIME NOT NULL, region VARCHAR(8) NOT NULL, "
            "reports INTEGER NOT NULL, bans TEXT NOT NULL)"
        )
        conn.exec_driver_sql("INSERT INTO facts VALUES (?, ?, ?, ?)", rows)
    engine.dispose()
    return path


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("shift") / "wh.db")


def _daemon(tmp_path: Path, warehouse: Path, start: datetime) -> Daemon:
    path = write_config(tmp_path, warehouse, max_catchup="6h")  # resolve_after: 2
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["defaults"]["noise_floors"]["min_rel_effect"] = 0.05  # a +12 % shift is worth knowing here
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return build_daemon(load_config(path), {}, clock=lambda: start, started=start)


START = SHIFT_FROM - 3 * H + 10 * timedelta(minutes=1)


def test_a_level_shift_stays_open_while_it_persists_and_a_spike_beside_it_resolves(
    tmp_path: Path, warehouse: Path
) -> None:
    daemon = _daemon(tmp_path, warehouse, START)
    report = replay(daemon, START, SHIFT_UNTIL + 14 * H)  # hourly live ticks and the nightly refits
    assert all(t.report is not None and t.report.errors == 0 for t in report.ticks)
    incidents = {i.regions: i for i in daemon.store.list_incidents()}
    assert sorted(incidents) == [("AA",), ("BB",)]  # two incidents: the spike did not join the shift
    shift, spike = incidents[("AA",)], incidents[("BB",)]

    # the shift opens within hours (the CUSUM on the scores' own noise), as a level shift
    assert "level_shift" in {s.kind for s in shift.signals}
    assert SHIFT_FROM < shift.opened_at <= SHIFT_FROM + 8 * H
    # the detector went quiet long before the shift ended, and the incident stayed open meanwhile ...
    assert shift.last_signal_at <= SHIFT_UNTIL - 10 * H
    # ... until the series was back: resolved a few buckets after the return, because it returned
    assert shift.state is IncidentState.RESOLVED and shift.resolved_at is not None
    assert SHIFT_UNTIL + 2 * H <= shift.resolved_at <= SHIFT_UNTIL + 8 * H
    (resolution,) = [e for e in daemon.store.list_events(shift.id) if e.kind is LifecycleKind.RESOLVED]
    assert "returned to its previous level" in resolution.detail

    # the spike resolves exactly as spikes do: `resolve_after` (2) clean buckets after its last one
    assert {s.kind for s in spike.signals} == {"spike"}
    assert spike.opened_at == SPIKE_FROM + H
    assert spike.resolved_at is not None and SPIKE_UNTIL + 2 * H <= spike.resolved_at <= SPIKE_UNTIL + 3 * H
    (resolution,) = [e for e in daemon.store.list_events(spike.id) if e.kind is LifecycleKind.RESOLVED]
    assert "back to normal" in resolution.detail


def test_an_acknowledged_level_shift_resolves_while_the_new_level_holds(
    tmp_path: Path, warehouse: Path
) -> None:
    daemon = _daemon(tmp_path, warehouse, START)
    middle = SHIFT_FROM + 14 * H + 10 * timedelta(minutes=1)
    replay(daemon, START, middle)
    (shift,) = daemon.store.list_incidents(region="AA")
    assert shift.active and shift.last_signal_at < middle - 2 * H  # quiet, held open by its new level
    acknowledge_incident(AlertRepos(daemon.store, daemon.store, daemon.store), shift.id, "@ana", middle)
    replay(daemon, START, middle + 4 * H)  # the replay resumes after the last tick
    (shift,) = daemon.store.list_incidents(region="AA")
    assert shift.state is IncidentState.RESOLVED and shift.resolved_at is not None
    assert shift.resolved_at < SHIFT_UNTIL  # the shift still holds: a person accepted the new level
    (resolution,) = [e for e in daemon.store.list_events(shift.id) if e.kind is LifecycleKind.RESOLVED]
    assert "new level was accepted" in resolution.detail


def test_a_level_shift_that_persists_past_refits_stays_open(tmp_path: Path) -> None:
    # The shift (+20 %, still under the per-bucket threshold) never ends. By the fourth nightly refit most of
    # each hour's 7 days of training values are at the new level: a model that learnt them would call the
    # new level normal, and the series "back".
    end = SHIFT_FROM + 5 * timedelta(days=1)
    warehouse = build(tmp_path / "wh.db", shift=1.2, shift_until=end, end=end)
    daemon = _daemon(tmp_path, warehouse, START)
    report = replay(daemon, START, end - H)
    assert len(report.refits) == 5 and all(not r.errors for r in report.refits)
    (shift,) = daemon.store.list_incidents(region="AA")
    assert "level_shift" in {s.kind for s in shift.signals}
    resolutions = [e.detail for e in daemon.store.list_events(shift.id) if e.kind is LifecycleKind.RESOLVED]
    assert shift.active and not resolutions, resolutions
