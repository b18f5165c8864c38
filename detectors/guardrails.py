"""Experiment guardrails: always-valid harm tests of a safety metric between a treatment and a control arm.

A product change can raise harmful-content exposure in its treatment arm long before the platform-wide
metric moves. :func:`evaluate_guardrail` compares one treatment arm against control on one safety metric,
and can be called at every hourly tick without inflating false alarms; :func:`guardrail_timeline` gives the
same result at every bucket (for a chart of the effect and its interval over time); :func:`segment_breakdown`
says which segment values carry the harm; :func:`check_srm` tests the assignment counts alone.

Input frame (tidy, one row per arm and time bucket, and optionally per unit and per segment):

* ``ts``: UTC-aware bucket timestamp; ``arm``: arm name (must be one of the configured arms);
* ``num`` / ``den``: for ``kind="rate"`` the event count and its exposure (reports, views); for
  ``kind="ratio"`` the numerator and denominator (violations, reviews);
* ``unit`` (optional): the randomisation unit (viewer, streamer). With units, variances come from the
  delta method over units (robust to overdispersion and to units contributing many events), the SRM check
  counts units, and CUPED is available. Without units, events are taken as Poisson (``rate``) or binomial
  (``ratio``) and an optional ``assigned`` column (units newly assigned in the bucket) feeds the SRM check;
* any segment columns (``region``, ``category``) for :func:`segment_breakdown`.

Statistics (see :mod:`detectors.sequential` for the formulas): the effect is the log rate ratio
``log(R_t / R_c)`` with delta-method variance, reported as the relative effect ``R_t / R_c - 1``. Its
bounds are a one-sided half-normal mixture confidence sequence (mSPRT) at level ``alpha`` each, intersected
over looks. Decision (:func:`detectors.sequential.decide`): ``harm`` when the interval excludes zero on the
harmful side, ``no_harm`` when it excludes the minimum harmful effect, else ``inconclusive``.

Assumptions: the split is constant over the frame (after a ramp-up, start the frame at the ramp's end:
pooling buckets with different splits and different base rates confounds the ratio, and the SRM check
flags it); each unit stays in one arm; the effect is the average over the exposure seen so far.

CUPED (Deng et al. 2013) with a per-unit pre-period of the same metric (``unit, num, den``): the
linearised unit values ``l_i = (Y_i - R N_i) / mean(N)`` and ``x_i = (X_i - R_x M_i) / mean(M)`` give
``theta = cov(l, x) / var(x)`` pooled within arms over both arms, the adjusted rate
``R_adj = R - theta (R_x,arm - R_x,pooled)`` and variance ``var(l - theta x) / n`` (never below the
sampling variance of the events themselves, which no covariate can explain). Units without a pre-period
get ``x_i = 0``. Composition with the sequential test: at each look ``theta`` is re-estimated
from the units seen so far and the adjusted estimate and its (smaller) variance replace the raw ones in the
same confidence sequence. The pre-period is fixed before assignment, so the adjustment is unbiased whatever
the treatment does; the plug-in ``theta`` makes the guarantee asymptotic like the plug-in variance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from detectors.errors import DetectorError
from detectors.sequential import (
    Decision,
    HarmDirection,
    RateKind,
    confidence_sequence,
    count_log_ratio,
    decide,
    pooled_log_variance,
    pseudo_events,
    pseudo_rate,
    srm_log_bayes_factor,
)

__all__ = [
    "AssignmentError",
    "GuardrailKind",
    "GuardrailResult",
    "GuardrailSpec",
    "InvalidExperimentError",
    "SRMResult",
    "check_srm",
    "evaluate_guardrail",
    "guardrail_timeline",
    "segment_breakdown",
    "timeline_frame",
]

#: ``"rate"``: events per exposure (reports per 1k views, Poisson without units); ``"ratio"``: numerator
#: over denominator (violations / reviews, binomial without units).
GuardrailKind = RateKind

_REQUIRED = ("ts", "arm", "num", "den")
_EXAMPLES = 5  # offending values quoted in an error message
_LOOK = "_look"  # internal column: 0-based position of the row's bucket among the looks


class InvalidExperimentError(DetectorError, ValueError):
    """The experiment frame, pre-period or spec breaks an input rule (column, type, sign, NaN...)."""


class AssignmentError(InvalidExperimentError):
    """The arm assignment is inconsistent: unknown arm, missing control or treatment, unit in two arms."""


@dataclass(frozen=True)
class GuardrailSpec:
    """One guardrail: a safety metric watched between one treatment arm and control.

    Attributes:
        experiment: Experiment name (quoted in errors and results).
        metric: Metric name, e.g. ``"reports_per_1k_views"``.
        control: Control arm name.
        treatment: Treatment arm name.
        kind: ``"rate"`` or ``"ratio"`` (:data:`GuardrailKind`).
        direction: ``"up"`` when a higher value in treatment is harmful, ``"down"`` when a lower one is.
        min_effect: Smallest relative change that matters, > 0 (``0.05`` = 5 %).
        alpha: Error rate of each one-sided always-valid bound (false ``harm`` and false ``no_harm``).
        split: Configured assignment share per arm, every arm of the experiment (they need not sum to 1;
            they are normalised). ``None``: control and treatment, 50/50.
        srm_alpha: Error rate of the sequential sample ratio mismatch test.
        srm_concentration: Prior mass of the SRM Dirichlet-multinomial mixture.
        mixture_scale: Prior scale ``tau`` of the effect on the log scale; ``None`` = ``log(1 + min_effect)``
            (most power near the minimum effect).
        min_events: Looks before the two arms together have this many numerator events (and, with units,
            2 units each) are skipped: the normal approximation needs them. An arm with no events at all
            is still compared (a pseudo-event, :func:`detectors.sequential.pseudo_events`).
    """

    experiment: str
    metric: str
    control: str
    treatment: str
    kind: GuardrailKind = "rate"
    direction: HarmDirection = "up"
    min_effect: float = 0.05
    alpha: float = 0.05
    split: Mapping[str, float] | None = None
    srm_alpha: float = 0.001
    srm_concentration: float = 100.0
    mixture_scale: float | None = None
    min_events: int = 40

    @property
    def arms(self) -> dict[str, float]:
        """Configured arm -> normalised assignment share."""
        split = dict(self.split) if self.split is not None else {self.control: 1.0, self.treatment: 1.0}
        total = sum(split.values())
        return {arm: share / total for arm, share in split.items()}

    @property
    def tau(self) -> float:
        """Mixing prior scale actually used."""
        return self.mixture_scale if self.mixture_scale is not None else float(np.log1p(self.min_effect))


@dataclass(frozen=True)
class SRMResult:
    """Sequential sample ratio mismatch test of the assignment counts.

    Attributes:
        counts: Units (or assignments) per configured arm so far.
        expected_share: Configured share per arm.
        log_bayes_factor: Largest log Bayes factor against the configured split over the looks so far.
        p_value: Always-valid p-value ``min(1, 1 / max BF)``.
        mismatch: ``p_value <= alpha``: the assignment does not follow the split; the metric comparison
            cannot be trusted until the cause is found.
        reason: Why, in words.
    """

    counts: dict[str, int]
    expected_share: dict[str, float]
    log_bayes_factor: float
    p_value: float
    mismatch: bool
    reason: str


@dataclass(frozen=True)
class GuardrailResult:
    """One look of one guardrail.

    Attributes:
        experiment: Experiment name.
        metric: Metric name.
        control: Control arm.
        treatment: Treatment arm.
        ts: Bucket timestamp of the look (UTC).
        decision: ``harm``, ``no_harm`` or ``inconclusive`` (:class:`detectors.sequential.Decision`).
        reason: Why, in words.
        effect: Relative effect ``R_t / R_c - 1`` (CUPED-adjusted when a pre-period is given); NaN early.
        lower: Always-valid lower bound of ``effect`` (running intersection; -inf before the first usable
            look).
        upper: Always-valid upper bound (+inf before the first usable look).
        ruled_out_beyond: The harmful end of the interval: harmful effects beyond it are ruled out
            (``upper`` for ``up``, ``lower`` for ``down``): the power indicator.
        treatment_rate: Treatment ``sum(num) / sum(den)`` so far (unadjusted).
        control_rate: Control rate so far (unadjusted).
        treatment_num: Treatment numerator so far.
        control_num: Control numerator so far.
        treatment_den: Treatment denominator (exposure) so far.
        control_den: Control denominator so far.
        std_error: Standard error of the log rate ratio at this look (delta method; CUPED-adjusted when a
            pre-period is given); NaN before the look is usable. A fixed-n test would use it alone; the
            always-valid bounds are wider (see :func:`detectors.sequential.mixture_boundary`).
        variance_reduction: Share of the effect variance removed by CUPED at this look (NaN without it).
        srm: Sample ratio mismatch test so far, or ``None`` when there are no units or ``assigned`` counts.
    """

    experiment: str
    metric: str
    control: str
    treatment: str
    ts: pd.Timestamp
    decision: Decision
    reason: str
    effect: float
    lower: float
    upper: float
    ruled_out_beyond: float
    treatment_rate: float
    control_rate: float
    treatment_num: float
    control_num: float
    treatment_den: float
    control_den: float
    std_error: float = float("nan")
    variance_reduction: float = float("nan")
    srm: SRMResult | None = field(default=None)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (ISO timestamp, decision as its string) for JSON and logs."""
        out = asdict(self)
        out["ts"] = self.ts.isoformat()
        out["decision"] = str(self.decision)
        return out


