"""Seeded annotated series for the changepoint benchmark, and TCPD's evaluation metrics.

The generator imitates the mix of the TCPD benchmark (van den Burg & Williams, 2020): short to medium series
(tens to ~800 points) with level shifts, variance changes, trend changes, seasonality, autocorrelated noise,
outliers, integer counts, and a good share of series in which nothing changes. Several simulated annotators
label each series: each finds most true changes, places them with a small jitter, and sometimes adds a change
of its own, so the metrics face the same disagreement TCPD's human annotations have.

The metrics follow TCPD's ``analysis/scripts/metrics.py``:

* **F1** (margin 5): the start index 0 is added to every annotation set and to the prediction; precision is
  computed against the union of all annotators' changepoints, recall per annotator then averaged, and
  F1 = 2PR / (P + R). A true changepoint is matched by at most one prediction within the margin.
* **Covering**: for each annotator, sum over its segments ``A`` of ``|A| / N * max_B Jaccard(A, B)`` over the
  predicted segments ``B``; averaged over annotators.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "SCENARIOS",
    "AnnotatedSeries",
    "covering",
    "f_measure",
    "make_dataset",
]

Rng = np.random.Generator


@dataclass(frozen=True)
class AnnotatedSeries:
    """One benchmark series: values, the true changepoints and each annotator's labels."""

    name: str
    scenario: str
    values: np.ndarray
    truth: tuple[int, ...]
    annotations: dict[str, list[int]]


# -- metrics (TCPD) ------------------------------------------------------------------------------------
def _true_positives(truth: set[int], predicted: set[int], margin: int) -> set[int]:
    """True changepoints matched by a distinct prediction within ``margin`` (closest first).

    Iterates ``truth`` in set order, as TCPD's ``true_positives`` does (the order only matters when two true
    changepoints compete for one prediction).
    """
    remaining = set(predicted)
    matched: set[int] = set()
    for tau in truth:
        close = sorted((abs(tau - x), x) for x in remaining if abs(tau - x) <= margin)
        if not close:
            continue
        matched.add(tau)
        remaining.remove(close[0][1])
    return matched


def f_measure(annotations: dict[str, list[int]], predictions: Sequence[int], margin: int = 5) -> float:
    """TCPD's F1: precision against the union of annotations, recall averaged over annotators; 0 counted.

    ``P = |TP(union, X)| / |X|`` and ``R = mean_k |TP(T_k, X)| / |T_k|`` where every set includes the start 0,
    then ``F = 2PR / (P + R)`` (TCPD's ``alpha = 0.5``).
    """
    per_annotator = []
    for cps in annotations.values():
        marks = set(cps)
        marks.add(0)
        per_annotator.append(marks)
    predicted = set(predictions)
    predicted.add(0)
    union: set[int] = set()
    for marks in per_annotator:
        union |= marks
    precision = len(_true_positives(union, predicted, margin)) / len(predicted)
    recall = sum(len(_true_positives(t, predicted, margin)) / len(t) for t in per_annotator) / len(
        per_annotator
    )
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def _segments(cps: Iterable[int], n: int) -> list[tuple[int, int]]:
    bounds = [0, *sorted({c for c in cps if 0 < c < n}), n]
    return list(itertools.pairwise(bounds))


def _cover_single(truth: list[tuple[int, int]], predicted: list[tuple[int, int]], n: int) -> float:
    total = 0.0
    for a0, a1 in truth:
        best = 0.0
        for b0, b1 in predicted:
            inter = max(0, min(a1, b1) - max(a0, b0))
            if inter:
                best = max(best, inter / (max(a1, b1) - min(a0, b0)))
        total += (a1 - a0) * best
    return total / n


def covering(annotations: dict[str, list[int]], predictions: Sequence[int], n: int) -> float:
    """TCPD's segmentation covering, computed per annotator and averaged."""
    predicted = _segments(predictions, n)
    return float(np.mean([_cover_single(_segments(cps, n), predicted, n) for cps in annotations.values()]))


