"""Input validation shared by every detector: one place, named errors naming the series and the rule.

Every public detector method goes through :func:`to_frame`; training exclusions go through
:func:`exclusion_mask`; granularity strings (``"5m"``, ``"1h"``, ``"1d"``) go through
:func:`parse_granularity`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from detectors.errors import InsufficientDataError, InvalidSeriesError

__all__ = [
    "Exclusions",
    "SeriesLike",
    "exclusion_mask",
    "infer_step",
    "parse_granularity",
    "to_frame",
]

#: A Series of values with a DatetimeIndex, or a frame with a ``value`` column and optional ``volume``.
SeriesLike = pd.Series | pd.DataFrame

#: Points to drop from training: a boolean mask aligned with the history (True = exclude), or a list of
#: inclusive ``(start, end)`` UTC intervals (known incidents, confirmed anomalies).
Exclusions = pd.Series | np.ndarray | Sequence[tuple[Any, Any]]


def to_frame(data: SeriesLike, *, series_id: str, min_points: int) -> pd.DataFrame:
    """Normalise input to a frame indexed by sorted, unique, UTC-aware timestamps.

    Columns: ``value`` (float; NaN means missing, never zero) and ``volume`` (float; the denominator or
    exposure behind the value, NaN when unknown).

    Raises:
        InvalidSeriesError: the index is not datetime, is naive, values are not numeric or infinite, or
            volumes are negative.
        InsufficientDataError: fewer than ``min_points`` non-missing values.
    """
    if isinstance(data, pd.Series):
        frame = data.to_frame("value")
    elif isinstance(data, pd.DataFrame):
        if "value" not in data.columns:
            raise InvalidSeriesError(
                f"series {series_id!r}: frame has no 'value' column (columns: {list(data.columns)}); "
                "pass a Series or a frame with 'value' and optional 'volume'"
            )
        frame = data.loc[:, [c for c in ("value", "volume") if c in data.columns]].copy()
    else:
        raise InvalidSeriesError(
            f"series {series_id!r}: expected a pandas Series or DataFrame, got {type(data)}"
        )
    if not isinstance(frame.index, pd.DatetimeIndex):
        raise InvalidSeriesError(
            f"series {series_id!r}: index must be a DatetimeIndex, got {type(frame.index)}"
        )
    if frame.index.tz is None:
        raise InvalidSeriesError(
            f"series {series_id!r}: timestamps are naive; localise them to UTC (index.tz_localize('UTC'))"
        )
    frame.index = frame.index.tz_convert("UTC")
    if "volume" not in frame.columns:
        frame["volume"] = np.nan
    for column in ("value", "volume"):
        try:
            frame[column] = pd.to_numeric(frame[column], errors="raise").astype(float)
        except (TypeError, ValueError) as exc:
            raise InvalidSeriesError(
                f"series {series_id!r}: column {column!r} is not numeric ({exc})"
            ) from exc
    if np.isinf(frame["value"].to_numpy()).any():
        raise InvalidSeriesError(f"series {series_id!r}: values contain infinity; replace with NaN (missing)")
    if (frame["volume"].to_numpy() < 0).any():
        raise InvalidSeriesError(
            f"series {series_id!r}: column 'volume' has negative values; it is a denominator (>= 0) or NaN"
        )
    frame = frame[~frame.index.duplicated(keep="last")].sort_index()
    frame.index.name = "ts"
    points = int(frame["value"].notna().sum())
    if points < min_points:
        raise InsufficientDataError(
            f"series {series_id!r}: {points} non-missing points, at least {min_points} needed to fit"
        )
    return frame


def exclusion_mask(index: pd.DatetimeIndex, exclude: Exclusions | None, *, series_id: str) -> np.ndarray:
    """Boolean array over ``index``: True where the point must be dropped from training.

    Args:
        index: UTC-aware index of the validated history.
        exclude: ``None``; a boolean Series (aligned on timestamps, missing timestamps are kept) or array of
            the same length as ``index``; or a sequence of inclusive ``(start, end)`` intervals.
        series_id: Name used in error messages.

    Raises:
        InvalidSeriesError: a mask of the wrong length, or an interval with a naive or reversed bound.
    """
    if exclude is None:
        return np.zeros(len(index), dtype=bool)
    if isinstance(exclude, pd.Series):
        aligned = exclude.astype(bool)
        if isinstance(aligned.index, pd.DatetimeIndex) and aligned.index.tz is not None:
            aligned = aligned[~aligned.index.duplicated(keep="last")]
            return aligned.reindex(index, fill_value=False).to_numpy(dtype=bool)
        exclude = aligned.to_numpy()
    if isinstance(exclude, np.ndarray):
        if exclude.shape != (len(index),):
            raise InvalidSeriesError(
                f"series {series_id!r}: exclusion mask has shape {exclude.shape}, history has {len(index)} "
                "points; pass a mask of the same length or a list of (start, end) intervals"
            )
        return exclude.astype(bool)
    mask = np.zeros(len(index), dtype=bool)
    for interval in exclude:
        start, end = (pd.Timestamp(bound) for bound in interval)
        if start.tzinfo is None or end.tzinfo is None:
            raise InvalidSeriesError(
                f"series {series_id!r}: exclusion interval {interval!r} has a naive bound; use UTC timestamps"
            )
        if end < start:
            raise InvalidSeriesError(
                f"series {series_id!r}: exclusion interval {interval!r} ends before it starts"
            )
        mask |= (index >= start) & (index <= end)
    return mask


def parse_granularity(granularity: str) -> pd.Timedelta:
    """Parse ``"5m"``, ``"15min"``, ``"1h"``, ``"1d"`` (anything :class:`pandas.Timedelta` reads) to a step.

    Raises:
        InvalidSeriesError: the string is not a positive duration.
    """
    text = granularity.strip().lower()
    if text.endswith("m") and text[:-1].isdigit():
        text = text + "in"  # "5m" means minutes, not months
    elif text.endswith("d") and text[:-1].isdigit():
        text = text[:-1] + "days"
    try:
        step = pd.Timedelta(text)
    except ValueError as exc:
        raise InvalidSeriesError(
            f"granularity {granularity!r} is not a duration; use e.g. '5m', '1h' or '1d'"
        ) from exc
    if step <= pd.Timedelta(0):
        raise InvalidSeriesError(f"granularity {granularity!r} must be positive")
    return step


def infer_step(index: pd.DatetimeIndex, granularity: str | None, *, series_id: str) -> pd.Timedelta:
    """The sampling step: parsed from ``granularity`` when given, else the median spacing of ``index``.

    Raises:
        InsufficientDataError: fewer than two timestamps and no granularity to fall back on.
    """
    if granularity is not None:
        return parse_granularity(granularity)
    if len(index) < 2:
        raise InsufficientDataError(
            f"series {series_id!r}: cannot infer the sampling step from {len(index)} timestamp(s); "
            "pass granularity='1h' (or the series' step)"
        )
    return pd.Timedelta(pd.Series(np.diff(index.to_numpy())).median())