# --------------------------------------------------------------------------------------------- validation


def _check_spec(spec: GuardrailSpec) -> None:
    where = f"experiment {spec.experiment!r}, metric {spec.metric!r}"
    if spec.kind not in ("rate", "ratio"):
        raise InvalidExperimentError(f"{where}: kind must be 'rate' or 'ratio', got {spec.kind!r}")
    if spec.direction not in ("up", "down"):
        raise InvalidExperimentError(f"{where}: direction must be 'up' or 'down', got {spec.direction!r}")
    if not 0 < spec.alpha < 0.5:
        raise InvalidExperimentError(f"{where}: alpha must be in (0, 0.5), got {spec.alpha}")
    if not 0 < spec.srm_alpha < 1:
        raise InvalidExperimentError(f"{where}: srm_alpha must be in (0, 1), got {spec.srm_alpha}")
    upper = 1.0 if spec.direction == "down" else np.inf
    if not 0 < spec.min_effect < upper:
        raise InvalidExperimentError(
            f"{where}: min_effect must be a relative change > 0 (and < 1 for direction 'down'), "
            f"got {spec.min_effect}"
        )
    if spec.mixture_scale is not None and not spec.mixture_scale > 0:
        raise InvalidExperimentError(f"{where}: mixture_scale must be > 0, got {spec.mixture_scale}")
    if spec.control == spec.treatment:
        raise AssignmentError(f"{where}: control and treatment are the same arm {spec.control!r}")
    arms = spec.arms if spec.split is None else dict(spec.split)
    for role, arm in (("control", spec.control), ("treatment", spec.treatment)):
        if arm not in arms:
            raise AssignmentError(
                f"{where}: {role} arm {arm!r} is not in the configured split {sorted(arms)}; add it"
            )
    bad = {arm: share for arm, share in arms.items() if not (np.isfinite(share) and share > 0)}
    if bad:
        raise InvalidExperimentError(f"{where}: split shares must be positive numbers, got {bad}")


