"""Experiment guardrails: the always-valid test's error rates under hourly looks, power, SRM, CUPED, errors.

Simulations are seeded and vectorised over runs (arrays of looks on the last axis), so the false-alarm
checks with 300 runs x 14 days of hourly looks take about a second.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import detectors.guardrails as guardrails_module
import detectors.sequential as sequential_module
from detectors.errors import DetectorError
from detectors.guardrails import (
    AssignmentError,
    GuardrailSpec,
    InvalidExperimentError,
    check_srm,
    evaluate_guardrail,
    guardrail_timeline,
    segment_breakdown,
    timeline_frame,
)
from detectors.sequential import (
    Decision,
    confidence_sequence,
    count_log_ratio,
    decide,
    mixture_boundary,
    pooled_log_variance,
    pseudo_events,
    pseudo_rate,
    srm_log_bayes_factor,
)

HOURS = 14 * 24
RATE = 0.002  # 2 reports per 1k views
START = pd.Timestamp("2026-03-02", tz="UTC")
SPEC = GuardrailSpec(
    experiment="exp-17", metric="reports_per_1k_views", control="control", treatment="new_feed"
)


def _exposure(hours: int, per_hour: float) -> np.ndarray:
    """Views per hour per arm with a daily cycle (peak in the evening)."""
    h = np.arange(hours)
    return per_hour * (1.0 + 0.6 * np.sin(2 * np.pi * (h - 12) / 24))


def _simulate_lower_upper(
    runs: int, effect: float, *, seed: int, per_hour: float = 5000.0, spec: GuardrailSpec = SPEC
) -> tuple[np.ndarray, np.ndarray]:
    """Relative-effect bounds (runs x hours) of Poisson reports with hourly looks, as the frame API does."""
    rng = np.random.default_rng(seed)
    views = _exposure(HOURS, per_hour)
    treated = rng.poisson(RATE * (1 + effect) * views, (runs, HOURS)).cumsum(axis=1)
    control = rng.poisson(RATE * views, (runs, HOURS)).cumsum(axis=1)
    exposure = np.cumsum(views)
    theta, v = count_log_ratio(treated, exposure, control, exposure, kind="rate", min_events=spec.min_events)
    lower, upper = confidence_sequence(theta, v, alpha=spec.alpha, tau=spec.tau)
    return np.expm1(lower), np.expm1(upper)


def _aggregate_frame(
    effect: float, *, seed: int, hours: int = HOURS, per_hour: float = 5000.0
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    views = np.round(_exposure(hours, per_hour))
    ts = pd.date_range(START, periods=hours, freq="h")
    rows = []
    for arm, lift in (("control", 0.0), ("new_feed", effect)):
        rows.append(
            pd.DataFrame({"ts": ts, "arm": arm, "num": rng.poisson(RATE * (1 + lift) * views), "den": views})
        )
    return pd.concat(rows, ignore_index=True)


def _unit_frame(
    n_units: int, *, seed: int, effect: float = 0.0, buckets: int = 3, treat_share: float = 0.5
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-unit rows and a correlated pre-period: unit report rates vary a lot (gamma, shape 0.5)."""
    rng = np.random.default_rng(seed)
    unit_rate = rng.gamma(0.5, 0.02 / 0.5, n_units)
    arm = np.where(rng.random(n_units) < treat_share, "new_feed", "control")
    lift = np.where(arm == "new_feed", 1 + effect, 1.0)
    pre_views = rng.poisson(60, n_units)
    pre = pd.DataFrame(
        {"unit": np.arange(n_units), "num": rng.poisson(unit_rate * pre_views), "den": pre_views}
    )
    frames = []
    for b in range(buckets):
        active = rng.random(n_units) < 0.7
        views = rng.poisson(20, n_units)[active]
        frames.append(
            pd.DataFrame(
                {
                    "ts": START + pd.Timedelta(hours=b),
                    "unit": np.arange(n_units)[active],
                    "arm": arm[active],
                    "num": rng.poisson(unit_rate[active] * lift[active] * views),
                    "den": views,
                }
            )
        )
    return pd.concat(frames, ignore_index=True), pre


# ------------------------------------------------------------------------------------------ pure functions


