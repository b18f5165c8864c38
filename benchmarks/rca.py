"""Root-cause localization benchmark: F1 of :func:`detectors.slicer.localize` on seeded synthetic cases.

Cases follow the Squeeze / RiskLoc protocol (see :mod:`detectors.rca_synthetic`): one timestamp, a full leaf
cube, 1-3 root-cause elements at layer 1-3. A prediction is right only on an exact element match (a parent or
a child of the true element counts as wrong); F1 is micro-averaged over the cases of a cell. Noise levels
rotate over the cases of a cell. Time is the wall time of ``localize`` alone.

Run: ``.venv/bin/python benchmarks/rca.py --cases 5``. The last line printed is ``RCA F1: <f1>`` (all cases,
additive and ratio together).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

from detectors.rca_synthetic import CaseKind, make_case
from detectors.slicer import format_elements, localize, parse_elements

NOISE_LEVELS = (0.0, 0.02, 0.05, 0.1)


def _key(element: dict[str, str]) -> frozenset[tuple[str, str]]:
    return frozenset(element.items())


def f1(tp: int, fp: int, fn: int) -> float:
    """Micro F1 from counts (1.0 when there is nothing to find and nothing was found)."""
    return 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)


def run(kind: CaseKind, cases: int, cardinalities: Sequence[int], seed0: int, verbose: bool) -> tuple[
        int, int, int, list[float]]:
    """Run every (layer, n_causes) cell for one kind; print per-cell F1; return totals and times."""
    tp_all = fp_all = fn_all = 0
    times: list[float] = []
    print(f"{kind}: {cases} cases per cell, cube {'x'.join(map(str, cardinalities))}")
    for layer in (1, 2, 3):
        for n_causes in (1, 2, 3):
            tp = fp = fn = 0
            for i in range(cases):
                seed = seed0 + 1000 * layer + 100 * n_causes + i
                case = make_case(seed, layer=layer, n_causes=n_causes, kind=kind, cardinalities=cardinalities,
                                 noise=NOISE_LEVELS[i % len(NOISE_LEVELS)])
                start = time.perf_counter()
                found = localize(case.leaves, list(case.dimensions), top_k=5)
                times.append(time.perf_counter() - start)
                truth = {_key(e) for e in parse_elements(case.label)}
                pred = {_key(dict(c.element)) for c in found}
                tp += len(truth & pred)
                fp += len(pred - truth)
                fn += len(truth - pred)
                if verbose and truth != pred:
                    print(f"  miss seed={seed} noise={NOISE_LEVELS[i % len(NOISE_LEVELS)]} "
                          f"effects={case.effects} truth={case.label} found={format_elements(found)}")
            print(f"  layer={layer} causes={n_causes}: F1 {f1(tp, fp, fn):.3f} (tp={tp} fp={fp} fn={fn})")
            tp_all, fp_all, fn_all = tp_all + tp, fp_all + fp, fn_all + fn
    print(f"  {kind} F1 {f1(tp_all, fp_all, fn_all):.3f}; time per case mean {sum(times) / len(times):.3f}s "
          f"max {max(times):.3f}s")
    return tp_all, fp_all, fn_all, times


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=4, help="cases per (layer, causes) cell and kind")
    parser.add_argument("--cardinalities", default="10,12,10,25,5", help="cube shape (default: 150,000 leaves)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kinds", default="additive,ratio")
    parser.add_argument("--verbose", action="store_true", help="print every imperfect case")
    args = parser.parse_args(argv)
    cards = [int(c) for c in args.cardinalities.split(",")]
    tp = fp = fn = 0
    for kind in args.kinds.split(","):
        k_tp, k_fp, k_fn, _ = run(kind, args.cases, cards, args.seed, args.verbose)  # type: ignore[arg-type]
        tp, fp, fn = tp + k_tp, fp + k_fp, fn + k_fn
    print(f"RCA F1: {f1(tp, fp, fn):.3f}")


if __name__ == "__main__":
    main()
