"""Root-cause localization benchmark: F1 of :func:`detectors.slicer.localize` on synthetic or real cases.

Cases follow the Squeeze / RiskLoc protocol (see :mod:`benchmarks.rca_synthetic`): one timestamp, a full leaf
cube (default 10x12x10x25x5 = 150,000 leaves), 1-3 root-cause elements at layer 1-3 with ripple changes of
10-90 %. A prediction is right only on an exact element match (a parent or a child of the true element counts
as wrong); F1 is micro-averaged over cases. Within a cell the cases rotate over leaf noise levels
(:data:`NOISE_LEVELS`, relative standard deviation), every other case observes Poisson counts, and every
third case is sparse (70 % empty leaves, a fifth of them with stray counts against a zero forecast). Time is
that of ``localize`` alone: wall clock and process CPU (on a shared machine, read the CPU figure).

The synthetic suite also runs RS-like cases (:func:`benchmarks.rca_synthetic.make_rs_case`: a ratio metric
over 3-5 small dimensions whose per-leaf forecasts are the mean of 4 previous noisy minutes, 1-2 causes) and
noise-only cases of both generators, which should return nothing.

With ``--data DIR`` it scores the Squeeze B0 cases of ``DIR`` instead (``B_cuboid_layer_<L>_n_ele_<E>/``
folders of ``<timestamp>.csv.gz`` leaves with ``real``, ``predict`` and dimension columns, plus
``injection_info.csv`` with the true ``set``; see the folder's README): micro-F1 per setting and overall,
for each half of the cases (even / odd position of the case within its setting, by timestamp) and for all.
Design and defaults are chosen on the even half; the odd half is the held-out check.

Run: ``.venv/bin/python benchmarks/rca.py --cases 8`` or ``... --data ../shared/data/rca-b0-dev``. The last
line printed is ``RCA F1: <f1>`` (synthetic: all additive and ratio cases together; data: all cases).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path

import pandas as pd

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.rca_synthetic import CaseKind, make_case, make_rs_case
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


def run_rs(cases: int, seed0: int, verbose: bool) -> list[int]:
    """RS-like ratio cases with noisy 4-minute-mean forecasts: 1 or 2 causes, plus noise-only cases."""
    total = [0, 0, 0]
    quiet = noise_only = 0
    wall: list[float] = []
    for i in range(cases):
        seed = seed0 + 50_000 + i
        n_causes = (0, 1, 1, 2, 2, 1)[i % 6]
        case = make_rs_case(seed, n_causes=n_causes)
        start = time.perf_counter()
        found = localize(case.leaves, list(case.dimensions), top_k=5)
        wall.append(time.perf_counter() - start)
        truth = {_key(dict(e)) for e in case.causes}
        pred = {_key(dict(c.element)) for c in found}
        _add(total, (len(truth & pred), len(pred - truth), len(truth - pred)))
        if n_causes == 0:
            noise_only += 1
            quiet += not pred
        if verbose and truth != pred:
            print(
                f"  miss seed={seed} leaves={len(case.leaves)} truth={case.label} "
                f"found={format_elements(found)}"
            )
    print(
        f"RS-like ({cases} cases): F1 {f1(total):.3f} (tp={total[0]} fp={total[1]} fn={total[2]}); "
        f"noise-only cases quiet {quiet}/{noise_only}; time per case mean {sum(wall) / len(wall):.3f}s"
    )
    return total


def run_noise_only(cases: int, cardinalities: Sequence[int], seed0: int) -> int:
    """Synthetic cases whose one cause moves by a factor of ``1 +- 1e-9`` (noise only): count quiet ones."""
    quiet = 0
    for i in range(cases):
        kind: CaseKind = "additive" if i % 2 == 0 else "ratio"
        case = make_case(
            seed0 + 90_000 + i,
            layer=1,
            n_causes=1,
            kind=kind,
            cardinalities=cardinalities,
            noise=NOISE_LEVELS[i % len(NOISE_LEVELS)],
            count_noise=bool((i // 2) % 2),
            min_magnitude=1e-9,
            max_magnitude=1e-9,
        )
        quiet += not localize(case.leaves, list(case.dimensions), top_k=5)
    print(f"noise-only synthetic cases: {quiet}/{cases} return nothing")
    return quiet


def load_b0(root: Path) -> Iterator[tuple[str, int, str, pd.DataFrame]]:
    """Yield ``(setting, index within setting, true label, leaves)`` of every B0 case under ``root``.

    Leaves get the slicer's column names (``actual`` = ``real``, ``expected`` = ``predict``).

    Raises:
        FileNotFoundError: ``root`` holds no ``B_cuboid_layer_*`` folder.
    """
    settings = sorted(p for p in root.glob("B_cuboid_layer_*") if p.is_dir())
    if not settings:
        raise FileNotFoundError(f"{root}: no B_cuboid_layer_* folders; pass the folder of the B0 cases")
    for setting in settings:
        info = pd.read_csv(setting / "injection_info.csv").sort_values("timestamp").reset_index(drop=True)
        for index, row in info.iterrows():
            leaves = pd.read_csv(setting / f"{row['timestamp']}.csv.gz")
            leaves = leaves.rename(columns={"real": "actual", "predict": "expected"})
            yield setting.name, int(str(index)), str(row["set"]), leaves


def run_b0(root: Path, verbose: bool) -> list[int]:
    """Micro-F1 per setting and overall on the B0 cases of ``root``, for the even, odd and all cases."""
    counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    wall: list[float] = []
    cpu: list[float] = []
    for setting, index, label, leaves in load_b0(root):
        dims = [c for c in leaves.columns if c not in ("actual", "expected")]
        start, start_cpu = time.perf_counter(), time.process_time()
        found = localize(leaves, dims)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        truth = {_key(e) for e in parse_elements(label)}
        pred = {_key(dict(c.element)) for c in found}
        case_counts = (len(truth & pred), len(pred - truth), len(truth - pred))
        half = "even" if index % 2 == 0 else "odd"
        for key in ((half, setting), (half, "overall"), ("all", setting), ("all", "overall")):
            _add(counts[key], case_counts)
        if verbose and truth != pred:
            print(f"  miss {setting} #{index} ({half}) truth={label} found={format_elements(found)}")
    names = [*sorted({s for _, s in counts if s != "overall"}), "overall"]
    print(f"B0 micro-F1 ({root}): {len(wall)} cases")
    print(f"  {'setting':28s} {'even':>6s} {'odd':>6s} {'all':>6s}   (tp/fp/fn all)")
    for name in names:
        row = " ".join(f"{f1(counts[(h, name)]):6.3f}" for h in ("even", "odd", "all"))
        tp, fp, fn = counts[("all", name)]
        print(f"  {name:28s} {row}   ({tp}/{fp}/{fn})")
    print(
        f"  time per case: wall mean {sum(wall) / len(wall):.3f}s max {max(wall):.3f}s, "
        f"cpu mean {sum(cpu) / len(cpu):.3f}s max {max(cpu):.3f}s"
    )
    return counts[("all", "overall")]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--cases", type=int, default=8, help="cases per (layer, causes) cell and kind")
    parser.add_argument("--cardinalities", default="10,12,10,25,5", help="cube shape (150,000 leaves)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kinds", default="additive,ratio")
    parser.add_argument("--rs-cases", type=int, default=60, help="RS-like cases (0 to skip)")
    parser.add_argument("--noise-cases", type=int, default=8, help="noise-only synthetic cases (0 to skip)")
    parser.add_argument("--data", type=Path, help="folder of Squeeze B0 cases: score them instead")
    parser.add_argument("--verbose", action="store_true", help="print every imperfect case")
    args = parser.parse_args(argv)
    if args.data is not None:
        print(f"RCA F1: {f1(run_b0(args.data, args.verbose)):.3f}")
        return
    cards = [int(c) for c in args.cardinalities.split(",")]
    if args.rs_cases:
        run_rs(args.rs_cases, args.seed, args.verbose)
    if args.noise_cases:
        run_noise_only(args.noise_cases, cards, args.seed)
    total = [0, 0, 0]
    for kind in args.kinds.split(","):
        _add(total, run(kind, args.cases, cards, args.seed, args.verbose))  # type: ignore[arg-type]
    print(f"RCA F1: {f1(total):.3f}")


if __name__ == "__main__":
    main()