@pytest.mark.parametrize(
    ("variance", "alpha", "tau"),
    [
        (1e-5, 0.05, 0.05),  # much data: v << tau^2
        (1e-3, 0.05, 0.05),  # v ~ tau^2 / 2
        (1e-1, 0.05, 0.05),  # very little data: v >> tau^2
        (1e-3, 0.001, 0.2),  # strict alpha, wide prior
    ],
)
def test_mixture_boundary_is_where_the_half_normal_mixture_reaches_one_over_alpha(
    variance: float, alpha: float, tau: float
) -> None:
    b = float(mixture_boundary(variance, alpha=alpha, tau=tau))
    s = variance + tau**2
    mixture = (
        2
        * np.sqrt(variance / s)
        * np.exp(b**2 * tau**2 / (2 * variance * s))
        * stats.norm.cdf(b * tau / np.sqrt(variance * s))
    )
    assert mixture == pytest.approx(1 / alpha, rel=1e-9)
    assert b > stats.norm.ppf(1 - alpha) * np.sqrt(variance)  # always wider than a single fixed-n look


def test_mixture_boundary_gives_nan_for_unusable_variance() -> None:
    out = mixture_boundary(np.array([np.nan, 0.0, -1.0, np.inf, 1e-3]), alpha=0.05, tau=0.05)
    assert np.isnan(out[:4]).all() and np.isfinite(out[4])


def test_confidence_sequence_only_narrows_and_skips_unusable_looks() -> None:
    theta = np.array([np.nan, 0.1, 0.0, 0.3, np.nan])
    v = np.array([np.nan, 1e-2, 1e-3, 1e-3, 1e-4])
    lower, upper = confidence_sequence(theta, v, alpha=0.05, tau=0.05)
    assert lower[0] == -np.inf and upper[0] == np.inf  # nothing known before the first usable look
    assert (np.diff(lower) >= 0).all() and (np.diff(upper) <= 0).all()
    assert lower[4] == lower[3] and upper[4] == upper[3]  # a NaN look changes nothing


NAN = float("nan")
INF = float("inf")


@pytest.mark.parametrize(
    ("lower", "upper", "direction", "expected"),
    [
        (0.01, 0.30, "up", Decision.HARM),  # excludes 0 on the harmful (high) side
        (0.01, 0.03, "up", Decision.HARM),  # significant but below min effect: harm still reported
        (-0.04, 0.04, "up", Decision.NO_HARM),  # excludes +5 %: no harm at this power
        (-0.30, -0.10, "up", Decision.NO_HARM),  # a clear improvement is no harm
        (-0.02, 0.08, "up", Decision.INCONCLUSIVE),  # holds 0 and +5 %
        (-0.30, -0.01, "down", Decision.HARM),  # lower is harmful and the interval is below 0
        (-0.04, 0.04, "down", Decision.NO_HARM),  # excludes -5 %
        (0.01, 0.30, "down", Decision.NO_HARM),  # an increase is no harm when lower is harmful
        (-0.08, 0.02, "down", Decision.INCONCLUSIVE),  # holds 0 and -5 %
        (-INF, INF, "up", Decision.INCONCLUSIVE),  # before the first usable look
        (NAN, NAN, "down", Decision.INCONCLUSIVE),  # no interval at all
        (0.0, 0.04, "up", Decision.NO_HARM),  # touching 0 is not excluding it
    ],
)
def test_decide(lower: float, upper: float, direction: str, expected: Decision) -> None:
    verdict = decide(lower, upper, direction=direction, min_effect=0.05)  # type: ignore[arg-type]
    assert verdict.decision is expected
    assert verdict.reason


def test_decide_reason_says_when_harm_is_below_the_minimum_effect() -> None:
    assert "below the minimum effect" in decide(0.01, 0.03, direction="up", min_effect=0.05).reason
    assert "below the minimum effect" not in decide(0.01, 0.30, direction="up", min_effect=0.05).reason


# ------------------------------------------------------------------------------------------ error rates


def test_aa_false_alarm_rate_with_hourly_looks_stays_below_alpha() -> None:
    lower, _ = _simulate_lower_upper(300, 0.0, seed=1)
    ever_harm = lower[:, -1] > 0  # running intersection: the last lower bound is the largest so far
    assert ever_harm.mean() <= SPEC.alpha
    # each look alone would be a nominal one-sided 5 % test; peeking at 336 of them would inflate that
    fixed = _fixed_n_peeking_rate(seed=1)
    assert fixed > 3 * SPEC.alpha


