"""Streaming (online) anomaly scoring of a univariate series into a score in [0, 1], never looking ahead.

The scorer is a chain of causal stages, each a pure function over numpy arrays:

1. :func:`raw_anomaly_features` -- how surprising each value is given only the values before it: robust
   z-scores of the value, of its short mean, of its first difference and of its seasonal difference against
   trailing medians, squashed into [0, 1]; every feature is 1 when the value leaves the range seen so far by
   a margin (Numenta's "spatial anomaly"); optionally a *novelty* feature, the robust z-score of
   :func:`nearest_window_distance` -- how far the latest short window is from every earlier window of the
   series (ARTime-style "have I seen this shape before?"), so a pattern that recurs (a nightly spike) stops
   being surprising while a new shape (a change of regime, a slow drift into unseen territory) is.
   :func:`raw_anomaly_scores` is their maximum.
2. :func:`anomaly_likelihood` -- Numenta's anomaly likelihood: the short-window mean of the raw scores
   against a Gaussian fitted to the same means over a long trailing window, reported as ``1 - tail``;
   :func:`log_likelihood` rescales it so that 0.5 means a tail probability of 1e-5.
3. :func:`suppress_after_alarm` -- after an alarm the next ``hold`` points are reported as 0, so one event
   raises one alarm (NAB, like an on-call engineer, counts every extra alarm as a false positive).

:class:`StreamingAnomalyScorer` chains them with one set of hyper-parameters. Every statistic used for the
point at ``t`` is computed from points up to ``t`` (location and scale from points strictly before ``t``), so
the score of a point never changes when later points change; scoring a prefix gives the prefix of the scores.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.special import ndtr

from detectors.errors import InvalidSeriesError

__all__ = [
    "DEFAULT_SEASON",
    "StreamingAnomalyScorer",
    "anomaly_likelihood",
    "log_likelihood",
    "nearest_window_distance",
    "raw_anomaly_features",
    "raw_anomaly_scores",
    "robust_zscores",
    "suppress_after_alarm",
]

#: Default season of :class:`StreamingAnomalyScorer`: one day.
DEFAULT_SEASON = pd.Timedelta("1D")

_IQR_TO_SIGMA = 1.349
_LOG_FLOOR = math.log(1e-10)


def _trailing(values: np.ndarray, window: int, min_periods: int) -> pd.api.typing.Rolling:
    """Rolling window over the ``window`` points *before* each point (the point itself excluded)."""
    return pd.Series(values).shift(1).rolling(window, min_periods=min_periods)


def robust_zscores(
    values: np.ndarray, *, window: int, min_periods: int, scale_floor: np.ndarray | float
) -> np.ndarray:
    """Robust z-score of each value against the ``window`` points before it.

    ``z_t = (x_t - median) / max(IQR / 1.349, scale_floor)`` over ``x_{t-window} .. x_{t-1}``; 0 until
    ``min_periods`` past points exist and wherever ``x_t`` is missing.
    """
    rolling = _trailing(values, window, min_periods)
    median = rolling.median().to_numpy()
    iqr = (rolling.quantile(0.75) - rolling.quantile(0.25)).to_numpy()
    scale = np.maximum(iqr / _IQR_TO_SIGMA, scale_floor)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (values - median) / scale
    return np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0)


def nearest_window_distance(values: np.ndarray, *, length: int, block: int = 512) -> np.ndarray:
    """Distance from the window ending at each point to the nearest earlier, non-overlapping window.

    The window ending at ``t`` is ``x_{t-length+1} .. x_t``; it is compared with every window ending at
    ``s <= t - length`` (all history, no overlap, so a window never matches a shifted copy of itself). The
    distance is the root-mean-square point difference ``sqrt(||w_t - w_s||^2 / length)``, in the units of the
    series; NaN until a first comparison exists (``t < 2 length - 1``). Missing values are carried forward
    (leading ones take the first value). Exact brute force, ``O(n^2 length)`` in blocks of ``block`` rows of
    matrix products (about 7 s for 22 700 points of 16-point windows on one core).

    Args:
        values: the series, oldest first.
        length: points per window.
        block: windows compared per matrix product (memory ~ ``8 block n`` bytes).

    Raises:
        ValueError: ``length`` or ``block`` is below 1.
    """
    if length < 1 or block < 1:
        raise ValueError(f"nearest_window_distance: length ({length}) and block ({block}) must be at least 1")
    x = np.asarray(values, dtype=float)
    n = len(x)
    out = np.full(n, np.nan)
    if n < 2 * length:
        return out
    filled = pd.Series(x).ffill().to_numpy()
    known = np.isfinite(filled)
    # Distances do not change under translation; measuring from the first value keeps the squared norms small
    # so that ``|a|^2 + |b|^2 - 2 a.b`` does not lose the differences of a series with a large offset.
    origin = float(filled[known][0]) if known.any() else 0.0
    filled = np.where(known, filled - origin, 0.0)
    windows = np.lib.stride_tricks.sliding_window_view(filled, length)
    norms = np.einsum("ij,ij->i", windows, windows)
    m = len(windows)  # window j ends at point j + length - 1
    for start in range(length, m, block):
        stop = min(m, start + block)
        rows = windows[start:stop]
        free = start - length + 1  # windows [0, free) precede every row of the block without overlap
        best = (norms[None, :free] - 2.0 * (rows @ windows[:free].T)).min(axis=1)
        tail_stop = stop - length  # windows [free, tail_stop) precede only some rows of the block
        if tail_stop > free:
            tail = norms[None, free:tail_stop] - 2.0 * (rows @ windows[free:tail_stop].T)
            gap = np.arange(start, stop)[:, None] - np.arange(free, tail_stop)[None, :]
            tail[gap < length] = np.inf
            best = np.minimum(best, tail.min(axis=1))
        squared = np.maximum(norms[start:stop] + best, 0.0)
        out[start + length - 1 : stop + length - 1] = np.sqrt(squared / length)
    return out


def raw_anomaly_features(
    values: np.ndarray,
    *,
    window: int = 1024,
    min_periods: int = 256,
    short_window: int = 3,
    z_scale: float = 10.0,
    std_weight: float = 1.0,
    seasonal_lag: int | None = None,
    seasonal_slack: int | None = 0,
    spatial_tolerance: float = 0.05,
    spatial_warmup: int = 64,
    relative_floor: float = 1e-3,
    novelty_length: int | None = None,
    novelty_z_scale: float = 7.5,
    novelty_floor: float = 0.5,
) -> np.ndarray:
    """Raw surprise in [0, 1] of each value given the values before it, one column per feature.

    Columns: the value, its ``short_window`` mean, its first difference and (with ``seasonal_lag``) its
    seasonal difference ``x_t - x_{t-lag}``, each as ``1 - exp(-|z| / z_scale)`` of its robust z-score against
    the ``window`` points before it. Every column is 1 where the value leaves the range seen so far by more
    than ``spatial_tolerance`` of that range, and 0 where the value is missing. With ``novelty_length`` a last
    column scores novelty: :func:`nearest_window_distance` divided by the range seen so far (point ``t``
    included), as ``1 - exp(-|z| / novelty_z_scale)`` of its robust z-score against its own ``window`` past
    values, whose scale is at least ``novelty_floor`` times their median (and ``relative_floor``): nearest
    distances among noise vary little, so without that floor an ordinary run of noise would look novel. It
    gets no seasonal discount, having seen every earlier season already.

    Args:
        values: the series (NaN = missing).
        window: trailing points of the median and scale of every z-score.
        min_periods: past points needed before a z-score is computed (capped by ``window``).
        short_window: points averaged by the "short mean" feature, which catches level shifts within noise.
        z_scale: |z| mapped to ``1 - 1/e``.
        std_weight: the scale is at least ``std_weight`` times the trailing standard deviation, so that
            heavy-tailed or discrete series (counts of a few units) do not saturate.
        seasonal_lag: points per season (a day), or None for no seasonal feature.
        seasonal_slack: with a seasonal lag, each |z| is reduced by the largest |z| of the same feature within
            ``seasonal_slack`` points one season earlier, so an event that recurs every day (a nightly job)
            stops scoring while a new one keeps its score. None disables it.
        spatial_tolerance: margin of the new-minimum / new-maximum test, as a fraction of the range so far.
        spatial_warmup: points needed before the range test applies.
        relative_floor: floor of every scale, as a fraction of the range so far (flat series).
        novelty_length: points per window of the novelty feature, or None for no novelty feature.
        novelty_z_scale: |z| of the novelty feature mapped to ``1 - 1/e``.
        novelty_floor: floor of the novelty feature's scale, as a fraction of the median past distance.
    """
    x = np.asarray(values, dtype=float)
    n = len(x)
    series = pd.Series(x)
    past_max = series.shift(1).expanding().max().to_numpy()
    past_min = series.shift(1).expanding().min().to_numpy()
    span = np.nan_to_num(past_max - past_min, nan=0.0)
    floor = np.maximum(relative_floor * span, 1e-9)
    signals = [x, series.rolling(short_window, min_periods=1).mean().to_numpy(), series.diff().to_numpy()]
    lag = seasonal_lag if seasonal_lag is not None and 0 < seasonal_lag < n else None
    if lag is not None:
        signals.append((series - series.shift(lag)).to_numpy())
    needed = max(2, min(min_periods, window))
    columns: list[np.ndarray] = []
    for signal in signals:
        scale_floor: np.ndarray = floor
        if std_weight > 0:
            trailing_std = np.nan_to_num(_trailing(signal, window, needed).std().to_numpy(), nan=0.0)
            scale_floor = np.maximum(floor, std_weight * trailing_std)
        z = np.abs(robust_zscores(signal, window=window, min_periods=needed, scale_floor=scale_floor))
        if lag is not None and seasonal_slack is not None and seasonal_slack < lag:
            nearby_max = pd.Series(z).rolling(2 * seasonal_slack + 1, min_periods=1).max()
            season_ago = np.nan_to_num(nearby_max.shift(lag - seasonal_slack).to_numpy(), nan=0.0)
            z = np.maximum(z - season_ago, 0.0)
        columns.append(1.0 - np.exp(-z / z_scale))
    if novelty_length is not None:
        novelty = _novelty(
            x, novelty_length, window, needed, std_weight, relative_floor, novelty_floor, novelty_z_scale
        )
        columns.append(novelty)
    raw = np.column_stack(columns)
    with np.errstate(invalid="ignore"):
        outside = (x > past_max + spatial_tolerance * span) | (x < past_min - spatial_tolerance * span)
    spatial = (np.arange(n) >= spatial_warmup) & (span > 0) & outside
    raw[spatial, :] = 1.0
    raw[np.isnan(x), :] = 0.0
    return raw


def _novelty(
    x: np.ndarray,
    length: int,
    window: int,
    min_periods: int,
    std_weight: float,
    floor: float,
    median_fraction: float,
    z_scale: float,
) -> np.ndarray:
    """Novelty column of :func:`raw_anomaly_features` (see there)."""
    series = pd.Series(x)
    span_so_far = (series.expanding().max() - series.expanding().min()).to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        distance = nearest_window_distance(x, length=length) / np.maximum(span_so_far, 1e-9)
    distance = np.nan_to_num(distance, nan=0.0)
    trailing = _trailing(distance, window, min_periods)
    typical = np.nan_to_num(trailing.median().to_numpy(), nan=0.0)
    scale_floor = np.maximum(floor, median_fraction * typical)
    if std_weight > 0:
        scale_floor = np.maximum(scale_floor, std_weight * np.nan_to_num(trailing.std().to_numpy(), nan=0.0))
    z = np.abs(robust_zscores(distance, window=window, min_periods=min_periods, scale_floor=scale_floor))
    return np.asarray(1.0 - np.exp(-z / z_scale), dtype=float)


def raw_anomaly_scores(values: np.ndarray, **params: object) -> np.ndarray:
    """Raw surprise in [0, 1] of each value: the largest of :func:`raw_anomaly_features` (same parameters)."""
    features = raw_anomaly_features(values, **params)  # type: ignore[arg-type]
    return np.asarray(features.max(axis=1), dtype=float)


def anomaly_likelihood(
    raw: np.ndarray,
    *,
    learning_period: int = 288,
    historic_window: int = 8640,
    short_window: int = 5,
    min_std: float = 0.01,
) -> np.ndarray:
    """Numenta's anomaly likelihood of each raw score, in [0, 1] (1 = recent raw scores are very unusual).

    The ``short_window`` mean of the raw scores at ``t`` is compared with a Gaussian fitted to those means
    over the ``historic_window`` points before ``t`` (standard deviation at least ``min_std``); the result is
    ``1 - tail probability``. The first ``learning_period`` points get 0.5 (no opinion), as in Numenta's
    implementation.
    """
    avg = pd.Series(np.asarray(raw, dtype=float)).rolling(short_window, min_periods=1).mean()
    history = avg.shift(1).rolling(historic_window, min_periods=2)
    mean = history.mean().to_numpy()
    std = np.maximum(np.nan_to_num(history.std().to_numpy(), nan=min_std), min_std)
    likelihood = np.asarray(ndtr(np.nan_to_num((avg.to_numpy() - mean) / std, nan=0.0)), dtype=float)
    likelihood[: min(learning_period, len(likelihood))] = 0.5
    return likelihood


def log_likelihood(likelihood: np.ndarray) -> np.ndarray:
    """Numenta's log scaling ``log(1.0000000001 - L) / log(1e-10)``: a tail of 1e-5 maps to 0.5."""
    return np.clip(np.log(1.0000000001 - np.asarray(likelihood, dtype=float)) / _LOG_FLOOR, 0.0, 1.0)


