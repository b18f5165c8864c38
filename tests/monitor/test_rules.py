"""Table-driven tests of the per-series rules on top of the detectors: unseen holidays, level shifts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from detectors.postrules import PostRules, evaluate
from monitor.pipeline.spec import holiday_floor, level_shifts

HOLIDAY = pd.Timestamp("2026-11-15T18:00Z")  # Brazil: Proclamation of the Republic
ORDINARY = pd.Timestamp("2026-11-18T18:00Z")


def decisions_at(moment: pd.Timestamp, observed: float, expected: float = 100.0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "observed": [observed],
            "expected": [expected],
            "lower": [90.0],
            "upper": [110.0],
            "score": [8.0],
            "flag": [True],
            "reason": ["flagged"],
        },
        index=pd.DatetimeIndex([moment]),
    )


def hours(start: str, end: str) -> pd.DatetimeIndex:
    return pd.date_range(start, end, freq="h", tz="UTC")


@pytest.mark.parametrize(
    ("moment", "observed", "trained_on", "country", "flag"),
    [
        # a +20% move on a holiday the model never saw is the holiday, not an incident
        (HOLIDAY, 120.0, hours("2026-10-01", "2026-11-10"), "BR", False),
        # a +80% move on the same holiday is still an incident
        (HOLIDAY, 180.0, hours("2026-10-01", "2026-11-10"), "BR", True),
        # the same day is no holiday elsewhere
        (HOLIDAY, 120.0, hours("2026-10-01", "2026-11-10"), "US", True),
        # an ordinary day keeps its flag
        (ORDINARY, 120.0, hours("2026-10-01", "2026-11-10"), "BR", True),
        # a holiday seen whole in training: the model knows its effect
        (pd.Timestamp("2027-11-15T18:00Z"), 120.0, hours("2026-10-01", "2027-11-10"), "BR", True),
        # a holiday whose first hours close the training window was not learned
        (HOLIDAY, 120.0, hours("2026-10-01", "2026-11-15T09:00"), "BR", False),
        # no country, no holiday rule
        (HOLIDAY, 120.0, hours("2026-10-01", "2026-11-10"), None, True),
    ],
)
def test_holiday_floor(
    moment: pd.Timestamp, observed: float, trained_on: pd.DatetimeIndex, country: str | None, flag: bool
) -> None:
    out = holiday_floor(decisions_at(moment, observed), country, trained_on)
    assert bool(out["flag"].iloc[0]) is flag
    if not flag:
        assert "holiday unseen in training" in out["reason"].iloc[0]


def shift_frames(shift: float, rel_floor: float = 0.0, direction: str = "both") -> tuple[pd.DataFrame, ...]:
    rng = np.random.default_rng(3)
    index = pd.date_range("2026-11-01", periods=240, freq="h", tz="UTC")
    noise = rng.standard_normal(len(index))
    score = noise + np.where(np.arange(len(index)) >= 200, shift, 0.0)
    expected = np.full(len(index), 100.0)
    frame = pd.DataFrame(
        {
            "observed": expected + 10 * score,
            "expected": expected,
            "lower": 60.0,
            "upper": 140.0,
            "score": score,
        },
        index=index,
    )
    rules = PostRules(threshold=4.0, direction=direction, min_rel_effect=rel_floor)  # type: ignore[arg-type]
    return frame.iloc[:168], evaluate(frame.iloc[168:], rules), rules  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("shift", "rel_floor", "direction", "alarms"),
    [
        (2.0, 0.0, "both", 1),  # a +2 sigma shift never crosses 4 sigma per point, the CUSUM confirms it once
        (-2.0, 0.0, "both", 1),  # downwards too
        (-2.0, 0.0, "up", 0),  # unless the metric only alerts upwards
        (2.0, 0.5, "both", 0),  # a +20% shift under a 50% relative floor is noise by config
        (0.0, 0.0, "both", 0),  # no shift, no alarm
    ],
)
def test_level_shifts_alert_once_and_rebaseline(
    shift: float, rel_floor: float, direction: str, alarms: int
) -> None:
    context, decisions, rules = shift_frames(shift, rel_floor, direction)
    out = level_shifts(decisions, context, rules)
    confirmed = out["shift_start"].notna()
    assert int(confirmed.sum()) == alarms
    if alarms:
        start = out.loc[confirmed, "shift_start"].iloc[0]
        assert abs(start - pd.Timestamp("2026-11-09T08:00Z")) <= pd.Timedelta(hours=3)  # bucket 200