def _fixed_n_peeking_rate(*, seed: int) -> float:
    """False-alarm rate of a naive z-test looked at every hour (what the guardrail must not do)."""
    rng = np.random.default_rng(seed)
    views = _exposure(HOURS, 5000.0)
    treated = rng.poisson(RATE * views, (300, HOURS)).cumsum(axis=1)
    control = rng.poisson(RATE * views, (300, HOURS)).cumsum(axis=1)
    exposure = np.cumsum(views)
    theta, v = count_log_ratio(treated, exposure, control, exposure, kind="rate", min_events=SPEC.min_events)
    z = np.nan_to_num(theta / np.sqrt(v))
    return float((z > stats.norm.ppf(0.95)).any(axis=1).mean())


def test_false_no_harm_at_the_minimum_effect_stays_below_alpha() -> None:
    _, upper = _simulate_lower_upper(300, SPEC.min_effect, seed=2)
    assert (upper[:, -1] < SPEC.min_effect).mean() <= SPEC.alpha


def test_a_real_effect_is_detected() -> None:
    lower, _ = _simulate_lower_upper(200, 0.20, seed=3)
    detected = lower > 0
    assert detected[:, -1].mean() >= 0.95
    first_hour = detected.argmax(axis=1)[detected[:, -1]] + 1
    assert np.median(first_hour) < 4 * 24  # +20 % on 10 reports/hour/arm: within days, not weeks


def test_frame_path_matches_the_array_path_and_detects_harm() -> None:
    frame = _aggregate_frame(0.20, seed=4)
    timeline = guardrail_timeline(frame, SPEC)
    assert len(timeline) == HOURS
    got = timeline_frame(timeline)
    rng = np.random.default_rng(4)
    views = np.round(_exposure(HOURS, 5000.0))
    c = rng.poisson(RATE * views).cumsum()
    t = rng.poisson(RATE * 1.2 * views).cumsum()
    # equal exposure: half a pseudo-event per arm, and the Poisson variance at the pooled count, simply
    theta = np.log((t + 0.5) / (c + 0.5))
    v = 4 / (t + c)
    ok = t + c >= SPEC.min_events
    lower, upper = confidence_sequence(
        np.where(ok, theta, np.nan), np.where(ok, v, np.nan), alpha=0.05, tau=SPEC.tau
    )
    np.testing.assert_allclose(got["lower"], np.expm1(lower))
    np.testing.assert_allclose(got["upper"], np.expm1(upper))
    last = evaluate_guardrail(frame, SPEC)
    assert last.decision is Decision.HARM
    assert last.lower <= last.effect <= last.upper and last.lower > 0
    assert last.ruled_out_beyond == last.upper
    assert last.treatment_rate == pytest.approx(frame.query("arm == 'new_feed'")["num"].sum() / views.sum())
    first_harm = got.index[got["decision"] == "harm"][0]
    assert (got.loc[first_harm:, "decision"] == "harm").all()  # once detected, it stays detected
    assert last.srm is None  # no units, no 'assigned' column
    json.dumps(last.to_dict())  # plain JSON for logs


def test_direction_down_flags_a_drop_and_not_a_rise() -> None:
    spec = GuardrailSpec(
        experiment="exp-17",
        metric="reviews_per_report",
        control="control",
        treatment="new_feed",
        direction="down",
    )
    assert evaluate_guardrail(_aggregate_frame(-0.25, seed=5), spec).decision is Decision.HARM
    rise = evaluate_guardrail(_aggregate_frame(0.25, seed=5), spec)
    assert rise.decision is Decision.NO_HARM
    assert rise.ruled_out_beyond == rise.lower


def test_a_drop_to_zero_events_is_still_seen_when_lower_is_harmful() -> None:
    spec = GuardrailSpec(
        experiment="exp-17",
        metric="reports_per_1k_views",
        control="control",
        treatment="new_feed",
        direction="down",
    )
    frame = _aggregate_frame(0.0, seed=8, hours=48)
    frame.loc[frame["arm"] == "new_feed", "num"] = 0  # the report button vanished in treatment
    result = evaluate_guardrail(frame, spec)
    assert result.decision is Decision.HARM
    assert result.effect < -0.95 and result.treatment_rate == 0.0


