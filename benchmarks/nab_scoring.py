"""The Numenta Anomaly Benchmark (NAB v1.1) scorer, reimplemented from the benchmark's definition.

NAB scores a *streaming* detector that emits an ``anomaly_score`` in [0, 1] for every row of every file:

* rows before the probationary period ``P = min(floor(0.15 n), 0.15 * 5000)`` are ignored (NAB's ``Sweeper``);
* one threshold is chosen for the whole corpus (per profile); rows scoring at or above it are detections;
* in each labelled window ``[l, r]`` of width ``w`` only the earliest detection ``i`` counts, worth
  ``A_TP * sigma(y) / sigma(-1)`` with ``y = -(r - i + 1) / w``; a window without detection costs ``-A_FN``;
* a detection outside every window costs ``A_FP * sigma(y)`` with ``y = |r' - i| / (w' - 1)`` measured from
  the end ``r'`` of the last window (of width ``w'``) before it, or ``-A_FP`` when no window precedes it;
* ``sigma(y) = 2 / (1 + exp(5 y)) - 1``, and ``-1`` for ``y > 3``;
* the corpus total is normalised as ``100 (S - S_null) / (S_perfect - S_null)`` with ``S_perfect = A_TP * N``
  and ``S_null = -A_FN * N`` for ``N`` windows (the null detector never fires).

The threshold search is exact: every distinct score of the corpus is a candidate, as in NAB's
``Sweeper.calcScoreByThreshold``. Scores are first rounded to 12 significant digits (:func:`as_written`), the
precision of the result files NAB scores: without it a detector whose scores crowd just below 1 (``1 - Q(z)``
for large ``z``) gets thresholds NAB cannot see. With it our reimplementation of NAB's Windowed Gaussian
scores 39.65 / 20.87 / 47.41 against the published 39.6 / 20.9 / 47.4 (40.13 / 23.94 / 47.73 at full
precision; ``benchmarks/nab_baselines.py``). Pure functions over numpy arrays; the only I/O is
:func:`load_profiles` and :func:`load_windows`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "SCORE_DIGITS",
    "CorpusResult",
    "CostProfile",
    "FileSweep",
    "NabScoringError",
    "ProfileResult",
    "as_written",
    "file_score",
    "load_profiles",
    "load_windows",
    "normalised_score",
    "optimise_threshold",
    "probationary_length",
    "scaled_sigmoid",
    "score_corpus",
    "sweep_file",
    "window_indices",
]

#: Fraction of each file NAB treats as the probationary (unscored) period.
PROBATION_PERCENT = 0.15

#: Significant digits of the anomaly scores in NAB's result files (Python 2 ``str(float)``).
SCORE_DIGITS = 12


class NabScoringError(ValueError):
    """Inputs the scorer cannot use (unknown window timestamps, scores outside [0, 1], length mismatch)."""


@dataclass(frozen=True)
class CostProfile:
    """Weights of one NAB application profile (``config/profiles.json``)."""

    name: str
    tp_weight: float
    fp_weight: float
    fn_weight: float


@dataclass(frozen=True)
class FileSweep:
    """Per-row scoring weights of one file under one profile (rows of the probationary period dropped).

    Attributes:
        rows: positions (in the original file) of the scored rows.
        weights: the value a detection on that row adds to the file score (TP reward or FP cost).
        window: index of the window the row belongs to, ``-1`` outside every window.
        n_windows: number of labelled windows of the file.
    """

    rows: np.ndarray
    weights: np.ndarray
    window: np.ndarray
    n_windows: int


@dataclass(frozen=True)
class ProfileResult:
    """Corpus score of one detector under one profile at the corpus-optimal threshold."""

    profile: str
    threshold: float
    raw: float
    normalised: float
    detected_windows: int
    n_windows: int
    false_positives: int


@dataclass(frozen=True)
class CorpusResult:
    """Results of every profile, keyed by profile name."""

    profiles: dict[str, ProfileResult]


def load_profiles(path: str | Path) -> dict[str, CostProfile]:
    """Read NAB's ``config/profiles.json`` into :class:`CostProfile` objects keyed by name."""
    raw = json.loads(Path(path).read_text())
    profiles: dict[str, CostProfile] = {}
    for name, body in raw.items():
        try:
            matrix = body["CostMatrix"]
            profiles[name] = CostProfile(
                name=name,
                tp_weight=float(matrix["tpWeight"]),
                fp_weight=float(matrix["fpWeight"]),
                fn_weight=float(matrix["fnWeight"]),
            )
        except KeyError as exc:
            raise NabScoringError(
                f"profile {name!r} in {path} lacks CostMatrix key {exc}; "
                "expected tpWeight, fpWeight and fnWeight"
            ) from exc
    return profiles


