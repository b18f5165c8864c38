"""Each post-rule step alone, table-driven; then the chain and the level-shift classification."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from detectors.postrules import (
    FLAGGED,
    PostRules,
    apply_rules,
    classify_run,
    evaluate,
    k_of_n_step,
    noise_floor_step,
    suppression_step,
    threshold_step,
)

NAN = float("nan")


def _frame(scores: list[float], *, expected: float = 10.0, volume: float = 100.0) -> pd.DataFrame:
    score = np.asarray(scores, dtype=float)
    index = pd.date_range("2026-01-05", periods=len(score), freq="h", tz="UTC")
    observed = expected + score  # sigma 1, so effect == score
    return pd.DataFrame(
        {
            "observed": observed,
            "expected": expected,
            "lower": expected - 4,
            "upper": expected + 4,
            "score": score,
            "volume": volume,
        },
        index=index,
    )


@pytest.mark.parametrize(
    ("scores", "direction", "flagged"),
    [
        ([5.0, -5.0, 3.0], "both", [True, True, False]),  # both signs pass, below threshold does not
        ([5.0, -5.0], "up", [True, False]),  # only rises
        ([5.0, -5.0], "down", [False, True]),  # only drops
        ([NAN, 4.0], "both", [False, True]),  # a NaN score (missing bucket) never flags
        ([-4.0], "both", [True]),  # the threshold is inclusive
    ],
)
def test_threshold_step(scores: list[float], direction: str, flagged: list[bool]) -> None:
    reason = threshold_step(np.asarray(scores), threshold=4.0, direction=direction)  # type: ignore[arg-type]
    assert (reason == FLAGGED).tolist() == flagged


def test_threshold_step_gives_reasons() -> None:
    reason = threshold_step(np.array([1.0, -6.0, NAN]), threshold=4.0, direction="up")
    assert reason.tolist() == ["|score| < 4", "direction: only up", "missing value or score"]


@pytest.mark.parametrize(
    ("scores", "k", "n", "flagged"),
    [
        ([5, 0, 0, 5, 0, 0], 2, 3, [False] * 6),  # isolated candidates are dropped
        ([5, 0, 5, 0, 0, 0], 2, 3, [True, False, True, False, False, False]),  # 2 of 3 holds
        ([5, -5, 5, 0], 2, 3, [True, False, True, False]),  # opposite signs do not count together
        ([5, 5, 5], 1, 1, [True, True, True]),  # k = n = 1 keeps everything
        ([0, 5, 5, 5, 0], 3, 3, [False, True, True, True, False]),  # exactly k in a window
    ],
)
def test_k_of_n_step(scores: list[float], k: int, n: int, flagged: list[bool]) -> None:
    score = np.asarray(scores, dtype=float)
    reason = k_of_n_step(threshold_step(score, threshold=4.0, direction="both"), score, k=k, n=n)
    assert (reason == FLAGGED).tolist() == flagged


@pytest.mark.parametrize(
    ("kwargs", "volume", "flagged", "why"),
    [
        ({"min_volume": 50.0}, 10.0, False, "volume < 50"),  # too few reviews behind the rate
        ({"min_volume": 50.0}, NAN, False, "volume < 50"),  # unknown volume fails a volume floor
        ({"min_volume": 5.0}, 10.0, True, FLAGGED),  # enough volume
        ({"min_abs_effect": 6.0}, 10.0, False, "|observed - expected| < 6"),  # effect 5 is too small
        ({"min_rel_effect": 0.6}, 10.0, False, "relative effect < 0.6"),  # 5 / 10 = 0.5
        ({"min_rel_effect": 0.4}, 10.0, True, FLAGGED),
    ],
)
def test_noise_floor_step(kwargs: dict[str, float], volume: float, flagged: bool, why: str) -> None:
    frame = _frame([5.0], volume=volume)
    floors = {"min_volume": 0.0, "min_abs_effect": 0.0, "min_rel_effect": 0.0, **kwargs}
    reason = noise_floor_step(np.array([FLAGGED], dtype=object), frame, **floors)
    assert (reason[0] == FLAGGED) is flagged
    assert reason[0] == why


def test_suppression_step_turns_off_points_inside_intervals_only() -> None:
    frame = _frame([5.0, 5.0, 5.0])
    reason = np.array([FLAGGED] * 3, dtype=object)
    out = suppression_step(reason, pd.DatetimeIndex(frame.index), [(frame.index[1], frame.index[1])])
    assert (out == FLAGGED).tolist() == [True, False, True]
    assert str(out[1]).startswith("suppressed")


@pytest.mark.parametrize(
    ("deviation", "kind"),
    [
        ([9.0], "spike"),  # one point above
        ([-9.0, -8.0], "dip"),  # short run below
        ([5.0, 5.2, 4.9, 5.1, 5.0, 5.3], "level_shift"),  # six stable points
        ([-5.0, -5.2, -4.9, -5.1, -5.0, -5.3], "level_shift"),  # downward shift
        ([1.0, 9.0, 1.0, 12.0, 1.0, 15.0], "spike"),  # long but unstable: bursts, not a shift
    ],
)
def test_classify_run(deviation: list[float], kind: str) -> None:
    got, reason = classify_run(np.asarray(deviation), min_points=6, max_spread=0.5)
    assert got == kind
    assert reason.startswith(kind.replace("_", " "))


def test_evaluate_carries_a_reason_per_point() -> None:
    decisions = evaluate(_frame([5.0, 1.0, NAN]), PostRules(threshold=4.0))
    assert decisions["flag"].tolist() == [True, False, False]
    assert decisions["reason"].tolist() == [FLAGGED, "|score| < 4", "missing value or score"]


def test_apply_rules_merges_runs_by_sign_and_classifies() -> None:
    scores = [0, 6, 7, 0, -5, -6, 0] + [5.0] * 8
    anomalies = apply_rules(_frame(scores), PostRules(threshold=4.0), detector="t")
    assert [a.kind for a in anomalies] == ["spike", "dip", "level_shift"]
    spike, dip, shift = anomalies
    assert (spike.score, spike.observed, spike.expected) == (7.0, 17.0, 10.0)  # peak of the run
    assert dip.start < dip.end
    assert shift.end == _frame(scores).index[-1]
    assert all(a.detector == "t" and a.reason for a in anomalies)


def test_sign_change_splits_adjacent_runs() -> None:
    anomalies = apply_rules(_frame([6.0, -6.0]), PostRules())
    assert [a.kind for a in anomalies] == ["spike", "dip"]


@pytest.mark.parametrize(
    "kwargs",
    [{"direction": "sideways"}, {"k": 3, "n": 2}, {"k": 0, "n": 1}, {"threshold": 0.0}],
)
def test_invalid_rules_are_rejected(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        PostRules(**kwargs)  # type: ignore[arg-type]