@pytest.mark.parametrize("treated_share", [0.1, 0.5, 0.9])
def test_aa_false_alarms_stay_below_alpha_with_an_uneven_split(treated_share: float) -> None:
    rng = np.random.default_rng(12)
    views = 2 * _exposure(HOURS, 5000.0)
    treated_views, control_views = treated_share * views, (1 - treated_share) * views
    treated = rng.poisson(RATE * treated_views, (300, HOURS)).cumsum(axis=1)
    control = rng.poisson(RATE * control_views, (300, HOURS)).cumsum(axis=1)
    theta, v = count_log_ratio(
        treated,
        treated_views.cumsum(),
        control,
        control_views.cumsum(),
        kind="rate",
        min_events=SPEC.min_events,
    )
    lower, upper = confidence_sequence(theta, v, alpha=SPEC.alpha, tau=SPEC.tau)
    assert (lower[:, -1] > 0).mean() <= SPEC.alpha  # no false harm (up)
    assert (upper[:, -1] < 0).mean() <= SPEC.alpha  # no false harm (down)


@pytest.mark.parametrize(
    ("num", "den", "kind", "pseudo", "rate"),
    [
        (10.0, 1000.0, "rate", 0.0, 0.01),  # events per exposure
        (0.0, 1000.0, "rate", 0.5, 5e-4),  # no events yet: the pseudo-event keeps it positive
        (25.0, 100.0, "ratio", 0.0, 0.25),  # a proportion
        (0.0, 99.0, "ratio", 0.5, 0.005),  # Haldane-style (0 + w) / (n + 2w)
        (3.0, 0.0, "rate", 0.5, NAN),  # no exposure: unknown
    ],
)
def test_pseudo_rate(num: float, den: float, kind: str, pseudo: float, rate: float) -> None:
    got = pseudo_rate(np.array(num), np.array(den), kind=kind, pseudo=pseudo)  # type: ignore[arg-type]
    np.testing.assert_allclose(got, rate, rtol=1e-12)


@pytest.mark.parametrize(
    ("num_t", "den_t", "num_c", "den_c", "kind", "expected"),
    [
        (50.0, 1e4, 50.0, 1e4, "rate", 2 / 50),  # Poisson, equal arms: 1/E_t + 1/E_c = 2 / 50
        (0.0, 1e4, 100.0, 1e4, "rate", 2 / 50),  # an empty arm does not blow it up (pooled rate)
        (30.0, 1e3, 90.0, 3e3, "rate", (1 / 1e3 + 1 / 3e3) / 0.03),  # uneven exposure
        (50.0, 100.0, 50.0, 100.0, "ratio", 1.0 * (2 / 100)),  # binomial p = 0.5: (1 - p) / p = 1
        (0.0, 1e4, 0.0, 1e4, "rate", NAN),  # no events: unknown
        (5.0, 0.0, 5.0, 1e4, "rate", NAN),  # an arm without exposure: unknown
    ],
)
def test_pooled_log_variance(
    num_t: float, den_t: float, num_c: float, den_c: float, kind: str, expected: float
) -> None:
    got = pooled_log_variance(np.array(num_t), np.array(den_t), np.array(num_c), np.array(den_c), kind=kind)  # type: ignore[arg-type]
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_pseudo_events_share_one_event_by_exposure_and_count_log_ratio_gates_on_pooled_events() -> None:
    w_t, w_c = pseudo_events(np.array([100.0, 0.0]), np.array([300.0, 0.0]))
    np.testing.assert_allclose(w_t, [0.25, 0.0])
    np.testing.assert_allclose(w_c, [0.75, 0.0])
    theta, v = count_log_ratio(
        np.array([0.0, 10.0, 30.0]),
        np.full(3, 1e4),
        np.array([30.0, 29.0, 30.0]),
        np.full(3, 1e4),
        kind="rate",
        min_events=40,
    )
    assert np.isnan(theta[0]) and np.isnan(theta[1])  # 30 and 39 pooled events: too few
    assert theta[2] == pytest.approx(0.0) and v[2] == pytest.approx(2 / 30)


def test_no_harm_is_reached_on_a_large_aa_experiment() -> None:
    result = evaluate_guardrail(_aggregate_frame(0.0, seed=6, per_hour=200_000.0), SPEC)
    assert result.decision is Decision.NO_HARM
    assert result.ruled_out_beyond < SPEC.min_effect


