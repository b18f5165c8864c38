"""Streaming anomaly detector: incremental, causal scoring of new buckets from a bounded JSON state.

:class:`StreamingDetector` (registered as ``"streaming"``) is the scorer behind livewatch's NAB figure
(``benchmarks/nab.py``). Every point goes through one causal step (:func:`_step`) that reads and advances a
:class:`StreamState`; nothing ever rescans history, so a tick costs ``O(new points x bounded state)``.

The step, for a value ``x_t``:

1. **Raw features**, each ``1 - exp(-|z| / z_scale)`` of a robust z-score against the ``window`` previous
   values of the same signal: the value, its ``short_window`` mean, its first difference, (with a
   ``season``) its seasonal difference ``x_t - x_{t-lag}`` and its ``mean_windows`` means (24 and 96 points:
   sustained shifts too small for the short mean; on the even NAB files they took standard / low FP from
   73.9 / 65.7 to 75.4 / 70.4, as the likelihood of the raw score, now higher whenever any mean drifts,
   discounts short blips). The scale of a z-score is
   ``max(IQR / 1.349, std_weight * std, relative_floor * range so far)``. With ``seasonal_slack`` each |z| is
   reduced by the largest |z| of the same feature within ``seasonal_slack`` points one season earlier, so an
   event that recurs every day stops scoring. Every feature is 1 when ``x_t`` leaves the range seen so far
   by more than ``spatial_tolerance`` of that range (Numenta's "spatial anomaly").
2. **Novelty** (``novelty_length``): the RMS distance from the latest ``novelty_length`` values to the nearest
   earlier, non-overlapping window among the last ``novelty_reference`` windows (a ring of past values, so
   bounded), divided by the range so far, then robust-z-scored against its own trailing values like the
   other features ("have I seen this shape before?": a recurring shape stops being surprising, a new one is).
3. **Anomaly likelihood** (Numenta): the ``likelihood_window`` mean of the raw score (the largest feature) is
   compared with a Gaussian fitted to its ``historic_window`` previous means; ``z_lik = (mean - mu) / sd``.
4. **Score in sigmas**: ``max(z_lik, 0)`` (capped at :data:`MAX_LIKELIHOOD_SIGMA`), signed like
   the z-score of the feature that deviates most (a spike is positive even at a seasonal trough). A range
   break scores :data:`SPATIAL_SCORE` (``spatial_alarm``). After an alarm (``|score| >= alarm_threshold``)
   the next ``hold`` points score 0, so one event raises one alarm.

``expected`` is the trailing median of the value and ``lower`` / ``upper`` are ``expected -/+ band`` robust
scales: the value-feature's band, for charts and the noise-floor post-rules. :func:`unit_score` maps a score
to NAB's [0, 1] scale (Numenta's log-likelihood: ``4.26`` sigmas ~ 0.5, ``4.75`` ~ 0.6, a range break 1).

Missing values (NaN) score NaN and leave the trailing windows untouched (they hold the last non-missing
values); they still count as time for the seasonal lag and the alarm hold. Points are consecutive buckets:
the seasonal lag is ``round(season / step)`` points, the step being ``granularity`` or the median spacing of
the history.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd
from scipy.special import ndtr

from detectors.base import Detector, register
from detectors.errors import InvalidSeriesError
from detectors.validation import SeriesLike, infer_step, parse_granularity, to_frame

__all__ = [
    "MAX_LIKELIHOOD_SIGMA",
    "SPATIAL_SCORE",
    "Ring",
    "SortedRing",
    "StreamState",
    "StreamingDetector",
    "log_likelihood",
    "nearest_window_distance",
    "suppress_after_alarm",
    "unit_score",
]

#: Score (sigmas) of a value that leaves the range seen so far (a "spatial" anomaly).
SPATIAL_SCORE = 10.0
#: Cap of the likelihood score (sigmas); ``ndtr`` is 1.0 in double precision beyond about 8.3.
MAX_LIKELIHOOD_SIGMA = 9.0

_IQR_TO_SIGMA = 1.349
_LOG_FLOOR = math.log(1e-10)


# -- pure helpers ------------------------------------------------------------------------------------
def log_likelihood(likelihood: np.ndarray) -> np.ndarray:
    """Numenta's log scaling ``log(1.0000000001 - L) / log(1e-10)``: a tail of 1e-5 maps to 0.5."""
    return np.clip(np.log(1.0000000001 - np.asarray(likelihood, dtype=float)) / _LOG_FLOOR, 0.0, 1.0)


