"""Streaming (online) anomaly scoring of a univariate series into a score in [0, 1], never looking ahead.

The scorer is a chain of causal stages, each a pure function over numpy arrays:

1. :func:`raw_anomaly_scores` -- how surprising each value is given only the values before it: the largest of
   several robust z-scores (value, short mean and first difference against trailing medians / IQRs at
   several horizons), squashed into [0, 1], and set to 1 when the value leaves the range seen so far by a
   margin (Numenta's "spatial anomaly").
2. :func:`anomaly_likelihood` -- Numenta's anomaly likelihood: the tail probability of the short-window mean of
   the raw scores under a Gaussian fitted to the raw scores of a long trailing window, reported as
   ``1 - tail``; :func:`log_likelihood` rescales it so that 0.5 means a tail of 1e-5.
3. :func:`suppress_after_alarm` -- after a score reaches the alarm threshold, the next ``hold`` points are
   reported as 0 so one event raises one alarm (NAB counts every extra detection as a false positive).

Every rolling statistic at time ``t`` uses points strictly before ``t`` (or up to ``t`` for the value being
scored), so the score of a point never changes when later points change.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.special import ndtr

__all__ = [
    "StreamingAnomalyScorer",
    "anomaly_likelihood",
    "log_likelihood",
    "raw_anomaly_scores",
    "robust_zscores",
    "suppress_after_alarm",
]

_IQR_TO_SIGMA = 1.349
_LOG_FLOOR = math.log(1e-10)


def _trailing(values: np.ndarray, window: int, min_periods: int) -> pd.core.window.Rolling:
    """Rolling window over the ``window`` points *before* each point (the point itself excluded)."""
    return pd.Series(values).shift(1).rolling(window, min_periods=min_periods)


def robust_zscores(
    values: np.ndarray, *, window: int, min_periods: int, scale_floor: np.ndarray | float
) -> np.ndarray:
    """Robust z-score of each value against the trailing ``window`` points before it.

    ``z_t = (x_t - median) / max(IQR / 1.349, scale_floor)`` over ``x_{t-window} .. x_{t-1}``; 0 until
    ``min_periods`` past points exist and wherever ``x_t`` is missing.
    """
    rolling = _trailing(values, window, min_periods)
    median = rolling.median().to_numpy()
    iqr = (rolling.quantile(0.75) - rolling.quantile(0.25)).to_numpy()
    scale = np.maximum(iqr / _IQR_TO_SIGMA, scale_floor)
    z = (values - median) / scale
    return np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0)


def raw_anomaly_scores(
    values: np.ndarray,
    *,
    windows: tuple[int, ...] = (64, 512),
    short_window: int = 6,
    z_scale: float = 6.0,
    spatial_tolerance: float = 0.05,
    spatial_warmup: int = 64,
    relative_floor: float = 1e-3,
    seasonal_lags: tuple[int, ...] = (),
    std_weight: float = 0.0,
    seasonal_slack: int = -1,
) -> np.ndarray:
    """Raw surprise in [0, 1] of each value given the values before it.

    Args:
        values: the series (NaN = missing; scored 0).
        windows: trailing horizons (in points) of the robust z-scores.
        short_window: points averaged for the "short mean" z-score, which catches level shifts buried in noise.
        z_scale: z-score mapped to ``1 - exp(-1) ~ 0.63``; the squash is ``1 - exp(-|z| / z_scale)``.
        spatial_tolerance: margin, as a fraction of the range seen so far, beyond which a new minimum or
            maximum scores 1.
        spatial_warmup: points needed before the range test applies.
        relative_floor: floor of every scale, as a fraction of the range seen so far (flat series).
        seasonal_lags: lags (in points) of seasonal differences ``x_t - x_{t-lag}`` whose z-scores are added.
        std_weight: the scale is at least ``std_weight`` times the trailing standard deviation, which keeps
            heavy-tailed or discrete series from saturating.
        seasonal_slack: when ``>= 0`` and a seasonal lag is given, each |z| is reduced by the largest |z| of the
            same feature within ``seasonal_slack`` points of one season ago, so events that recur every
            season (a nightly batch job) stop scoring while new ones keep their score.
    """
    x = np.asarray(values, dtype=float)
    series = pd.Series(x)
    past_max = series.shift(1).expanding().max().to_numpy()
    past_min = series.shift(1).expanding().min().to_numpy()
    span = np.nan_to_num(past_max - past_min, nan=0.0)
    floor = np.maximum(relative_floor * span, 1e-9)
    short_mean = series.rolling(short_window, min_periods=1).mean().to_numpy()
    diff = series.diff().to_numpy()
    signals = [x, short_mean, diff]
    for lag in seasonal_lags:
        if 0 < lag < len(x):
            signals.append((series - series.shift(lag)).to_numpy())
    z = np.zeros_like(x)
    for window in windows:
        min_periods = max(8, window // 4)
        for signal in signals:
            sig_floor = floor
            if std_weight > 0:
                trailing_std = _trailing(signal, window, min_periods).std().to_numpy()
                sig_floor = np.maximum(floor, std_weight * np.nan_to_num(trailing_std, nan=0.0))
            zs = np.abs(robust_zscores(signal, window=window, min_periods=min_periods, scale_floor=sig_floor))
            if seasonal_slack >= 0:
                for lag in seasonal_lags:
                    if seasonal_slack < lag < len(x):
                        recent_max = pd.Series(zs).rolling(2 * seasonal_slack + 1, min_periods=1).max()
                        before = recent_max.shift(lag - seasonal_slack).to_numpy()
                        zs = np.maximum(zs - np.nan_to_num(before, nan=0.0), 0.0)
            z = np.maximum(z, zs)
    raw = 1.0 - np.exp(-z / z_scale)
    count = np.arange(len(x))
    tolerance = spatial_tolerance * span
    with np.errstate(invalid="ignore"):
        spatial = (count >= spatial_warmup) & (span > 0) & ((x > past_max + tolerance) | (x < past_min - tolerance))
    raw[spatial] = 1.0
    raw[np.isnan(x)] = 0.0
    return raw


def anomaly_likelihood(
    raw: np.ndarray,
    *,
    learning_period: int = 288,
    historic_window: int = 8640,
    short_window: int = 10,
    min_std: float = 0.03,
) -> np.ndarray:
    """Numenta's anomaly likelihood of each raw score, in [0, 1] (1 = the recent scores are very unusual).

    The short-window mean of the raw scores at ``t`` is compared with a Gaussian fitted to the short-window
    means of the ``historic_window`` points before ``t``; the result is ``1 - tail probability``. Points of
    the learning period get 0.5 (no opinion), as in Numenta's implementation.
    """
    avg = pd.Series(np.asarray(raw, dtype=float)).rolling(short_window, min_periods=1).mean()
    history = avg.shift(1).rolling(historic_window, min_periods=2)
    mean = history.mean().to_numpy()
    std = np.maximum(np.nan_to_num(history.std().to_numpy(), nan=min_std), min_std)
    z = (avg.to_numpy() - mean) / std
    likelihood = ndtr(np.nan_to_num(z, nan=0.0))
    likelihood[: min(learning_period, len(likelihood))] = 0.5
    return np.asarray(likelihood, dtype=float)


def rank_likelihood(raw: np.ndarray, *, historic_window: int = 8640, short_window: int = 10) -> np.ndarray:
    """Share of the ``historic_window`` previous short-window means of ``raw`` that the current one exceeds.

    A non-parametric companion of :func:`anomaly_likelihood`: 1 means the recent raw scores are the highest
    seen in the trailing window (a record), whatever the shape of their distribution.
    """
    avg = pd.Series(np.asarray(raw, dtype=float)).rolling(short_window, min_periods=1).mean()
    rank = avg.rolling(historic_window + 1, min_periods=1).rank(method="max", pct=True)
    return np.asarray(rank.to_numpy(), dtype=float)


def log_likelihood(likelihood: np.ndarray) -> np.ndarray:
    """Numenta's log scaling: ``log(1.0000000001 - L) / log(1e-10)``, so a tail of 1e-5 maps to 0.5."""
    return np.clip(np.log(1.0000000001 - np.asarray(likelihood, dtype=float)) / _LOG_FLOOR, 0.0, 1.0)