def _numeric(frame: pd.DataFrame, column: str, where: str, *, table: str = "frame") -> np.ndarray:
    try:
        values = pd.to_numeric(frame[column], errors="raise").to_numpy(dtype=float)
    except (TypeError, ValueError) as exc:
        raise InvalidExperimentError(f"{where}: {table} column {column!r} is not numeric ({exc})") from exc
    bad = ~np.isfinite(values) | (values < 0)
    if bad.any():
        rows = frame.index[bad][:_EXAMPLES].tolist()
        raise InvalidExperimentError(
            f"{where}: {table} column {column!r} has {int(bad.sum())} NaN, infinite or negative values "
            f"(rows {rows}); counts and exposures must be finite and >= 0 "
            "(drop missing buckets rather than zero them)"
        )
    return values


def _validate(frame: pd.DataFrame, spec: GuardrailSpec, segments: Sequence[str] = ()) -> pd.DataFrame:
    """Check the experiment frame; return a copy with UTC ``ts``, float ``num`` / ``den``, str ``arm``."""
    where = f"experiment {spec.experiment!r}, metric {spec.metric!r}"
    if not isinstance(frame, pd.DataFrame):
        raise InvalidExperimentError(f"{where}: expected a pandas DataFrame, got {type(frame)}")
    missing = [c for c in (*_REQUIRED, *segments) if c not in frame.columns]
    if missing:
        raise InvalidExperimentError(
            f"{where}: frame lacks columns {missing} (has {list(frame.columns)}); expected "
            "ts, arm, num, den and optionally unit, assigned and segment columns"
        )
    if frame.empty:
        raise InvalidExperimentError(f"{where}: frame has no rows")
    out = frame.reset_index(drop=True).copy()
    ts = out["ts"]
    if not pd.api.types.is_datetime64_any_dtype(ts):
        raise InvalidExperimentError(f"{where}: column 'ts' must be datetimes, got dtype {ts.dtype}")
    if getattr(ts.dt, "tz", None) is None:
        raise InvalidExperimentError(
            f"{where}: column 'ts' is naive; localise it to UTC (frame['ts'].dt.tz_localize('UTC'))"
        )
    out["ts"] = ts.dt.tz_convert("UTC")
    out["num"] = _numeric(out, "num", where)
    out["den"] = _numeric(out, "den", where)
    if "assigned" in out.columns:
        out["assigned"] = _numeric(out, "assigned", where)
    for column in ("arm", *segments, *(["unit"] if "unit" in out.columns else [])):
        if out[column].isna().any():
            rows = out.index[out[column].isna()][:_EXAMPLES].tolist()
            raise InvalidExperimentError(f"{where}: column {column!r} has missing values (rows {rows})")
    out["arm"] = out["arm"].astype(str)
    arms = spec.arms
    unknown = sorted(set(out["arm"].unique()) - set(arms))
    if unknown:
        raise AssignmentError(
            f"{where}: arms {unknown} are not configured (configured: {sorted(arms)}); "
            "fix the assignment source or add them to the split"
        )
    present = set(out["arm"].unique())
    for role, arm in (("control", spec.control), ("treatment", spec.treatment)):
        if arm not in present:
            raise AssignmentError(f"{where}: {role} arm {arm!r} has no rows; check the assignment export")
    if "unit" in out.columns:
        arms_per_unit = out.groupby("unit", sort=False)["arm"].nunique()
        crossed = arms_per_unit[arms_per_unit > 1]
        if len(crossed):
            raise AssignmentError(
                f"{where}: {len(crossed)} units are assigned to more than one arm "
                f"(e.g. {crossed.index[:_EXAMPLES].tolist()}); deduplicate the assignment (first exposure "
                "wins) or drop those units"
            )
    elif spec.kind == "ratio":
        over = out["num"].to_numpy() > out["den"].to_numpy()
        if over.any():
            raise InvalidExperimentError(
                f"{where}: {int(over.sum())} rows have num > den "
                f"(rows {out.index[over][:_EXAMPLES].tolist()}); without units a ratio "
                "metric is a proportion of trials: use kind='rate' or add a 'unit' column"
            )
    return out


