"""What fits leave out of training: open level shifts (pure rules, table-driven) and the history they add."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from alerts.model import IncidentState
from monitor.pipeline.models import Exclusions, FitTask, fit_chunk, training_reach
from monitor.pipeline.refit import ONSET_MARGIN, held_shift_exclusions
from tests.alerts.factories import T0, incident, signal

H = timedelta(hours=1)
NOW = T0 + 48 * H
HELD = {"EU": ((T0 - ONSET_MARGIN * H, NOW),)}
SHIFT = signal("reports", "EU", kind="level_shift", start=T0, end=T0 + 2 * H, bucket=H)


@pytest.mark.parametrize(
    ("case", "change", "metric", "expected"),
    [
        ("open shift: from its onset margin to now", {}, "reports", HELD),
        ("another metric", {}, "bans", {}),
        ("acknowledged: the new level is accepted", {"state": IncidentState.ACKNOWLEDGED}, "reports", {}),
        ("snoozed still holds it", {"state": IncidentState.SNOOZED}, "reports", HELD),
        ("resolved", {"state": IncidentState.RESOLVED, "resolved_at": NOW}, "reports", {}),
        ("marked not an incident", {"false_positive": True}, "reports", {}),
    ],
)
def test_held_shift_exclusions(
    case: str, change: dict[str, object], metric: str, expected: dict[str, Exclusions]
) -> None:
    held = incident(SHIFT, now=T0 + 2 * H).with_changes(**change)
    assert held_shift_exclusions([held], metric, NOW) == expected, case


def test_only_level_shift_members_are_held_and_a_bucket_without_a_size_gets_no_margin() -> None:
    spike = signal("reports", "US", kind="spike", start=T0, end=T0, bucket=H)
    unsized = signal("reports", "EU", kind="level_shift", start=T0, end=T0 + 2 * H, bucket=None)
    both = incident(spike, unsized, now=T0 + 2 * H)
    assert held_shift_exclusions([both], "reports", NOW) == {"EU": ((T0, NOW),)}


CUT = pd.Timestamp("2026-03-20", tz="UTC")
WEEK = pd.Timedelta(days=7)


def _at(days: float) -> datetime:
    return (CUT - pd.Timedelta(days=days)).to_pydatetime()


@pytest.mark.parametrize(
    ("case", "exclude", "days"),
    [
        ("nothing left out", (), 7),
        ("a two-day open shift", ((_at(2), CUT.to_pydatetime()),), 9),
        ("overlaps count once", ((_at(3), _at(1)), (_at(2), CUT.to_pydatetime())), 10),
        ("only the part inside the history counts", ((_at(9), _at(6)),), 8),
        ("outside the history: nothing", ((_at(12), _at(8)),), 7),
        ("at most twice the history", ((_at(30), CUT.to_pydatetime()),), 14),
    ],
)
def test_training_reach(case: str, exclude: Exclusions, days: float) -> None:
    assert training_reach(WEEK, exclude, CUT) == pd.Timedelta(days=days), case


def _frame(days: int) -> pd.DataFrame:
    index = pd.date_range(CUT - pd.Timedelta(days=days), CUT, freq="h", inclusive="left", name="ts")
    rng = np.random.default_rng(3)
    return pd.DataFrame({"value": rng.poisson(100, len(index)).astype(float), "volume": np.nan}, index=index)


def test_a_held_shift_that_leaves_too_little_history_is_fitted_with_it() -> None:
    frame = _frame(3)
    params = {"kind": "count", "granularity": "1h", "prophet_min_days": 14.0}
    whole = (frame.index[0].to_pydatetime(), CUT.to_pydatetime())
    lately = (frame.index[-24].to_pydatetime(), CUT.to_pydatetime())
    held_all, held_day, always_all = (
        FitTask("reports", "EU", frame, params, held=(whole,)),
        FitTask("reports", "EU", frame, params, held=(lately,)),
        FitTask("reports", "EU", frame, params, exclude=(whole,)),
    )
    fitted, partly, failed = fit_chunk([held_all, held_day, always_all])
    assert fitted.state is not None and fitted.error is None  # fitted on everything rather than not at all
    assert partly.state is not None and partly.state != fitted.state  # the last day left out
    assert failed.state is None and failed.error is not None and "InsufficientDataError" in failed.error
