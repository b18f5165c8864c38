"""Root-cause slicer: which segments of a multi-dimensional metric explain an anomalous window.

Input is one row per *leaf* (a full combination of dimension values such as
``category=hate_speech & language=pt & device=ios & tier=partner``) with an observed and an expected value.
An *element* is a conjunction of dimension values at any depth (``category=bullying`` is a layer-1 element,
``category=bullying & language=pt`` a layer-2 element); its value is the sum over its leaves (or
``sum(num) / sum(den)`` for a ratio metric).

Method (a risk-weighted greedy search in the spirit of RiskLoc, Kalander 2022, and Squeeze, Li et al. 2019):

0. **Region-wide level shift.** Forecasts that lag a region-wide trend (a mean of the previous minutes)
   move every leaf alike, which no segment explains; the search runs on forecasts rescaled by that shift
   when every dimension and the typical leaf agree on it (:func:`_common_factor`). Reported values stay
   relative to the forecasts given.
1. **Leaf deviation.** Every leaf gets the bounded deviation score of Squeeze,
   ``d = 2 (actual - expected) / (actual + expected)`` (0 when both are 0). Under the *ripple effect*
   assumption a root-cause element moves all of its leaves by the same factor, so its leaves share one score
   while normal leaves scatter around 0.
2. **Noise scale and leaf signal.** A leaf's noise has a relative part (forecast error, ``sigma`` times its
   mean ``m = (actual + expected) / 2``) and, for event counts (whole-number observations, or
   ``counts=True``), a Poisson counting part: ``variance = (sigma m)^2 + m``. The counting part makes small
   count leaves relatively noisier than big ones without inflating the big ones' noise. ``sigma`` is
   estimated per volume bin (about 250 leaves each) robustly, valid while up to ~70 % of a bin is abnormal:
   from the 30 % quantile of ``|d|``, or for counts as the scale at which 30 % of the leaves fall within the
   central 30 % of their (continuity-corrected) noise distribution, so that tiny leaves (``0`` against a
   forecast of ``0.3`` is ``|d| = 2``) count as uninformative rather than as huge relative noise; clearly
   abnormal count leaves are then set aside and ``sigma`` refitted. Leaves of past windows (``reference``,
   e.g. each baseline week forecast from the others: :func:`reference_from_baseline`) join that estimate:
   with a handful of current leaves (one dimension of three values) the one that moved sets the noise
   itself. Each leaf gets a signed, saturated signal
   ``clip(d / (2 s), -1, 1)`` with ``s`` the relative standard deviation of ``d`` under that model
   (RiskLoc's two-way normal/abnormal partition made soft, so weak but consistent shifts still count).
   Leaves are weighted by their volume capped at the median volume: big leaves count one each, tiny leaves
   (whose deviation is mostly noise, e.g. zero-forecast leaves with stray counts) count little.
3. **Element scores**, for every cuboid (set of dimensions) up to ``max_layer`` at once, with vectorised
   ``numpy.bincount`` group-bys over integer codes (lower layers are marginalized from the top layer's small
   arrays; no Python loop over leaves):

   * *gain* (explanatory power): how much the ripple explanation "every leaf of the element moved by the
     element's ratio ``actual / expected``" lowers the L1 error ``sum |actual - expected|`` over its leaves.
     A child of the true element explains only part of the deviation and a parent mixes in normal leaves it
     then fits badly, so the true element has the largest gain;
   * *risk* (consistency): the element's weighted mean leaf signal divided by the signal a pure ripple of
     its own ratio would give. About 1 when all its leaves moved together (even weakly), about the moved
     fraction when only some children moved strongly: this keeps a parent of several moved children (whose
     pooled gain can exceed each child's) from being named. Elements need ``min_risk``;
   * *significance*: the aggregate deviation must exceed ``z`` times the square root of its leaves' summed
     noise variances. ``z`` is Bonferroni-corrected per layer (each gets an equal part of ``false_alarm``)
     over the elements actually explored, RiskLoc / Squeeze style: every layer-1 element, and a deeper
     element only when one of its parents deviates beyond 2 noise sds. The bar thus grows with the
     candidates searched (a deep cause sits below a few promising parents), not with every element of
     every cuboid, which kept deep combinations out when the cube is large. An element must also explain
     at least 0.2 % of the deviation mass of the clearly abnormal leaves. *Support* (volume share,
     ``min_support``) is off by default: a segment of 0.01 % of the volume can hold all of the deviation.
4. **Greedy search for several causes.** The qualifying element with the largest gain is selected. Its
   shallowest ancestor is named instead when it explains at least 99 % as much, or when the rest of it moved
   too (significant, consistent, same direction, and most sibling segments moved alike), so a whole parent
   that moved is reported once rather than through its children. The selected leaves are removed, the
   per-element sums updated by subtraction, and the search repeats until no element qualifies or ``top_k``
   are found. Layers are searched together, so causes at different layers are found in one pass.

Ratio metrics (violation rate = violations / reports) are localized on both additive parts at once: risk and
significance take the more telling of numerator and denominator, and gains add the two parts, each relative
to its total. This finds segments whose rate moved and segments whose traffic moved. Each reported segment's
contribution to the change of the region's rate is then split exactly into **rate** and **mix** (shift-share):
with ``w`` the segment's share of the denominator and ``R`` rates,
``rate = w_act (R_seg_act - R_seg_exp)`` and ``mix = (w_act - w_exp) (R_seg_exp - R_region_exp)``; over a
partition of the region the two parts sum to ``R_region_act - R_region_exp``. A rate can rise with no segment
getting worse when traffic shifts towards a segment whose rate was always high: that segment then shows a
mix share near its whole deviation share and a rate share near 0.

Ratio mode is chosen when the four columns ``actual_num, expected_num, actual_den, expected_den`` are all
present (or with ``ratio=True``); otherwise the ``actual`` and ``expected`` columns are used. Expected leaf
values usually come from :func:`expected_from_baseline` (baseline shares times the forecast total).

Cost: about 0.15-0.3 s of CPU for 150,000 leaves over 5 dimensions (``benchmarks/rca.py``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import combinations
from statistics import NormalDist
from types import MappingProxyType

import numpy as np
import pandas as pd
from scipy.optimize import brentq
from scipy.special import ndtr

from detectors.errors import DetectorError

__all__ = [
    "RATIO_COLUMNS",
    "InvalidLeavesError",
    "RootCause",
    "expected_from_baseline",
    "format_elements",
    "localize",
    "parse_elements",
    "reference_from_baseline",
]

#: Columns of a ratio metric: numerator and denominator, observed and expected.
RATIO_COLUMNS: tuple[str, str, str, str] = ("actual_num", "expected_num", "actual_den", "expected_den")

_NORMAL_Q = 0.3  # quantile of |d| used for the noise scale
_LEAVES_PER_BIN = 250  # leaves per volume bin of the noise estimate
_MAX_BINS = 16
_MAX_SIGMA = 10.0  # largest relative noise scale of count leaves searched
_TRIM_Z = 3.0  # count leaves beyond this many noise sds are set aside when re-estimating the noise
_TRIM_MASS = 1.0 - 2.0 * NormalDist().cdf(-_TRIM_Z)  # share of a standard normal kept by that trim
_TRIM_ROUNDS = 5
_SIGMA_CONFIDENCE = 1.0  # standard errors of margin on the noise scale (see _sampling_margin)
_MAX_FIT_LEAVES = 2000  # count leaves per volume bin used to fit the relative noise
_NORMAL_Q_Z = 0.385  # P(|Z| < 0.385) = 0.3 for a standard normal Z
_ROWS = 5  # tracked sums per measure: weighted signal, expected, observed, noise variance, weighted cutoff
_SATURATION_Z = 2.0  # a leaf deviating by this many noise scales counts as fully abnormal
_DEVIATION_FLOOR = 0.02  # ... and never less than 2 % (noise-free data)
_REST_Z = 2.0  # significance of the rest of an ancestor (a single test)
_REST_MIN_GAIN = 0.5  # ... the ancestor must explain at least half as much as the pick
_REST_MIN_RATIO = 1 / 3  # ... and its rest move by at least a third of the pick's relative change
_SIBLING_Z = 1.0  # a sibling "moved like the pick" when its deviation is beyond 1 noise sd in that direction
_SIBLING_AGREEMENT = 0.6  # ... and that many of them (capped-volume weight) must have, to name the parent
_ANCESTOR_TOLERANCE = 0.01  # an ancestor within 1 % of the best gain is named instead (succinctness)
_MIN_GAIN_SHARE = 0.002  # an element must explain >= 0.2 % of the abnormal deviation mass
_SCREEN_Z = 2.0  # a parent deviating beyond this many noise sds has its children explored
_SHIFT_AGREEMENT = 0.5  # per-dimension estimates of a region-wide shift agree within half of it


class InvalidLeavesError(DetectorError, ValueError):
    """The leaf table breaks an input rule (missing column, NaN, negative or non-numeric values...)."""


@dataclass(frozen=True)
class RootCause:
    """One segment explaining part of an anomaly.

    Attributes:
        element: Dimension -> value conjunction, in the order of the ``dimensions`` given to :func:`localize`.
        rank: 1 for the segment with the largest absolute deviation share.
        actual: Observed value of the segment (sum, or rate ``sum(num) / sum(den)`` for ratio metrics).
        expected: Expected value of the segment, same unit as ``actual``.
        deviation_share: The segment's contribution to the region's deviation (observed minus expected), as a
            share of it (additive: ``(actual - expected) / (region actual - region expected)``; ratio: the
            segment's ``mix + rate`` contribution to the change of the region's rate). When the region's
            deviation is 0 (opposite causes cancelling) shares are relative to the sum of absolute
            contributions of the reported segments.
        surprise: How surprising the segment's own change is: the Jensen-Shannon divergence between its
            expected and observed share of the region (Adtributor); for ratio metrics the sum over numerator
            and denominator shares. 0 when its share did not move.
        mix_share: Ratio metrics only: part of ``deviation_share`` due to the segment's share of the
            denominator moving (traffic mix), else ``None``.
        rate_share: Ratio metrics only: part of ``deviation_share`` due to the segment's own rate moving.
        risk: Consistency of the move over the segment's leaves: its mean saturated leaf signal relative to
            a pure ripple of its ratio (1 = all leaves moved together, lower = only some of them moved).
    """

    element: Mapping[str, str] = field(hash=False)
    rank: int
    actual: float
    expected: float
    deviation_share: float
    surprise: float
    mix_share: float | None = None
    rate_share: float | None = None
    risk: float = 1.0

    @property
    def layer(self) -> int:
        """Number of dimensions fixed by the element."""
        return len(self.element)

    def label(self) -> str:
        """The element as ``a=a1&b=b2``."""
        return "&".join(f"{dim}={value}" for dim, value in self.element.items())

    def __str__(self) -> str:
        return self.label()


def format_elements(elements: Iterable[Mapping[str, str] | RootCause]) -> str:
    """Format a set of elements as the benchmark label ``a=a1&b=b2;c=c3`` (in the given order)."""
    parts = []
    for element in elements:
        items = element.element if isinstance(element, RootCause) else element
        parts.append("&".join(f"{dim}={value}" for dim, value in items.items()))
    return ";".join(parts)


def parse_elements(label: str) -> list[dict[str, str]]:
    """Parse ``a=a1&b=b2;c=c3`` into ``[{"a": "a1", "b": "b2"}, {"c": "c3"}]``.

    Raises:
        ValueError: a condition is not of the form ``dimension=value``.
    """
    elements: list[dict[str, str]] = []
    for part in filter(None, (p.strip() for p in label.split(";"))):
        element: dict[str, str] = {}
        for condition in part.split("&"):
            dim, sep, value = condition.partition("=")
            if not sep or not dim.strip():
                raise ValueError(f"element label {part!r}: condition {condition!r} is not 'dimension=value'")
            element[dim.strip()] = value.strip()
        elements.append(element)
    return elements


# -- input validation ------------------------------------------------------------------------------------
def _check_numeric(leaves: pd.DataFrame, column: str, *, frame: str = "leaves") -> np.ndarray:
    """The column as floats; ``frame`` names the argument in errors (``leaves``, ``reference``, ...)."""
    if column not in leaves.columns:
        raise InvalidLeavesError(
            f"no column {column!r} in {frame} (columns: {list(leaves.columns)}); "
            f"pass its name with the matching keyword argument or add the column"
        )
    series = leaves[column]
    if not pd.api.types.is_numeric_dtype(series.dtype) or pd.api.types.is_bool_dtype(series.dtype):
        raise InvalidLeavesError(
            f"column {column!r} of {frame} has dtype {series.dtype}; convert it to numbers, "
            f"e.g. pd.to_numeric({frame}[{column!r}])"
        )
    values = series.to_numpy(dtype=float, na_value=np.nan)
    if np.isnan(values).any():
        raise InvalidLeavesError(
            f"column {column!r} of {frame} has {int(np.isnan(values).sum())} NaN value(s); a missing leaf "
            f"value means no events: fill with 0 ({frame}[{column!r}].fillna(0)) or drop those rows"
        )
    if np.isinf(values).any():
        raise InvalidLeavesError(f"column {column!r} of {frame} has infinite values; drop or cap those rows")
    if (values < 0).any():
        raise InvalidLeavesError(
            f"column {column!r} of {frame} has {int((values < 0).sum())} negative value(s); the slicer needs "
            f"non-negative additive measures (counts, sums): clip forecasts at 0 with .clip(lower=0)"
        )
    return values


def _missing_dimension_error(dim: str) -> InvalidLeavesError:
    return InvalidLeavesError(
        f"dimension column {dim!r} has missing values; fill them with an explicit value "
        f"such as leaves[{dim!r}].fillna('unknown')"
    )


def _check_dimensions(leaves: pd.DataFrame, dimensions: Sequence[str], *, check_na: bool = True) -> list[str]:
    if isinstance(dimensions, str):
        raise InvalidLeavesError(f"dimensions must be a list of column names, not the string {dimensions!r}")
    dims = list(dimensions)
    if not dims:
        raise InvalidLeavesError("dimensions is empty; pass the leaf columns to slice by, e.g. ['category']")
    if len(set(dims)) != len(dims):
        raise InvalidLeavesError(f"dimensions {dims} repeat a column; list each dimension once")
    for dim in dims:
        if dim not in leaves.columns:
            raise InvalidLeavesError(
                f"leaves have no dimension column {dim!r} (columns: {list(leaves.columns)}); "
                f"fix the dimensions argument or add the column"
            )
        if check_na and leaves[dim].isna().any():
            raise _missing_dimension_error(dim)
    return dims


# -- the search ------------------------------------------------------------------------------------------
@dataclass
class _Measure:
    """One additive measure over the active leaves: observed ``v`` and expected ``f``.

    ``counts`` says the observed values are event counts (integers), whose noise has a counting part on top
    of the forecast's relative error (see :meth:`partition`).
    """

    v: np.ndarray
    f: np.ndarray
    counts: bool = False
    signal: np.ndarray = field(default_factory=lambda: np.zeros(0))
    cutoff: np.ndarray = field(default_factory=lambda: np.zeros(0))
    variance: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def scale(self) -> float:
        return max(float(self.f.sum()), float(self.v.sum()), 1e-12)

    def partition(self, reference: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """Estimate each leaf's noise and its saturated, signed abnormality in [-1, 1].

        Noise model, on the leaf's mean ``m = (v + f) / 2``: a relative forecast error ``sigma m`` and, for
        counts, Poisson counting noise: ``variance = (sigma m)^2 + m`` (``(sigma m)^2`` for other values).
        The counting part makes small count leaves relatively noisier than big ones; ``sigma`` is estimated
        per volume bin (about 250 leaves each), robustly (valid while up to ~70 % of a bin is abnormal), as
        the scale at which 30 % of the bin's leaves fall within the central 30 % of their noise distribution
        (see :func:`_relative_noise`). ``reference`` (observed, expected) leaves of past windows join each
        volume bin's estimate: a handful of current leaves cannot tell one moved leaf from noise.
        """
        total = self.v + self.f
        mean = total / 2.0
        with np.errstate(divide="ignore", invalid="ignore"):
            d = np.where(total > 0, 2.0 * (self.v - self.f) / total, 0.0)
            counting = np.where(total > 0, 1.0 / mean, 0.0) if self.counts else np.zeros_like(d)
        active = total > 0
        n_bins = int(np.clip(active.sum() // _LEAVES_PER_BIN, 1, _MAX_BINS))
        edges = np.quantile(total[active], np.linspace(0.0, 1.0, n_bins + 1)[1:-1]) if active.any() else []
        bins = np.searchsorted(edges, total, side="right")
        ref_v, ref_f = reference if reference is not None else (np.zeros(0), np.zeros(0))
        ref_total = ref_v + ref_f
        ref_bins = np.searchsorted(edges, ref_total, side="right")
        with np.errstate(divide="ignore", invalid="ignore"):
            ref_d = np.where(ref_total > 0, 2.0 * (ref_v - ref_f) / ref_total, 0.0)
        sigma = np.zeros(n_bins)
        for b in range(n_bins):
            in_bin = active & (bins == b)
            in_ref = (ref_total > 0) & (ref_bins == b)
            if in_bin.any():
                sigma[b] = _relative_noise(
                    np.concatenate([self.v[in_bin], ref_v[in_ref]]),
                    np.concatenate([self.f[in_bin], ref_f[in_ref]]),
                    np.concatenate([d[in_bin], ref_d[in_ref]]),
                    counts=self.counts,
                )
        leaf_sigma = sigma[bins]
        # Relative standard deviation of d under the model: sqrt(sigma^2 + 1 / m) for counts.
        relative_sd = np.sqrt(leaf_sigma**2 + counting)
        self.cutoff = np.maximum(_SATURATION_Z * relative_sd, _DEVIATION_FLOOR)
        self.signal = np.clip(d / self.cutoff, -1.0, 1.0)
        # Noise of the leaf's sum, on the mean of observed and expected: a zero-forecast leaf with a stray
        # count is noise of its own size, not an infinitely significant move.
        self.variance = (relative_sd * mean) ** 2


def _common_factor(v: np.ndarray, f: np.ndarray, codes: Sequence[np.ndarray], cards: Sequence[int]) -> float:
    """Robust region-wide level shift ``observed / expected`` shared by every dimension, or 1.0.

    Forecasts that lag a trend (a mean of the previous minutes) move every leaf by about the same factor;
    that shared move explains no segment but would make every big segment look significant. Each dimension
    gives an estimate: the median over its values of the value's ratio of sums ``sum v / sum f`` (values
    without forecast left out). A cause moves few values of its own dimensions, so it leaves their median
    alone, while a region-wide shift moves all values of all dimensions. The shift is the median of the
    per-dimension estimates, accepted only when every dimension sees it: all estimates on its side of 1 and
    within a factor of ``_SHIFT_AGREEMENT`` of it in log terms (a big layer-1 cause shifts the values of
    the *other* dimensions only, which then disagree with its own), and so must the typical leaf (see
    :func:`_leaf_mode`): several big causes in several dimensions can shift every dimension's values, but
    most leaves then did not move.
    """
    estimates = []
    for code, card in zip(codes, cards, strict=True):
        fs, vs = np.bincount(code, f, card), np.bincount(code, v, card)
        live = fs > 0
        if live.sum() < 2:
            continue
        estimates.append(float(np.median(np.log(np.clip(vs[live], 1e-300, None) / fs[live]))))
    if not estimates:
        return 1.0
    shift = float(np.median(estimates))
    if shift == 0.0:
        return 1.0
    logs = np.append(estimates, _leaf_mode(v, f))
    if (np.sign(logs) != np.sign(shift)).any() or (
        np.abs(logs - shift) > _SHIFT_AGREEMENT * abs(shift)
    ).any():
        return 1.0
    return math.exp(shift)


def _leaf_mode(v: np.ndarray, f: np.ndarray) -> float:
    """Log ratio ``v / f`` of the typical leaf: centre of the shortest half of the leaves' deviations.

    Over the bigger half of the leaves by forecast (not by observation, which would favour leaves that
    rose), the median of the shortest half of the scores ``d = 2 (v - f) / (v + f)``, converted to a log
    ratio. It stays inside the cluster of normal leaves while fewer than half of them moved. 0 without
    leaves or beyond a factor of 3.
    """
    usable = f > 0
    if not usable.any():
        return 0.0
    big = usable & (f >= np.median(f[usable]))
    d = np.sort(2.0 * (v[big] - f[big]) / (v[big] + f[big]))
    half = d.size // 2 + 1
    start = int(np.argmin(d[half - 1 :] - d[: d.size - half + 1]))
    center = float(np.median(d[start : start + half]))
    return math.log((2.0 + center) / (2.0 - center)) if abs(center) < 1.0 else 0.0


def _sampling_margin(informative: float, n: float) -> float:
    """Upward margin on the 30 % coverage target: its sampling sd when ``informative`` of ``n`` leaves inform.

    With few leaves the robust estimate of ``sigma`` scatters widely, and an underestimate makes noise look
    significant; fitting to ``_SIGMA_CONFIDENCE`` standard errors above 30 % makes ``sigma`` an upper
    confidence bound instead (a negligible change with thousands of leaves).
    """
    if n <= 0:
        return 0.0
    return _SIGMA_CONFIDENCE * math.sqrt(_NORMAL_Q * (1.0 - _NORMAL_Q) * max(informative, 0.0)) / n


def _relative_noise(v: np.ndarray, f: np.ndarray, d: np.ndarray, *, counts: bool) -> float:
    """Robust relative noise scale ``sigma`` of leaves with observed ``v``, forecast ``f``, deviation ``d``.

    Without counting noise, ``sigma`` is the 30 % quantile of ``|d|`` over that of ``|Z|`` for a standard
    normal ``Z``: 30 % of the leaves then lie within the central 30 % of their ``N(0, sigma)`` noise.

    Counts need the same rule made aware of discreteness. Read on ``|d|`` alone, a tiny leaf (``0``
    against a forecast of ``0.3``: ``|d| = 2``) looks hugely abnormal, and a bin of them would give every
    leaf, big ones too, a relative noise near 2. Each leaf is instead compared with its forecast
    distribution, normal with the continuity correction and variance ``f + (sigma f)^2`` (Poisson plus
    the forecast error): the observed count spans the probability interval ``[F(v - 1/2), F(v + 1/2)]``,
    of which a share lies within the central 30 % ``[0.35, 0.65]``. That share is the chance the leaf
    would fall there were its count spread uniformly over its interval (a randomized PIT, near uniform
    under the model), so its mean over the group is 0.3 at the right ``sigma``; it is solved for (0 when
    Poisson noise alone already puts 30 % there). A tiny leaf's interval nearly covers the whole range
    whatever ``sigma``, so it contributes about 0.3 and neither inflates nor deflates the estimate;
    abnormal leaves contribute about 0, as beyond the quantile before. Leaves beyond ``_TRIM_Z`` noise sds
    are then set aside and ``sigma`` refitted, since a few big moved leaves among many tiny normal ones
    would still bias it upwards.
    """
    if not counts:
        level = min(_NORMAL_Q + _sampling_margin(d.size, d.size), 1.0)
        return float(np.quantile(np.abs(d), level)) / _NORMAL_Q_Z
    if v.size > _MAX_FIT_LEAVES:  # a sample stratified by forecast size keeps the fit cheap
        sample = np.argsort(f, kind="stable")[np.linspace(0, v.size - 1, _MAX_FIT_LEAVES).astype(np.int64)]
        v, f = v[sample], f[sample]
    lo_q, hi_q = 0.5 - _NORMAL_Q / 2.0, 0.5 + _NORMAL_Q / 2.0

    def bounds(sigma: float, v: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Continuity-corrected standardized bounds of each count under its forecast distribution."""
        sd = np.sqrt(f + (sigma * f) ** 2)
        with np.errstate(divide="ignore", invalid="ignore"):
            low = np.where(v > 0, (v - 0.5 - f) / sd, -np.inf)
            high = (v + 0.5 - f) / sd
        return low, high

    def solve(v: np.ndarray, f: np.ndarray, target: float) -> float:
        def excess_coverage(sigma: float) -> float:
            low, high = (ndtr(x) for x in bounds(sigma, v, f))
            width = high - low
            overlap = np.clip(np.minimum(high, hi_q) - np.maximum(low, lo_q), 0.0, None)
            share = np.where(width > 0, overlap / np.where(width > 0, width, 1.0), 0.0)
            informative = float(np.clip(1.0 - width, 0.0, 1.0).sum())
            return float(share.mean()) - target - _sampling_margin(informative, v.size)

        if v.size == 0 or excess_coverage(0.0) >= 0.0:
            return 0.0
        if excess_coverage(_MAX_SIGMA) <= 0.0:
            return _MAX_SIGMA
        return float(brentq(excess_coverage, 0.0, _MAX_SIGMA, xtol=1e-3))

    # Refit without the leaves beyond _TRIM_Z sds (target rescaled to the truncated normal) until stable.
    sigma = solve(v, f, _NORMAL_Q)
    keep = np.ones(v.size, dtype=bool)
    for _ in range(_TRIM_ROUNDS):
        low, high = bounds(sigma, v, f)
        new_keep = (low <= _TRIM_Z) & (high >= -_TRIM_Z)
        if np.array_equal(new_keep, keep):
            break
        keep = new_keep
        sigma = solve(v[keep], f[keep], _NORMAL_Q / _TRIM_MASS)
    return sigma