def test_ratio_kind_uses_binomial_variance_without_units() -> None:
    frame = _aggregate_frame(0.0, seed=7, hours=48, per_hour=500.0)  # num <= den: a proportion of trials
    spec = GuardrailSpec(
        experiment="exp-17", metric="violation_rate", control="control", treatment="new_feed", kind="ratio"
    )
    result = evaluate_guardrail(frame, spec)
    assert result.decision in (Decision.INCONCLUSIVE, Decision.NO_HARM)
    assert np.isfinite(result.effect)


# ------------------------------------------------------------------------------------------ SRM


def test_srm_flags_52_48_on_a_large_sample_and_not_50_50() -> None:
    assert check_srm({"control": 52_000, "new_feed": 48_000}, SPEC).mismatch
    rng = np.random.default_rng(8)
    fair = rng.multinomial(100_000, [0.5, 0.5])
    result = check_srm({"control": int(fair[0]), "new_feed": int(fair[1])}, SPEC)
    assert not result.mismatch
    assert result.p_value > SPEC.srm_alpha
    assert "matches" in result.reason


def test_srm_follows_a_configured_uneven_split() -> None:
    spec = GuardrailSpec(
        experiment="exp-17",
        metric="m",
        control="control",
        treatment="new_feed",
        split={"control": 9, "new_feed": 1},
    )
    assert not check_srm({"control": 90_100, "new_feed": 9_900}, spec).mismatch
    assert check_srm({"control": 50_000, "new_feed": 50_000}, spec).mismatch


def test_sequential_srm_false_alarms_stay_below_alpha_with_hourly_looks() -> None:
    rng = np.random.default_rng(9)
    alpha = 0.05  # a loose alpha so the check has something to count
    hourly = rng.multinomial(300, [0.5, 0.5], size=(500, HOURS)).cumsum(axis=1)  # runs x looks x arms
    log_bf = srm_log_bayes_factor(hourly, np.array([0.5, 0.5]), concentration=SPEC.srm_concentration)
    assert (log_bf.max(axis=1) >= np.log(1 / alpha)).mean() <= alpha


def test_srm_in_the_timeline_counts_units_once() -> None:
    frame, _ = _unit_frame(40_000, seed=10, treat_share=0.48)
    result = evaluate_guardrail(frame, SPEC)
    assert result.srm is not None and result.srm.mismatch
    assert sum(result.srm.counts.values()) == frame["unit"].nunique()
    balanced, _ = _unit_frame(40_000, seed=10, treat_share=0.5)
    srm = evaluate_guardrail(balanced, SPEC).srm
    assert srm is not None and not srm.mismatch


def test_srm_from_assigned_counts_without_units() -> None:
    frame = _aggregate_frame(0.0, seed=11, hours=24)
    frame["assigned"] = np.where(frame["arm"] == "control", 1100, 900)
    result = evaluate_guardrail(frame, SPEC)
    assert result.srm is not None and result.srm.mismatch
    assert result.srm.counts == {"control": 1100 * 24, "new_feed": 900 * 24}


# ------------------------------------------------------------------------------------------ units and CUPED


def test_unit_variance_sees_overdispersion_that_poisson_misses() -> None:
    frame, _ = _unit_frame(5_000, seed=12)
    by_unit = evaluate_guardrail(frame, SPEC)
    pooled = evaluate_guardrail(frame.drop(columns="unit"), SPEC)
    assert by_unit.upper - by_unit.lower > 1.2 * (pooled.upper - pooled.lower)
    assert by_unit.effect == pytest.approx(pooled.effect)


@pytest.fixture(scope="module")
def unit_aa_runs() -> list[tuple[pd.DataFrame, pd.DataFrame]]:
    """Thirty seeded per-unit A/A experiments (3,000 units, 3 buckets) with their pre-periods."""
    return [_unit_frame(3_000, seed=100 + seed) for seed in range(30)]


def test_unit_standard_error_matches_the_spread_of_estimates_over_runs(
    unit_aa_runs: list[tuple[pd.DataFrame, pd.DataFrame]],
) -> None:
    effects, errors, poisson_errors = [], [], []
    for frame, _ in unit_aa_runs:
        result = evaluate_guardrail(frame, SPEC)
        effects.append(np.log1p(result.effect))
        errors.append(result.std_error)
        poisson_errors.append(evaluate_guardrail(frame.drop(columns="unit"), SPEC).std_error)
    spread = np.std(effects, ddof=1)
    assert 0.75 < np.median(errors) / spread < 1.3  # the delta method over units is calibrated...
    assert np.median(poisson_errors) / spread < 0.7  # ...where Poisson on pooled counts is overconfident