def _validate_pre(pre_period: pd.DataFrame, spec: GuardrailSpec) -> pd.DataFrame:
    """Check the per-unit pre-period; return its ``x`` (num) and ``m`` (den) sums indexed by unit."""
    where = f"experiment {spec.experiment!r}, metric {spec.metric!r}"
    if not isinstance(pre_period, pd.DataFrame):
        raise InvalidExperimentError(f"{where}: pre_period must be a DataFrame, got {type(pre_period)}")
    missing = [c for c in ("unit", "num", "den") if c not in pre_period.columns]
    if missing:
        raise InvalidExperimentError(
            f"{where}: pre_period lacks columns {missing}; expected unit, num, den (pre-experiment sums)"
        )
    pre = pre_period.reset_index(drop=True)
    x = _numeric(pre, "num", where, table="pre_period")
    m = _numeric(pre, "den", where, table="pre_period")
    if pre["unit"].isna().any():
        raise InvalidExperimentError(f"{where}: pre_period column 'unit' has missing values")
    return pd.DataFrame({"unit": pre["unit"].to_numpy(), "x": x, "m": m}).groupby("unit").sum()


# --------------------------------------------------------------------------------------------- statistics

_UNIT_SUMS = ("n", "y", "d", "yy", "dd", "yd", "x", "m", "xx", "mm", "xm", "yx", "ym", "dx", "dm")


def _cumulate(look: np.ndarray, values: Mapping[str, np.ndarray], n_looks: int) -> dict[str, np.ndarray]:
    """Sums of each array per look position ``look`` (0-based), cumulated over the looks."""
    return {
        key: np.cumsum(np.bincount(look, weights=np.asarray(v, dtype=float), minlength=n_looks))
        for key, v in values.items()
    }


