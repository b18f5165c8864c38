"""Seeded synthetic series with labelled anomaly injection, for tests and benchmarks.

:func:`make_series` draws a frame (UTC index, ``value`` and ``volume`` columns) with daily and weekly
seasonality; the ``inject_*`` functions return a modified copy and the ground-truth :class:`Injected` labels.
Everything is a pure function of its arguments (the ``seed`` included).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import pandas as pd

from detectors.base import AnomalyKind
from detectors.validation import parse_granularity

__all__ = [
    "Injected",
    "inject_dip",
    "inject_level_shift",
    "inject_spike",
    "labels_mask",
    "make_series",
]

_F = TypeVar("_F", pd.DataFrame, pd.Series)

DEFAULT_START = pd.Timestamp("2026-01-05 00:00", tz="UTC")  # a Monday


@dataclass(frozen=True)
class Injected:
    """Ground truth of one injected anomaly; ``start`` and ``end`` are inclusive UTC timestamps."""

    start: pd.Timestamp
    end: pd.Timestamp
    kind: AnomalyKind
    magnitude: float


def make_series(
    n: int,
    freq: str = "1h",
    seed: int = 0,
    level: float = 100.0,
    daily_amp: float = 0.2,
    weekly_amp: float = 0.1,
    noise: float = 1.0,
    volume: float | None = None,
    *,
    start: pd.Timestamp = DEFAULT_START,
    missing: float = 0.0,
) -> pd.DataFrame:
    """A seeded series with daily and weekly seasonality.

    Without ``volume`` the value is ``level * (1 + daily + weekly) + noise * N(0, 1)`` and ``volume`` is NaN.
    With ``volume`` (the mean denominator per bucket) the series is a ratio metric: the denominator is
    Poisson around ``volume`` times the daily pattern, and the value is ``Binomial(volume, p) / volume``
    with ``p = level * (1 + daily + weekly)`` (so ``level`` is a rate in [0, 1]) and ``noise`` an extra
    Gaussian jitter of ``p``.

    Args:
        n: Number of buckets.
        freq: Bucket size (``"5m"``, ``"1h"``, ``"1d"``...).
        seed: Seed of the random generator.
        level: Mean level (a rate when ``volume`` is given).
        daily_amp: Relative amplitude of the daily cycle.
        weekly_amp: Relative amplitude of the weekly cycle.
        noise: Standard deviation of the Gaussian noise (of ``p`` for ratio series).
        volume: Mean denominator per bucket, or ``None`` for a plain gauge.
        start: First timestamp (UTC).
        missing: Fraction of buckets set to NaN (missing data), drawn at random.
    """
    rng = np.random.default_rng(seed)
    index = pd.date_range(start, periods=n, freq=parse_granularity(freq), name="ts")
    days = (index - DEFAULT_START) / pd.Timedelta(days=1)
    daily = daily_amp * np.sin(2 * np.pi * np.asarray(days))
    weekly = weekly_amp * np.sin(2 * np.pi * np.asarray(days) / 7)
    mean = level * (1 + daily + weekly)
    if volume is None:
        value = mean + noise * rng.standard_normal(n)
        denominator = np.full(n, np.nan)
    else:
        denominator = rng.poisson(volume * np.clip(1 + daily, 0.05, None)).astype(float)
        p = np.clip(mean + noise * rng.standard_normal(n), 0.0, 1.0)
        events = rng.binomial(denominator.astype(np.int64), p)
        with np.errstate(invalid="ignore", divide="ignore"):
            value = np.where(denominator > 0, events / denominator, np.nan)
    if missing > 0:
        value = np.where(rng.random(n) < missing, np.nan, value)
    return pd.DataFrame({"value": value, "volume": denominator}, index=index)


def _locate(index: pd.DatetimeIndex, at: int | pd.Timestamp) -> int:
    if isinstance(at, pd.Timestamp):
        return int(np.flatnonzero(index == at)[0])
    return int(at) if at >= 0 else len(index) + int(at)


def _inject(
    data: _F, at: int | pd.Timestamp, length: int, delta: float, kind: AnomalyKind
) -> tuple[_F, list[Injected]]:
    index = pd.DatetimeIndex(data.index)
    first = _locate(index, at)
    last = min(first + length, len(index)) - 1
    shift = np.zeros(len(index))
    shift[first : last + 1] = delta
    if isinstance(data, pd.Series):
        out = data + shift
    else:
        out = data.assign(value=data["value"].to_numpy(dtype=float) + shift)
    return out, [Injected(start=index[first], end=index[last], kind=kind, magnitude=delta)]


def inject_spike(
    data: _F, at: int | pd.Timestamp, magnitude: float, width: int = 1
) -> tuple[_F, list[Injected]]:
    """Add ``magnitude`` (> 0) to ``width`` points from position or timestamp ``at``."""
    return _inject(data, at, width, abs(magnitude), "spike")


def inject_dip(
    data: _F, at: int | pd.Timestamp, magnitude: float, width: int = 1
) -> tuple[_F, list[Injected]]:
    """Subtract ``magnitude`` (> 0) from ``width`` points from position or timestamp ``at``."""
    return _inject(data, at, width, -abs(magnitude), "dip")


def inject_level_shift(
    data: _F, at: int | pd.Timestamp, magnitude: float, length: int | None = None
) -> tuple[_F, list[Injected]]:
    """Add signed ``magnitude`` from ``at`` for ``length`` points (to the end when ``None``)."""
    span = len(data) if length is None else length
    return _inject(data, at, span, magnitude, "level_shift")


def labels_mask(index: pd.DatetimeIndex, labels: list[Injected]) -> np.ndarray:
    """Boolean array over ``index``: True inside any label (handy as ``fit(exclude=...)``)."""
    mask = np.zeros(len(index), dtype=bool)
    for label in labels:
        mask |= (index >= label.start) & (index <= label.end)
    return mask