def test_cuped_reduces_variance_on_correlated_pre_period_data(
    unit_aa_runs: list[tuple[pd.DataFrame, pd.DataFrame]],
) -> None:
    raw, adjusted, reductions = [], [], []
    for frame, pre in unit_aa_runs:
        unadjusted = evaluate_guardrail(frame, SPEC)
        raw.append(unadjusted.effect)
        result = evaluate_guardrail(frame, SPEC, pre_period=pre)
        adjusted.append(result.effect)
        reductions.append(result.variance_reduction)
        assert result.std_error < unadjusted.std_error
    assert np.median(reductions) > 0.3  # the reported reduction...
    assert np.var(adjusted) < 0.75 * np.var(raw)  # ...shows in the spread of the estimates
    assert abs(np.mean(adjusted)) < 2 * np.std(adjusted) / np.sqrt(len(adjusted))  # and stays unbiased on A/A


def test_cuped_narrows_the_interval_and_keeps_detecting() -> None:
    frame, pre = _unit_frame(20_000, seed=13, effect=0.3)
    raw = evaluate_guardrail(frame, SPEC)
    adjusted = evaluate_guardrail(frame, SPEC, pre_period=pre)
    assert adjusted.upper - adjusted.lower < raw.upper - raw.lower
    assert adjusted.decision is Decision.HARM


def test_units_without_pre_period_are_kept() -> None:
    frame, pre = _unit_frame(3_000, seed=14)
    result = evaluate_guardrail(frame, SPEC, pre_period=pre.iloc[: len(pre) // 2])
    assert np.isfinite(result.effect) and 0 < result.variance_reduction < 1


# ------------------------------------------------------------------------------------------ segments


def test_segment_breakdown_ranks_the_segment_carrying_the_harm_first() -> None:
    frames = []
    for i, (region, effect) in enumerate((("eu", 0.0), ("br", 0.5), ("us", 0.0), ("in", -0.05))):
        frame = _aggregate_frame(effect, seed=20 + i, hours=72, per_hour=20_000.0)
        frames.append(frame.assign(region=region))
    out = segment_breakdown(pd.concat(frames, ignore_index=True), SPEC, segment="region")
    top = out.iloc[0].to_dict()
    assert top["value"] == "br"
    assert top["decision"] == "harm" and top["share"] > 0.8
    assert set(out["decision"].iloc[1:]) <= {"no_harm", "inconclusive"}
    assert list(out.columns[:3]) == ["segment", "value", "treatment_rate"]
    # Bonferroni: each segment's interval is wider than one guardrail on the same data at full alpha
    br = frames[1]
    alone = evaluate_guardrail(br, SPEC)
    assert top["upper"] - top["lower"] > alone.upper - alone.lower


# ------------------------------------------------------------------------------------------ bad input


def _good() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ts": pd.to_datetime(["2026-03-02T00:00Z"] * 4),
            "unit": ["u1", "u2", "u3", "u4"],
            "arm": ["control", "control", "new_feed", "new_feed"],
            "num": [1.0, 0.0, 2.0, 1.0],
            "den": [100.0, 80.0, 90.0, 120.0],
        }
    )