def _unit_sums(rows: pd.DataFrame, pre: pd.DataFrame | None, n_looks: int) -> dict[str, np.ndarray]:
    """Cumulative sums over units of one arm at each look: counts, first and second moments.

    Each unit's totals grow over time; a row adding ``(y, d)`` to a unit at ``(Y, D)`` adds
    ``(Y + y)^2 - Y^2`` to the sum of squares, so every moment is an exact cumulative sum of row deltas.
    """
    rows = rows.sort_values(["unit", _LOOK], kind="stable")
    grouped = rows.groupby("unit", sort=False)
    y, d = rows["num"].to_numpy(), rows["den"].to_numpy()
    cy, cd = grouped["num"].cumsum().to_numpy(), grouped["den"].cumsum().to_numpy()
    py, pd_ = cy - y, cd - d
    first = (~rows["unit"].duplicated()).to_numpy().astype(float)
    if pre is not None:
        joined = pre.reindex(rows["unit"].to_numpy())
        x, m = (
            np.nan_to_num(joined["x"].to_numpy(dtype=float)),
            np.nan_to_num(joined["m"].to_numpy(dtype=float)),
        )
    else:
        x = m = np.zeros(len(rows))
    deltas = {
        "n": first,
        "y": y,
        "d": d,
        "yy": cy**2 - py**2,
        "dd": cd**2 - pd_**2,
        "yd": cy * cd - py * pd_,
        "x": first * x,
        "m": first * m,
        "xx": first * x**2,
        "mm": first * m**2,
        "xm": first * x * m,
        "yx": y * x,
        "ym": y * m,
        "dx": d * x,
        "dm": d * m,
    }
    return _cumulate(rows[_LOOK].to_numpy(), deltas, n_looks)


def _cov(s: dict[str, np.ndarray], a: str, b: str) -> np.ndarray:
    """Population covariance over units of totals ``a`` and ``b`` (keys of the moment sums)."""
    n = s["n"]
    key = a + b if a + b in s else b + a
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(s[key] / n - (s[a] / n) * (s[b] / n))


@dataclass
class _ArmStats:
    """Cumulative totals of one arm at each look, and the unit moments (NaN without units)."""

    num: np.ndarray
    den: np.ndarray
    units: np.ndarray  # units seen so far
    lin_var: np.ndarray  # per-unit variance of l (delta method)
    lin_cov: np.ndarray  # cov(l, x)
    cov_var: np.ndarray  # var(x)
    pre_rate: np.ndarray  # R_x of the arm
    pre_num: np.ndarray
    pre_den: np.ndarray


def _arm_stats(rows: pd.DataFrame, pre: pd.DataFrame | None, n_looks: int) -> _ArmStats:
    nan = np.full(n_looks, np.nan)
    if "unit" not in rows.columns:
        s = _cumulate(
            rows[_LOOK].to_numpy(), {"num": rows["num"].to_numpy(), "den": rows["den"].to_numpy()}, n_looks
        )
        return _ArmStats(s["num"], s["den"], nan, nan, nan, nan, nan, nan, nan)
    s = _unit_sums(rows, pre, n_looks)
    n = s["n"]
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = s["y"] / s["d"]
        mean_d = s["d"] / n
        lin_var = (_cov(s, "y", "y") - 2 * rate * _cov(s, "y", "d") + rate**2 * _cov(s, "d", "d")) / mean_d**2
        pre_rate = s["x"] / s["m"]
        mean_m = s["m"] / n
        cov_var = (
            _cov(s, "x", "x") - 2 * pre_rate * _cov(s, "x", "m") + pre_rate**2 * _cov(s, "m", "m")
        ) / mean_m**2
        lin_cov = (
            _cov(s, "y", "x")
            - pre_rate * _cov(s, "y", "m")
            - rate * _cov(s, "d", "x")
            + rate * pre_rate * _cov(s, "d", "m")
        ) / (mean_d * mean_m)
    return _ArmStats(s["y"], s["d"], n, lin_var, lin_cov, cov_var, pre_rate, s["x"], s["m"])


