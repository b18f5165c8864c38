"""Guardrail benchmark: error rates and time to detect of :mod:`detectors.guardrails` with hourly looks.

Simulated experiments, seeded: a report rate of 2 per 1k views in control, Poisson reports, hourly views per
arm with a daily cycle (+-60 % around ``--views-per-hour``), one look per hour for 14 days (336 looks).

* A/A: the share of runs whose guardrail ever says ``harm`` (target <= alpha 0.05), next to a naive
  fixed-n z-test looked at every hour; the share reaching ``no_harm`` and when.
* Power: for +5 %, +10 %, +20 % relative, the median hours to the first ``harm`` look and the share
  detected within 14 days; the false ``no_harm`` rate at exactly +5 % (target <= alpha).
* Direction ``down``: hours to flag a -10 % drop and a drop to zero events.
* Mixture scale: the same two figures for other prior scales ``tau`` (the default is ``log(1 + min_effect)``).
* Units: per-viewer A/A runs (gamma-distributed viewer report rates, so reports are overdispersed), through
  the frame API: false alarms with the unit-level delta method vs the Poisson variance of pooled counts.
* CUPED: variance reduction from a per-viewer pre-period (reported by the guardrail and measured as the
  spread of the effect estimates over runs).
* SRM: false alarms of the sequential multinomial test at alpha 0.001 under 50/50 and the hours to flag
  48/52.

The A/A and power sections use the array functions of :mod:`detectors.sequential` vectorised over runs
(the test suite checks that the frame API gives the same bounds); the unit and CUPED sections use the
frame API end to end.

Run: ``.venv/bin/python benchmarks/experiments.py`` (about a minute). The last line printed is
``experiments: A/A false alarms <rate> (alpha 0.05), median time to detect +10 %: <hours> h``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from scipy import stats

from detectors.guardrails import GuardrailSpec, evaluate_guardrail, guardrail_timeline
from detectors.sequential import Decision, confidence_sequence, count_log_ratio, srm_log_bayes_factor

HOURS = 14 * 24
START = pd.Timestamp("2026-03-02", tz="UTC")
SPEC = GuardrailSpec(
    experiment="bench", metric="reports_per_1k_views", control="control", treatment="treatment"
)


def views_per_hour(hours: int, mean: float) -> np.ndarray:
    """Hourly views per arm with a daily cycle peaking in the evening."""
    h = np.arange(hours)
    return mean * (1.0 + 0.6 * np.sin(2 * np.pi * (h - 12) / 24))


def simulate(
    runs: int, effect: float, *, rate: float, mean_views: float, seed: int, spec: GuardrailSpec, tau: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Relative-effect bounds (runs x looks) and the naive z statistic at every hourly look."""
    rng = np.random.default_rng(seed)
    views = views_per_hour(HOURS, mean_views)
    treated = rng.poisson(rate * (1 + effect) * views, (runs, HOURS)).cumsum(axis=1)
    control = rng.poisson(rate * views, (runs, HOURS)).cumsum(axis=1)
    exposure = np.cumsum(views)
    theta, v = count_log_ratio(treated, exposure, control, exposure, kind="rate", min_events=spec.min_events)
    lower, upper = confidence_sequence(theta, v, alpha=spec.alpha, tau=tau)
    return np.expm1(lower), np.expm1(upper), np.nan_to_num(theta / np.sqrt(v))


def first_hour(flags: np.ndarray) -> np.ndarray:
    """1-based hour of the first True per run (NaN when never)."""
    ever = flags.any(axis=1)
    return np.where(ever, flags.argmax(axis=1) + 1.0, np.nan)


def median_hours(hours: np.ndarray) -> float:
    """Median over the runs that got there (NaN when none did)."""
    return float(np.nanmedian(hours)) if np.isfinite(hours).any() else float("nan")


