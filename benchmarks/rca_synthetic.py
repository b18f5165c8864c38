"""Seeded root-cause benchmark cases in the format of Squeeze (Li et al., ISSRE 2019) and RiskLoc (2022).

A case is one timestamp of a multi-dimensional metric: a full leaf cube over 4-5 dimensions (tens of thousands
of leaves) with an observed and an expected (forecast) value per leaf, and the label of the injected root
causes, 1 to 3 elements at layer 1 to 3 written ``a=a1&b=b2;c=c3``.

Protocol:

* **Volumes** are heavy-tailed: each dimension value has a Zipf-like popularity, each leaf a log-normal
  factor, and a fraction of leaves are exactly zero (combinations that never occur), so many leaves are
  small or empty.
* **Forecasts** are the leaf volumes; **observations** are forecasts times ``1 + noise`` (Gaussian relative
  noise on every leaf, root causes included) and a few zero-forecast leaves get stray small counts.
* **Root causes** follow the ripple effect: every leaf of a root-cause element moves by the same factor
  (``1 - x`` or ``1 + x`` with ``x`` log-uniform between ``min_magnitude`` and ``max_magnitude``, so
  magnitudes span several scales). Elements share one cuboid (Squeeze's setting) or not (RiskLoc's),
  carry a minimum share of the volume, are distinct from their parents (a parent always keeps other volume),
  and never contain one another.
* **Ratio (derived) cases** build a rate ``num / den`` from two additive measures: ``den`` is the traffic as
  above, ``num = den * rate`` with a per-leaf base rate of a few percent. A root cause moves the rate
  (numerator only), the traffic (numerator and denominator together, the rate stays flat: a mix effect), or
  both.
* **RS-like cases** (:func:`make_rs_case`) mimic the RobustSpot CDN set used by RiskLoc: a ratio metric
  (failed / all requests) over 3-5 small dimensions, 1-2 causes (or none), and per-leaf forecasts that are
  the mean of the 4 previous minutes, each minute a Poisson draw of an over-dispersed rate, so forecasts of
  small leaves are noisy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Literal

import numpy as np
import pandas as pd

__all__ = ["CaseKind", "RCACase", "make_case", "make_rs_case"]

CaseKind = Literal["additive", "ratio"]
_DIM_NAMES = "abcdefgh"


@dataclass(frozen=True)
class RCACase:
    """One benchmark case.

    Attributes:
        leaves: One row per leaf: dimension columns, then ``actual, expected`` (additive) or
            ``actual_num, expected_num, actual_den, expected_den`` (ratio).
        dimensions: Dimension column names.
        causes: Injected root-cause elements (dimension -> value).
        kind: ``"additive"`` or ``"ratio"``.
        effects: For ratio cases, what each cause moved: ``"rate"``, ``"traffic"`` or ``"both"``.
        seed: Seed the case was generated from.
    """

    leaves: pd.DataFrame
    dimensions: tuple[str, ...]
    causes: tuple[Mapping[str, str], ...]
    kind: CaseKind
    effects: tuple[str, ...]
    seed: int

    @property
    def label(self) -> str:
        """Causes as ``a=a1&b=b2;c=c3``."""
        return ";".join("&".join(f"{k}={v}" for k, v in c.items()) for c in self.causes)


def _cube(cards: Sequence[int]) -> tuple[list[str], list[np.ndarray]]:
    dims = [_DIM_NAMES[i] for i in range(len(cards))]
    grids = np.meshgrid(*[np.arange(c) for c in cards], indexing="ij")
    return dims, [g.ravel() for g in grids]


def _volumes(
    rng: np.random.Generator,
    codes: list[np.ndarray],
    cards: Sequence[int],
    zero_fraction: float,
    total: float,
) -> np.ndarray:
    n = codes[0].size
    log_vol = rng.normal(0.0, 1.0, n)
    for code, card in zip(codes, cards, strict=True):
        exponent = rng.uniform(0.5, 1.3)
        popularity = 1.0 / np.arange(1, card + 1) ** exponent
        log_vol += np.log(rng.permutation(popularity))[code]
    vol = np.exp(log_vol)
    vol[rng.random(n) < zero_fraction] = 0.0
    return vol / vol.sum() * total


def _choose_causes(
    rng: np.random.Generator,
    codes: list[np.ndarray],
    cards: Sequence[int],
    vol: np.ndarray,
    *,
    layer: int,
    n_causes: int,
    min_share: float,
    max_share: float,
    same_cuboid: bool,
) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Pick (dims, values) elements meeting the support, identifiability and non-nesting rules."""
    n_dims = len(cards)
    cuboids = list(combinations(range(n_dims), layer))
    total = vol.sum()
    chosen: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
    fixed_cuboid = cuboids[rng.integers(len(cuboids))]
    for _ in range(200):
        if len(chosen) == n_causes:
            break
        dims = fixed_cuboid if same_cuboid else cuboids[rng.integers(len(cuboids))]
        shape = tuple(cards[d] for d in dims)
        key = np.ravel_multi_index(tuple(codes[d] for d in dims), shape)
        sums = np.bincount(key, vol, math.prod(shape))
        share = sums / total
        eligible = (share >= min_share) & (share <= max_share)
        # Identifiable: every parent (drop one dimension) keeps >= 10 % of its volume outside the element.
        for drop in range(len(dims)):
            rest = tuple(d for i, d in enumerate(dims) if i != drop)
            if not rest:
                eligible &= sums <= 0.9 * total
                continue
            p_shape = tuple(cards[d] for d in rest)
            p_key = np.ravel_multi_index(tuple(codes[d] for d in rest), p_shape)
            p_sums = np.bincount(p_key, vol, math.prod(p_shape))
            element_codes = np.unravel_index(np.arange(sums.size), shape)
            element_parent = np.ravel_multi_index(
                tuple(element_codes[i] for i in range(len(dims)) if i != drop), p_shape
            )
            eligible &= sums <= 0.9 * p_sums[element_parent]
        candidates = np.flatnonzero(eligible)
        if candidates.size == 0:
            continue
        pick = int(rng.choice(candidates))
        values = tuple(int(v) for v in np.unravel_index(pick, shape))
        if any(_nested(dims, values, d2, v2) for d2, v2 in chosen):
            continue
        chosen.append((dims, values))
    return chosen


