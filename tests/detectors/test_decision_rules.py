"""Table-driven tests of the rules on top of the post-rules: unseen holidays and confirmed level shifts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from detectors.postrules import LEVEL_SHIFT_CONTEXT, PostRules, confirm_level_shifts, holiday_floor

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


def shifted(shift: float, length: int = 240, at: int = 200, seed: int = 3) -> tuple[np.ndarray, ...]:
    """(observed, expected, score) of one series, shape (1, length): noise, plus ``shift`` from ``at``."""
    noise = np.random.default_rng(seed).standard_normal(length)
    score = noise + np.where(np.arange(length) >= at, shift, 0.0)
    expected = np.full(length, 100.0)
    return (expected + 10 * score)[None, :], expected[None, :], score[None, :]


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
def test_level_shifts_alert_once(shift: float, rel_floor: float, direction: str, alarms: int) -> None:
    observed, expected, score = shifted(shift)
    rules = PostRules(threshold=4.0, direction=direction, min_rel_effect=rel_floor)  # type: ignore[arg-type]
    found = confirm_level_shifts(observed, expected, score, rules)
    assert found.confirmed.shape == (1, 240 - LEVEL_SHIFT_CONTEXT)
    # one alert is one run of consecutive confirmed buckets (the alarm bucket and the few after it that
    # still hold the new level): one run is one signal run, one incident
    edges = np.diff(np.concatenate([[0], found.confirmed[0].astype(int)]))
    assert int((edges == 1).sum()) == alarms
    assert int(found.confirmed.sum()) <= 3 * alarms
    if alarms:
        start = int(found.start[found.confirmed][0])
        assert abs(start - 200) <= 3  # the estimated start is the bucket where the shift began


def test_level_shift_verdicts_do_not_depend_on_where_a_call_begins() -> None:
    # Proves the property that makes the tick, investigate and the backtest agree: each bucket reads its own
    # trailing context, so one call over the window equals one call per bucket (a tick per hour).
    observed, expected, score = shifted(2.5, length=300, at=220)
    rules = PostRules()
    whole = confirm_level_shifts(observed, expected, score, rules)
    for j in range(300 - LEVEL_SHIFT_CONTEXT):
        end = j + LEVEL_SHIFT_CONTEXT + 1
        one = confirm_level_shifts(observed[:, j:end], expected[:, j:end], score[:, j:end], rules)
        assert bool(one.confirmed[0, 0]) == bool(whole.confirmed[0, j])
        if one.confirmed[0, 0]:
            assert int(one.start[0, 0]) + j == int(whole.start[0, j])
    assert whole.confirmed.any()
