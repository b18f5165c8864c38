"""Post-rules: from a score frame to anomalies, as separate pure steps that each give a reason.

The steps run in this order on a score frame (columns ``observed, expected, lower, upper, score`` and
optionally ``volume``), each taking the per-point ``reason`` array of the previous step and only ever
turning flagged points off:

1. :func:`threshold_step`: ``|score| >= threshold`` in the wanted ``direction`` (``up`` / ``down`` /
   ``both``). The direction filter sits here rather than after k-of-n so that points of the wrong sign
   never count towards k. NaN scores (missing buckets) never flag.
2. :func:`k_of_n_step`: a candidate survives only if at least ``k`` of the ``n`` points ending at it
   (or of any window of ``n`` points containing it) are candidates of the same sign.
3. :func:`noise_floor_step`: minimum volume, minimum absolute effect and minimum relative effect.
4. :func:`suppression_step`: nothing flags inside the ``suppress`` intervals.
5. :func:`merge_runs`: consecutive flagged points of one sign become one :class:`~detectors.base.Anomaly`,
   classified by :func:`classify_run` as ``level_shift`` when it lasts ``shift_min_points`` or more with a
   stable magnitude, else ``spike`` (above) or ``dip`` (below).

:func:`evaluate` returns the per-point decision frame (``flag`` and ``reason``) so logs can say why each
point did or did not flag; :func:`apply_rules` goes all the way to anomalies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from detectors.base import Anomaly, AnomalyKind, Direction

__all__ = [
    "FLAGGED",
    "PostRules",
    "apply_rules",
    "classify_run",
    "evaluate",
    "k_of_n_step",
    "merge_runs",
    "noise_floor_step",
    "scores_to_anomalies",
    "suppression_step",
    "threshold_step",
]

#: Reason of a point that passed every step.
FLAGGED = "flagged"


@dataclass(frozen=True)
class PostRules:
    """Hyper-parameters of the post-rules (see the module docstring for their order).

    Attributes:
        threshold: Minimum ``|score|`` in sigmas.
        direction: ``"up"``, ``"down"`` or ``"both"``.
        k: Minimum number of candidates among ``n`` consecutive points.
        n: Window of the k-of-n rule (``k = n = 1`` disables it).
        min_volume: Points with ``volume < min_volume`` never flag (NaN volume passes when 0).
        min_abs_effect: Minimum ``|observed - expected|``.
        min_rel_effect: Minimum ``|observed - expected| / |expected|``.
        suppress: Inclusive UTC ``(start, end)`` intervals where nothing flags.
        shift_min_points: A run this long or longer may be a level shift.
        shift_max_spread: Level shift when the run's deviations have ``MAD / |median| <= shift_max_spread``.
    """

    threshold: float = 4.0
    direction: Direction = "both"
    k: int = 1
    n: int = 1
    min_volume: float = 0.0
    min_abs_effect: float = 0.0
    min_rel_effect: float = 0.0
    suppress: tuple[tuple[Any, Any], ...] = ()
    shift_min_points: int = 6
    shift_max_spread: float = 0.5

    def __post_init__(self) -> None:
        if self.direction not in ("up", "down", "both"):
            raise ValueError(f"direction must be 'up', 'down' or 'both', got {self.direction!r}")
        if not 1 <= self.k <= self.n:
            raise ValueError(f"k-of-n rule needs 1 <= k <= n, got k={self.k}, n={self.n}")
        if self.threshold <= 0:
            raise ValueError(f"threshold must be > 0 sigmas, got {self.threshold}")

    def replace(self, **changes: Any) -> PostRules:
        """A copy with ``changes`` applied (validated again)."""
        return replace(self, **changes)


def threshold_step(score: np.ndarray, *, threshold: float, direction: Direction) -> np.ndarray:
    """Per-point reason after the threshold and direction: ``FLAGGED`` or why not."""
    reason = np.full(score.shape, FLAGGED, dtype=object)
    with np.errstate(invalid="ignore"):
        reason[np.abs(score) < threshold] = f"|score| < {threshold:g}"
        if direction == "up":
            reason[(score < 0) & (reason == FLAGGED)] = "direction: only up"
        elif direction == "down":
            reason[(score > 0) & (reason == FLAGGED)] = "direction: only down"
    reason[np.isnan(score)] = "missing value or score"
    return reason


def k_of_n_step(reason: np.ndarray, score: np.ndarray, *, k: int, n: int) -> np.ndarray:
    """Keep a flagged point only if some window of ``n`` points containing it has ``>= k`` flagged points
    of its sign."""
    if k <= 1:
        return reason
    out = reason.copy()
    flagged = reason == FLAGGED
    for sign in (1.0, -1.0):
        hits = (flagged & (np.sign(score) == sign)).astype(int)
        counts = np.convolve(hits, np.ones(n, dtype=int))[: len(hits)]  # counts[i] = hits in (i-n, i]
        window_ok = counts >= k  # window ending at i satisfies the rule
        ok = np.zeros(len(hits), dtype=bool)
        for lag in range(n):  # a point belongs to windows ending at i .. i+n-1
            ok[: len(hits) - lag] |= window_ok[lag:]
        out[(hits == 1) & ~ok] = f"fewer than {k} of {n} points beyond threshold"
    return out


def noise_floor_step(
    reason: np.ndarray,
    frame: pd.DataFrame,
    *,
    min_volume: float,
    min_abs_effect: float,
    min_rel_effect: float,
) -> np.ndarray:
    """Turn off flagged points below the volume, absolute-effect or relative-effect floors."""
    out = reason.copy()
    flagged = out == FLAGGED
    effect = np.abs(frame["observed"].to_numpy(dtype=float) - frame["expected"].to_numpy(dtype=float))
    expected = np.abs(frame["expected"].to_numpy(dtype=float))
    if min_volume > 0:
        volume = frame["volume"].to_numpy(dtype=float) if "volume" in frame else np.full(len(frame), np.nan)
        low = flagged & ~(volume >= min_volume)
        out[low] = f"volume < {min_volume:g}"
        flagged &= ~low
    if min_abs_effect > 0:
        small = flagged & (effect < min_abs_effect)
        out[small] = f"|observed - expected| < {min_abs_effect:g}"
        flagged &= ~small
    if min_rel_effect > 0:
        with np.errstate(divide="ignore", invalid="ignore"):
            relative = np.where(expected > 0, effect / expected, np.inf)
        small = flagged & (relative < min_rel_effect)
        out[small] = f"relative effect < {min_rel_effect:g}"
    return out


def suppression_step(
    reason: np.ndarray, index: pd.DatetimeIndex, suppress: Sequence[tuple[Any, Any]]
) -> np.ndarray:
    """Turn off flagged points inside any inclusive ``(start, end)`` suppression interval."""
    out = reason.copy()
    for start, end in suppress:
        lo, hi = pd.Timestamp(start), pd.Timestamp(end)
        inside = (index >= lo) & (index <= hi) & (out == FLAGGED)
        out[inside] = f"suppressed {lo.isoformat()}..{hi.isoformat()}"
    return out


def evaluate(scores: pd.DataFrame, rules: PostRules) -> pd.DataFrame:
    """The per-point decision frame: the score columns plus ``flag`` (bool) and ``reason`` (str)."""
    score = scores["score"].to_numpy(dtype=float)
    reason = threshold_step(score, threshold=rules.threshold, direction=rules.direction)
    reason = k_of_n_step(reason, score, k=rules.k, n=rules.n)
    reason = noise_floor_step(
        reason,
        scores,
        min_volume=rules.min_volume,
        min_abs_effect=rules.min_abs_effect,
        min_rel_effect=rules.min_rel_effect,
    )
    index = pd.DatetimeIndex(scores.index)
    reason = suppression_step(reason, index, rules.suppress)
    decisions = scores.copy()
    decisions["flag"] = reason == FLAGGED
    decisions["reason"] = pd.array(reason.astype(str), dtype="string")
    return decisions


def classify_run(deviation: np.ndarray, *, min_points: int, max_spread: float) -> tuple[AnomalyKind, str]:
    """Kind of a run of same-sign flagged deviations (``observed - expected``) and the reason.

    A run of ``min_points`` or more whose deviations are stable (``MAD / |median| <= max_spread``) is a
    level shift; anything else is a spike (positive) or a dip (negative).
    """
    median = float(np.median(deviation))
    basic: AnomalyKind = "spike" if median > 0 else "dip"
    if len(deviation) < min_points:
        return basic, f"{basic}: {len(deviation)} point(s) < {min_points} for a level shift"
    spread = float(np.median(np.abs(deviation - median)) / abs(median)) if median != 0 else np.inf
    if spread <= max_spread:
        return "level_shift", f"level shift: {len(deviation)} points of one sign, spread {spread:.2f}"
    return basic, f"{basic}: {len(deviation)} points but unstable magnitude (spread {spread:.2f})"


def merge_runs(decisions: pd.DataFrame, rules: PostRules, *, detector: str = "") -> list[Anomaly]:
    """Merge consecutive flagged points of one sign into anomalies (see :func:`classify_run`)."""
    flag = decisions["flag"].to_numpy(dtype=bool)
    sign = np.sign(decisions["score"].to_numpy(dtype=float))
    anomalies: list[Anomaly] = []
    i = 0
    while i < len(flag):
        if not flag[i]:
            i += 1
            continue
        j = i
        while j + 1 < len(flag) and flag[j + 1] and sign[j + 1] == sign[i]:
            j += 1
        run = decisions.iloc[i : j + 1]
        observed = run["observed"].to_numpy(dtype=float)
        expected = run["expected"].to_numpy(dtype=float)
        scores = run["score"].to_numpy(dtype=float)
        kind, why = classify_run(
            observed - expected, min_points=rules.shift_min_points, max_spread=rules.shift_max_spread
        )
        if kind == "level_shift":
            obs, exp, sc = float(np.median(observed)), float(np.median(expected)), float(np.median(scores))
        else:
            peak = int(np.argmax(np.abs(scores)))
            obs, exp, sc = float(observed[peak]), float(expected[peak]), float(scores[peak])
        anomalies.append(
            Anomaly(
                start=pd.Timestamp(run.index[0]),
                end=pd.Timestamp(run.index[-1]),
                kind=kind,
                observed=obs,
                expected=exp,
                score=sc,
                detector=detector,
                reason=f"|score| >= {rules.threshold:g} ({sc:+.1f}); {why}",
            )
        )
        i = j + 1
    return anomalies


def apply_rules(scores: pd.DataFrame, rules: PostRules, *, detector: str = "") -> list[Anomaly]:
    """Run every post-rule on a score frame and return the anomalies."""
    return merge_runs(evaluate(scores, rules), rules, detector=detector)


def scores_to_anomalies(scores: pd.DataFrame, *, threshold: float, detector: str = "") -> list[Anomaly]:
    """Threshold-only shortcut: ``apply_rules`` with default rules and this ``threshold``."""
    return apply_rules(scores, PostRules(threshold=threshold), detector=detector)
