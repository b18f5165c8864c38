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


def test_a_bucket_that_never_arrived_is_not_confirmed_as_the_new_level() -> None:
    observed, expected, score = shifted(2.0)
    whole = confirm_level_shifts(observed, expected, score, PostRules())
    (first,) = np.flatnonzero(whole.confirmed[0])[:1] + LEVEL_SHIFT_CONTEXT
    observed[0, first], score[0, first] = np.nan, np.nan  # the alarm bucket is missing
    gap = confirm_level_shifts(observed, expected, score, PostRules())
    assert not gap.confirmed[0, first - LEVEL_SHIFT_CONTEXT]
    assert gap.confirmed[0, first - LEVEL_SHIFT_CONTEXT + 1 :].any()  # the next bucket that came confirms it


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


def calm(
    shift: float, *, sigma: float, length: int = 260, at: int = 200, seed: int = 5
) -> tuple[np.ndarray, ...]:
    """Like :func:`shifted`, with scores calmer than N(0, 1): a band wider than the noise."""
    noise = sigma * np.random.default_rng(seed).standard_normal(length)
    score = noise + np.where(np.arange(length) >= at, shift, 0.0)
    expected = np.full(length, 100.0)
    return (expected + 10 * score)[None, :], expected[None, :], score[None, :]


@pytest.mark.parametrize(
    ("sigma", "low", "high"),
    [
        (1.0, 0.8, 1.0),  # honest scores are read about as they are (a week is a sample)
        (3.0, 1.0, 1.0),  # never blunted when they are wilder than N(0, 1)
        (0.7, 0.55, 1.0),  # calm scores: their own spread
        (0.2, 0.5, 0.5),  # very calm: sharpened at most twice
    ],
)
def test_score_noise_is_the_spread_the_scores_show(sigma: float, low: float, high: float) -> None:
    from detectors.postrules import score_noise

    spans = sigma * np.random.default_rng(1).standard_normal((4, LEVEL_SHIFT_CONTEXT + 1))
    assert np.all((score_noise(spans) >= low) & (score_noise(spans) <= high))


def test_score_noise_counts_scores_that_stay_off_for_hours() -> None:
    """A model wrong for hours at a time (correlated scores) is not sharpened as if each hour were new."""
    from detectors.postrules import score_noise

    rng = np.random.default_rng(2)
    independent = 0.5 * rng.standard_normal(LEVEL_SHIFT_CONTEXT + 1)
    slow = np.repeat(0.5 * rng.standard_normal(LEVEL_SHIFT_CONTEXT // 12 + 1), 12)[: LEVEL_SHIFT_CONTEXT + 1]
    few = np.full(LEVEL_SHIFT_CONTEXT + 1, np.nan)
    few[-10:] = 0.1
    out = score_noise(np.vstack([independent, slow, few]))
    assert out[0] < 0.65 and out[1] > out[0] + 0.2
    assert out[2] == 1.0  # ten scores tell nothing about the noise


@pytest.mark.parametrize(("sigma", "latest"), [(1.0, 12), (0.4, 7)])
def test_a_shift_on_calm_scores_is_confirmed_within_hours(sigma: float, latest: int) -> None:
    # the demo's DE violation rate: +1.1 sigma per bucket on scores whose spread is 0.4
    observed, expected, score = calm(1.1, sigma=sigma)
    found = confirm_level_shifts(observed, expected, score, PostRules())
    first = int(np.flatnonzero(found.confirmed[0])[0]) + LEVEL_SHIFT_CONTEXT
    assert 200 <= first <= 200 + latest
    assert abs(int(found.start[0, first - LEVEL_SHIFT_CONTEXT]) - 200) <= 3


def test_a_burst_over_when_the_cusum_tips_is_not_a_level_shift() -> None:
    # four buckets far beyond 3 sigma tip the CUSUM at the fifth, ordinary, bucket: a spike, flagged by the
    # threshold already, not a shift (it would hold its incident open at a level the series left)
    noise = 0.3 * np.random.default_rng(4).standard_normal(240)
    score = noise + np.where((np.arange(240) >= 200) & (np.arange(240) < 204), 8.0, 0.0)
    score[204] = 0.9  # the CUSUM's last push over its interval
    expected = np.full(240, 100.0)
    found = confirm_level_shifts(
        (expected + 10 * score)[None, :], expected[None, :], score[None, :], PostRules()
    )
    assert not found.confirmed.any()


@pytest.mark.parametrize(
    ("rules", "volume", "confirmed"),
    [
        (PostRules(), 10.0, True),
        (PostRules(min_volume=200), 150.0, False),  # the noise floors hold for shifts too
        (PostRules(min_volume=200), 250.0, True),
        (PostRules(min_abs_effect=50), 250.0, False),  # the shift is +25 on average
    ],
)
def test_a_confirmed_shift_clears_the_noise_floors(rules: PostRules, volume: float, confirmed: bool) -> None:
    observed, expected, score = shifted(2.5)
    found = confirm_level_shifts(observed, expected, score, rules, volume=np.full(observed.shape, volume))
    assert bool(found.confirmed.any()) is confirmed


def test_calm_verdicts_do_not_depend_on_where_a_call_begins() -> None:
    observed, expected, score = calm(1.1, sigma=0.4, length=300, at=220)
    volume = np.full(observed.shape, 300.0)
    rules = PostRules(min_volume=200)
    whole = confirm_level_shifts(observed, expected, score, rules, volume=volume)
    for j in range(300 - LEVEL_SHIFT_CONTEXT):
        end = j + LEVEL_SHIFT_CONTEXT + 1
        one = confirm_level_shifts(
            observed[:, j:end], expected[:, j:end], score[:, j:end], rules, volume=volume[:, j:end]
        )
        assert bool(one.confirmed[0, 0]) == bool(whole.confirmed[0, j])
        if one.confirmed[0, 0]:
            assert int(one.start[0, 0]) + j == int(whole.start[0, j])
    assert whole.confirmed.any()


def test_the_first_bucket_back_after_a_raid_is_not_confirmed_as_a_level_shift() -> None:
    # the demo's BR raid: five loud buckets tip the CUSUM inside the raid; the bucket after it is back at the
    # model's level, and confirming it (within CONFIRM_WITHIN of the alarm) named the raid a level shift
    score = np.random.default_rng(0).standard_normal(240)
    score[200:206] = [10.4, 7.7, 8.8, 8.8, 8.2, 0.3]  # its scores, hour by hour
    expected = np.full(240, 100.0)
    found = confirm_level_shifts(
        (expected + 10 * score)[None, :], expected[None, :], score[None, :], PostRules()
    )
    back = 205 - LEVEL_SHIFT_CONTEXT
    assert found.confirmed[0, back - 2 : back].all()  # the loud buckets: confirmed, and kept spikes by shape
    assert not found.confirmed[0, back:].any()