def load_windows(path: str | Path) -> dict[str, list[tuple[pd.Timestamp, pd.Timestamp]]]:
    """Read ``labels/combined_windows.json``: ``{"<category>/<file>.csv": [(start, end), ...]}``."""
    raw = json.loads(Path(path).read_text())
    return {name: [(pd.Timestamp(a), pd.Timestamp(b)) for a, b in spans] for name, spans in raw.items()}


def as_written(scores: np.ndarray, digits: int = SCORE_DIGITS) -> np.ndarray:
    """Scores as NAB reads them back from its result files: rounded to ``digits`` significant digits."""
    return np.array([float(f"{v:.{digits}g}") for v in np.asarray(scores, dtype=float).tolist()])


def scaled_sigmoid(y: np.ndarray | float) -> np.ndarray:
    """NAB's ``scaledSigmoid``: ``2 / (1 + exp(5 y)) - 1``, and ``-1`` beyond ``y > 3``."""
    arr = np.asarray(y, dtype=float)
    with np.errstate(over="ignore"):
        val = 2.0 / (1.0 + np.exp(5.0 * arr)) - 1.0
    return np.where(arr > 3.0, -1.0, val)


def probationary_length(n_rows: int, probation_percent: float = PROBATION_PERCENT) -> int:
    """Rows at the start of a file that NAB does not score: ``min(floor(p n), p * 5000)``."""
    return int(min(math.floor(probation_percent * n_rows), probation_percent * 5000))


def window_indices(
    timestamps: pd.DatetimeIndex,
    windows: Sequence[tuple[pd.Timestamp, pd.Timestamp]],
    *,
    name: str = "file",
) -> list[tuple[int, int]]:
    """Row positions ``(l, r)`` (inclusive) of each window; its limits must be timestamps of the file.

    As in NAB, a limit is located at the *first* row carrying that timestamp (some NAB files repeat or step
    back a timestamp around daylight-saving changes, so the index is not searched as if sorted).
    """
    stamps = pd.DatetimeIndex(timestamps)
    spans: list[tuple[int, int]] = []
    for start, end in windows:
        left_hits = np.flatnonzero(stamps == pd.Timestamp(start))
        right_hits = np.flatnonzero(stamps == pd.Timestamp(end))
        if left_hits.size == 0 or right_hits.size == 0:
            raise NabScoringError(
                f"window [{start}, {end}] of {name} does not start and end on timestamps of the file; "
                "NAB windows must use the file's own timestamps"
            )
        spans.append((int(left_hits[0]), int(right_hits[0])))
    return sorted(spans)


def sweep_file(n_rows: int, windows: Sequence[tuple[int, int]], profile: CostProfile) -> FileSweep:
    """Weight of a detection on every scored row of a file (NAB's ``Sweeper.calcSweepScore``).

    Args:
        n_rows: length of the file.
        windows: inclusive ``(l, r)`` row positions of the labelled windows, non-overlapping.
        profile: cost weights.
    """
    idx = np.arange(n_rows)
    weights = np.empty(n_rows, dtype=float)
    window = np.full(n_rows, -1, dtype=np.int64)
    max_tp = float(scaled_sigmoid(-1.0))
    # Outside windows: -A_FP unless a window ended before the row (handled below).
    weights[:] = -profile.fp_weight
    spans = sorted(windows)
    for k, (left, right) in enumerate(spans):
        if right < left:
            raise NabScoringError(f"window {k} has end {right} before start {left}")
        width = right - left + 1
        inside = slice(left, right + 1)
        y = -(right - idx[inside] + 1) / width
        weights[inside] = scaled_sigmoid(y) * profile.tp_weight / max_tp
        window[inside] = k
        next_left = spans[k + 1][0] if k + 1 < len(spans) else n_rows
        after = slice(right + 1, next_left)
        if width > 1:
            y_after = np.abs(right - idx[after]) / (width - 1)
            weights[after] = scaled_sigmoid(y_after) * profile.fp_weight
        # A width-1 window gives NAB a division by zero; treat rows after it as plain FPs.
    keep = idx >= probationary_length(n_rows)
    return FileSweep(rows=idx[keep], weights=weights[keep], window=window[keep], n_windows=len(spans))


def file_score(
    scores: np.ndarray, sweep: FileSweep, threshold: float, fn_weight: float
) -> tuple[float, int, int]:
    """Score of one file at ``threshold``: ``(score, detected_windows, false_positive_rows)``."""
    detected = np.asarray(scores, dtype=float)[sweep.rows] >= threshold
    fp_mask = detected & (sweep.window < 0)
    total = float(sweep.weights[fp_mask].sum())
    hits = 0
    for k in range(sweep.n_windows):
        in_window = detected & (sweep.window == k)
        if in_window.any():
            # The earliest detection counts: weights decrease along a window.
            total += float(sweep.weights[in_window][0])
            hits += 1
        else:
            total -= fn_weight
    return total, hits, int(fp_mask.sum())


