"""Always-valid sequential statistics for experiment guardrails: pure, vectorised numpy functions.

Everything here works on arrays whose last axis is the sequence of looks (one per hourly tick), so the same
code serves one experiment in the daemon and thousands of simulated ones in the benchmark.

Effect scale. The effect of a treatment on a rate is the log rate ratio ``theta = log(R_t / R_c)``,
reported as the relative effect ``exp(theta) - 1`` (``+0.10`` = ten percent more harm per exposure). Its
variance is the delta method ``v = Var(R_t) / R_t**2 + Var(R_c) / R_c**2``; for independent events
(no units) ``Var`` is Poisson or binomial at the pooled rate (:func:`pooled_log_variance`:
``v = (1 / D_t + 1 / D_c) / R_pooled`` for Poisson), which is exact under "no effect" and finite when an
arm has no events yet. One pseudo-event shared by exposure (:func:`pseudo_events`) keeps ``theta``
finite in that case.

Confidence sequence. The bounds are those of a mixture sequential probability ratio test (mSPRT, Johari et
al. 2017, "Peeking at A/B tests"; the normal-mixture boundary of Howard et al. 2021, "Time-uniform,
nonparametric, nonasymptotic confidence sequences"), used with a plug-in variance as an asymptotic
confidence sequence (Waudby-Smith et al. 2023). For one side, the likelihood ratio of ``theta0 + delta``
against ``theta0`` given ``theta_hat ~ N(theta, v)`` is mixed over a half-normal prior
``delta ~ |N(0, tau^2)|``::

    Lambda+(x) = 2 sqrt(v / (v + tau^2)) exp(x^2 tau^2 / (2 v (v + tau^2))) Phi(x tau / sqrt(v (v + tau^2)))

with ``x = theta_hat - theta0``. ``Lambda+`` is a nonnegative martingale under ``theta0``, so by Ville's
inequality it exceeds ``1 / alpha`` at *any* look with probability at most ``alpha``. The lower bound at a
look is ``theta_hat - b(v)`` with ``Lambda+(b) = 1 / alpha`` (solved by bisection, :func:`mixture_boundary`);
the upper bound is the mirror image. Each bound alone is valid at level ``alpha`` uniformly over time, so the
running intersection (largest lower bound, smallest upper bound so far) is too, and it can be checked every
hour without inflating false alarms.

Sample ratio mismatch. :func:`srm_log_bayes_factor` is the Dirichlet-multinomial Bayes factor of Lindon &
Malek (2022, "Anytime-valid inference for multinomial count data") against the configured split ``p``::

    log BF = log B(a + n) - log B(a) - sum_i n_i log p_i,      a = concentration * p

a test martingale under the configured split: ``max_t BF_t >= 1 / alpha`` has probability at most ``alpha``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal, NamedTuple

import numpy as np
from scipy import special

__all__ = [
    "Decision",
    "HarmDirection",
    "RateKind",
    "Verdict",
    "confidence_sequence",
    "count_log_ratio",
    "decide",
    "mixture_boundary",
    "pooled_log_variance",
    "pseudo_events",
    "pseudo_rate",
    "srm_log_bayes_factor",
]

#: ``"up"``: a higher rate in treatment is harmful (reports per 1k views); ``"down"``: a lower one is.
HarmDirection = Literal["up", "down"]

#: ``"rate"``: events per exposure (reports per 1k views), Poisson without units; ``"ratio"``: successes over
#: trials (violations / reviews), binomial without units.
RateKind = Literal["rate", "ratio"]

_BISECTION_STEPS = 60


class Decision(StrEnum):
    """Outcome of one guardrail look."""

    HARM = "harm"  # the interval lies wholly on the harmful side of zero
    NO_HARM = "no_harm"  # the interval excludes the minimum harmful effect
    INCONCLUSIVE = "inconclusive"  # neither yet


class Verdict(NamedTuple):
    """What :func:`decide` returns."""

    decision: Decision
    reason: str  # why, in words a message can quote


def mixture_boundary(variance: np.ndarray | float, *, alpha: float, tau: float) -> np.ndarray:
    """One-sided half-width ``b`` of the half-normal mixture confidence sequence at each look.

    Solves ``Lambda+(b) = 1 / alpha`` (module docstring) by bisection between the two-sided normal-mixture
    boundaries at ``2 alpha`` and ``alpha``, which bracket it.

    Args:
        variance: Variance ``v`` of the effect estimate at each look (any shape). NaN, infinite or
            non-positive entries give NaN.
        alpha: Error rate of the one-sided bound, in (0, 0.5).
        tau: Standard deviation of the mixing prior on the effect (log scale), > 0.

    Returns:
        ``b`` with the shape of ``variance``; the bound is ``theta_hat - b`` (or ``+ b``).
    """
    v = np.asarray(variance, dtype=float)
    ok = np.isfinite(v) & (v > 0)
    v_safe = np.where(ok, v, 1.0)
    r = tau**2 / v_safe
    c = r / (1.0 + r)
    log_target = np.log(1.0 / alpha)
    base = np.log(2.0) - 0.5 * np.log1p(r)
    hi = np.sqrt((2.0 * log_target + np.log1p(r)) / c)
    lo = np.sqrt(np.maximum(2.0 * np.log(1.0 / (2.0 * alpha)) + np.log1p(r), 0.0) / c)
    sqrt_c = np.sqrt(c)
    for _ in range(_BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        above = base + 0.5 * c * mid**2 + special.log_ndtr(mid * sqrt_c) >= log_target
        hi = np.where(above, mid, hi)
        lo = np.where(above, lo, mid)
    return np.where(ok, hi * np.sqrt(v_safe), np.nan)


def confidence_sequence(
    theta_hat: np.ndarray, variance: np.ndarray, *, alpha: float, tau: float
) -> tuple[np.ndarray, np.ndarray]:
    """Running-intersection lower and upper bounds of the effect over the looks (last axis).

    Looks with a NaN estimate or variance (too little data) leave the bounds as they were (``-inf`` /
    ``+inf`` before the first usable look).

    Args:
        theta_hat: Effect estimate at each look; looks along the last axis.
        variance: Its variance, same shape.
        alpha: Error rate of each one-sided bound.
        tau: Mixing prior scale (see :func:`mixture_boundary`).

    Returns:
        ``(lower, upper)``, same shape as ``theta_hat``: ``P(exists t: lower_t > theta) <= alpha`` and
        ``P(exists t: upper_t < theta) <= alpha``.
    """
    theta = np.asarray(theta_hat, dtype=float)
    b = mixture_boundary(variance, alpha=alpha, tau=tau)
    usable = np.isfinite(theta) & np.isfinite(b)
    lower = np.where(usable, theta - b, -np.inf)
    upper = np.where(usable, theta + b, np.inf)
    return np.maximum.accumulate(lower, axis=-1), np.minimum.accumulate(upper, axis=-1)


def pseudo_rate(
    num: np.ndarray, den: np.ndarray, *, kind: RateKind, pseudo: np.ndarray | float = 0.0
) -> np.ndarray:
    """Rate with ``pseudo`` events added: ``(num + pseudo) / den``, or ``/ (den + 2 pseudo)`` for ``ratio``.

    Zero exposure gives NaN.
    """
    num = np.asarray(num, dtype=float) + pseudo
    den = np.asarray(den, dtype=float)
    trials = den if kind == "rate" else den + 2 * np.asarray(pseudo, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / trials, np.nan)


def pseudo_events(den_t: np.ndarray, den_c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One pseudo-event shared by the arms in proportion to exposure: ``(den_t / D, den_c / D)``.

    Adding them to both numerators adds the same ``1 / D`` to both rates, which keeps the log ratio finite
    when an arm has no events yet (a harmful drop to zero is still seen) and pulls it slightly toward 0.
    """
    den_t, den_c = np.asarray(den_t, dtype=float), np.asarray(den_c, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        total = den_t + den_c
        return np.where(total > 0, den_t / total, 0.0), np.where(total > 0, den_c / total, 0.0)


def pooled_log_variance(
    num_t: np.ndarray, den_t: np.ndarray, num_c: np.ndarray, den_c: np.ndarray, *, kind: RateKind
) -> np.ndarray:
    """Sampling variance of the log rate ratio of independent events, at the pooled rate.

    ``kind="rate"`` (Poisson): ``1 / E_t + 1 / E_c`` with expected counts ``E = R_pooled * den``;
    ``kind="ratio"`` (binomial): ``(1 - p) / p * (1 / den_t + 1 / den_c)``. Evaluated at the pooled rate,
    like a score test, it is exact under "no effect" (the ``harm`` decision), close near the minimum
    effect (the ``no_harm`` decision) and stays finite when one arm has no events (the per-arm delta
    method gives ``1 / 0``). NaN without events or exposure.
    """
    num = np.asarray(num_t, dtype=float) + np.asarray(num_c, dtype=float)
    den_t, den_c = np.asarray(den_t, dtype=float), np.asarray(den_c, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        pooled = num / (den_t + den_c)
        spread = np.where((den_t > 0) & (den_c > 0), 1.0 / den_t + 1.0 / den_c, np.nan)
        odds = 1.0 / pooled if kind == "rate" else (1.0 - pooled) / pooled
        return np.where(pooled > 0, odds * spread, np.nan)


def count_log_ratio(
    num_t: np.ndarray,
    den_t: np.ndarray,
    num_c: np.ndarray,
    den_c: np.ndarray,
    *,
    kind: RateKind,
    min_events: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Log rate ratio (with :func:`pseudo_events`) and its :func:`pooled_log_variance`, without units.

    Looks where the arms together have fewer than ``min_events`` numerator events, or an arm has no
    exposure, give NaN (skipped by :func:`confidence_sequence`).
    """
    w_t, w_c = pseudo_events(den_t, den_c)
    rate_t = pseudo_rate(num_t, den_t, kind=kind, pseudo=w_t)
    rate_c = pseudo_rate(num_c, den_c, kind=kind, pseudo=w_c)
    with np.errstate(divide="ignore", invalid="ignore"):
        theta = np.log(rate_t) - np.log(rate_c)
    v = pooled_log_variance(num_t, den_t, num_c, den_c, kind=kind)
    usable = (np.asarray(num_t) + np.asarray(num_c) >= min_events) & np.isfinite(theta) & np.isfinite(v)
    return np.where(usable, theta, np.nan), np.where(usable, v, np.nan)


def decide(lower: float, upper: float, *, direction: HarmDirection, min_effect: float) -> Verdict:
    """Guardrail decision from the always-valid interval of the relative effect.

    ``harm`` wins over ``no_harm`` when both hold (a significant but small deterioration), so a guardrail
    never stays quiet about a harm it has detected; the reason says it is below the minimum effect.

    Args:
        lower: Lower bound of the relative effect ``R_t / R_c - 1``; NaN or -inf when unknown.
        upper: Upper bound; NaN or +inf when unknown.
        direction: Which way is harmful.
        min_effect: Smallest relative change that matters (> 0), e.g. ``0.05``.

    Returns:
        The :class:`Verdict` (decision and reason).
    """
    if np.isnan(lower) or np.isnan(upper) or (np.isinf(lower) and np.isinf(upper)):
        return Verdict(Decision.INCONCLUSIVE, "not enough data for an interval yet")
    sign = 1.0 if direction == "up" else -1.0
    near, far = (lower, upper) if direction == "up" else (-upper, -lower)  # harm-oriented: bigger = worse
    word = "higher" if direction == "up" else "lower"
    if near > 0:
        small = " (but below the minimum effect)" if far < min_effect else ""
        return Verdict(
            Decision.HARM,
            f"treatment is {word} than control: interval [{lower:+.1%}, {upper:+.1%}] excludes 0{small}",
        )
    if far < min_effect:
        return Verdict(
            Decision.NO_HARM,
            f"interval [{lower:+.1%}, {upper:+.1%}] excludes a {sign * min_effect:+.0%} harmful change",
        )
    return Verdict(
        Decision.INCONCLUSIVE,
        f"interval [{lower:+.1%}, {upper:+.1%}] holds both 0 and {sign * min_effect:+.0%}",
    )


def srm_log_bayes_factor(counts: np.ndarray, split: np.ndarray, *, concentration: float) -> np.ndarray:
    """Log Dirichlet-multinomial Bayes factor of the observed assignment counts against ``split``.

    Args:
        counts: Units per arm; arms along the last axis (any leading shape, e.g. looks).
        split: Configured assignment probabilities per arm (sums to 1), same last-axis length.
        concentration: Total prior mass ``sum(a)``; ``a = concentration * split``. Larger values test more
            sharply against small mismatches later in the experiment.

    Returns:
        ``log BF`` over the leading shape; 0 with no units.
    """
    n = np.asarray(counts, dtype=float)
    p = np.asarray(split, dtype=float)
    a = concentration * p
    log_beta_post = special.gammaln(a + n).sum(axis=-1) - special.gammaln(a.sum() + n.sum(axis=-1))
    log_beta_prior = special.gammaln(a).sum() - special.gammaln(a.sum())
    return np.asarray(log_beta_post - log_beta_prior - (n * np.log(p)).sum(axis=-1))