def suppress_after_alarm(scores: np.ndarray, *, threshold: float, hold: int) -> np.ndarray:
    """Zero the ``hold`` points that follow each alarm (score >= ``threshold``) that was not itself suppressed.

    Causal: whether point ``t`` is suppressed depends only on scores before ``t``.
    """
    out = np.asarray(scores, dtype=float).copy()
    if hold <= 0:
        return out
    candidates = np.flatnonzero(out >= threshold)
    free_from = 0
    for i in candidates:
        if i < free_from:
            continue
        out[i + 1 : i + 1 + hold] = 0.0
        free_from = i + 1 + hold
    return out


class StreamingAnomalyScorer:
    """One configuration of the causal chain raw score -> anomaly likelihood -> log scale -> suppression.

    Args:
        windows: trailing horizons (points) of the robust z-scores of :func:`raw_anomaly_scores`.
        short_window: points of the short-mean z-score.
        z_scale: squash scale of the z-scores.
        spatial_tolerance: range margin of the spatial (new min / max) test.
        learning_period: points before the likelihood has an opinion.
        historic_window: points of the likelihood's trailing Gaussian.
        likelihood_window: points of the short-window mean of raw scores.
        min_std: floor of the likelihood's standard deviation.
        alarm_threshold: log-likelihood at which an alarm is raised (for suppression).
        hold: points reported as 0 after an alarm.
    """

    def __init__(
        self,
        *,
        windows: tuple[int, ...] = (64, 512),
        short_window: int = 6,
        z_scale: float = 6.0,
        spatial_tolerance: float = 0.05,
        learning_period: int = 288,
        historic_window: int = 8640,
        likelihood_window: int = 10,
        min_std: float = 0.03,
        alarm_threshold: float = 0.5,
        hold: int = 300,
        seasonal_period: pd.Timedelta | None = None,
        std_weight: float = 0.0,
        seasonal_slack: int = -1,
        rank_gate: float = 0.0,
    ) -> None:
        self.windows = windows
        self.short_window = short_window
        self.z_scale = z_scale
        self.spatial_tolerance = spatial_tolerance
        self.learning_period = learning_period
        self.historic_window = historic_window
        self.likelihood_window = likelihood_window
        self.min_std = min_std
        self.alarm_threshold = alarm_threshold
        self.hold = hold
        self.seasonal_period = seasonal_period
        self.std_weight = std_weight
        self.seasonal_slack = seasonal_slack
        self.rank_gate = rank_gate

    def score_stream(self, values: np.ndarray, timestamps: pd.DatetimeIndex | None = None) -> np.ndarray:
        """Anomaly score in [0, 1] of every point, each computed from that point and the ones before it."""
        lags: tuple[int, ...] = ()
        if self.seasonal_period is not None and timestamps is not None and len(timestamps) > 2:
            step = pd.Series(timestamps[:11]).diff().median()
            lags = (round(pd.Timedelta(self.seasonal_period) / step),)
        raw = raw_anomaly_scores(
            np.asarray(values, dtype=float),
            windows=self.windows,
            short_window=self.short_window,
            z_scale=self.z_scale,
            spatial_tolerance=self.spatial_tolerance,
            seasonal_lags=lags,
            std_weight=self.std_weight,
            seasonal_slack=self.seasonal_slack,
        )
        likelihood = anomaly_likelihood(
            raw,
            learning_period=self.learning_period,
            historic_window=self.historic_window,
            short_window=self.likelihood_window,
            min_std=self.min_std,
        )
        scores = log_likelihood(likelihood)
        if self.rank_gate > 0:
            rank = rank_likelihood(raw, historic_window=self.historic_window, short_window=self.likelihood_window)
            scores = np.where(rank >= self.rank_gate, scores, np.minimum(scores, 0.5 * self.alarm_threshold))
        return suppress_after_alarm(scores, threshold=self.alarm_threshold, hold=self.hold)