def _nested(d1: tuple[int, ...], v1: tuple[int, ...], d2: tuple[int, ...], v2: tuple[int, ...]) -> bool:
    e1, e2 = dict(zip(d1, v1, strict=True)), dict(zip(d2, v2, strict=True))
    small, big = (e1, e2) if len(e1) <= len(e2) else (e2, e1)
    return all(big.get(k) == v for k, v in small.items())


def make_case(
    seed: int,
    *,
    layer: int,
    n_causes: int,
    kind: CaseKind = "additive",
    cardinalities: Sequence[int] = (10, 12, 8, 20, 5),
    noise: float = 0.05,
    zero_fraction: float = 0.3,
    stray_fraction: float = 0.02,
    min_magnitude: float = 0.1,
    max_magnitude: float = 0.9,
    min_share: float = 0.005,
    max_share: float = 0.3,
    same_cuboid: bool | None = None,
    count_noise: bool = False,
) -> RCACase:
    """Generate one seeded case (see the module docstring for the protocol).

    Args:
        seed: Seed of the random generator; the same arguments give the same case.
        layer: Number of dimensions fixed by each root-cause element (1 to number of dimensions).
        n_causes: Number of root-cause elements (1 to 3 in the published benchmarks).
        kind: ``"additive"`` or ``"ratio"`` (derived measure num / den).
        cardinalities: Number of values of each dimension (4-5 dimensions, named ``a``, ``b``, ...).
        noise: Standard deviation of the relative noise of every leaf.
        zero_fraction: Share of leaves with zero volume.
        stray_fraction: Share of zero-forecast leaves observed with a small stray count.
        min_magnitude: Smallest relative change ``x`` of a root cause.
        max_magnitude: Largest relative change ``x`` of a root cause (decreases are capped at 0.95).
        min_share: Smallest share of the total volume of a root-cause element.
        max_share: Largest share of the total volume of a root-cause element.
        same_cuboid: All causes in one cuboid (``True``), independent cuboids (``False``) or a coin flip.
        count_noise: Observe integer counts: Poisson draws around the noisy values, so small leaves are
            relatively noisier than big ones (real event counts).

    Raises:
        ValueError: impossible parameters, or no element satisfies the rules for this seed.
    """
    if not 1 <= layer <= len(cardinalities) or n_causes < 1 or kind not in ("additive", "ratio"):
        raise ValueError(f"bad case parameters layer={layer}, n_causes={n_causes}, kind={kind!r}")
    rng = np.random.default_rng(seed)
    dims, codes = _cube(cardinalities)
    n = codes[0].size
    traffic = _volumes(rng, codes, cardinalities, zero_fraction, total=50.0 * n)
    if same_cuboid is None:
        same_cuboid = bool(rng.random() < 0.5)
    chosen = _choose_causes(
        rng,
        codes,
        cardinalities,
        traffic,
        layer=layer,
        n_causes=n_causes,
        min_share=min_share,
        max_share=max_share,
        same_cuboid=same_cuboid,
    )
    if len(chosen) < n_causes:
        raise ValueError(f"seed {seed}: found only {len(chosen)} of {n_causes} eligible root causes")

    frame = pd.DataFrame(
        {
            d: np.array([f"{d}{i + 1}" for i in range(card)])[c]
            for d, c, card in zip(dims, codes, cardinalities, strict=True)
        }
    )
    factor_num = np.ones(n)
    factor_den = np.ones(n)
    effects: list[str] = []
    for cdims, values in chosen:
        inside = np.ones(n, dtype=bool)
        for d, v in zip(cdims, values, strict=True):
            inside &= codes[d] == v
        x = math.exp(rng.uniform(math.log(min_magnitude), math.log(max_magnitude)))
        factor = 1.0 + x if rng.random() < 0.5 else 1.0 - min(x, 0.95)
        effect = "rate" if kind == "additive" else str(rng.choice(["rate", "traffic", "both"]))
        effects.append(effect)
        if effect in ("rate", "both"):
            factor_num[inside] = factor
        if effect in ("traffic", "both"):
            f2 = factor if effect == "traffic" else 1.0 + (x if rng.random() < 0.5 else -min(x, 0.95))
            factor_den[inside] = f2
            factor_num[inside] *= f2

    def observe(expected: np.ndarray, factor: np.ndarray, stray_scale: float) -> np.ndarray:
        actual = expected * factor * (1.0 + rng.normal(0.0, noise, n))
        if count_noise:
            actual = rng.poisson(np.clip(actual, 0.0, None)).astype(float)
        stray = (expected == 0) & (rng.random(n) < stray_fraction)
        actual[stray] = rng.integers(1, 4, int(stray.sum())) * stray_scale
        return np.clip(actual, 0.0, None)

    if kind == "additive":
        frame["actual"] = observe(traffic, factor_num, 1.0)
        frame["expected"] = traffic
    else:
        log_rate = np.log(0.03) + rng.normal(0.0, 0.3, n)
        for code, card in zip(codes, cardinalities, strict=True):
            log_rate += rng.normal(0.0, 0.4, card)[code]
        rate = np.clip(np.exp(log_rate), 0.0, 0.5)
        expected_num = traffic * rate
        frame["actual_num"] = observe(expected_num, factor_num, 0.05)
        frame["expected_num"] = expected_num
        frame["actual_den"] = observe(traffic, factor_den, 1.0)
        frame["expected_den"] = traffic
    causes = tuple(
        {dims[d]: f"{dims[d]}{v + 1}" for d, v in sorted(zip(cdims, values, strict=True))}
        for cdims, values in chosen
    )
    return RCACase(
        leaves=frame, dimensions=tuple(dims), causes=causes, kind=kind, effects=tuple(effects), seed=seed
    )


