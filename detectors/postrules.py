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
point did or did not flag; :func:`apply_rules` goes all the way to anomalies. :func:`evaluate_batch` runs the
same steps on a (series x time) grid.

Two rules sit on top of the per-point steps, for a monitored series scored tick after tick:

* :func:`confirm_level_shifts`: a persistent deviation too small for the threshold (+1.5 sigma for hours) is
  confirmed by the online CUSUM of :mod:`detectors.online` over the :data:`LEVEL_SHIFT_CONTEXT` buckets
  before each bucket and the bucket itself, on the scores divided by the spread they show in that span
  (:func:`score_noise`: a detector whose band is wider than its noise no longer delays the confirmation by
  hours). A burst that is over by the time the CUSUM tips is a spike, not a shift, and a shift clears the
  noise floors over its buckets since it began. Each bucket's verdict depends on that trailing span only,
  so scoring a window at once, bucket by bucket, or over history in a backtest gives the same decisions.
* :func:`holiday_floor`: on a public holiday the model never saw, an anomaly must move the metric by at
  least :data:`HOLIDAY_MIN_REL_EFFECT` (relative) to flag.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from detectors.base import Anomaly, AnomalyKind, Direction

__all__ = [
    "FLAGGED",
    "HOLIDAY_MIN_REL_EFFECT",
    "LEVEL_SHIFT_CONTEXT",
    "LevelShifts",
    "PostRules",
    "apply_rules",
    "classify_run",
    "confirm_level_shifts",
    "evaluate",
    "evaluate_batch",
    "holiday_floor",
    "k_of_n_step",
    "merge_runs",
    "noise_floor_step",
    "score_noise",
    "scores_to_anomalies",
    "suppression_step",
    "threshold_step",
]

#: Reason of a point that passed every step.
FLAGGED = "flagged"
#: Buckets before each scored bucket that the level-shift CUSUM reads (a week of hourly buckets).
LEVEL_SHIFT_CONTEXT = 168
#: The level-shift CUSUM sharpens scores by at most ``1 / NOISE_MIN`` (see :func:`score_noise`).
NOISE_MIN = 0.5
#: A bucket is confirmed when its span's CUSUM alarmed at it or in the buckets just before it, and the level
#: held since (the alarm of a span can move by a bucket or two as the noise estimate moves).
CONFIRM_WITHIN = 3
#: The bucket a level shift is confirmed at stands at least this fraction of the way to the new level.
LAST_AT_LEAST = 0.25
#: A confirmed level stands at least this far (in noise-scaled sigmas) off the model's expectation.
SHIFT_MIN_LEVEL = 0.5
#: Consecutive scores averaged when the CUSUM measures the noise (see :func:`score_noise`).
NOISE_BLOCK = 6
#: Scores a span needs before its own spread is trusted (a day of hourly buckets).
NOISE_MIN_POINTS = 24
#: On a public holiday absent from the training history the model cannot know the holiday's effect, so an
#: anomaly there must move the metric by at least this much (relative) to flag.
HOLIDAY_MIN_REL_EFFECT = 0.5


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