def suppress_after_alarm(scores: np.ndarray, *, threshold: float, hold: int) -> np.ndarray:
    """Set to 0 the ``hold`` points that follow each alarm (a score at or above ``threshold``).

    Alarms inside a hold are silenced too and do not extend it. Causal: the output at ``t`` depends only on
    the scores up to ``t``.
    """
    out = np.asarray(scores, dtype=float).copy()
    if hold <= 0:
        return out
    free_from = 0
    for i in np.flatnonzero(out >= threshold).tolist():
        if i < free_from:
            continue
        out[i + 1 : i + 1 + hold] = 0.0
        free_from = i + 1 + hold
    return out


class StreamingAnomalyScorer:
    """Causal chain raw features -> anomaly likelihood -> log scale -> alarm suppression.

    The defaults are the configuration measured on the Numenta Anomaly Benchmark (``benchmarks/nab.py``).
    Warm-up: z-scores start after ``min_periods`` points and the seasonal feature one season later; alarms
    in roughly the first ``learning_period + min_periods`` points (about two days of 5-minute data) come from
    the model settling, not from the data (NAB does not score its first 15 %).

    Args:
        window: trailing points of every robust z-score.
        min_periods: past points needed before a z-score is computed.
        short_window: points of the short-mean feature.
        z_scale: |z| mapped to a raw score of ``1 - 1/e``.
        std_weight: the z-score scale is at least this multiple of the trailing standard deviation.
        seasonal_period: length of a season (e.g. one day); with timestamps, adds the seasonal-difference
            feature and discounts events that recur one season apart. None disables both.
        seasonal_slack: points of timing jitter tolerated by the seasonal discount; None disables it.
        spatial_tolerance: margin of the new-minimum / new-maximum test, as a fraction of the range so far.
        novelty_length: points per window of the novelty feature (distance of the latest window to the
            nearest earlier one); None disables it (it costs ``O(n^2)``: about 7 s for 22 700 points).
        novelty_z_scale: |z| of the novelty feature mapped to a raw score of ``1 - 1/e``.
        novelty_floor: floor of the novelty feature's scale, as a fraction of the median past distance.
        spatial_alarm: a spatial anomaly is reported as 1, bypassing the likelihood (as Numenta does).
        learning_period: points before the likelihood has an opinion and before the range test applies
            (early on, every new value is a new minimum or maximum).
        historic_window: points of the likelihood's trailing Gaussian.
        likelihood_window: points of the short-window mean of raw scores.
        min_std: floor of the likelihood's standard deviation.
        alarm_threshold: score at which an alarm is raised (starts a hold).
        hold: points reported as 0 after an alarm.
    """

    def __init__(
        self,
        *,
        window: int = 1024,
        min_periods: int = 256,
        short_window: int = 3,
        z_scale: float = 10.0,
        std_weight: float = 1.0,
        seasonal_period: pd.Timedelta | None = DEFAULT_SEASON,
        seasonal_slack: int | None = 0,
        spatial_tolerance: float = 0.05,
        novelty_length: int | None = 16,
        novelty_z_scale: float = 7.5,
        novelty_floor: float = 0.5,
        spatial_alarm: bool = True,
        learning_period: int = 288,
        historic_window: int = 8640,
        likelihood_window: int = 5,
        min_std: float = 0.01,
        alarm_threshold: float = 0.6,
        hold: int = 75,
    ) -> None:
        self.window = window
        self.min_periods = min_periods
        self.short_window = short_window
        self.z_scale = z_scale
        self.std_weight = std_weight
        self.seasonal_period = seasonal_period
        self.seasonal_slack = seasonal_slack
        self.spatial_tolerance = spatial_tolerance
        self.novelty_length = novelty_length
        self.novelty_z_scale = novelty_z_scale
        self.novelty_floor = novelty_floor
        self.spatial_alarm = spatial_alarm
        self.learning_period = learning_period
        self.historic_window = historic_window
        self.likelihood_window = likelihood_window
        self.min_std = min_std
        self.alarm_threshold = alarm_threshold
        self.hold = hold

    def score_stream(
        self, values: np.ndarray, timestamps: pd.DatetimeIndex | None = None, *, series_id: str = "series"
    ) -> np.ndarray:
        """Anomaly score in [0, 1] of every point, each computed from that point and the ones before it.

        Args:
            values: the series, oldest first (NaN = missing).
            timestamps: one per value, in the order of ``values``; needed for the seasonal feature (the
                sampling step is the median spacing of the first ten intervals, known long before one season
                has passed). Points are scored in the given order, so a repeated or out-of-order timestamp
                (daylight-saving artefacts) is scored as it arrives.
            series_id: name used in error messages.

        Raises:
            InvalidSeriesError: values are not one-dimensional numbers, contain infinity, or do not match the
                timestamps in number.
        """
        x = self._validate(values, timestamps, series_id)
        if len(x) == 0:
            return np.zeros(0)
        features = raw_anomaly_features(
            x,
            window=self.window,
            min_periods=self.min_periods,
            short_window=self.short_window,
            z_scale=self.z_scale,
            std_weight=self.std_weight,
            seasonal_lag=self._seasonal_lag(timestamps),
            seasonal_slack=self.seasonal_slack,
            spatial_tolerance=self.spatial_tolerance,
            spatial_warmup=self.learning_period,
            novelty_length=self.novelty_length,
            novelty_z_scale=self.novelty_z_scale,
            novelty_floor=self.novelty_floor,
        )
        raw = features.max(axis=1)
        likelihood = anomaly_likelihood(
            raw,
            learning_period=self.learning_period,
            historic_window=self.historic_window,
            short_window=self.likelihood_window,
            min_std=self.min_std,
        )
        scores = log_likelihood(likelihood)
        if self.spatial_alarm:
            scores = np.where(raw >= 1.0, 1.0, scores)
        return suppress_after_alarm(scores, threshold=self.alarm_threshold, hold=self.hold)

    def _seasonal_lag(self, timestamps: pd.DatetimeIndex | None) -> int | None:
        if self.seasonal_period is None or timestamps is None or len(timestamps) < 3:
            return None
        step = pd.Series(timestamps[:11]).diff().median()
        if pd.isna(step) or step <= pd.Timedelta(0):
            return None
        lag = round(pd.Timedelta(self.seasonal_period) / step)
        return lag if lag >= 2 else None

    @staticmethod
    def _validate(values: np.ndarray, timestamps: pd.DatetimeIndex | None, series_id: str) -> np.ndarray:
        try:
            x = np.asarray(values, dtype=float)
        except (TypeError, ValueError) as exc:
            raise InvalidSeriesError(f"series {series_id!r}: values are not numeric ({exc})") from exc
        if x.ndim != 1:
            raise InvalidSeriesError(f"series {series_id!r}: values must be 1-D, got shape {x.shape}")
        if np.isinf(x).any():
            raise InvalidSeriesError(f"series {series_id!r}: values contain infinity; use NaN for missing")
        if timestamps is not None and len(timestamps) != len(x):
            raise InvalidSeriesError(
                f"series {series_id!r}: {len(x)} values for {len(timestamps)} timestamps; pass one per value"
            )
        return x