def _cuped(t: _ArmStats, c: _ArmStats) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """``theta`` pooled within arms over both arms, and per arm the rate shift and adjusted unit variance.

    The adjusted rate is ``rate - theta * shift``; its variance is ``adjusted_lin_var / units``.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        denom = np.nan_to_num(t.units * t.cov_var + c.units * c.cov_var)
        theta = np.nan_to_num(np.where(denom > 0, (t.units * t.lin_cov + c.units * c.lin_cov) / denom, 0.0))
        pooled = (t.pre_num + c.pre_num) / (t.pre_den + c.pre_den)
        out = []
        for arm in (t, c):
            shift = np.where(np.isfinite(arm.pre_rate) & np.isfinite(pooled), arm.pre_rate - pooled, 0.0)
            cov, var_x = np.nan_to_num(arm.lin_cov), np.nan_to_num(arm.cov_var)
            out.append((shift, arm.lin_var - 2 * theta * cov + theta**2 * var_x))
    return theta, out


def _effect(
    t: _ArmStats, c: _ArmStats, spec: GuardrailSpec, *, cuped: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Log rate ratio, its variance (NaN on unusable looks) and the CUPED variance reduction per look.

    Without units the arms' events are independent (:func:`detectors.sequential.count_log_ratio`). With
    units the variance is the delta method over units, never below the sampling variance of independent
    events (:func:`detectors.sequential.pooled_log_variance`), and CUPED (when ``cuped``) shifts the rates
    and shrinks the unit variance down to that floor.
    """
    n_looks = len(t.num)
    if not np.isfinite(t.units).any():
        theta, v = count_log_ratio(t.num, t.den, c.num, c.den, kind=spec.kind, min_events=spec.min_events)
        return theta, v, np.full(n_looks, np.nan)
    w_t, w_c = pseudo_events(t.den, c.den)
    rate_t = pseudo_rate(t.num, t.den, kind=spec.kind, pseudo=w_t)
    rate_c = pseudo_rate(c.num, c.den, kind=spec.kind, pseudo=w_c)
    floor = pooled_log_variance(t.num, t.den, c.num, c.den, kind=spec.kind)
    with np.errstate(divide="ignore", invalid="ignore"):
        theta = np.log(rate_t) - np.log(rate_c)
        v = np.fmax(t.lin_var / (t.units * rate_t**2) + c.lin_var / (c.units * rate_c**2), floor)
        reduction = np.full(n_looks, np.nan)
        if cuped:
            slope, ((shift_t, lin_t), (shift_c, lin_c)) = _cuped(t, c)
            adj_t, adj_c = rate_t - slope * shift_t, rate_c - slope * shift_c
            theta = np.log(adj_t) - np.log(adj_c)
            adjusted = np.fmax(lin_t / (t.units * adj_t**2) + lin_c / (c.units * adj_c**2), floor)
            reduction, v = 1.0 - adjusted / v, adjusted
    usable = (t.num + c.num >= spec.min_events) & (t.units >= 2) & (c.units >= 2) & np.isfinite(theta)
    usable &= np.isfinite(v) & (v > 0)
    return np.where(usable, theta, np.nan), np.where(usable, v, np.nan), reduction