def unit_score(score: np.ndarray) -> np.ndarray:
    """Map sigma scores to NAB's [0, 1] anomaly score, monotone in ``|score|``; NaN maps to 0.

    ``log_likelihood(ndtr(|score|))``, and exactly 1 for a range break (``|score| >= SPATIAL_SCORE``), as the
    Numenta scorers report it.
    """
    raw = np.abs(np.asarray(score, dtype=float))
    magnitude = np.nan_to_num(raw, nan=0.0)
    out = np.where(magnitude >= SPATIAL_SCORE, 1.0, log_likelihood(ndtr(magnitude)))
    return np.where(np.isnan(raw), 0.0, out)


def suppress_after_alarm(scores: np.ndarray, *, threshold: float, hold: int) -> np.ndarray:
    """Set to 0 the ``hold`` points that follow each alarm (``|score| >= threshold``); batch reference.

    Alarms inside a hold are silenced too and do not extend it.
    """
    out = np.asarray(scores, dtype=float).copy()
    if hold <= 0:
        return out
    free_from = 0
    for i in np.flatnonzero(np.abs(out) >= threshold).tolist():
        if i < free_from:
            continue
        out[i + 1 : i + 1 + hold] = 0.0
        free_from = i + 1 + hold
    return out


def nearest_window_distance(values: np.ndarray, *, length: int, reference: int | None = None) -> np.ndarray:
    """Batch reference of the novelty distance: RMS distance of each window to its nearest earlier one.

    The window ending at ``t`` (``x_{t-length+1} .. x_t``) is compared with the windows ending at
    ``s <= t - length`` (no overlap), the last ``reference`` of them (all when None). NaN until a first
    comparison exists. Brute force, for tests.
    """
    x = np.asarray(values, dtype=float)
    out = np.full(len(x), np.nan)
    for t in range(2 * length - 1, len(x)):
        current = x[t - length + 1 : t + 1]
        ends = range(length - 1, t - length + 1)
        if reference is not None:
            ends = ends[-reference:]
        best = min(float(np.sum((current - x[s - length + 1 : s + 1]) ** 2)) for s in ends)
        out[t] = math.sqrt(best / length)
    return out


# -- state -------------------------------------------------------------------------------------------
def _encode(values: np.ndarray) -> str:
    """Exact, compact JSON form of a float array: base64 of little-endian float64 bytes."""
    return base64.b64encode(np.ascontiguousarray(values, dtype="<f8").tobytes()).decode("ascii")


