"""Online level-shift detection: a two-sided CUSUM that re-baselines after each confirmed shift.

:func:`online_cusum` is the pure core: it runs over standardised residuals (any detector's ``score`` column,
or ``(value - baseline) / scale``) of one series, shape ``(n,)``, or of many series at once, shape
``(n, m)`` (the loop is over time only, vectorised across series). :class:`CusumDetector` wraps it in the
Detector contract with a baseline learned in ``fit``.

The statistic (Page's CUSUM, per side)::

    S+_t = max(0, S+_{t-1} + c_t - drift)      S-_t = max(0, S-_{t-1} - c_t - drift)
    c_t  = clip(z_t - level, -clip, +clip)

A shift is *confirmed* when ``S > threshold``. Clipping each residual at ``clip`` sigmas means an isolated
spike cannot confirm a shift: with the defaults (``drift=0.5, threshold=8, clip=3``) it takes at least four
consecutive points beyond 3 sigmas. The one-sided in-control average run length is about 19,000 points
(Siegmund's approximation), the delay about 6 points for a 2-sigma shift and 18 for a 1-sigma shift.

**Re-baselining.** At a confirmation the baseline jumps to the median residual of the run that confirmed it
(from the last time the statistic was 0), both statistics restart from 0, and for the next ``settle`` points
the level keeps being refined as a running mean (each point clipped at ``clip`` around the current level),
so a permanent new level alerts once and then falls quiet.

**Score as sigmas.** The score is the standardised sum of the current run,
``sum(c over the run) / sqrt(run length)``, signed by the side with the larger statistic: the z-score of the
mean shift since the run began (0 right after a re-baseline and while both statistics are 0). At a
confirmation ``sum(c) = S + drift * N >= threshold + drift * N``, hence
``score >= (threshold + drift * N) / sqrt(N) >= 2 * sqrt(threshold * drift)``: 4 sigmas with the defaults, the
default threshold of every other detector, so "confirmed" and "|score| >= 4" agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from detectors.base import Anomaly, Detector, register
from detectors.changepoint import find_changepoints, robust_noise
from detectors.errors import InvalidSeriesError

__all__ = ["CusumDetector", "CusumResult", "online_cusum"]

#: Half-width of the score frame's ``lower``/``upper`` band, in sigmas (the default detection threshold).
_BAND_SIGMAS = 4.0


@dataclass(frozen=True)
class CusumResult:
    """Output of :func:`online_cusum`; every array has the shape of the residuals.

    Attributes:
        alarms: True where a shift is confirmed.
        starts: estimated first index of the confirmed shift at alarm positions, -1 elsewhere.
        level: baseline (in residual units) in effect *after* each point, i.e. re-baselined at alarms.
        expected: baseline in effect *before* each point (what the point was compared with).
        score: signed equivalent z of the current run (see the module docstring); NaN where input is NaN.
    """

    alarms: np.ndarray
    starts: np.ndarray
    level: np.ndarray
    expected: np.ndarray
    score: np.ndarray

    def alarm_positions(self) -> list[int]:
        """Alarm indices of a 1-D run (for an ``(n, m)`` run use ``np.nonzero(alarms)``)."""
        if self.alarms.ndim != 1:
            raise ValueError("alarm_positions() is for a 1-D run; use np.nonzero(result.alarms) for (n, m)")
        return [int(i) for i in np.flatnonzero(self.alarms)]


def _check_params(drift: float, threshold: float, clip: float, settle: int) -> None:
    if drift < 0 or threshold <= 0 or clip <= 0 or settle < 0:
        raise InvalidSeriesError(
            "CUSUM needs drift >= 0, threshold > 0, clip > 0 and settle >= 0; got "
            f"drift={drift}, threshold={threshold}, clip={clip}, settle={settle}"
        )


def online_cusum(
    residuals: np.ndarray,
    *,
    drift: float = 0.5,
    threshold: float = 10.0,
    clip: float = 3.0,
    settle: int = 30,
    level: float | np.ndarray = 0.0,
) -> CusumResult:
    """Run the re-baselining two-sided CUSUM over standardised residuals.

    Args:
        residuals: residuals in sigmas, shape ``(n,)`` for one series or ``(n, m)`` for ``m`` series (time
            along axis 0). NaN means missing: the state is carried over and the score is NaN.
        drift: allowance ``k`` per point, in sigmas (half the smallest shift worth detecting quickly).
        threshold: decision interval ``h``: a shift is confirmed when a statistic exceeds it.
        clip: each residual is clipped at ``±clip`` around the level before accumulating.
        settle: points after a confirmation during which the new level is refined as a running mean.
        level: initial baseline in residual units (scalar, or one per series).

    Returns:
        A :class:`CusumResult` of arrays shaped like ``residuals``.

    Raises:
        InvalidSeriesError: residuals are not 1-D or 2-D, or a parameter is out of range.
    """
    _check_params(drift, threshold, clip, settle)
    z = np.asarray(residuals, dtype=float)
    if z.ndim not in (1, 2):
        raise InvalidSeriesError(f"online_cusum: residuals must be 1-D or 2-D (time, series), got {z.shape}")
    one_d = z.ndim == 1
    z2 = z.reshape(z.shape[0], -1)
    n, m = z2.shape

    base = np.broadcast_to(np.asarray(level, dtype=float), (m,)).copy()
    s_pos, s_neg = np.zeros(m), np.zeros(m)
    sum_pos, sum_neg = np.zeros(m), np.zeros(m)
    start_pos, start_neg = np.zeros(m, dtype=int), np.zeros(m, dtype=int)
    settle_left = np.zeros(m, dtype=int)
    settle_count = np.zeros(m)

    alarms = np.zeros((n, m), dtype=bool)
    starts = np.full((n, m), -1, dtype=int)
    levels = np.empty((n, m))
    expected = np.empty((n, m))
    scores = np.full((n, m), np.nan)

    for t in range(n):
        expected[t] = base
        row = z2[t]
        seen = ~np.isnan(row)
        c = np.where(seen, np.clip(row - base, -clip, clip), 0.0)

        # a run starts where a statistic leaves 0
        fresh_pos = seen & (s_pos == 0)
        fresh_neg = seen & (s_neg == 0)
        start_pos[fresh_pos], sum_pos[fresh_pos] = t, 0.0
        start_neg[fresh_neg], sum_neg[fresh_neg] = t, 0.0
        s_pos = np.where(seen, np.maximum(0.0, s_pos + c - drift), s_pos)
        s_neg = np.where(seen, np.maximum(0.0, s_neg - c - drift), s_neg)
        sum_pos = np.where(seen, np.where(s_pos > 0, sum_pos + c, 0.0), sum_pos)
        sum_neg = np.where(seen, np.where(s_neg > 0, sum_neg + c, 0.0), sum_neg)

        up = s_pos >= s_neg
        run_sum = np.where(up, sum_pos, sum_neg)
        run_len = t - np.where(up, start_pos, start_neg) + 1
        active = np.maximum(s_pos, s_neg) > 0
        scores[t] = np.where(seen, np.where(active, run_sum / np.sqrt(run_len), 0.0), np.nan)

        fired = seen & ((s_pos > threshold) | (s_neg > threshold))
        for j in np.flatnonzero(fired):
            first = int(start_pos[j] if s_pos[j] > threshold else start_neg[j])
            run = z2[first : t + 1, j]
            base[j] = float(np.median(run[~np.isnan(run)]))
            starts[t, j] = first
            settle_left[j], settle_count[j] = settle, float(np.count_nonzero(~np.isnan(run)))
        alarms[t] = fired
        s_pos[fired], s_neg[fired] = 0.0, 0.0
        sum_pos[fired], sum_neg[fired] = 0.0, 0.0

        refine = seen & ~fired & (settle_left > 0)
        if refine.any():
            settle_count[refine] += 1
            base[refine] += np.clip(row[refine] - base[refine], -clip, clip) / settle_count[refine]
            settle_left[refine] -= 1
        levels[t] = base

    def shape(a: np.ndarray) -> np.ndarray:
        return a[:, 0] if one_d else a

    return CusumResult(
        alarms=shape(alarms), starts=shape(starts), level=shape(levels), expected=shape(expected),
        score=shape(scores),
    )


@register
class CusumDetector(Detector):
    """Two-sided CUSUM over values standardised against a baseline learned in ``fit``.

    ``fit`` learns the current regime of the history: its level is the median of the last segment found by
    :func:`detectors.changepoint.find_changepoints` (``model="level"``), its noise scale the robust
    difference-based sigma of :func:`detectors.changepoint.robust_noise`, and the CUSUM runs on
    ``(value - level) / long_run_scale`` where ``long_run_scale = scale * sqrt((1 + phi) / (1 - phi))``
    accounts for autocorrelation (sums of correlated noise wander further than white noise). A constant
    history gets a scale of 5% of its level (at least 1 unit of the metric).

    ``score`` follows :func:`online_cusum`: ``expected`` is the (re-baselined) level, the band is
    ``expected ± 4 * scale`` and ``score`` the run's equivalent z. ``detect`` returns one ``level_shift``
    anomaly per confirmed shift, from its estimated start to its confirmation.
    """

    name: ClassVar[str] = "cusum"
    min_history: ClassVar[int] = 10

    level_: float
    scale_: float
    long_run_scale_: float
    phi_: float

    def __init__(self, *, drift: float = 0.5, threshold: float = 10.0, clip: float = 3.0, settle: int = 30) -> None:
        self.drift = drift
        self.threshold = threshold
        self.clip = clip
        self.settle = settle

    def _fit(self, frame: pd.DataFrame) -> None:
        _check_params(self.drift, self.threshold, self.clip, self.settle)
        values = frame["value"].to_numpy(dtype=float)
        observed = values[~np.isnan(values)]
        breaks = find_changepoints(values, model="level")
        last_start = breaks[-1] if breaks else 0
        current = values[last_start:]
        level = float(np.median(current[~np.isnan(current)]))
        sigma, phi = robust_noise(observed)
        scale = sigma / np.sqrt(1 - phi)
        if scale == 0:
            scale = max(0.05 * abs(level), 1.0)
        self.level_ = level
        self.scale_ = float(scale)
        self.phi_ = phi
        self.long_run_scale_ = float(scale * np.sqrt((1 + phi) / (1 - phi)))

    def _run(self, values: np.ndarray) -> CusumResult:
        residuals = (values - self.level_) / self.long_run_scale_
        return online_cusum(
            residuals, drift=self.drift, threshold=self.threshold, clip=self.clip, settle=self.settle
        )

    def _score(self, frame: pd.DataFrame) -> pd.DataFrame:
        result = self._run(frame["value"].to_numpy(dtype=float))
        expected = self.level_ + result.expected * self.long_run_scale_
        band = _BAND_SIGMAS * self.scale_
        return pd.DataFrame(
            {
                "observed": frame["value"].to_numpy(dtype=float),
                "expected": expected,
                "lower": expected - band,
                "upper": expected + band,
                "score": result.score,
            },
            index=frame.index,
        )

    def detect(self, window: pd.Series | pd.DataFrame, *, threshold: float = 4.0) -> list[Anomaly]:
        """One ``level_shift`` per confirmed shift whose ``|score| >= threshold``.

        With the default hyper-parameters every confirmed shift has ``|score| >= 4`` (module docstring),
        so the default threshold keeps them all.
        """
        scores = self.score(window)
        result = self._run(scores["observed"].to_numpy(dtype=float))
        anomalies: list[Anomaly] = []
        for t in result.alarm_positions():
            score = float(result.score[t])
            if abs(score) < threshold:
                continue
            first = int(result.starts[t])
            anomalies.append(
                Anomaly(
                    start=scores.index[first], end=scores.index[t], kind="level_shift",
                    observed=float(self.level_ + result.level[t] * self.long_run_scale_),
                    expected=float(scores["expected"].iloc[first]), score=score, detector=self.name,
                )
            )
        return anomalies

    def _state_to_dict(self) -> dict[str, Any]:
        return {
            "level": self.level_, "scale": self.scale_, "long_run_scale": self.long_run_scale_, "phi": self.phi_,
        }

    def _state_from_dict(self, state: dict[str, Any]) -> None:
        self.level_ = float(state["level"])
        self.scale_ = float(state["scale"])
        self.long_run_scale_ = float(state["long_run_scale"])
        self.phi_ = float(state["phi"])