def unit_experiment(
    n_units: int, hours: int, *, seed: int, effect: float = 0.0, rate: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-viewer hourly rows and a pre-period: viewer rates are gamma (shape 0.5), so reports cluster."""
    rng = np.random.default_rng(seed)
    unit_rate = rng.gamma(0.5, rate / 0.5, n_units)
    arm = np.where(rng.random(n_units) < 0.5, "treatment", "control")
    lift = np.where(arm == "treatment", 1 + effect, 1.0)
    pre_views = rng.poisson(200, n_units)
    pre = pd.DataFrame(
        {"unit": np.arange(n_units), "num": rng.poisson(unit_rate * pre_views), "den": pre_views}
    )
    active = rng.random((hours, n_units)) < 0.2
    h_idx, u_idx = np.nonzero(active)
    views = rng.poisson(30, len(u_idx))
    frame = pd.DataFrame(
        {
            "ts": START + pd.to_timedelta(h_idx, unit="h"),
            "unit": u_idx,
            "arm": arm[u_idx],
            "num": rng.poisson(unit_rate[u_idx] * lift[u_idx] * views),
            "den": views,
        }
    )
    return frame, pre


def main() -> None:
    """Print the figures; the last line is the summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000, help="simulated experiments per cell")
    parser.add_argument("--views-per-hour", type=float, default=20_000.0, help="mean hourly views per arm")
    parser.add_argument("--rate", type=float, default=2.0, help="control reports per 1k views")
    parser.add_argument("--unit-runs", type=int, default=200, help="per-viewer A/A runs (frame API)")
    parser.add_argument("--seed", type=int, default=17)
    args = parser.parse_args()
    rate, views, runs = args.rate / 1000.0, args.views_per_hour, args.runs
    started = time.perf_counter()
    print(
        f"setup: {runs} runs per cell, {HOURS} hourly looks (14 days), control rate {args.rate:g} per 1k "
        "views, "
        f"{views:,.0f} views/hour/arm on average (~{rate * views:.0f} reports/hour/arm), alpha {SPEC.alpha}, "
        f"min effect {SPEC.min_effect:+.0%}, tau {SPEC.tau:.4f}"
    )

    lower, upper, z = simulate(
        runs, 0.0, rate=rate, mean_views=views, seed=args.seed, spec=SPEC, tau=SPEC.tau
    )
    aa_false = float((lower[:, -1] > 0).mean())
    naive = float((z > stats.norm.ppf(1 - SPEC.alpha)).any(axis=1).mean())
    no_harm = first_hour(upper < SPEC.min_effect)
    print(
        f"A/A: false harm {aa_false:.4f} (always-valid, alpha {SPEC.alpha}); naive z-test peeked hourly "
        f"{naive:.3f}; no_harm reached by 14 days in {np.isfinite(no_harm).mean():.1%} of runs, "
        f"median {median_hours(no_harm):.0f} h"
    )

    print(
        f"{'effect':>7} {'median h to harm':>17} {'p10 h':>6} {'p90 h':>6} {'power 14 d':>11} "
        f"{'false no_harm':>14}"
    )
    median_10 = float("nan")
    for k, effect in enumerate((0.05, 0.10, 0.20)):
        lower, upper, _ = simulate(
            runs, effect, rate=rate, mean_views=views, seed=args.seed + 1 + k, spec=SPEC, tau=SPEC.tau
        )
        hours = first_hour(lower > 0)
        detected = np.isfinite(hours)
        p10, p90 = (np.nanpercentile(hours, q) if detected.any() else np.nan for q in (10, 90))
        false_no_harm = (upper[:, -1] < SPEC.min_effect).mean() if effect == SPEC.min_effect else np.nan
        med = median_hours(hours)
        median_10 = med if effect == 0.10 else median_10
        print(
            f"{effect:>+7.0%} {med:>17.0f} {p10:>6.0f} {p90:>6.0f} {detected.mean():>11.1%} "
            f"{'' if np.isnan(false_no_harm) else f'{false_no_harm:.4f}':>14}"
        )

    down = GuardrailSpec(
        experiment="bench",
        metric="reports_per_1k_views",
        control="control",
        treatment="treatment",
        direction="down",
    )
    cells = []
    for k, effect in enumerate((-0.10, -1.0)):
        _, upper, _ = simulate(
            runs, effect, rate=rate, mean_views=views, seed=args.seed + 20 + k, spec=down, tau=down.tau
        )
        hours = first_hour(upper < 0)
        cells.append(
            f"{effect:+.0%}: median {median_hours(hours):.0f} h, power {np.isfinite(hours).mean():.1%}"
        )
    print(f"direction down (a drop is harmful): {'; '.join(cells)}")

    print("mixture scale tau (log scale): A/A false harm, median h to detect +10 %, power +5 % at 14 d")
    for tau in (0.02, SPEC.tau, 0.1, 0.2):
        lower, _, _ = simulate(
            runs, 0.0, rate=rate, mean_views=views, seed=args.seed + 10, spec=SPEC, tau=tau
        )
        lower10, _, _ = simulate(
            runs, 0.10, rate=rate, mean_views=views, seed=args.seed + 11, spec=SPEC, tau=tau
        )
        lower5, _, _ = simulate(
            runs, 0.05, rate=rate, mean_views=views, seed=args.seed + 12, spec=SPEC, tau=tau
        )
        print(
            f"  tau {tau:.4f}: {(lower[:, -1] > 0).mean():.4f}, "
            f"{median_hours(first_hour(lower10 > 0)):.0f} h, {(lower5[:, -1] > 0).mean():.1%}"
        )

    unit_hours, n_units = 72, 3000
    by_unit = pooled = 0
    raw_effects, cuped_effects, reductions = [], [], []
    t0 = time.perf_counter()
    for i in range(args.unit_runs):
        frame, pre = unit_experiment(n_units, unit_hours, seed=args.seed + 1000 + i, rate=0.02)
        timeline = guardrail_timeline(frame, SPEC)
        by_unit += any(look.decision is Decision.HARM for look in timeline)
        pooled_timeline = guardrail_timeline(frame.drop(columns="unit"), SPEC)
        pooled += any(look.decision is Decision.HARM for look in pooled_timeline)
        raw_effects.append(timeline[-1].effect)
        adjusted = evaluate_guardrail(frame, SPEC, pre_period=pre)
        cuped_effects.append(adjusted.effect)
        reductions.append(adjusted.variance_reduction)
    if args.unit_runs:
        print(
            f"units: {args.unit_runs} per-viewer A/A runs ({n_units} viewers, {unit_hours} hourly looks, "
            f"gamma rates): false harm {by_unit / args.unit_runs:.3f} with the unit delta method vs "
            f"{pooled / args.unit_runs:.3f} treating pooled counts as Poisson "
            f"({time.perf_counter() - t0:.1f} s)"
        )
        spread = 1 - np.var(cuped_effects) / np.var(raw_effects)
        print(
            f"CUPED: reported variance reduction median {np.median(reductions):.1%} "
            f"(p10 {np.percentile(reductions, 10):.1%}, p90 {np.percentile(reductions, 90):.1%}); "
            f"measured over runs {spread:.1%} (pre-period 200 views per viewer)"
        )

    rng = np.random.default_rng(args.seed + 2000)
    per_hour_units = 500
    split = np.array([0.5, 0.5])
    threshold = np.log(1 / SPEC.srm_alpha)
    fair = rng.multinomial(per_hour_units, split, size=(runs, HOURS)).cumsum(axis=1)
    skewed = rng.multinomial(per_hour_units, [0.48, 0.52], size=(runs, HOURS)).cumsum(axis=1)
    fair_bf = srm_log_bayes_factor(fair, split, concentration=SPEC.srm_concentration)
    skew_bf = srm_log_bayes_factor(skewed, split, concentration=SPEC.srm_concentration)
    flag_hours = first_hour(skew_bf >= threshold)
    print(
        f"SRM (alpha {SPEC.srm_alpha}, {per_hour_units} new units/hour): false mismatch under 50/50 "
        f"{(fair_bf >= threshold).any(axis=1).mean():.4f}; 48/52 flagged in "
        f"{np.isfinite(flag_hours).mean():.1%} of runs, median {median_hours(flag_hours):.0f} h "
        f"(~{median_hours(flag_hours) * per_hour_units:,.0f} units)"
    )
    print(f"run time {time.perf_counter() - started:.1f} s")
    print(
        f"experiments: A/A false alarms {aa_false:.4f} (alpha {SPEC.alpha}), "
        f"median time to detect +10 %: {median_10:.0f} h"
    )


if __name__ == "__main__":
    main()
