"""Online level-shift detection: a two-sided CUSUM that re-baselines after each confirmed shift.

:func:`online_cusum` is the pure core: it runs over standardised residuals (any detector's ``score`` column,
or ``(value - baseline) / scale``) of one series, shape ``(n,)``, or of many series at once, shape
``(n, m)`` (the loop is over time only, vectorised across series). :class:`CusumDetector` wraps it in the
Detector contract over the residuals of a robust seasonal baseline learned in ``fit``.

The statistic (Page's CUSUM, per side)::

    S+_t = max(0, S+_{t-1} + c_t - drift)      S-_t = max(0, S-_{t-1} - c_t - drift)
    c_t  = clip(z_t - level, -clip, +clip)

A shift is *confirmed* when ``S > threshold``. Clipping each residual at ``clip`` sigmas means an isolated
spike cannot confirm a shift: with the defaults (``drift=0.5, threshold=10, clip=3``) it takes, from a zero
statistic, five consecutive points beyond 3 sigmas. On Gaussian residuals the two-sided in-control run length
to a first false alarm is about 70,000 points (Siegmund's approximation; measured: 2.6 alarms per 100,000
points, some of them the return after a false alarm), and the median delay is 6 points for a 2-sigma shift,
9 for 1.5 sigmas and 17 for 1 sigma (``benchmarks/changepoint.py``).

**Re-baselining.** At a confirmation the start of the shift is estimated inside the run that confirmed it
(from the last time the statistic was 0) by maximum likelihood, the baseline jumps to the median residual
since that start, both statistics restart from 0, and for the next ``settle`` points
the level keeps being refined as a running mean (each point clipped at ``clip`` around the current level),
so a permanent new level alerts once and then falls quiet.

**Score as sigmas.** The score is the standardised sum of the current run,
``sum(c over the run) / sqrt(run length)``, signed by the side with the larger statistic: the z-score of the
mean shift since the run began (0 right after a re-baseline and while both statistics are 0). At a
confirmation ``sum(c) = S + drift * N >= threshold + drift * N``, hence
``score >= (threshold + drift * N) / sqrt(N) >= 2 * sqrt(threshold * drift)``: 4.47 sigmas with the defaults,
above the default threshold (4) of every other detector, so a confirmed shift always passes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from detectors.base import SIGMA_COLUMN, Anomaly, Detector, register
from detectors.errors import InvalidSeriesError
from detectors.postrules import evaluate
from detectors.robust import RobustSeasonalDetector, Season
from detectors.validation import SeriesLike

__all__ = ["CusumDetector", "CusumResult", "online_cusum"]


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


def _locate_shift(run: np.ndarray, level: float) -> tuple[int, float, float]:
    """Where in ``run`` the shift began, the new level, and how many points support it.

    The start maximises ``(sum of run[tau:] - level)^2 / len(run[tau:])``, the likelihood-ratio estimate of a
    change from a known level to an unknown one; the new level is the median of ``run[tau:]``.
    """
    seen = np.flatnonzero(~np.isnan(run))
    deviations = run[seen] - level
    tail_sums = np.cumsum(deviations[::-1])[::-1]
    tail_counts = np.arange(seen.size, 0, -1)
    best = int(np.argmax(tail_sums**2 / tail_counts))
    return int(seen[best]), float(np.median(run[seen[best:]])), float(seen.size - best)


def online_cusum(
    residuals: np.ndarray,
    *,
    drift: float = 0.5,
    threshold: float = 10.0,
    clip: float = 3.0,
    settle: int = 100,
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
            run_start = int(start_pos[j] if s_pos[j] > threshold else start_neg[j])
            first, new_level, count = _locate_shift(z2[run_start : t + 1, j], base[j])
            base[j] = new_level
            starts[t, j] = run_start + first
            settle_left[j], settle_count[j] = settle, count
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
        alarms=shape(alarms),
        starts=shape(starts),
        level=shape(levels),
        expected=shape(expected),
        score=shape(scores),
    )


@register
class CusumDetector(Detector):
    """Two-sided re-baselining CUSUM over the residuals of a robust seasonal baseline learned in ``fit``.

    ``fit`` learns a :class:`detectors.robust.RobustSeasonalDetector` (median per season slot, robust sigma);
    its score, ``(value - expected) / sigma``, is the standardised residual fed to :func:`online_cusum`.
    In the score frame ``expected`` (and the ``lower``/``upper`` band) follow the re-baselined level, i.e.
    the seasonal expectation plus the confirmed shift, and ``score`` is the run's equivalent z (signed
    sigmas). ``detect`` returns one ``level_shift`` per confirmed shift, from its estimated start to its
    confirmation; the usual post-rules (threshold, direction, noise floors, suppression) apply to the
    confirmation point, whose ``observed`` is the new level and ``expected`` the old one.

    Args:
        drift: CUSUM allowance per point, in sigmas.
        threshold: CUSUM decision interval (not the score threshold of ``detect``).
        clip: residuals are clipped at this many sigmas before accumulating.
        settle: points after a confirmation during which the new level is refined.
        granularity: bucket size of the baseline (inferred when ``None``).
        season: season slots of the baseline (chosen from the granularity when ``None``).
        weeks: weeks of history the baseline looks back.
    """

    name: ClassVar[str] = "cusum"
    min_history: ClassVar[int] = 10
    detects: ClassVar[frozenset[str]] = frozenset({"level_shift"})

    baseline_: RobustSeasonalDetector

    def __init__(
        self,
        *,
        drift: float = 0.5,
        threshold: float = 10.0,
        clip: float = 3.0,
        settle: int = 100,
        granularity: str | None = None,
        season: Season | None = None,
        weeks: int = 4,
    ) -> None:
        self.drift = drift
        self.threshold = threshold
        self.clip = clip
        self.settle = settle
        self.granularity = granularity
        self.season = season
        self.weeks = weeks

    def _fit(self, frame: pd.DataFrame) -> None:
        _check_params(self.drift, self.threshold, self.clip, self.settle)
        baseline = RobustSeasonalDetector(granularity=self.granularity, season=self.season, weeks=self.weeks)
        self.baseline_ = baseline.fit(frame, series_id=self.series_id_)

    def _score(self, frame: pd.DataFrame) -> pd.DataFrame:
        base = self.baseline_._validated_score(frame)
        sigma = base[SIGMA_COLUMN].to_numpy(dtype=float)
        result = online_cusum(
            base["score"].to_numpy(dtype=float),
            drift=self.drift,
            threshold=self.threshold,
            clip=self.clip,
            settle=self.settle,
        )
        shift = result.expected * sigma
        return pd.DataFrame(
            {
                "observed": base["observed"].to_numpy(dtype=float),
                "expected": base["expected"].to_numpy(dtype=float) + shift,
                "lower": base["lower"].to_numpy(dtype=float) + shift,
                "upper": base["upper"].to_numpy(dtype=float) + shift,
                "score": result.score,
                SIGMA_COLUMN: sigma,
                "alarm": result.alarms,
                "shift_start": result.starts,
                "new_expected": base["expected"].to_numpy(dtype=float) + result.level * sigma,
            },
            index=frame.index,
        )

    def detect(self, window: SeriesLike, rules: Any = None) -> list[Anomaly]:
        """Confirmed level shifts of ``window`` that pass the post-rules (see :meth:`Detector.detect`).

        The rules see only the confirmation points; with the default hyper-parameters every confirmed
        shift has ``|score| >= 4.47`` (module docstring), so the default threshold keeps them all.
        """
        rules = rules if rules is not None else self.default_rules()
        scored = self._validated_score(window)
        alarm = scored["alarm"].to_numpy(dtype=bool)
        at_alarms = scored.assign(
            observed=np.where(alarm, scored["new_expected"], scored["observed"]),
            score=np.where(alarm, scored["score"], np.nan),
        )
        decisions = evaluate(at_alarms, rules)
        anomalies: list[Anomaly] = []
        for t in (int(i) for i in np.flatnonzero(decisions["flag"].to_numpy(dtype=bool))):
            first = int(scored["shift_start"].iloc[t])
            row = at_alarms.iloc[t]
            score = float(row["score"])
            anomalies.append(
                Anomaly(
                    start=pd.Timestamp(scored.index[first]),
                    end=pd.Timestamp(scored.index[t]),
                    kind="level_shift",
                    observed=float(row["observed"]),
                    expected=float(row["expected"]),
                    score=score,
                    detector=self.name,
                    reason=(
                        f"CUSUM confirmed a level shift ({score:+.1f} sigmas since {scored.index[first]}); "
                        f"re-baselined to {float(row['observed']):.4g}"
                    ),
                )
            )
        return anomalies

    def _state_to_dict(self) -> dict[str, Any]:
        return {"baseline": self.baseline_.to_dict()}

    def _state_from_dict(self, state: dict[str, Any]) -> None:
        baseline = RobustSeasonalDetector.from_dict(state["baseline"])
        if not isinstance(baseline, RobustSeasonalDetector):
            raise InvalidSeriesError(
                f"series {self.series_id_!r}: cusum state holds no robust baseline; refit the detector"
            )
        self.baseline_ = baseline
