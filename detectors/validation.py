"""Input validation shared by every detector: one place, named errors naming the series and the rule."""

from __future__ import annotations

import numpy as np
import pandas as pd

from detectors.errors import InsufficientDataError, InvalidSeriesError

__all__ = ["SeriesLike", "to_frame"]

#: A Series of values with a DatetimeIndex, or a frame with a ``value`` column and optional ``volume``.
SeriesLike = pd.Series | pd.DataFrame


def to_frame(data: SeriesLike, *, series_id: str, min_points: int) -> pd.DataFrame:
    """Normalise input to a frame indexed by sorted, unique, UTC-aware timestamps.

    Columns: ``value`` (float; NaN means missing, never zero) and ``volume`` (float; the denominator or
    exposure behind the value, NaN when unknown).

    Raises:
        InvalidSeriesError: the index is not datetime, is naive, or values are not numeric.
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
        raise InvalidSeriesError(f"series {series_id!r}: expected a pandas Series or DataFrame, got {type(data)}")
    if not isinstance(frame.index, pd.DatetimeIndex):
        raise InvalidSeriesError(f"series {series_id!r}: index must be a DatetimeIndex, got {type(frame.index)}")
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
            raise InvalidSeriesError(f"series {series_id!r}: column {column!r} is not numeric ({exc})") from exc
    if np.isinf(frame["value"].to_numpy()).any():
        raise InvalidSeriesError(f"series {series_id!r}: values contain infinity; replace with NaN (missing)")
    frame = frame[~frame.index.duplicated(keep="last")].sort_index()
    frame.index.name = "ts"
    points = int(frame["value"].notna().sum())
    if points < min_points:
        raise InsufficientDataError(
            f"series {series_id!r}: {points} non-missing points, at least {min_points} needed to fit"
        )
    return frame