# -- building blocks -----------------------------------------------------------------------------------
def _change_points(rng: Rng, n: int, count: int, gap: int) -> list[int]:
    """``count`` sorted changepoints ``gap`` apart and from both ends (gap capped for short series)."""
    gap = min(gap, max(2, n // (count + 2)))
    for _ in range(200):
        cps = sorted(rng.choice(np.arange(gap, n - gap), size=count, replace=False).tolist())
        if all(b - a >= gap for a, b in itertools.pairwise(cps)):
            return [int(c) for c in cps]
    return [n // 2]


def _piecewise(n: int, cps: list[int], levels: Sequence[float]) -> np.ndarray:
    out = np.empty(n)
    for (a, b), level in zip(_segments(cps, n), levels, strict=True):
        out[a:b] = level
    return out


def _ar1(rng: Rng, n: int, phi: float, scale: float = 1.0) -> np.ndarray:
    eps = rng.normal(0.0, scale * np.sqrt(1 - phi**2), n)
    out = np.empty(n)
    out[0] = rng.normal(0.0, scale)
    for t in range(1, n):
        out[t] = phi * out[t - 1] + eps[t]
    return out


def _shift_levels(rng: Rng, count: int, low: float, high: float) -> list[float]:
    levels = [0.0]
    for _ in range(count):
        levels.append(levels[-1] + float(rng.choice([-1, 1]) * rng.uniform(low, high)))
    return levels


def _annotate(rng: Rng, n: int, truth: list[int], jitter: float, annotators: int = 5) -> dict[str, list[int]]:
    """Simulated annotators: each finds a change with p=0.85, jitters it, and rarely adds one of its own."""
    labels: dict[str, list[int]] = {}
    for k in range(annotators):
        marks: set[int] = set()
        for tau in truth:
            if rng.random() < 0.85:
                marks.add(int(np.clip(tau + round(rng.normal(0.0, jitter)), 1, n - 1)))
        if rng.random() < 0.08:
            marks.add(int(rng.integers(1, n)))
        labels[f"annotator_{k}"] = sorted(marks)
    return labels


# -- scenarios: each returns (values, truth, jitter of the annotators) ---------------------------------
Scenario = Callable[[Rng, int], tuple[np.ndarray, list[int], float]]


def _mean_shift(rng: Rng, n: int) -> tuple[np.ndarray, list[int], float]:
    cps = _change_points(rng, n, int(rng.integers(1, 4)), gap=max(8, n // 10))
    signal = _piecewise(n, cps, _shift_levels(rng, len(cps), 2.0, 5.0))
    return 10 + signal + rng.normal(0, 1, n), cps, 1.0


def _variance_change(rng: Rng, n: int) -> tuple[np.ndarray, list[int], float]:
    cps = _change_points(rng, n, 1, gap=max(15, n // 5))
    ratio = rng.uniform(3.0, 6.0)
    scales = [1.0, ratio] if rng.random() < 0.5 else [ratio, 1.0]
    return 50 + rng.normal(0, 1, n) * _piecewise(n, cps, scales), cps, 2.0


def _trend_change(rng: Rng, n: int) -> tuple[np.ndarray, list[int], float]:
    """Continuous piecewise-linear trend: annotators mark the kink (with more disagreement)."""
    cps = _change_points(rng, n, int(rng.integers(1, 3)), gap=max(10, n // 5))
    slopes = [rng.uniform(-0.5, 0.5)]
    for _ in cps:
        slopes.append(slopes[-1] + float(rng.choice([-1, 1]) * rng.uniform(0.25, 0.6)))
    slope = _piecewise(n, cps, slopes)
    return 100 + np.cumsum(slope) + rng.normal(0, 1, n), cps, 2.5


def _seasonal_shift(rng: Rng, n: int) -> tuple[np.ndarray, list[int], float]:
    period = int(rng.choice([7, 12]))
    cps = _change_points(rng, n, 1, gap=max(2 * period, n // 5))
    season = rng.uniform(1.5, 3.0) * np.sin(2 * np.pi * np.arange(n) / period + rng.uniform(0, 6))
    signal = _piecewise(n, cps, _shift_levels(rng, 1, 3.0, 6.0))
    return 20 + season + signal + rng.normal(0, 1, n), cps, 1.5


def _ar_shift(rng: Rng, n: int) -> tuple[np.ndarray, list[int], float]:
    cps = _change_points(rng, n, int(rng.integers(1, 3)), gap=max(15, n // 6))
    signal = _piecewise(n, cps, _shift_levels(rng, len(cps), 3.5, 6.0))
    return signal + _ar1(rng, n, float(rng.uniform(0.3, 0.7))), cps, 1.5


def _outlier_shift(rng: Rng, n: int) -> tuple[np.ndarray, list[int], float]:
    """Heavy-tailed noise (Student t, 3 dof) plus a few gross outliers around a level shift."""
    cps = _change_points(rng, n, 1, gap=max(10, n // 6))
    signal = _piecewise(n, cps, _shift_levels(rng, 1, 3.0, 6.0))
    noise = rng.standard_t(3, n)
    spikes = rng.choice(n, size=max(1, n // 60), replace=False)
    noise[spikes] += rng.choice([-1, 1], size=spikes.size) * rng.uniform(8, 15, spikes.size)
    return signal + noise, cps, 1.0


def _count_shift(rng: Rng, n: int) -> tuple[np.ndarray, list[int], float]:
    cps = _change_points(rng, n, int(rng.integers(1, 3)), gap=max(10, n // 6))
    base = rng.uniform(3, 40)
    rates = [base]
    for _ in cps:
        rates.append(rates[-1] * float(rng.choice([0.4, 2.5])))
    return rng.poisson(_piecewise(n, cps, rates)).astype(float), cps, 1.0


def _random_walk_jump(rng: Rng, n: int) -> tuple[np.ndarray, list[int], float]:
    """A price-like random walk with one crash or jump that annotators agree on."""
    cps = _change_points(rng, n, 1, gap=max(10, n // 5))
    steps = rng.normal(0, 1, n)
    steps[cps[0]] += rng.choice([-1, 1]) * rng.uniform(12, 20)
    return 200 + np.cumsum(steps), cps, 1.0


def _no_change(rng: Rng, n: int) -> tuple[np.ndarray, list[int], float]:
    """Nothing to annotate: white, AR, heavy-tailed, trending, seasonal, random-walk or count noise."""
    kind = int(rng.integers(0, 7))
    t = np.arange(n)
    if kind == 0:
        values = rng.normal(5, 2, n)
    elif kind == 1:
        values = _ar1(rng, n, float(rng.uniform(0.3, 0.8)))
    elif kind == 2:
        values = rng.standard_t(3, n)
    elif kind == 3:
        values = 0.05 * t * rng.choice([-1, 1]) + rng.normal(0, 1, n)
    elif kind == 4:
        values = 2 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 1, n)
    elif kind == 5:
        values = np.cumsum(rng.normal(0, 0.3, n))
    else:
        values = rng.poisson(rng.uniform(2, 30), n).astype(float)
    return values, [], 1.0


SCENARIOS: dict[str, Scenario] = {
    "mean_shift": _mean_shift,
    "variance": _variance_change,
    "trend": _trend_change,
    "seasonal": _seasonal_shift,
    "ar_noise": _ar_shift,
    "outliers": _outlier_shift,
    "counts": _count_shift,
    "random_walk": _random_walk_jump,
    "no_change": _no_change,
}


def make_dataset(seed: int = 0, per_scenario: int = 12, missing_rate: float = 0.0) -> list[AnnotatedSeries]:
    """Annotated series for every scenario (``no_change`` gets twice as many, as in TCPD's mix).

    Lengths are drawn log-uniformly between 40 and 800 points; ``missing_rate`` blanks values to NaN.
    """
    rng = np.random.default_rng(seed)
    dataset: list[AnnotatedSeries] = []
    for scenario, make in SCENARIOS.items():
        count = per_scenario * (2 if scenario == "no_change" else 1)
        for i in range(count):
            n = int(np.exp(rng.uniform(np.log(40), np.log(800))))
            values, truth, jitter = make(rng, n)
            annotations = _annotate(rng, n, truth, jitter)
            if missing_rate:
                values = values.copy()
                values[rng.random(n) < missing_rate] = np.nan
            dataset.append(AnnotatedSeries(f"{scenario}_{i}", scenario, values, tuple(truth), annotations))
    return dataset