def evaluate_batch(
    observed: np.ndarray,
    expected: np.ndarray,
    score: np.ndarray,
    volume: np.ndarray,
    rules: PostRules,
    index: pd.DatetimeIndex,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`evaluate` of many series on one time grid: ``(flag, reason)``, each of shape (series, time).

    The same step functions run on the flattened grid (threshold, noise floors and suppression are per
    point); the k-of-n step, which looks along time, runs per series.
    """
    shape = score.shape
    reason = threshold_step(score.ravel(), threshold=rules.threshold, direction=rules.direction)
    if rules.k > 1 and shape[0]:
        rows = reason.reshape(shape)
        reason = np.concatenate(
            [k_of_n_step(rows[i], score[i], k=rules.k, n=rules.n) for i in range(shape[0])]
        )
    reason = noise_floor_step(
        reason,
        pd.DataFrame({"observed": observed.ravel(), "expected": expected.ravel(), "volume": volume.ravel()}),
        min_volume=rules.min_volume,
        min_abs_effect=rules.min_abs_effect,
        min_rel_effect=rules.min_rel_effect,
    )
    if rules.suppress:
        reason = suppression_step(
            reason, pd.DatetimeIndex(np.tile(index.to_numpy(), shape[0])), rules.suppress
        )
    reason = reason.reshape(shape)
    return reason == FLAGGED, reason


@dataclass(frozen=True)
class LevelShifts:
    """Level shifts confirmed at each window bucket; arrays of shape (series, window).

    Attributes:
        confirmed: True where the CUSUM confirmed a shift that passes the direction and effect rules.
        start: Column (of the input arrays, context included) where the confirmed shift began; -1 elsewhere.
        effect: Mean relative deviation since the start (``(observed - expected) / expected``); NaN elsewhere.
    """

    confirmed: np.ndarray
    start: np.ndarray
    effect: np.ndarray


def _holds(since: np.ndarray, old: float, new: float) -> bool:
    """The alarm bucket and those after it are, on average, nearer the new level than the old one: a burst
    that is already over when the CUSUM confirms it (a 4-hour spike tips the CUSUM at the next, ordinary,
    bucket) is a spike, not a level shift. The last of them, the bucket being confirmed, stands at least
    :data:`LAST_AT_LEAST` of the way to the new level: the first bucket after a raid is back, and
    confirming it (the CUSUM alarmed two buckets earlier, in the raid) named the raid a level shift.
    Nothing observed: it holds."""
    seen = since[~np.isnan(since)]
    if not seen.size or new == old:
        return True
    if (float(seen[-1]) - old) / (new - old) < LAST_AT_LEAST:  # the bucket confirmed is itself back
        return False
    return bool((float(seen.mean()) - old) / (new - old) >= 0.5)


def _robust_spread(rows: np.ndarray) -> np.ndarray:
    centre = np.nanmedian(rows, axis=1)
    return np.asarray(1.4826 * np.nanmedian(np.abs(rows - centre[:, None]), axis=1))


def score_noise(
    spans: np.ndarray, *, min_points: int = NOISE_MIN_POINTS, block: int = NOISE_BLOCK
) -> np.ndarray:
    """The spread of the scores of each span (row), in sigmas, as the level-shift CUSUM reads it. Pure.

    A detector's sigma is a prediction band: wide where the model is unsure (few events, a young model),
    so its scores can be much calmer than N(0, 1) (the demo's DE violation rate: a robust spread of 0.35).
    A CUSUM on such scores confirms a shift late (a shift of 1.1 sigma per bucket took 15 buckets). The
    spread is the larger of the scores' robust spread (``1.4826 * MAD``, robust to the spikes and shifts in
    the span) and that of means of ``block`` consecutive scores times ``sqrt(block)``: the two agree on
    independent scores, and where the model is wrong for hours at a time (correlated scores) the second is
    larger, so a slow model error is not sharpened into a shift. It is clipped to ``[NOISE_MIN, 1]``:
    scores are only ever sharpened, never blunted, and never by more than ``1 / NOISE_MIN``. A span with
    fewer than ``min_points`` scores keeps a spread of 1.
    """
    values = np.asarray(spans, dtype=float)
    out = np.ones(values.shape[0])
    if values.shape[1] < block:
        return out
    seen = (~np.isnan(values)).sum(axis=1)
    enough = seen >= min_points
    if not enough.any():
        return out
    rows = values[enough]
    means = sliding_window_view(rows, block, axis=1).mean(axis=-1)  # NaN where a score is missing
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        spread = np.maximum(_robust_spread(rows), _robust_spread(means) * np.sqrt(block))
    out[enough] = np.clip(np.nan_to_num(spread, nan=1.0), NOISE_MIN, 1.0)
    return out


def confirm_level_shifts(
    observed: np.ndarray,
    expected: np.ndarray,
    score: np.ndarray,
    rules: PostRules,
    *,
    context: int = LEVEL_SHIFT_CONTEXT,
    max_columns: int = 250_000,
    volume: np.ndarray | None = None,
) -> LevelShifts:
    """Level shifts confirmed by the online CUSUM at each bucket after the first ``context`` columns.

    The inputs are (series, context + window) arrays: the ``context`` buckets before the window (NaN where
    the series had no row) then the window. For window bucket ``j`` the CUSUM runs over its own trailing
    ``context`` buckets and itself, so the verdict of a bucket never depends on where a scoring call began.
    The CUSUM reads the scores divided by their own spread in the span (:func:`score_noise`), and a bucket
    is confirmed when its span's CUSUM alarmed at it or in the :data:`CONFIRM_WITHIN` buckets just before,
    and the alarm bucket and those after it hold the new level. A confirmation counts when, since the
    estimated start, the mean deviation has the wanted ``direction`` and clears ``min_rel_effect`` and
    ``min_abs_effect``, and the mean ``volume`` (same shape as ``observed``; the noise floors' volume)
    clears ``min_volume``: the noise floors of a shift are those of its buckets taken together. A window
    bucket without a score (no observation) is never confirmed.
    """
    from detectors.online import online_cusum

    series, total = score.shape
    width = max(total - context, 0)
    confirmed = np.zeros((series, width), dtype=bool)
    start = np.full((series, width), -1, dtype=int)
    effect = np.full((series, width), np.nan)
    if width == 0 or series == 0:
        return LevelShifts(confirmed, start, effect)
    # One column per (series, window bucket): its trailing span, oldest first.
    spans = sliding_window_view(np.asarray(score, dtype=float), context + 1, axis=1)[:, :width]
    flat = spans.reshape(series * width, context + 1)
    deviation = np.asarray(observed, dtype=float) - np.asarray(expected, dtype=float)
    for first in range(0, flat.shape[0], max_columns):
        chunk = flat[first : first + max_columns]
        scaled = (chunk / score_noise(chunk)[:, None]).T  # (span, columns)
        result = online_cusum(scaled)
        recent = result.alarms[-CONFIRM_WITHIN:]
        for column in np.flatnonzero(recent.any(axis=0)):
            at = scaled.shape[0] - CONFIRM_WITHIN + int(np.flatnonzero(recent[:, column])[-1])
            old_level, new_level = result.expected[at, column], result.level[at, column]
            # the alarm of a CUSUM coming back towards the model's level after a burst it took for a shift
            # is no shift either: a new level stands off the model's expectation, further than the old one
            off = abs(new_level)
            if off < SHIFT_MIN_LEVEL or off <= abs(old_level):
                continue
            if not _holds(scaled[at:, column], old_level, new_level):
                continue
            row, j = divmod(first + int(column), width)
            begin = j + max(int(result.starts[at, column]), 0)
            since = slice(begin, j + context + 1)
            moved, base = deviation[row, since], np.asarray(expected[row, since], dtype=float)
            seen = ~np.isnan(moved) & ~np.isnan(base)
            if not seen.any():
                continue
            mean_moved, mean_base = float(moved[seen].mean()), float(base[seen].mean())
            if (rules.direction == "up" and mean_moved < 0) or (rules.direction == "down" and mean_moved > 0):
                continue
            relative = mean_moved / mean_base if mean_base else np.inf
            if mean_base and abs(relative) < rules.min_rel_effect:
                continue
            if abs(mean_moved) < rules.min_abs_effect:
                continue
            if volume is not None and rules.min_volume > 0:
                held = np.asarray(volume[row, since], dtype=float)
                held = held[~np.isnan(held)]
                if not held.size or held.mean() < rules.min_volume:  # like the floor: no volume fails
                    continue
            confirmed[row, j], start[row, j], effect[row, j] = True, begin, relative
    # a bucket that never arrived is missing data, not the new level (the CUSUM reads past the gap)
    confirmed &= ~np.isnan(np.asarray(score, dtype=float)[:, context:])
    return LevelShifts(confirmed, start, effect)


def holiday_floor(
    decisions: pd.DataFrame,
    country: str | None,
    trained_on: pd.DatetimeIndex,
    *,
    min_rel_effect: float = HOLIDAY_MIN_REL_EFFECT,
) -> pd.DataFrame:
    """Unflag small effects on holidays the model never saw (a pure post-rule with its reason).

    A bucket counts as a holiday when its UTC date, or the date 12 hours either side (regions span time
    zones), is a public holiday of ``country``. A holiday counts as seen when it falls on a training day
    before the last one (the last day may hold only a few hours of it, which does not teach its effect).
    """
    if country is None or decisions.empty or not decisions["flag"].any():
        return decisions
    from detectors.prophet import holiday_names_by_date

    index = pd.DatetimeIndex(decisions.index).tz_convert("UTC").tz_localize(None)
    names: list[set[str]] = [set() for _ in range(len(index))]
    for shift in (-12, 0, 12):
        days = (index + pd.Timedelta(hours=shift)).normalize()
        for i, found in enumerate(holiday_names_by_date(country, pd.DatetimeIndex(days))):
            names[i].update(found)
    if trained_on.size:
        days = pd.DatetimeIndex(trained_on).tz_convert("UTC").tz_localize(None).normalize().unique()
        seen_days = days[days < days.max()]
        seen = {n for found in holiday_names_by_date(country, seen_days) for n in found}
        names = [found - seen for found in names]
    expected = decisions["expected"].to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = np.abs(decisions["observed"].to_numpy(dtype=float) - expected) / np.abs(expected)
    small = np.array([bool(found) for found in names]) & (relative < min_rel_effect)
    unflag = small & decisions["flag"].to_numpy(dtype=bool)
    if not unflag.any():
        return decisions
    out = decisions.copy()
    out.loc[unflag, "flag"] = False
    out.loc[unflag, "reason"] = [
        f"holiday unseen in training ({', '.join(sorted(n))}): effect < {min_rel_effect:.0%}"
        for n, u in zip(names, unflag, strict=True)
        if u
    ]
    return out