@pytest.mark.parametrize(
    ("mutate", "error", "match"),
    [
        # an arm nobody configured: names it and the configured ones
        (
            lambda f: f.assign(arm=["control", "control", "new_feed", "old_feed"]),
            AssignmentError,
            "'old_feed'.*configured",
        ),
        # one unit in two arms
        (
            lambda f: f.assign(unit=["u1", "u2", "u1", "u4"]),
            AssignmentError,
            "1 units are assigned to more than one arm.*u1",
        ),
        # no control rows at all
        (
            lambda f: f.assign(arm="new_feed", unit=["a", "b", "c", "d"]),
            AssignmentError,
            "control arm 'control' has no rows",
        ),
        # no treatment rows
        (lambda f: f.assign(arm="control"), AssignmentError, "treatment arm 'new_feed' has no rows"),
        # negative count
        (lambda f: f.assign(num=[1.0, -1.0, 2.0, 1.0]), InvalidExperimentError, "column 'num'.*negative"),
        # NaN exposure
        (lambda f: f.assign(den=[100.0, NAN, 90.0, 120.0]), InvalidExperimentError, "column 'den'.*NaN"),
        # non-numeric
        (lambda f: f.assign(num=["1", "x", "2", "1"]), InvalidExperimentError, "column 'num' is not numeric"),
        # naive timestamps
        (lambda f: f.assign(ts=f["ts"].dt.tz_localize(None)), InvalidExperimentError, "naive.*tz_localize"),
        # missing column
        (lambda f: f.drop(columns="den"), InvalidExperimentError, r"lacks columns \['den'\]"),
        # a missing arm label
        (
            lambda f: f.assign(arm=["control", None, "new_feed", "new_feed"]),
            InvalidExperimentError,
            "'arm' has missing",
        ),
        # empty frame
        (lambda f: f.iloc[:0], InvalidExperimentError, "no rows"),
    ],
)
def test_bad_assignment_data_gets_a_named_error(mutate: object, error: type[Exception], match: str) -> None:
    frame = mutate(_good())  # type: ignore[operator]
    with pytest.raises(error, match=match) as info:
        evaluate_guardrail(frame, SPEC)
    assert "exp-17" in str(info.value) and isinstance(info.value, DetectorError)


def test_ratio_without_units_rejects_num_above_den() -> None:
    spec = GuardrailSpec(
        experiment="exp-17", metric="violation_rate", control="control", treatment="new_feed", kind="ratio"
    )
    frame = _good().drop(columns="unit").assign(num=[1.0, 200.0, 2.0, 1.0])
    with pytest.raises(InvalidExperimentError, match=r"num > den.*kind='rate'"):
        evaluate_guardrail(frame, spec)


def test_pre_period_needs_units_and_valid_columns() -> None:
    pre = pd.DataFrame({"unit": ["u1"], "num": [1.0], "den": [10.0]})
    with pytest.raises(InvalidExperimentError, match="CUPED needs per-unit rows"):
        evaluate_guardrail(_good().drop(columns="unit"), SPEC, pre_period=pre)
    with pytest.raises(InvalidExperimentError, match="pre_period lacks columns"):
        evaluate_guardrail(_good(), SPEC, pre_period=pre.drop(columns="den"))
    with pytest.raises(InvalidExperimentError, match="pre_period column 'num'"):
        evaluate_guardrail(_good(), SPEC, pre_period=pre.assign(num=-1.0))


@pytest.mark.parametrize(
    ("changes", "error", "match"),
    [
        ({"treatment": "control"}, AssignmentError, "same arm"),  # comparing an arm with itself
        (
            {"split": {"control": 1, "other": 1}},
            AssignmentError,
            "treatment arm 'new_feed' is not in the configured split",
        ),
        ({"split": {"control": 1, "new_feed": 0}}, InvalidExperimentError, "split shares must be positive"),
        ({"alpha": 0.7}, InvalidExperimentError, "alpha must be in"),
        ({"min_effect": 0.0}, InvalidExperimentError, "min_effect"),
        ({"min_effect": 1.5, "direction": "down"}, InvalidExperimentError, "min_effect"),
        ({"kind": "gauge"}, InvalidExperimentError, "kind must be"),
        ({"direction": "both"}, InvalidExperimentError, "direction must be"),
    ],
)
def test_bad_spec_gets_a_named_error(changes: dict[str, object], error: type[Exception], match: str) -> None:
    spec = GuardrailSpec(**{**SPEC.__dict__, **changes})  # type: ignore[arg-type]
    with pytest.raises(error, match=match):
        evaluate_guardrail(_good(), spec)


def test_check_srm_rejects_unknown_arms_and_bad_counts() -> None:
    with pytest.raises(AssignmentError, match="'ghost'"):
        check_srm({"control": 10, "ghost": 3}, SPEC)
    with pytest.raises(InvalidExperimentError, match="finite and >= 0"):
        check_srm({"control": -1, "new_feed": 3}, SPEC)


def test_guardrail_modules_import_nothing_from_alerts_or_monitor() -> None:
    for module in (guardrails_module, sequential_module):
        tree = ast.parse(Path(module.__file__ or "").read_text(encoding="utf-8"))
        imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module] + [
            a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
        ]
        assert not [name for name in imported if name.split(".")[0] in ("alerts", "monitor")]