def _decode(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f8").astype(float)


class Ring:
    """The last ``capacity`` values appended, oldest first, in ``O(1)`` amortised per append."""

    __slots__ = ("_data", "_end", "_start", "capacity")

    def __init__(self, capacity: int, values: np.ndarray | None = None) -> None:
        self.capacity = max(int(capacity), 1)
        self._data = np.empty(2 * self.capacity, dtype=float)
        self._start = 0
        self._end = 0
        if values is not None and len(values):
            tail = np.asarray(values, dtype=float)[-self.capacity :]
            self._data[: len(tail)] = tail
            self._end = len(tail)

    def __len__(self) -> int:
        return self._end - self._start

    def append(self, value: float) -> None:
        if self._end == len(self._data):
            size = self._end - self._start
            self._data[:size] = self._data[self._start : self._end]
            self._start, self._end = 0, size
        self._data[self._end] = value
        self._end += 1
        if self._end - self._start > self.capacity:
            self._start += 1

    def values(self) -> np.ndarray:
        """A view of the values, oldest first (valid until the next append)."""
        return self._data[self._start : self._end]

    def last(self, lag: int = 1) -> float:
        """The value appended ``lag`` appends ago (1 = the latest); NaN when not held."""
        return float(self._data[self._end - lag]) if 0 < lag <= len(self) else math.nan

    def copy(self) -> Ring:
        return Ring(self.capacity, self.values())


class SortedRing(Ring):
    """A :class:`Ring` that also keeps its values sorted (quantiles in ``O(1)``, updates by ``memmove``).

    The sorted copy is derived data: rebuilt from the values on load, so it is never serialised.
    """

    __slots__ = ("_count", "_sorted")

    def __init__(self, capacity: int, values: np.ndarray | None = None) -> None:
        super().__init__(capacity, values)
        self._sorted = np.empty(self.capacity, dtype=float)
        self._count = len(self)
        self._sorted[: self._count] = np.sort(self.values())

    def append(self, value: float) -> None:
        n = self._count
        ordered = self._sorted
        if n == self.capacity:
            evicted = self._data[self._start]
            i = int(np.searchsorted(ordered[:n], evicted))
            ordered[i : n - 1] = ordered[i + 1 : n]
            n -= 1
        j = int(np.searchsorted(ordered[:n], value))
        ordered[j + 1 : n + 1] = ordered[j:n].copy()
        ordered[j] = value
        self._count = n + 1
        super().append(value)

    def sorted_values(self) -> np.ndarray:
        return self._sorted[: self._count]

    def copy(self) -> SortedRing:
        return SortedRing(self.capacity, self.values())


@dataclass
class StreamState:
    """Everything the step needs, all bounded: rings of recent values and a few running scalars.

    Attributes:
        n: points seen (missing ones included); ``n_values``: non-missing ones.
        lo, hi: smallest and largest value seen (the "range so far").
        recent: the last ``max(short_window, *mean_windows, 2)`` values by position (NaN kept), for the means
            and the first difference; ``season_values``: the last ``lag`` values by position (seasonal
            difference).
        signals: per feature, its last ``window`` non-missing signal values.
        season_z: per feature, its last ``lag + slack`` |z| by position (seasonal discount).
        novelty_values: the last ``novelty_reference + 2 novelty_length - 1`` non-missing values.
        distances: the last ``window`` novelty distances.
        raw: the last ``likelihood_window`` raw scores; ``averages``: the last ``historic_window`` means.
        hold_left: points still silenced by the last alarm.
    """

    n: int = 0
    n_values: int = 0
    lo: float = math.inf
    hi: float = -math.inf
    hold_left: int = 0
    origin: float = 0.0
    average_sum: float = 0.0
    average_sumsq: float = 0.0
    recent: Ring = field(default_factory=lambda: Ring(2))
    season_values: Ring | None = None
    signals: list[SortedRing] = field(default_factory=list)
    season_z: list[Ring] = field(default_factory=list)
    novelty_values: Ring | None = None
    distances: SortedRing | None = None
    raw: Ring = field(default_factory=lambda: Ring(1))
    averages: Ring = field(default_factory=lambda: Ring(1))

    def copy(self) -> StreamState:
        return StreamState(
            n=self.n,
            n_values=self.n_values,
            lo=self.lo,
            hi=self.hi,
            hold_left=self.hold_left,
            origin=self.origin,
            average_sum=self.average_sum,
            average_sumsq=self.average_sumsq,
            recent=self.recent.copy(),
            season_values=self.season_values.copy() if self.season_values is not None else None,
            signals=[r.copy() for r in self.signals],
            season_z=[r.copy() for r in self.season_z],
            novelty_values=self.novelty_values.copy() if self.novelty_values is not None else None,
            distances=self.distances.copy() if self.distances is not None else None,
            raw=self.raw.copy(),
            averages=self.averages.copy(),
        )

    def to_dict(self) -> dict[str, Any]:
        def ring(r: Ring | None) -> dict[str, Any] | None:
            return None if r is None else {"capacity": r.capacity, "values": _encode(r.values())}

        return {
            "n": self.n,
            "n_values": self.n_values,
            "lo": self.lo if math.isfinite(self.lo) else None,
            "hi": self.hi if math.isfinite(self.hi) else None,
            "hold_left": self.hold_left,
            "origin": self.origin,
            "average_sum": self.average_sum,
            "average_sumsq": self.average_sumsq,
            "recent": ring(self.recent),
            "season_values": ring(self.season_values),
            "signals": [ring(r) for r in self.signals],
            "season_z": [ring(r) for r in self.season_z],
            "novelty_values": ring(self.novelty_values),
            "distances": ring(self.distances),
            "raw": ring(self.raw),
            "averages": ring(self.averages),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StreamState:
        def ring(d: dict[str, Any] | None) -> Ring | None:
            return None if d is None else Ring(int(d["capacity"]), _decode(d["values"]))

        def required(d: dict[str, Any]) -> Ring:
            return Ring(int(d["capacity"]), _decode(d["values"]))

        return cls(
            n=int(data["n"]),
            n_values=int(data["n_values"]),
            lo=math.inf if data["lo"] is None else float(data["lo"]),
            hi=-math.inf if data["hi"] is None else float(data["hi"]),
            hold_left=int(data["hold_left"]),
            origin=float(data["origin"]),
            average_sum=float(data["average_sum"]),
            average_sumsq=float(data["average_sumsq"]),
            recent=required(data["recent"]),
            season_values=ring(data["season_values"]),
            signals=[SortedRing(int(d["capacity"]), _decode(d["values"])) for d in data["signals"]],
            season_z=[required(d) for d in data["season_z"]],
            novelty_values=ring(data["novelty_values"]),
            distances=(
                None
                if data["distances"] is None
                else SortedRing(int(data["distances"]["capacity"]), _decode(data["distances"]["values"]))
            ),
            raw=required(data["raw"]),
            averages=required(data["averages"]),
        )


@dataclass(frozen=True)
class _Params:
    """Hyper-parameters resolved for one series (the seasonal lag in points)."""

    window: int
    needed: int
    short_window: int
    mean_windows: tuple[int, ...]
    z_scale: float
    std_weight: float
    lag: int | None
    slack: int | None
    spatial_tolerance: float
    spatial_min_z: float
    relative_floor: float
    novelty_length: int | None
    novelty_reference: int
    novelty_z_scale: float
    novelty_floor: float
    spatial_alarm: bool
    learning_period: int
    min_std: float
    alarm_threshold: float
    hold: int
    band: float


def _new_state(p: _Params, historic_window: int, likelihood_window: int) -> StreamState:
    features = 3 + len(p.mean_windows) + (1 if p.lag is not None else 0)
    discount = p.lag is not None and p.slack is not None and p.slack < p.lag
    return StreamState(
        recent=Ring(max(p.short_window, *p.mean_windows, 2)),
        season_values=Ring(p.lag) if p.lag is not None else None,
        signals=[SortedRing(p.window) for _ in range(features)],
        season_z=[Ring(p.lag + (p.slack or 0)) for _ in range(features)] if discount and p.lag else [],
        novelty_values=(
            Ring(p.novelty_reference + 2 * p.novelty_length - 1) if p.novelty_length is not None else None
        ),
        distances=SortedRing(p.window) if p.novelty_length is not None else None,
        raw=Ring(likelihood_window),
        averages=Ring(historic_window),
    )


def _robust_z(
    signal: float, past: SortedRing, needed: int, floor: float, std_weight: float
) -> tuple[float, float, float]:
    """``(z, median, scale)`` of ``signal`` against the values of ``past``; ``z = 0`` before ``needed``.

    Quartiles interpolate linearly between order statistics (numpy's default method).
    """
    ordered = past.sorted_values()
    n = len(ordered)
    if n == 0:
        return 0.0, math.nan, math.nan
    quartiles = []
    for q in (0.25, 0.5, 0.75):
        h = (n - 1) * q
        b = int(h)
        low = float(ordered[b])
        quartiles.append(low + (h - b) * (float(ordered[min(b + 1, n - 1)]) - low))
    q1, median, q3 = quartiles
    if n < needed or math.isnan(signal):
        return 0.0, median, math.nan
    scale = max((q3 - q1) / _IQR_TO_SIGMA, floor)
    if std_weight > 0:
        values = past.values()
        centred = values - float(np.mean(values))
        scale = max(scale, std_weight * math.sqrt(float(centred @ centred) / (n - 1)))
    return (signal - median) / scale, median, scale


def _novelty_distance(ring: Ring, length: int) -> float:
    """RMS distance of the last ``length`` values of ``ring`` to the nearest earlier non-overlapping window.

    ``|c - w|^2 = |w|^2 + |c|^2 - 2 c.w`` with running sums in C (``convolve`` / ``correlate``); the ring
    holds values minus the first value of the series, so every value is within the range seen so far and the
    expansion loses nothing that matters at the scale of that range.
    """
    values = ring.values()
    if len(values) < 2 * length:
        return math.nan
    current = values[-length:]
    reference = values[: len(values) - length]
    norms = np.convolve(reference * reference, np.ones(length), mode="valid")
    cross = np.correlate(reference, current, mode="valid")
    best = float(np.min(norms - 2.0 * cross)) + float(current @ current)
    return math.sqrt(max(best, 0.0) / length)


def _mean_of_last(recent: Ring, length: int) -> float:
    """Mean of the non-missing values among the last ``length`` of ``recent`` (the latest is never NaN)."""
    values = recent.values()[-length:]
    return float(np.mean(values[~np.isnan(values)]))


def _append_average(state: StreamState, average: float) -> None:
    """Append to the likelihood's history, keeping its running sums (recomputed once per ring length)."""
    ring = state.averages
    if len(ring) == ring.capacity:
        evicted = ring.values()[0]
        state.average_sum -= evicted
        state.average_sumsq -= evicted * evicted
    ring.append(average)
    state.average_sum += average
    state.average_sumsq += average * average
    if state.n_values % ring.capacity == 0:  # bound the rounding drift of the running sums
        values = ring.values()
        state.average_sum = float(np.sum(values))
        state.average_sumsq = float(values @ values)


def _step(state: StreamState, x: float, p: _Params) -> tuple[float, float, float, float]:
    """Score ``x`` from ``state`` and advance it; returns ``(score, expected, lower, upper)``."""
    missing = math.isnan(x)
    previous = state.recent.last()
    state.recent.append(x)
    lagged = math.nan
    if state.season_values is not None:
        lagged = state.season_values.last(p.lag or 0) if len(state.season_values) == p.lag else math.nan
        state.season_values.append(x)
    t = state.n
    state.n += 1
    if missing:
        for ring in state.season_z:
            ring.append(0.0)
        state.hold_left = max(state.hold_left - 1, 0)
        _, median, _ = _robust_z(math.nan, state.signals[0], 1, 0.0, 0.0)
        return math.nan, median, math.nan, math.nan

    span = state.hi - state.lo if state.n_values > 0 else 0.0
    floor = max(p.relative_floor * span, 1e-9)
    signals = [x, _mean_of_last(state.recent, p.short_window), x - previous]
    if p.lag is not None:
        signals.append(x - lagged)
    signals.extend(_mean_of_last(state.recent, length) for length in p.mean_windows)
    raw = 0.0
    largest_z = 0.0
    direction = 0.0  # signed z of the feature with the largest |z|: the sign of the score
    expected, lower, upper = math.nan, math.nan, math.nan
    for k, signal in enumerate(signals):
        z, median, scale = _robust_z(signal, state.signals[k], p.needed, floor, p.std_weight)
        if abs(z) > largest_z:
            largest_z, direction = abs(z), z
        if k == 0:
            expected = median
            lower, upper = median - p.band * scale, median + p.band * scale
        z = abs(z)
        if state.season_z:
            ring = state.season_z[k]
            slack = p.slack or 0
            if len(ring) == ring.capacity:
                ago = ring.values()[: 2 * slack + 1]
                season_ago = float(np.max(ago))
            else:
                season_ago = 0.0
            ring.append(z)
            z = max(z - season_ago, 0.0)
        if not math.isnan(signal):
            state.signals[k].append(signal)
        raw = max(raw, 1.0 - math.exp(-z / p.z_scale))

    if p.novelty_length is not None and state.novelty_values is not None and state.distances is not None:
        if state.n_values == 0:
            state.origin = x
        state.novelty_values.append(x - state.origin)
        span_now = max(state.hi, x) - min(state.lo, x)
        distance = _novelty_distance(state.novelty_values, p.novelty_length) / max(span_now, 1e-9)
        if not math.isnan(distance):
            past = state.distances.sorted_values()
            nfloor = p.relative_floor
            if len(past):
                half = len(past) // 2
                typical = float(past[half]) if len(past) % 2 else 0.5 * float(past[half - 1] + past[half])
                nfloor = max(nfloor, p.novelty_floor * typical)
            z, _, _ = _robust_z(distance, state.distances, p.needed, nfloor, p.std_weight)
            state.distances.append(distance)
            raw = max(raw, 1.0 - math.exp(-abs(z) / p.novelty_z_scale))

    outside = x > state.hi + p.spatial_tolerance * span or x < state.lo - p.spatial_tolerance * span
    spatial = t >= p.learning_period and span > 0 and outside and largest_z >= p.spatial_min_z
    if spatial:
        raw = 1.0
    state.lo, state.hi = min(state.lo, x), max(state.hi, x)
    state.n_values += 1

    state.raw.append(raw)
    average = float(np.mean(state.raw.values()))
    count = len(state.averages)
    z_lik = 0.0
    if count >= 2:
        mean = state.average_sum / count
        variance = max(state.average_sumsq - state.average_sum * mean, 0.0) / (count - 1)
        z_lik = (average - mean) / max(math.sqrt(variance), p.min_std)
    _append_average(state, average)
    if t < p.learning_period:
        z_lik = 0.0
    magnitude = min(max(z_lik, 0.0), MAX_LIKELIHOOD_SIGMA)
    if spatial and p.spatial_alarm:
        magnitude = SPATIAL_SCORE
    if state.hold_left > 0:
        state.hold_left -= 1
        magnitude = 0.0
    elif magnitude >= p.alarm_threshold:
        state.hold_left = p.hold
    if direction == 0.0:
        direction = x - expected if not math.isnan(expected) else 1.0
    sign = -1.0 if direction < 0 else 1.0
    return sign * magnitude, expected, lower, upper


# -- the detector ------------------------------------------------------------------------------------
@register
class StreamingDetector(Detector):
    """Causal streaming scorer (raw features -> anomaly likelihood -> alarm hold) with incremental state.

    ``fit(history)`` streams the history through the step and keeps the state as of its last timestamp;
    ``score(window)`` scores points strictly after it from a copy of the state (the detector is not changed);
    ``update(window)`` advances the state over them. Scoring a window at once or piece by piece (score then
    update per piece) gives identical scores, and so does a JSON round trip in between. Point counts are in
    buckets of the series; the defaults are the configuration measured on NAB (mostly 5-minute data), and
    only ``season`` is a duration.

    State size is bounded by the hyper-parameters (about ``7 window + 7 lag + novelty_reference +
    historic_window`` floats, stored as base64 float64): with the defaults on a 5-minute series the JSON is
    187 kB after two weeks and stops growing at about 236 kB once the likelihood's 30-day ring is full.
    Per point the step costs ``O(log window)`` searches plus ``O(window)`` moves and ``O(novelty_reference *
    novelty_length)`` for the novelty distance, about 0.2 ms; a 1-point tick (score, update, JSON round
    trip) about 3 ms.

    Args:
        window: trailing non-missing values of every robust z-score.
        min_periods: values needed before a z-score is computed (capped by ``window``).
        short_window: points of the short-mean feature (catches level shifts within the noise).
        mean_windows: points of the longer-mean features (each a robust z-score like the others; sustained
            shifts); ``()`` disables them (the features of state version 1).
        z_scale: |z| mapped to a raw score of ``1 - 1/e``.
        std_weight: the z-score scale is at least this multiple of the trailing standard deviation.
        season: length of a season (``"1D"``), or None; adds the seasonal-difference feature and discounts
            events that recur one season apart.
        granularity: bucket size (``"5m"``); None infers it from the history (median spacing).
        seasonal_slack: points of timing jitter of the seasonal discount; None disables the discount.
        spatial_tolerance: margin of the new-minimum / new-maximum test, as a fraction of the range so far.
        spatial_min_z: a range break counts only if the largest robust |z| of the value, the means and
            differences is at least this (a new extreme of plain noise is a 3-4 sigma event, not an
            anomaly); 5 was chosen on the even NAB files, where 0 to 5 score within 0.3.
        relative_floor: floor of every scale, as a fraction of the range so far (flat series).
        novelty_length: points per window of the novelty feature; None disables it.
        novelty_reference: past windows the novelty feature compares with (the ring's size).
        novelty_z_scale: |z| of the novelty feature mapped to ``1 - 1/e``.
        novelty_floor: floor of the novelty scale, as a fraction of the median past distance.
        spatial_alarm: a range break scores :data:`SPATIAL_SCORE`, bypassing the likelihood.
        learning_period: points before the likelihood has an opinion and the range test applies.
        historic_window: points of the likelihood's trailing Gaussian.
        likelihood_window: points of the short mean of raw scores.
        min_std: floor of the likelihood's standard deviation.
        alarm_threshold: |score| (sigmas) of an alarm, which starts a hold; also the default post-rule
            threshold.
        hold: points scored 0 after an alarm.
        band: half-width of ``lower`` / ``upper`` in robust scales of the value.
    """

    name: ClassVar[str] = "streaming"
    min_history: ClassVar[int] = 2
    #: 2: the longer-mean features (``mean_windows``); a version-1 state loads with ``mean_windows=()``.
    state_version: ClassVar[int] = 2

    state_: StreamState
    lag_: int | None
    _last_scored: tuple[pd.Timestamp, pd.Index, np.ndarray, StreamState] | None
    last_ts_: pd.Timestamp

    def __init__(
        self,
        *,
        window: int = 1024,
        min_periods: int = 256,
        short_window: int = 3,
        mean_windows: tuple[int, ...] = (24, 96),
        z_scale: float = 10.0,
        std_weight: float = 1.0,
        season: str | None = "1D",
        granularity: str | None = None,
        seasonal_slack: int | None = 0,
        spatial_tolerance: float = 0.05,
        spatial_min_z: float = 5.0,
        relative_floor: float = 1e-3,
        novelty_length: int | None = 16,
        novelty_reference: int = 4032,
        novelty_z_scale: float = 7.5,
        novelty_floor: float = 0.5,
        spatial_alarm: bool = True,
        learning_period: int = 288,
        historic_window: int = 8640,
        likelihood_window: int = 5,
        min_std: float = 0.01,
        alarm_threshold: float = 4.75,
        hold: int = 75,
        band: float = 4.0,
    ) -> None:
        self.window = window
        self.min_periods = min_periods
        self.short_window = short_window
        self.mean_windows = tuple(int(length) for length in mean_windows)
        self.z_scale = z_scale
        self.std_weight = std_weight
        self.season = season
        self.granularity = granularity
        self.seasonal_slack = seasonal_slack
        self.spatial_tolerance = spatial_tolerance
        self.spatial_min_z = spatial_min_z
        self.relative_floor = relative_floor
        self.novelty_length = novelty_length
        self.novelty_reference = novelty_reference
        self.novelty_z_scale = novelty_z_scale
        self.novelty_floor = novelty_floor
        self.spatial_alarm = spatial_alarm
        self.learning_period = learning_period
        self.historic_window = historic_window
        self.likelihood_window = likelihood_window
        self.min_std = min_std
        self.alarm_threshold = alarm_threshold
        self.hold = hold
        self.band = band

    # -- contract --------------------------------------------------------------------------------
    def default_rules(self) -> Any:
        from detectors.postrules import PostRules

        return PostRules(threshold=self.alarm_threshold)

    def update(self, window: SeriesLike) -> Self:
        """Advance the state over ``window`` (points strictly after the last one seen); returns ``self``."""
        self._check_fitted()
        frame = to_frame(window, series_id=self.series_id_, min_points=0)
        self._check_after(frame)
        if len(frame):
            values = frame["value"].to_numpy(dtype=float)
            cached = self._advanced_state(frame.index, values)
            if cached is not None:
                self.state_ = cached
            else:
                p = self._params()
                for x in values:
                    _step(self.state_, float(x), p)
            self.last_ts_ = pd.Timestamp(frame.index[-1])
        self._last_scored = None
        return self

    def _fit(self, frame: pd.DataFrame) -> None:
        self._check_hyper_parameters()
        self.lag_ = self._lag(frame)
        p = self._params()
        self.state_ = _new_state(p, self.historic_window, self.likelihood_window)
        for x in frame["value"].to_numpy(dtype=float):
            _step(self.state_, float(x), p)
        self.last_ts_ = pd.Timestamp(frame.index[-1])
        self._last_scored = None

    def _score(self, frame: pd.DataFrame) -> pd.DataFrame:
        self._check_after(frame)
        p = self._params()
        state = self.state_.copy()
        rows = np.array([_step(state, float(x), p) for x in frame["value"].to_numpy(dtype=float)])
        rows = rows.reshape(len(frame), 4)
        # Remember where scoring left the state: update() on the same points then need not step again.
        self._last_scored = (self.last_ts_, frame.index.copy(), frame["value"].to_numpy(dtype=float), state)
        return pd.DataFrame(
            {
                "observed": frame["value"].to_numpy(dtype=float),
                "expected": rows[:, 1],
                "lower": rows[:, 2],
                "upper": rows[:, 3],
                "score": rows[:, 0],
            },
            index=frame.index,
        )

    def _state_to_dict(self) -> dict[str, Any]:
        return {"lag": self.lag_, "last_ts": self.last_ts_.isoformat(), "stream": self.state_.to_dict()}

    def _state_from_dict(self, state: dict[str, Any]) -> None:
        self.lag_ = None if state["lag"] is None else int(state["lag"])
        self.last_ts_ = pd.Timestamp(state["last_ts"])
        self.state_ = StreamState.from_dict(state["stream"])
        self._last_scored = None

    @classmethod
    def _upgrade_payload(cls, payload: dict[str, Any]) -> dict[str, Any]:
        """A version-1 state has no longer-mean features: it loads, and scores as before, without them."""
        if payload.get("version") == 1:
            payload = {**payload, "version": 2, "params": {**payload["params"], "mean_windows": []}}
        return payload

    # -- helpers ---------------------------------------------------------------------------------
    def _advanced_state(self, index: pd.Index, values: np.ndarray) -> StreamState | None:
        """The state left by the last ``score`` if it scored exactly these points from the current state."""
        cached = getattr(self, "_last_scored", None)
        if cached is None:
            return None
        last_ts, scored_index, scored_values, state = cached
        same = (
            last_ts == self.last_ts_
            and scored_index.equals(index)
            and np.array_equal(scored_values, values, equal_nan=True)
        )
        return state if same else None

    def _check_after(self, frame: pd.DataFrame) -> None:
        if len(frame) and frame.index[0] <= self.last_ts_:
            raise InvalidSeriesError(
                f"series {self.series_id_!r}: window starts at {frame.index[0].isoformat()}, not after the "
                f"state's last point {self.last_ts_.isoformat()}; the streaming detector scores only new "
                "points (pass the buckets after the last update, or refit)"
            )

    def _lag(self, frame: pd.DataFrame) -> int | None:
        if self.season is None:
            return None
        if self.granularity is None and len(frame) < 2:
            return None
        step = infer_step(pd.DatetimeIndex(frame.index), self.granularity, series_id=self.series_id_)
        lag = round(parse_granularity(self.season) / step)
        return lag if lag >= 2 else None

    def _params(self) -> _Params:
        return _Params(
            window=self.window,
            needed=max(2, min(self.min_periods, self.window)),
            short_window=self.short_window,
            mean_windows=self.mean_windows,
            z_scale=self.z_scale,
            std_weight=self.std_weight,
            lag=self.lag_,
            slack=self.seasonal_slack,
            spatial_tolerance=self.spatial_tolerance,
            spatial_min_z=self.spatial_min_z,
            relative_floor=self.relative_floor,
            novelty_length=self.novelty_length,
            novelty_reference=self.novelty_reference,
            novelty_z_scale=self.novelty_z_scale,
            novelty_floor=self.novelty_floor,
            spatial_alarm=self.spatial_alarm,
            learning_period=self.learning_period,
            min_std=self.min_std,
            alarm_threshold=self.alarm_threshold,
            hold=self.hold,
            band=self.band,
        )

    def _check_hyper_parameters(self) -> None:
        counts = {
            "window": self.window,
            "short_window": self.short_window,
            "likelihood_window": self.likelihood_window,
            "historic_window": self.historic_window,
            "novelty_reference": self.novelty_reference,
        }
        bad = [f"{key}={value}" for key, value in counts.items() if value < 1]
        if any(length < 1 for length in self.mean_windows):
            bad.append(f"mean_windows={self.mean_windows}")
        if self.novelty_length is not None and self.novelty_length < 1:
            bad.append(f"novelty_length={self.novelty_length}")
        if self.hold < 0 or self.min_periods < 0 or self.learning_period < 0:
            bad.append(
                f"hold={self.hold}, min_periods={self.min_periods}, learning_period={self.learning_period}"
            )
        if self.alarm_threshold <= 0 or self.z_scale <= 0 or self.novelty_z_scale <= 0:
            bad.append(
                f"alarm_threshold={self.alarm_threshold}, z_scale={self.z_scale}, "
                f"novelty_z_scale={self.novelty_z_scale} (must be > 0)"
            )
        if bad:
            raise InvalidSeriesError(
                f"StreamingDetector for series {self.series_id_!r}: invalid hyper-parameters "
                f"{', '.join(bad)}; window sizes must be at least 1"
            )
