"""Root-cause localization benchmark: F1 of :func:`detectors.slicer.localize` on seeded synthetic cases.

Cases follow the Squeeze / RiskLoc protocol (see :mod:`benchmarks.rca_synthetic`): one timestamp, a full leaf
cube (default 10x12x10x25x5 = 150,000 leaves), 1-3 root-cause elements at layer 1-3 with ripple changes of
10-90 %. A prediction is right only on an exact element match (a parent or a child of the true element counts
as wrong); F1 is micro-averaged over cases. Within a cell the cases rotate over leaf noise levels
(:data:`NOISE_LEVELS`, relative standard deviation), every other case observes Poisson counts, and every
third case is sparse (70 % empty leaves, a fifth of them with stray counts against a zero forecast). Time is
that of ``localize`` alone: wall clock and process CPU (on a shared machine, read the CPU figure).

Run: ``.venv/bin/python benchmarks/rca.py --cases 8``. The last line printed is ``RCA F1: <f1>`` (all cases,
additive and ratio together).
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from collections.abc import Sequence

from benchmarks.rca_synthetic import CaseKind, make_case
from detectors.slicer import format_elements, localize, parse_elements

NOISE_LEVELS = (0.0, 0.05, 0.1, 0.2)


def _key(element: dict[str, str]) -> frozenset[tuple[str, str]]:
    return frozenset(element.items())


def f1(counts: Sequence[int]) -> float:
    """Micro F1 from ``(tp, fp, fn)`` (1.0 when there is nothing to find and nothing was found)."""
    tp, fp, fn = counts
    return 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)


def _add(total: list[int], counts: Sequence[int]) -> None:
    for i, value in enumerate(counts):
        total[i] += value


def run(kind: CaseKind, cases: int, cardinalities: Sequence[int], seed0: int, verbose: bool) -> list[int]:
    """Run every (layer, n_causes) cell for one kind, print F1 per cell and per noise level, return counts."""
    total = [0, 0, 0]
    by_noise: dict[float, list[int]] = defaultdict(lambda: [0, 0, 0])
    wall: list[float] = []
    cpu: list[float] = []
    print(f"{kind}: {cases} cases per cell, cube {'x'.join(map(str, cardinalities))}")
    for layer in (1, 2, 3):
        for n_causes in (1, 2, 3):
            cell = [0, 0, 0]
            for i in range(cases):
                seed = seed0 + 1000 * layer + 100 * n_causes + i
                noise = NOISE_LEVELS[i % len(NOISE_LEVELS)]
                sparse = i % 3 == 2
                case = make_case(
                    seed,
                    layer=layer,
                    n_causes=n_causes,
                    kind=kind,
                    cardinalities=cardinalities,
                    noise=noise,
                    count_noise=bool(i % 2),
                    zero_fraction=0.7 if sparse else 0.3,
                    stray_fraction=0.2 if sparse else 0.02,
                )
                start, start_cpu = time.perf_counter(), time.process_time()
                found = localize(case.leaves, list(case.dimensions), top_k=5)
                wall.append(time.perf_counter() - start)
                cpu.append(time.process_time() - start_cpu)
                truth = {_key(e) for e in parse_elements(case.label)}
                pred = {_key(dict(c.element)) for c in found}
                counts = (len(truth & pred), len(pred - truth), len(truth - pred))
                _add(cell, counts)
                _add(by_noise[noise], counts)
                if verbose and truth != pred:
                    print(
                        f"  miss seed={seed} noise={noise} counts={bool(i % 2)} effects={case.effects} "
                        f"truth={case.label} found={format_elements(found)}"
                    )
            print(
                f"  layer={layer} causes={n_causes}: F1 {f1(cell):.3f} (tp={cell[0]} fp={cell[1]} "
                f"fn={cell[2]})"
            )
            _add(total, cell)
    noise_text = ", ".join(f"{noise}: {f1(c):.3f}" for noise, c in sorted(by_noise.items()))
    print(f"  {kind} F1 by noise level: {noise_text}")
    print(
        f"  {kind} F1 {f1(total):.3f}; time per case: wall mean {sum(wall) / len(wall):.3f}s max "
        f"{max(wall):.3f}s, cpu mean {sum(cpu) / len(cpu):.3f}s max {max(cpu):.3f}s"
    )
    return total


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--cases", type=int, default=8, help="cases per (layer, causes) cell and kind")
    parser.add_argument("--cardinalities", default="10,12,10,25,5", help="cube shape (150,000 leaves)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kinds", default="additive,ratio")
    parser.add_argument("--verbose", action="store_true", help="print every imperfect case")
    args = parser.parse_args(argv)
    cards = [int(c) for c in args.cardinalities.split(",")]
    total = [0, 0, 0]
    for kind in args.kinds.split(","):
        _add(total, run(kind, args.cases, cards, args.seed, args.verbose))  # type: ignore[arg-type]
    print(f"RCA F1: {f1(total):.3f}")


if __name__ == "__main__":
    main()