def _minute(
    rng: np.random.Generator, traffic: np.ndarray, rate: np.ndarray, jitter: float, level: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """One minute of (failures, requests) per leaf: over-dispersed Poisson requests, binomial failures."""
    wobble = level * np.exp(rng.normal(0.0, jitter, traffic.size))
    requests = rng.poisson(traffic * wobble)
    failures = rng.binomial(requests, np.clip(rate * np.exp(rng.normal(0.0, jitter, rate.size)), 0.0, 1.0))
    return failures.astype(float), requests.astype(float)


def make_rs_case(
    seed: int,
    *,
    n_causes: int,
    layer: int | None = None,
    n_dims: int | None = None,
    total_requests: float = 2e5,
    base_rate: float = 0.02,
    jitter: float = 0.1,
    drift: float = 0.03,
    history: int = 4,
    min_share: float = 0.02,
    max_share: float = 0.3,
    min_factor: float = 1.5,
    max_factor: float = 5.0,
) -> RCACase:
    """Generate one seeded RS-like ratio case: noisy forecasts from the mean of previous minutes.

    Each leaf has a heavy-tailed request volume and a base failure rate. A minute observes Poisson requests
    and binomial failures, both with a log-normal per-leaf wobble of ``jitter`` (real traffic is
    over-dispersed), on top of a region-wide traffic level that drifts from minute to minute. Expected
    values are the means of the ``history`` previous minutes, observed values one more minute in which every
    leaf of a root cause has its failure rate multiplied by one factor between ``min_factor`` and
    ``max_factor`` (ripple effect).

    Args:
        seed: Seed of the random generator.
        n_causes: Number of root-cause elements, 0 (noise only) to 3.
        layer: Layer of every cause (default: 1 to 3 at random per cause, at most the number of dimensions).
        n_dims: Number of dimensions (default: 3 to 5 at random).
        total_requests: Expected requests per minute over all leaves.
        base_rate: Typical failure rate of a leaf.
        jitter: Log-normal per-leaf, per-minute relative wobble of requests and rates.
        drift: Standard deviation of the minute-to-minute log change of the region's traffic level.
        history: Minutes averaged into the forecast.
        min_share: Smallest share of requests of a root-cause element.
        max_share: Largest share of requests of a root-cause element.
        min_factor: Smallest factor on the failure rate of a root cause.
        max_factor: Largest factor on the failure rate of a root cause.

    Raises:
        ValueError: impossible parameters, or no element satisfies the rules for this seed.
    """
    if n_causes < 0 or history < 1 or (layer is not None and layer < 1):
        raise ValueError(f"bad RS case parameters n_causes={n_causes}, layer={layer}, history={history}")
    rng = np.random.default_rng(seed)
    n_dims = int(rng.integers(3, 6)) if n_dims is None else n_dims
    cards = [int(c) for c in rng.integers(3, 11, n_dims)]
    dims, codes = _cube(cards)
    n = codes[0].size
    traffic = _volumes(rng, codes, cards, zero_fraction=0.2, total=total_requests)
    log_rate = np.log(base_rate) + rng.normal(0.0, 0.3, n)
    for code, card in zip(codes, cards, strict=True):
        log_rate += rng.normal(0.0, 0.3, card)[code]
    rate = np.clip(np.exp(log_rate), 0.0, 0.5)
    chosen: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
    for _ in range(50):
        if len(chosen) == n_causes:
            break
        cause_layer = min(layer if layer is not None else int(rng.integers(1, 4)), n_dims)
        found = _choose_causes(
            rng,
            codes,
            cards,
            traffic,
            layer=cause_layer,
            n_causes=1,
            min_share=min_share,
            max_share=max_share,
            same_cuboid=True,
        )
        if found and not any(_nested(*found[0], *other) for other in chosen):
            chosen.append(found[0])
    if len(chosen) < n_causes:
        raise ValueError(f"seed {seed}: found only {len(chosen)} of {n_causes} eligible root causes")
    # Region-wide traffic level: a random walk over the minutes (trends the 4-minute mean lags behind).
    levels = np.exp(np.cumsum(rng.normal(0.0, drift, history + 1)))
    past = [_minute(rng, traffic, rate, jitter, levels[t]) for t in range(history)]
    expected_num = np.mean([p[0] for p in past], axis=0)
    expected_den = np.mean([p[1] for p in past], axis=0)
    now_rate = rate.copy()
    effects: list[str] = []
    for cdims, values in chosen:
        inside = np.ones(n, dtype=bool)
        for d, v in zip(cdims, values, strict=True):
            inside &= codes[d] == v
        effects.append("rate")
        now_rate[inside] = np.clip(now_rate[inside] * rng.uniform(min_factor, max_factor), 0.0, 1.0)
    actual_num, actual_den = _minute(rng, traffic, now_rate, jitter, levels[-1])
    frame = pd.DataFrame(
        {
            d: np.array([f"{d}{i + 1}" for i in range(card)])[c]
            for d, c, card in zip(dims, codes, cards, strict=True)
        }
    )
    frame["actual_num"] = actual_num
    frame["expected_num"] = expected_num
    frame["actual_den"] = actual_den
    frame["expected_den"] = expected_den
    causes = tuple(
        {dims[d]: f"{dims[d]}{v + 1}" for d, v in sorted(zip(cdims, values, strict=True))}
        for cdims, values in chosen
    )
    return RCACase(
        leaves=frame, dimensions=tuple(dims), causes=causes, kind="ratio", effects=tuple(effects), seed=seed
    )