def _srm_sequence(
    rows: pd.DataFrame, spec: GuardrailSpec, n_looks: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """Cumulative assignment counts per configured arm at each look (looks x arms), and the split."""
    arms = spec.arms
    if "unit" in rows.columns:
        rows = rows.sort_values(_LOOK, kind="stable").drop_duplicates("unit")
        weights = np.ones(len(rows))
    elif "assigned" in rows.columns:
        weights = rows["assigned"].to_numpy(dtype=float)
    else:
        return None
    look, arm = rows[_LOOK].to_numpy(), rows["arm"].to_numpy()
    counts = np.column_stack(
        [_cumulate(look[arm == name], {"k": weights[arm == name]}, n_looks)["k"] for name in arms]
    )
    return counts, np.array(list(arms.values()))


def _srm_result(counts: np.ndarray, split: np.ndarray, spec: GuardrailSpec, max_log_bf: float) -> SRMResult:
    arms = list(spec.arms)
    p_value = float(min(1.0, np.exp(-max_log_bf)))
    mismatch = p_value <= spec.srm_alpha
    total = counts.sum()
    observed = ", ".join(
        f"{a} {c / total:.1%}" if total else f"{a} 0" for a, c in zip(arms, counts, strict=True)
    )
    expected = ", ".join(f"{a} {p:.1%}" for a, p in zip(arms, split, strict=True))
    reason = (
        f"{'sample ratio mismatch' if mismatch else 'assignment matches the split'}: observed {observed} "
        f"of {int(total)} vs configured {expected} (always-valid p = {p_value:.2g}, alpha {spec.srm_alpha})"
    )
    return SRMResult(
        counts={a: int(c) for a, c in zip(arms, counts, strict=True)},
        expected_share={a: float(p) for a, p in zip(arms, split, strict=True)},
        log_bayes_factor=float(max_log_bf),
        p_value=p_value,
        mismatch=bool(mismatch),
        reason=reason,
    )


def _timeline(
    frame: pd.DataFrame, spec: GuardrailSpec, pre: pd.DataFrame | None, *, alpha: float
) -> list[GuardrailResult]:
    """The computation behind the public functions, on a validated frame."""
    looks = pd.DatetimeIndex(frame["ts"].unique()).sort_values()
    frame = frame.assign(**{_LOOK: looks.get_indexer(pd.DatetimeIndex(frame["ts"]))})
    t = _arm_stats(frame[frame["arm"] == spec.treatment], pre, len(looks))
    c = _arm_stats(frame[frame["arm"] == spec.control], pre, len(looks))
    theta, v, reduction = _effect(t, c, spec, cuped=pre is not None)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate_t = np.where(t.den > 0, t.num / t.den, np.nan)
        rate_c = np.where(c.den > 0, c.num / c.den, np.nan)
    lower, upper = confidence_sequence(theta, v, alpha=alpha, tau=spec.tau)
    lower_rel, upper_rel, effect = np.expm1(lower), np.expm1(upper), np.expm1(theta)
    srm = _srm_sequence(frame, spec, len(looks))
    srm_results: list[SRMResult | None] = [None] * len(looks)
    if srm is not None:
        counts, split = srm
        max_log_bf = np.maximum.accumulate(
            srm_log_bayes_factor(counts, split, concentration=spec.srm_concentration)
        )
        srm_results = [_srm_result(counts[i], split, spec, max_log_bf[i]) for i in range(len(looks))]
    results = []
    for i, ts in enumerate(looks):
        verdict = decide(lower_rel[i], upper_rel[i], direction=spec.direction, min_effect=spec.min_effect)
        results.append(
            GuardrailResult(
                experiment=spec.experiment,
                metric=spec.metric,
                control=spec.control,
                treatment=spec.treatment,
                ts=pd.Timestamp(ts),
                decision=verdict.decision,
                reason=verdict.reason,
                effect=float(effect[i]),
                lower=float(lower_rel[i]),
                upper=float(upper_rel[i]),
                ruled_out_beyond=float(upper_rel[i] if spec.direction == "up" else lower_rel[i]),
                treatment_rate=float(rate_t[i]),
                control_rate=float(rate_c[i]),
                treatment_num=float(t.num[i]),
                control_num=float(c.num[i]),
                treatment_den=float(t.den[i]),
                control_den=float(c.den[i]),
                std_error=float(np.sqrt(v[i])),
                variance_reduction=float(reduction[i]),
                srm=srm_results[i],
            )
        )
    return results


def _prepare(
    frame: pd.DataFrame, spec: GuardrailSpec, pre_period: pd.DataFrame | None, segments: Sequence[str] = ()
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    _check_spec(spec)
    valid = _validate(frame, spec, segments)
    if pre_period is None:
        return valid, None
    if "unit" not in valid.columns:
        raise InvalidExperimentError(
            f"experiment {spec.experiment!r}, metric {spec.metric!r}: CUPED needs per-unit rows; "
            "add a 'unit' column to the frame or drop pre_period"
        )
    return valid, _validate_pre(pre_period, spec)


# --------------------------------------------------------------------------------------------- public API


def guardrail_timeline(
    frame: pd.DataFrame, spec: GuardrailSpec, *, pre_period: pd.DataFrame | None = None
) -> list[GuardrailResult]:
    """The guardrail as it stood at every bucket: one always-valid look per distinct ``ts``, oldest first.

    Each entry is what :func:`evaluate_guardrail` would have returned on the data up to that bucket, so a
    CLI can draw the effect and its interval over time; the interval only narrows.

    Args:
        frame: Experiment frame (module docstring): ``ts, arm, num, den`` and optionally ``unit``,
            ``assigned`` and segment columns.
        spec: The guardrail.
        pre_period: Per-unit pre-experiment sums ``unit, num, den`` for CUPED (needs ``unit`` in ``frame``).

    Returns:
        One :class:`GuardrailResult` per bucket.

    Raises:
        InvalidExperimentError: bad column, type, sign or NaN, or a bad spec.
        AssignmentError: unknown arm, missing control or treatment rows, a unit in two arms.
    """
    valid, pre = _prepare(frame, spec, pre_period)
    return _timeline(valid, spec, pre, alpha=spec.alpha)


def evaluate_guardrail(
    frame: pd.DataFrame, spec: GuardrailSpec, *, pre_period: pd.DataFrame | None = None
) -> GuardrailResult:
    """The guardrail now (at the latest bucket), valid however often it has been checked before.

    Args and raises as :func:`guardrail_timeline`.

    Returns:
        The :class:`GuardrailResult` of the last bucket.
    """
    return guardrail_timeline(frame, spec, pre_period=pre_period)[-1]


def segment_breakdown(
    frame: pd.DataFrame, spec: GuardrailSpec, *, segment: str, pre_period: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Effect per value of one segment column, ranked by the harm it carries.

    Each value gets the same always-valid interval and decision at ``alpha / k`` (Bonferroni over its ``k``
    values). ``excess`` is the harm-signed number of extra numerator events in treatment against the
    control rate, ``(R_t - R_c) * D_t`` (negated for ``direction="down"``); ``share`` is its part of the
    total positive excess.

    Args:
        frame: Experiment frame with the ``segment`` column.
        spec: The guardrail.
        segment: Segment column, e.g. ``"region"``.
        pre_period: Optional CUPED pre-period (see :func:`guardrail_timeline`).

    Returns:
        One row per segment value, most harmful first: ``segment, value, treatment_rate, control_rate,
        effect, lower, upper, decision, reason, excess, share, treatment_den, control_den``. Values where
        an arm has no rows are left out.

    Raises:
        InvalidExperimentError, AssignmentError: as :func:`guardrail_timeline`, and a missing segment column.
    """
    valid, pre = _prepare(frame, spec, pre_period, segments=(segment,))
    groups = [
        (value, rows)
        for value, rows in valid.groupby(segment, sort=True)
        if {spec.control, spec.treatment} <= set(rows["arm"].unique())
    ]
    sign = 1.0 if spec.direction == "up" else -1.0
    records = []
    for value, rows in groups:
        last = _timeline(rows, spec, pre, alpha=spec.alpha / max(len(groups), 1))[-1]
        excess = sign * (last.treatment_rate - last.control_rate) * last.treatment_den
        records.append(
            {
                "segment": segment,
                "value": value,
                "treatment_rate": last.treatment_rate,
                "control_rate": last.control_rate,
                "effect": last.effect,
                "lower": last.lower,
                "upper": last.upper,
                "decision": str(last.decision),
                "reason": last.reason,
                "excess": excess,
                "treatment_den": last.treatment_den,
                "control_den": last.control_den,
            }
        )
    columns = [
        "segment",
        "value",
        "treatment_rate",
        "control_rate",
        "effect",
        "lower",
        "upper",
        "decision",
        "reason",
        "excess",
        "share",
        "treatment_den",
        "control_den",
    ]
    if not records:
        return pd.DataFrame(columns=columns)
    out = pd.DataFrame(records)
    positive = out["excess"].clip(lower=0).sum()
    out["share"] = out["excess"] / positive if positive > 0 else 0.0
    return out.sort_values("excess", ascending=False, kind="stable").reset_index(drop=True)[columns]


def check_srm(counts: Mapping[str, float], spec: GuardrailSpec) -> SRMResult:
    """Sequential sample ratio mismatch test of assignment counts against ``spec.split``.

    This single-look form uses the current counts only; :func:`guardrail_timeline` keeps the running
    maximum over looks, which is what makes the test valid when checked every tick (the single-look Bayes
    factor is still a valid e-value at any one time).

    Args:
        counts: Units assigned per configured arm so far (arms absent are 0).
        spec: The guardrail (its ``split``, ``srm_alpha`` and ``srm_concentration``).

    Returns:
        The :class:`SRMResult`.

    Raises:
        AssignmentError: an arm in ``counts`` is not configured.
        InvalidExperimentError: a negative or non-finite count.
    """
    _check_spec(spec)
    arms = spec.arms
    where = f"experiment {spec.experiment!r}"
    unknown = sorted(set(counts) - set(arms))
    if unknown:
        raise AssignmentError(f"{where}: arms {unknown} are not configured (configured: {sorted(arms)})")
    vector = np.array([float(counts.get(arm, 0)) for arm in arms])
    if not (np.isfinite(vector).all() and (vector >= 0).all()):
        raise InvalidExperimentError(
            f"{where}: assignment counts must be finite and >= 0, got {dict(counts)}"
        )
    split = np.array(list(arms.values()))
    log_bf = float(srm_log_bayes_factor(vector, split, concentration=spec.srm_concentration))
    return _srm_result(vector, split, spec, max(log_bf, 0.0))


def timeline_frame(results: Sequence[GuardrailResult]) -> pd.DataFrame:
    """Timeline as a frame indexed by ``ts``, one row per look (SRM as ``srm_p_value``, ``srm_mismatch``)."""
    rows = []
    for result in results:
        row = {k: v for k, v in result.to_dict().items() if k not in ("srm", "ts")}
        row["srm_p_value"] = result.srm.p_value if result.srm is not None else np.nan
        row["srm_mismatch"] = result.srm.mismatch if result.srm is not None else False
        rows.append(row)
    return pd.DataFrame(rows, index=pd.DatetimeIndex([r.ts for r in results], name="ts"))