@dataclass
class _Cuboid:
    """A set of dimensions: each leaf's element id, and per-element sums of the tracked leaf values."""

    dims: tuple[int, ...]
    ids: np.ndarray
    keys: np.ndarray  # combined dimension code of each element id (decoded with ``shape``)
    shape: tuple[int, ...]
    stats: np.ndarray  # (tracked value, element) sums over the leaves still in play
    dense: bool  # element id is the combined code (every combination has an id)
    z: np.ndarray = field(
        default_factory=lambda: np.zeros(0)
    )  # significance bar per element (inf: not tested)

    @property
    def size(self) -> int:
        return int(self.keys.size)

    def values(self, group: int) -> dict[int, int]:
        codes = np.unravel_index(int(self.keys[group]), self.shape)
        return {d: int(c) for d, c in zip(self.dims, codes, strict=True)}


@dataclass
class _Pick:
    cuboid: _Cuboid
    group: int
    gain: float
    risk: float


class _Search:
    """Greedy layer-agnostic search over every cuboid up to ``max_layer`` (see the module docstring)."""

    def __init__(
        self,
        codes: list[np.ndarray],
        cards: list[int],
        measures: list[_Measure],
        weight: np.ndarray,
        *,
        max_layer: int,
        min_support: float,
        min_risk: float,
        false_alarm: float,
    ) -> None:
        self.measures = measures
        self.min_support, self.min_risk = min_support, min_risk
        rows = [weight]
        for m in measures:
            rows += [weight * m.signal, m.f, m.v, m.variance, weight * m.cutoff]
        self.leaf_values = np.vstack(rows)
        self.abs_dev = [np.abs(m.v - m.f) for m in measures]
        self.scales = [m.scale for m in measures]
        # Deviation mass of the clearly abnormal leaves: an element must explain a bit of it.
        self.min_gain = _MIN_GAIN_SHARE * sum(
            float(dev[np.abs(m.signal) >= 1.0].sum()) / s
            for m, dev, s in zip(measures, self.abs_dev, self.scales, strict=True)
        )
        self.tiny_weight = 1e-9 * max(float(weight.sum()), 1e-12)
        self.alive = np.ones(weight.size, dtype=bool)
        self.cards = cards
        self.cuboids = [
            self._cuboid(codes, dims)
            for layer in range(1, min(max_layer, len(codes)) + 1)
            for dims in combinations(range(len(codes)), layer)
        ]
        # A dense cuboid's sums are marginalized from a dense cuboid of the top layer holding its
        # dimensions (a small array) instead of being aggregated again over the leaves.
        top = len(self.cuboids[-1].dims) if self.cuboids else 0
        self.sources: list[int | None] = []
        for cub in self.cuboids:
            source = None
            if cub.dense and len(cub.dims) < top:
                source = next(
                    (
                        j
                        for j, c in enumerate(self.cuboids)
                        if len(c.dims) == top and c.dense and set(cub.dims) < set(c.dims)
                    ),
                    None,
                )
            self.sources.append(source)
        for cub, stats in zip(self.cuboids, self._aggregate(np.arange(weight.size)), strict=True):
            cub.stats = stats
        self._set_thresholds(false_alarm)

    def _z_scores(self, st: np.ndarray) -> np.ndarray:
        """Largest standardized aggregate deviation ``|v - f| / sd`` over the measures, per element."""
        z = np.zeros(st.shape[1])
        for i in range(len(self.measures)):
            f, v, variance = st[2 + _ROWS * i], st[3 + _ROWS * i], st[4 + _ROWS * i]
            with np.errstate(divide="ignore", invalid="ignore"):
                zi = np.abs(v - f) / np.sqrt(np.clip(variance, 0.0, None))
            z = np.maximum(z, np.nan_to_num(zi, nan=0.0, posinf=np.inf))
        return z

    def _set_thresholds(self, false_alarm: float) -> None:
        """Significance bar of every element: Bonferroni over the elements actually explored, per layer.

        Layer-1 elements are all explored. A deeper element is explored only when one of its parents (the
        element without one of its dimensions) is promising, i.e. deviates beyond ``_SCREEN_Z`` noise sds
        (RiskLoc / Squeeze style: search the children of promising parents). Each layer gets an equal part
        of ``false_alarm``, split over its explored elements, so the bar rises with the candidates actually
        tested (a few hundred for a deep cause among thousands of cuboid elements), not with every
        combination of the cube. Unexplored elements get an infinite bar.
        """
        layers = sorted({len(c.dims) for c in self.cuboids})
        alpha = false_alarm / max(len(layers), 1)
        promising: dict[tuple[int, ...], np.ndarray] = {}
        explored: dict[tuple[int, ...], np.ndarray] = {}
        for layer in layers:
            group = [c for c in self.cuboids if len(c.dims) == layer]
            for cub in group:
                live = np.zeros(cub.size, dtype=bool)
                for i in range(len(self.measures)):
                    live |= (cub.stats[2 + _ROWS * i] + cub.stats[3 + _ROWS * i]) > 0
                if layer == 1:
                    explored[cub.dims] = live
                else:
                    codes = np.unravel_index(cub.keys, cub.shape)
                    reached = np.zeros(cub.size, dtype=bool)
                    for drop in range(len(cub.dims)):
                        parent = tuple(d for k, d in enumerate(cub.dims) if k != drop)
                        parent_cub = next(c for c in self.cuboids if c.dims == parent)
                        key = np.ravel_multi_index(
                            tuple(codes[k] for k in range(len(cub.dims)) if k != drop), parent_cub.shape
                        )
                        position = pd.Index(parent_cub.keys).get_indexer(key)
                        found = position >= 0
                        reached[found] |= promising[parent][position[found]]
                    explored[cub.dims] = live & reached
                promising[cub.dims] = live & (self._z_scores(cub.stats) >= _SCREEN_Z)
            n_tests = max(sum(int(explored[c.dims].sum()) for c in group), 1)
            z = NormalDist().inv_cdf(1.0 - alpha / (2.0 * n_tests))
            for cub in group:
                cub.z = np.where(explored[cub.dims], z, np.inf)

    def _cuboid(self, codes: list[np.ndarray], dims: tuple[int, ...]) -> _Cuboid:
        shape = tuple(self.cards[d] for d in dims)
        combined = np.ravel_multi_index(tuple(codes[d] for d in dims), shape)
        n = self.leaf_values.shape[1]
        if math.prod(shape) <= 4 * n + 1024:  # dense: element id = combined code
            keys, ids, dense = np.arange(math.prod(shape), dtype=np.int64), combined, True
        else:  # sparse: number the combinations that occur
            raw_ids, raw_keys = pd.factorize(combined)
            ids, keys = np.asarray(raw_ids, dtype=np.int64), np.asarray(raw_keys, dtype=np.int64)
            dense = False
        return _Cuboid(dims=dims, ids=ids, keys=keys, shape=shape, stats=np.zeros((0, 0)), dense=dense)

    def _aggregate(self, leaves: np.ndarray) -> list[np.ndarray]:
        """Sums of the tracked leaf values over ``leaves``, per element of every cuboid."""
        values = self.leaf_values[:, leaves]
        rows = values.shape[0]
        out: list[np.ndarray] = [np.zeros(0)] * len(self.cuboids)
        for k, (cub, source) in enumerate(zip(self.cuboids, self.sources, strict=True)):
            if source is None:
                ids = cub.ids[leaves]
                out[k] = np.vstack([np.bincount(ids, row, cub.size) for row in values])
        for k, (cub, source) in enumerate(zip(self.cuboids, self.sources, strict=True)):
            if source is not None:
                src = self.cuboids[source]
                axes = tuple(1 + i for i, d in enumerate(src.dims) if d not in cub.dims)
                out[k] = out[source].reshape(rows, *src.shape).sum(axis=axes).reshape(rows, -1)
        return out

    def _gains(self, cub: _Cuboid) -> tuple[np.ndarray, np.ndarray]:
        """Gain (NaN where the element does not qualify) and risk of every element of a cuboid."""
        support, significant, risk = self._qualities(cub.stats, cub.z)
        ok = (support >= self.min_support) & significant & (risk >= self.min_risk)
        gains = np.full(cub.size, np.nan)
        if not ok.any():
            return gains, risk
        leaves = np.flatnonzero(ok[cub.ids] & self.alive)
        ids = cub.ids[leaves]
        gain = np.zeros(cub.size)
        for i, (m, scale) in enumerate(zip(self.measures, self.scales, strict=True)):
            f, v = cub.stats[2 + _ROWS * i], cub.stats[3 + _ROWS * i]
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(f > 0, v / f, 1.0)
            fl, vl = m.f[leaves], m.v[leaves]
            err0 = np.bincount(ids, self.abs_dev[i][leaves], cub.size)
            err1 = np.bincount(ids, np.abs(vl - ratio[ids] * fl), cub.size)
            gain += (err0 - err1) / scale
        ok &= gain > max(self.min_gain, 0.0)
        gains[ok] = gain[ok]
        return gains, risk

    def _qualities(self, st: np.ndarray, z: float | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Support, significance and risk of elements from their stats columns.

        Risk is the element's weighted mean saturated leaf signal divided by the signal a pure ripple of the
        element's own ratio would give: about 1 when all its leaves moved together (however weakly), about
        the moved fraction when only some of its leaves moved strongly. Only measures whose aggregate moved
        significantly count (a ratio metric's flat denominator says nothing).
        """
        w = st[0]
        support = np.zeros(w.shape)
        risk = np.zeros(w.shape)
        significant = np.zeros(w.shape, dtype=bool)
        for i, scale in enumerate(self.scales):
            signal, f, v, variance, cutoff = st[1 + _ROWS * i : 1 + _ROWS * (i + 1)]
            support = np.maximum(support, (f + v) / (2.0 * scale))
            sd = np.sqrt(np.clip(variance, 0.0, None))
            with np.errstate(invalid="ignore"):
                bar = np.where(np.isinf(z), np.inf, z * sd)
            moved = np.abs(v - f) > bar + 1e-9 * scale
            significant |= moved
            with np.errstate(divide="ignore", invalid="ignore"):
                ripple = np.where(v + f > 0, 2.0 * np.abs(v - f) / (v + f), 0.0)
                mean_cutoff = np.where(w > self.tiny_weight, cutoff / w, _DEVIATION_FLOOR)
                expected_signal = np.clip(ripple / mean_cutoff, 1e-12, 1.0)
                mean_signal = np.where(w > self.tiny_weight, np.abs(signal) / w, 0.0)
            risk = np.where(moved, np.maximum(risk, np.minimum(mean_signal / expected_signal, 1.0)), risk)
        return support, significant, risk

    def _score_one(self, cub: _Cuboid, group: int) -> tuple[float, float, bool]:
        """Gain, risk and whether support and significance hold, for one element."""
        support, significant, risk = self._qualities(
            cub.stats[:, group : group + 1], cub.z[group : group + 1]
        )
        leaves = np.flatnonzero((cub.ids == group) & self.alive)
        gain = 0.0
        for i, (m, scale) in enumerate(zip(self.measures, self.scales, strict=True)):
            f, v = cub.stats[2 + _ROWS * i, group], cub.stats[3 + _ROWS * i, group]
            ratio = v / f if f > 0 else 1.0
            fl, vl = m.f[leaves], m.v[leaves]
            gain += float((self.abs_dev[i][leaves] - np.abs(vl - ratio * fl)).sum()) / scale
        return gain, float(risk[0]), bool(support[0] >= self.min_support and significant[0])

    def _succinct(self, pick: _Pick) -> _Pick:
        """Name the shallowest ancestor of ``pick`` that moved as a whole.

        When a whole parent moved, its children qualify too and, with noise, one of them can come out first.
        An ancestor replaces ``pick`` when it qualifies (with half the usual risk) and either explains at
        least (almost) as much, or the rest of it (ancestor minus ``pick``) moved on its own significantly,
        consistently and in the same direction: then naming children one by one would only be longer. A
        parent of one moved child keeps a normal rest and is rejected; a parent of several moved children
        among normal ones has a rest of low risk and is rejected too.
        """
        target = pick.cuboid.values(pick.group)
        own = pick.cuboid.stats[:, pick.group : pick.group + 1]
        by_dims = {cub.dims: cub for cub in self.cuboids}
        dims = tuple(sorted(target))
        for layer in range(1, len(dims)):
            best: _Pick | None = None
            for sub in combinations(dims, layer):
                cub = by_dims[sub]
                key = int(np.ravel_multi_index(tuple(target[d] for d in sub), cub.shape))
                found = np.flatnonzero(cub.keys == key)
                if found.size == 0:
                    continue
                group = int(found[0])
                gain, risk, ok = self._score_one(cub, group)
                if not ok or risk < self.min_risk / 2 or (best is not None and gain <= best.gain):
                    continue
                rest = cub.stats[:, group : group + 1] - own
                if gain >= (1.0 - _ANCESTOR_TOLERANCE) * pick.gain or (
                    gain >= _REST_MIN_GAIN * pick.gain
                    and self._moved_alike(rest, own, pick, {d: target[d] for d in sub})
                ):
                    best = _Pick(cub, group, gain, risk)
            if best is not None:
                return best
        return pick

    def _moved_alike(self, rest: np.ndarray, own: np.ndarray, pick: _Pick, ancestor: dict[int, int]) -> bool:
        """Whether the rest of ``ancestor`` moved like ``pick``: significantly, consistently, same way.

        ``rest`` and ``own`` are the stats columns of the ancestor minus ``pick`` and of ``pick``. Besides
        the aggregate, most siblings of ``pick`` inside the ancestor (by capped volume) must each have moved
        beyond one noise sd in its direction: one other moved sibling among normal ones is no whole parent.
        """
        # One test about one known element: an ordinary two-sigma bar, not the search-wide Bonferroni one.
        _, significant, risk = self._qualities(rest, z=_REST_Z)
        if not (significant[0] and risk[0] >= self.min_risk):
            return False
        # Direction of the measure that moved most (relative to its total) in ``own``.
        moves = [
            (own[3 + _ROWS * k, 0] - own[2 + _ROWS * k, 0]) / scale for k, scale in enumerate(self.scales)
        ]
        i = int(np.argmax(np.abs(moves)))
        direction = np.sign(moves[i])
        # Ripple: the rest moved by a comparable factor (not a diluted trace of another cause, nor a bias).
        own_f, own_v = own[2 + _ROWS * i, 0], own[3 + _ROWS * i, 0]
        rest_f, rest_v = rest[2 + _ROWS * i, 0], rest[3 + _ROWS * i, 0]
        if own_f <= 0 or rest_f <= 0:
            return False
        if (rest_v / rest_f - 1.0) / (own_v / own_f - 1.0) < _REST_MIN_RATIO:
            return False
        cub = pick.cuboid
        codes = np.unravel_index(cub.keys, cub.shape)
        siblings = np.ones(cub.size, dtype=bool)
        for pos, d in enumerate(cub.dims):
            if d in ancestor:
                siblings &= codes[pos] == ancestor[d]
        siblings[pick.group] = False
        st = cub.stats[:, siblings]
        f, v = st[2 + _ROWS * i], st[3 + _ROWS * i]
        sd = np.sqrt(np.clip(st[4 + _ROWS * i], 0.0, None))
        weight = st[0]
        if weight.sum() <= self.tiny_weight:
            return False
        moved_alike = direction * (v - f) > _SIBLING_Z * sd
        return bool(weight[moved_alike].sum() >= _SIBLING_AGREEMENT * weight.sum())

    def _remove(self, leaves: np.ndarray) -> None:
        self.alive[leaves] = False
        for cub, stats in zip(self.cuboids, self._aggregate(leaves), strict=True):
            cub.stats -= stats

    def run(self, top_k: int) -> list[_Pick]:
        picks: list[_Pick] = []
        while len(picks) < top_k:
            scored = []
            for cub in self.cuboids:
                gains, risk = self._gains(cub)
                if not np.isnan(gains).all():
                    scored.append((cub, gains, risk))
            if not scored:
                break
            cub, gains, risk = max(scored, key=lambda s: float(np.nanmax(s[1])))
            best = int(np.nanargmax(gains))
            pick = _Pick(cub, best, float(gains[best]), float(risk[best]))
            pick = self._succinct(pick)
            picks.append(pick)
            self._remove(np.flatnonzero((pick.cuboid.ids == pick.group) & self.alive))
        return picks


# -- reporting -------------------------------------------------------------------------------------------
def _js(p: float, q: float) -> float:
    """Adtributor's surprise: Jensen-Shannon divergence term of expected share p and observed share q."""
    m = (p + q) / 2.0
    out = 0.0
    if p > 0:
        out += 0.5 * p * math.log(p / m)
    if q > 0:
        out += 0.5 * q * math.log(q / m)
    return out


def _safe_div(a: float, b: float) -> float:
    return a / b if b != 0 else 0.0


def _is_count(values: np.ndarray) -> bool:
    """Whether observed values look like event counts: all whole numbers, not all zero."""
    return bool(values.any() and np.array_equal(values, np.round(values)))


def localize(
    leaves: pd.DataFrame,
    dimensions: Sequence[str],
    *,
    actual: str = "actual",
    expected: str = "expected",
    top_k: int = 5,
    ratio: bool | None = None,
    max_layer: int = 3,
    min_support: float = 0.0,
    min_risk: float = 0.5,
    false_alarm: float = 0.05,
    counts: bool | None = None,
    recenter: bool = True,
    reference: pd.DataFrame | None = None,
) -> list[RootCause]:
    """Rank the segments (conjunctions of dimension values) that explain the deviation of a window.

    Args:
        leaves: One row per leaf (a full combination of the dimension values) with non-negative observed and
            expected values. Rows repeating a combination are summed into the same elements.
        dimensions: Columns to slice by (order is kept in the reported elements).
        actual: Observed value column (additive mode).
        expected: Expected value column (additive mode); see :func:`expected_from_baseline`.
        top_k: Maximum number of root causes returned.
        ratio: ``True`` for a ratio metric given by :data:`RATIO_COLUMNS`, ``False`` for an additive one,
            ``None`` (default) for ratio mode exactly when all four ratio columns are present.
        max_layer: Deepest conjunction searched (number of dimensions fixed by an element).
        min_support: Minimum share of the region's volume (mean of observed and expected; for ratio metrics
            the larger share of numerator or denominator) of a reported segment; smaller ones are pruned.
            Off by default: a segment of 0.01 % of the volume can hold all of the deviation (Squeeze B0
            cases), and significance plus the share of the deviation explained already keep noise out.
        min_risk: Minimum consistency of an element's move over its leaves (see :attr:`RootCause.risk`).
        false_alarm: Probability that any element is reported on noise-only data (Bonferroni per layer over
            the elements explored, assuming independent noise on the leaves; screening parents makes the
            real rate somewhat higher, about 3-6 % for the default 5 % on sparse-count noise).
        counts: Whether observed values are event counts, whose leaves get Poisson counting noise on top of
            the relative forecast error (small leaves are then relatively noisier than big ones). ``None``
            (default): per measure, exactly when all its observed values are whole numbers.
        recenter: Search deviations from the region-wide level shift of each measure (the robust common
            ratio of observed to expected leaves, see :func:`_common_factor`) rather than from the forecast
            itself, so that a forecast lagging a region-wide trend blames no segment. Reported values and
            shares stay relative to the forecast given.
        reference: Leaves of past, mostly normal windows with the same observed and expected columns (any
            number of rows per leaf, e.g. one per baseline week; see :func:`reference_from_baseline`). They
            only join the estimate of the noise scale (step 2), which otherwise rests on the current leaves
            alone: with a handful of them (a dimension of three values) one moved leaf inflates it until
            nothing stands out.

    Returns:
        Root causes ranked by absolute deviation share; empty when nothing deviates beyond noise.

    Raises:
        InvalidLeavesError: (a ``ValueError``) a missing, non-numeric, NaN or negative column, or bad
            dimensions or parameters; the message names the column and the fix.
    """
    if not isinstance(leaves, pd.DataFrame):
        raise InvalidLeavesError(f"leaves must be a pandas DataFrame, got {type(leaves).__name__}")
    if (
        top_k < 1
        or max_layer < 1
        or not 0 <= min_support < 1
        or not 0 < min_risk <= 1
        or not (0 < false_alarm < 1)
    ):
        raise InvalidLeavesError(
            f"bad parameters top_k={top_k}, max_layer={max_layer}, min_support={min_support}, "
            f"min_risk={min_risk}, false_alarm={false_alarm}: need top_k>=1, max_layer>=1, "
            f"0<=min_support<1, 0<min_risk<=1, 0<false_alarm<1"
        )
    dims = _check_dimensions(leaves, dimensions, check_na=False)  # NaN is checked when factorizing
    present = [c for c in RATIO_COLUMNS if c in leaves.columns]
    is_ratio = len(present) == len(RATIO_COLUMNS) if ratio is None else ratio
    if is_ratio:
        a_num, e_num, a_den, e_den = (_check_numeric(leaves, c) for c in RATIO_COLUMNS)
        measures = [_Measure(a_num, e_num), _Measure(a_den, e_den)]
        volume = (a_den + e_den) / 2.0
        volume = np.where(volume > 0, volume, (a_num + e_num) / 2.0)
    else:
        if present and actual not in leaves.columns:
            missing = [c for c in RATIO_COLUMNS if c not in leaves.columns]
            raise InvalidLeavesError(
                f"leaves look like a ratio metric but lack {missing}; add them (ratio mode needs "
                f"{list(RATIO_COLUMNS)}) or pass actual=/expected= for an additive metric"
            )
        measures = [_Measure(_check_numeric(leaves, actual), _check_numeric(leaves, expected))]
        volume = (measures[0].v + measures[0].f) / 2.0
    # Leaves with nothing observed nor expected change no sum: drop them before the search.
    active = np.zeros(len(leaves), dtype=bool)
    for m in measures:
        active |= (m.v + m.f) > 0
    codes, uniques = [], []
    for dim in dims:
        code, unique = pd.factorize(leaves[dim].to_numpy()[active], sort=False)
        if (code < 0).any():
            raise _missing_dimension_error(dim)
        codes.append(np.asarray(code, dtype=np.int64))
        uniques.append(pd.Index(unique))
    if not active.any():
        return []
    measures = [
        _Measure(m.v[active], m.f[active], counts=_is_count(m.v[active]) if counts is None else counts)
        for m in measures
    ]
    volume = volume[active]
    positive = volume[volume > 0]
    cap = float(np.median(positive)) if positive.size else 1.0
    weight = np.minimum(volume, cap)
    reported = [m.f for m in measures]
    if recenter:
        for m in measures:
            m.f = m.f * _common_factor(m.v, m.f, codes, [len(u) for u in uniques])
    references: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(measures)
    if reference is not None and len(reference):
        a_num_col, e_num_col, a_den_col, e_den_col = RATIO_COLUMNS
        pairs = [(a_num_col, e_num_col), (a_den_col, e_den_col)] if is_ratio else [(actual, expected)]
        references = [
            (
                _check_numeric(reference, observed, frame="reference"),
                _check_numeric(reference, forecast, frame="reference"),
            )
            for observed, forecast in pairs
        ]
    for m, ref in zip(measures, references, strict=True):
        m.partition(ref)
    search = _Search(
        codes,
        [len(u) for u in uniques],
        measures,
        weight,
        max_layer=max_layer,
        min_support=min_support,
        min_risk=min_risk,
        false_alarm=false_alarm,
    )
    picks = search.run(top_k)
    return _report(
        picks, dims, uniques, [replace(m, f=f) for m, f in zip(measures, reported, strict=True)], is_ratio
    )


def _report(
    picks: list[_Pick],
    dims: list[str],
    uniques: list[pd.Index],
    measures: list[_Measure],
    is_ratio: bool,
) -> list[RootCause]:
    rows: list[tuple[Mapping[str, str], float, float, float, float | None, float | None, float, float, float]]
    rows = []
    for pick in picks:
        cub = pick.cuboid
        values = np.unravel_index(int(cub.keys[pick.group]), cub.shape)
        by_dim = {dims[d]: str(uniques[d][int(v)]) for d, v in zip(cub.dims, values, strict=True)}
        element = MappingProxyType({dim: by_dim[dim] for dim in dims if dim in by_dim})
        inside = cub.ids == pick.group
        sums = [
            (float(m.v[inside].sum()), float(m.f[inside].sum()), float(m.v.sum()), float(m.f.sum()))
            for m in measures
        ]
        surprise = sum(_js(_safe_div(fe, ft), _safe_div(ve, vt)) for ve, fe, vt, ft in sums)
        if is_ratio:
            (vn, fn, vnt, fnt), (vd, fd, vdt, fdt) = sums
            r_act, r_exp = _safe_div(vn, vd), _safe_div(fn, fd)
            region_act, region_exp = _safe_div(vnt, vdt), _safe_div(fnt, fdt)
            w_act, w_exp = _safe_div(vd, vdt), _safe_div(fd, fdt)
            rate = w_act * (r_act - r_exp)
            mix = (w_act - w_exp) * (r_exp - region_exp)
            rows.append(
                (element, r_act, r_exp, rate + mix, mix, rate, region_act - region_exp, surprise, pick.risk)
            )
        else:
            ve, fe, vt, ft = sums[0]
            rows.append((element, ve, fe, ve - fe, None, None, vt - ft, surprise, pick.risk))
    if not rows:
        return []
    total = rows[0][6]
    if abs(total) <= 1e-12 * max(1.0, sum(abs(r[3]) for r in rows)):
        total = sum(abs(r[3]) for r in rows)
    causes = [
        RootCause(
            element=elem,
            rank=0,
            actual=act,
            expected=exp,
            deviation_share=_safe_div(contribution, total),
            surprise=surp,
            mix_share=None if mix_part is None else _safe_div(mix_part, total),
            rate_share=None if rate_part is None else _safe_div(rate_part, total),
            risk=risk,
        )
        for elem, act, exp, contribution, mix_part, rate_part, _, surp, risk in rows
    ]
    causes.sort(key=lambda c: -abs(c.deviation_share))
    return [replace(c, rank=i + 1) for i, c in enumerate(causes)]


# -- expected leaf values ------------------------------------------------------------------------------
def expected_from_baseline(
    current: pd.DataFrame,
    baseline: pd.DataFrame,
    dimensions: Sequence[str],
    *,
    expected_totals: Mapping[str, float],
    expected_columns: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Expected leaf values: each leaf's share of a baseline window times the forecast of the region's total.

    Why this choice: the detector's forecast of the region's *total* is fitted on a long, dense, aggregate
    series and is trustworthy, while per-leaf forecasts are noisy (most leaves are small or sparse, and there
    are too many to fit a model each). Under the ripple-effect assumption, when nothing is wrong every leaf
    keeps its usual share of the total, so ``expected_leaf = forecast_total * baseline_leaf /
    baseline_total``; a root cause then shows as leaves whose observed share moved away from it. This keeps
    leaf expectations summing exactly to the forecast, so the slicer explains the same deviation the detector
    flagged.

    Args:
        current: Leaves of the anomalous window: ``dimensions`` plus each column of ``expected_totals``.
        baseline: Rows of a baseline window (any number of timestamps) with the same columns; summed per leaf.
        dimensions: Leaf dimension columns.
        expected_totals: Observed column -> forecast of its region total over the anomalous window, e.g.
            ``{"actual": 1234.0}`` or ``{"actual_num": 50.0, "actual_den": 1000.0}`` for a ratio metric.
        expected_columns: Observed column -> name of its expected column. By default ``actual`` becomes
            ``expected`` and ``actual_num`` becomes ``expected_num`` (other ``x`` becomes ``expected_x``).

    Returns:
        One row per leaf of ``current`` or ``baseline`` (leaves missing on one side count 0 there) with the
        dimensions, the observed columns and the expected columns, ready for :func:`localize`.

    Raises:
        InvalidLeavesError: missing, NaN or negative columns, negative totals, or an empty baseline total.
    """
    dims = _check_dimensions(current, dimensions)
    _check_dimensions(baseline, dims)
    cols = list(expected_totals)
    if not cols:
        raise InvalidLeavesError("expected_totals is empty; map each observed column to its forecast total")
    for col in cols:
        _check_numeric(current, col)
        _check_numeric(baseline, col)
        total = float(expected_totals[col])
        if not math.isfinite(total) or total < 0:
            raise InvalidLeavesError(f"expected total of {col!r} is {total}; pass a finite forecast >= 0")
    names = dict(expected_columns or {})
    for col in cols:
        names.setdefault(col, col.replace("actual", "expected", 1) if "actual" in col else f"expected_{col}")
    cur = current.groupby(dims, sort=False, observed=True)[cols].sum()
    base = baseline.groupby(dims, sort=False, observed=True)[cols].sum()
    out = cur.join(base.rename(columns=lambda c: f"__base_{c}"), how="outer").fillna(0.0)
    for col in cols:
        base_total = float(out[f"__base_{col}"].sum())
        if base_total <= 0:
            raise InvalidLeavesError(
                f"baseline column {col!r} sums to 0, so leaves have no share to scale; use a longer "
                f"baseline window or another reference period"
            )
        out[names[col]] = out[f"__base_{col}"] / base_total * float(expected_totals[col])
    out = out.drop(columns=[f"__base_{c}" for c in cols]).reset_index()
    return out


def reference_from_baseline(
    baseline: pd.DataFrame,
    dimensions: Sequence[str],
    *,
    period: str,
    columns: Sequence[str],
    expected_columns: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Reference leaves for :func:`localize` from a baseline of several periods, each left out in turn.

    Each period (e.g. each baseline week) is treated as if it were the anomalous window and forecast the way
    :func:`expected_from_baseline` forecasts it: every leaf keeps its share of the *other* periods, times the
    period's own total (so region-wide moves, which no segment explains, are not counted as noise). What is
    left is the leaf-level forecast error of past windows, mostly normal ones, measured by the same rule.

    Args:
        baseline: Rows of the baseline with ``dimensions``, ``period`` and the observed ``columns``.
        dimensions: Leaf dimension columns.
        period: Column telling the periods apart.
        columns: Observed columns (``["actual"]``, or ``["actual_num", "actual_den"]`` for a ratio metric).
        expected_columns: Observed column -> name of its expected column (as in
            :func:`expected_from_baseline`).

    Returns:
        One row per leaf and period with the dimensions, ``period``, the observed and the expected columns;
        empty with fewer than two periods.

    Raises:
        InvalidLeavesError: missing, NaN or negative columns, or a missing ``period`` column.
    """
    dims = _check_dimensions(baseline, dimensions)
    if period not in baseline.columns:
        raise InvalidLeavesError(
            f"baseline has no period column {period!r} (columns: {list(baseline.columns)}); "
            "pass period= the column that tells the baseline periods apart"
        )
    cols = list(columns)
    for col in cols:
        _check_numeric(baseline, col, frame="baseline")
    names = dict(expected_columns or {})
    for col in cols:
        names.setdefault(col, col.replace("actual", "expected", 1) if "actual" in col else f"expected_{col}")
    empty = pd.DataFrame(columns=[*dims, period, *cols, *(names[c] for c in cols)])
    if baseline[period].nunique() < 2:
        return empty
    sums = baseline.groupby([*dims, period], sort=False, observed=True)[cols].sum()
    parts: dict[str, pd.Series | pd.DataFrame] = {}
    for col in cols:
        table = sums[col].unstack(period, fill_value=0)  # leaves x periods
        own_total = table.sum(axis=0)
        other_leaf = table.sum(axis=1).to_numpy()[:, None] - table.to_numpy()
        other_total = float(own_total.sum()) - own_total.to_numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(other_total > 0, other_leaf / other_total, np.nan)
        expected = pd.DataFrame(share * own_total.to_numpy(), index=table.index, columns=table.columns)
        parts[col] = table.stack()
        parts[names[col]] = expected.stack()
    out = pd.DataFrame(parts).dropna().reset_index()
    return out[[*dims, period, *cols, *(names[c] for c in cols)]]