def optimise_threshold(
    scores: Sequence[np.ndarray], sweeps: Sequence[FileSweep], fn_weight: float
) -> tuple[float, float]:
    """Corpus-optimal threshold and its total score, exact over every distinct score value.

    Mirrors ``Sweeper.calcScoreByThreshold``: rows are swept by decreasing score; a row outside windows adds
    its FP weight, a row inside a window raises that window's value to the best (earliest) detection so far.
    Ties are resolved by recording a total only after the last row of a group of equal scores. When no
    threshold beats "never fire", the threshold returned is just above 1 (``1.1`` as in NAB).
    """
    if len(scores) != len(sweeps):
        raise NabScoringError(f"{len(scores)} score arrays for {len(sweeps)} files")
    all_scores: list[np.ndarray] = []
    all_weights: list[np.ndarray] = []
    all_windows: list[np.ndarray] = []
    offset = 0
    for s, sw in zip(scores, sweeps, strict=True):
        all_scores.append(np.asarray(s, dtype=float)[sw.rows])
        all_weights.append(sw.weights)
        all_windows.append(np.where(sw.window >= 0, sw.window + offset, -1))
        offset += sw.n_windows
    n_windows = offset
    null_total = -fn_weight * n_windows
    if not all_scores or sum(len(a) for a in all_scores) == 0:
        return 1.1, null_total
    s = np.concatenate(all_scores)
    w = np.concatenate(all_weights)
    win = np.concatenate(all_windows)
    order = np.argsort(-s, kind="stable")
    s, w, win = s[order], w[order], win[order]
    delta = np.where(win < 0, w, 0.0)
    in_win = win >= 0
    if in_win.any():
        frame = pd.DataFrame({"win": win[in_win], "w": w[in_win]})
        best = frame.groupby("win")["w"].cummax().to_numpy()
        previous = frame.assign(best=best).groupby("win")["best"].shift(1).to_numpy()
        previous = np.where(np.isnan(previous), -fn_weight, previous)
        delta[in_win] = best - previous
    totals = null_total + np.cumsum(delta)
    last_of_group = np.r_[s[1:] != s[:-1], True]
    candidates = totals[last_of_group]
    thresholds = s[last_of_group]
    k = int(np.argmax(candidates))
    if candidates[k] <= null_total:
        return 1.1, null_total
    return float(thresholds[k]), float(candidates[k])


def normalised_score(total: float, n_windows: int, profile: CostProfile) -> float:
    """``100 (S - S_null) / (S_perfect - S_null)`` with ``S_perfect = A_TP N`` and ``S_null = -A_FN N``."""
    perfect = profile.tp_weight * n_windows
    null = -profile.fn_weight * n_windows
    if perfect == null:
        raise NabScoringError("a corpus without windows cannot be normalised")
    return 100.0 * (total - null) / (perfect - null)


def score_corpus(
    results: Mapping[str, tuple[pd.DatetimeIndex, np.ndarray]],
    windows: Mapping[str, Sequence[tuple[pd.Timestamp, pd.Timestamp]]],
    profiles: Mapping[str, CostProfile],
    *,
    digits: int | None = SCORE_DIGITS,
) -> CorpusResult:
    """Score a detector's output on a corpus under every profile.

    Args:
        results: ``{file: (timestamps, anomaly_scores)}`` for every file of the corpus.
        windows: labelled windows per file (files absent from it have none).
        profiles: cost profiles, e.g. from :func:`load_profiles`.
        digits: significant digits the scores are rounded to first, as in NAB's result files (None: none).
    """
    names = sorted(results)
    spans: dict[str, list[tuple[int, int]]] = {}
    arrays: list[np.ndarray] = []
    for name in names:
        stamps, values = results[name]
        values = np.asarray(values, dtype=float)
        if len(values) != len(stamps):
            raise NabScoringError(f"{name}: {len(values)} scores for {len(stamps)} timestamps")
        if not np.all(np.isfinite(values)) or values.min(initial=0.0) < 0.0 or values.max(initial=0.0) > 1.0:
            raise NabScoringError(f"{name}: anomaly scores must be finite and within [0, 1]")
        spans[name] = window_indices(stamps, windows.get(name, []), name=name)
        arrays.append(as_written(values) if digits is not None else values)
    out: dict[str, ProfileResult] = {}
    for pname, profile in profiles.items():
        sweeps = [sweep_file(len(results[n][1]), spans[n], profile) for n in names]
        threshold, _ = optimise_threshold(arrays, sweeps, profile.fn_weight)
        total, hits, fps = 0.0, 0, 0
        for values, sweep in zip(arrays, sweeps, strict=True):
            score, h, f = file_score(values, sweep, threshold, profile.fn_weight)
            total, hits, fps = total + score, hits + h, fps + f
        n_windows = sum(len(v) for v in spans.values())
        out[pname] = ProfileResult(
            profile=pname,
            threshold=threshold,
            raw=total,
            normalised=normalised_score(total, n_windows, profile),
            detected_windows=hits,
            n_windows=n_windows,
            false_positives=fps,
        )
    return CorpusResult(profiles=out)
