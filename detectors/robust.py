"""Robust seasonal baseline: median by season slot over the last weeks, MAD-based sigma.

The expected value of a timestamp is the median of the history values in its *season slot* over the last
``weeks`` weeks: hour-of-week for hourly and sub-hourly data, day-of-week for daily data. Slots with fewer
than ``min_slot_points`` values fall back to the coarser slot (hour-of-day, then the series median), so the
baseline works from a couple of days of history. The sigma belongs to the level a slot uses and is pooled
over that level's slots (a per-slot MAD of four points is too noisy to threshold): the larger of the
robust scale of successive differences within slots and the residual MAD around the slot medians, inflated
for predicting from a median of few values (see :func:`robust_baseline`).

The same code path serves one series (:class:`RobustSeasonalDetector`, used when history is too short for
Prophet and as a second opinion) and thousands at once (:func:`robust_baseline` and
:func:`robust_score_many` on a long frame with a ``series_id`` column: pandas group-bys, no Python loop per
series).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, NamedTuple

import numpy as np
import pandas as pd

from detectors.base import SCORE_COLUMNS, SIGMA_COLUMN, Detector, interval_z, register
from detectors.errors import InvalidSeriesError
from detectors.validation import infer_step

__all__ = [
    "SEASONS",
    "Baseline",
    "RobustSeasonalDetector",
    "Season",
    "robust_baseline",
    "robust_score_many",
    "season_for_step",
    "slot_of",
    "stored_inflation",
]

Season = Literal["hour_of_week", "day_of_week", "hour_of_day", "global"]
SEASONS: tuple[str, ...] = ("hour_of_week", "day_of_week", "hour_of_day", "global")
_SLOTS: dict[str, int] = {"hour_of_week": 168, "day_of_week": 7, "hour_of_day": 24, "global": 1}
_MAD_TO_SIGMA = 1.4826
_SIGMA_FLOOR = 1e-9
_EPOCH = pd.Timestamp("1970-01-01", tz="UTC")


def season_for_step(step: pd.Timedelta) -> Season:
    """Hour-of-week below one day, day-of-week for daily data and coarser."""
    return "hour_of_week" if step < pd.Timedelta(days=1) else "day_of_week"


def slot_of(timestamps: pd.DatetimeIndex | pd.Series, season: Season) -> np.ndarray:
    """Integer slot of each UTC timestamp for ``season``."""
    ts = pd.DatetimeIndex(timestamps)
    if season == "hour_of_week":
        return np.asarray(ts.day_of_week * 24 + ts.hour, dtype=np.int64)
    if season == "day_of_week":
        return np.asarray(ts.day_of_week, dtype=np.int64)
    if season == "hour_of_day":
        return np.asarray(ts.hour, dtype=np.int64)
    if season == "global":
        return np.zeros(len(ts), dtype=np.int64)
    raise InvalidSeriesError(f"season must be one of {SEASONS}, got {season!r}")


def _fallback_slot(slots: np.ndarray, season: Season) -> np.ndarray:
    """Slot of the coarser season each slot falls back to (hour-of-week -> hour-of-day, else global)."""
    return slots % 24 if season == "hour_of_week" else np.zeros_like(slots)


class Baseline(NamedTuple):
    """:func:`robust_baseline` per ``(series_id, slot)``: the expectation, its sigma, and the factor
    ``sqrt(1 + pi / (2 m))`` by which predicting from a median of ``m`` values widens the noise (in ``sigma``
    already; a count's Poisson floor applies it too, see :func:`detectors.volume.combine_sigma`)."""

    expected: pd.Series
    sigma: pd.Series
    inflation: pd.Series


def robust_baseline(
    history: pd.DataFrame, *, season: Season, weeks: int = 4, min_slot_points: int = 2
) -> Baseline:
    """Baselines of many series at once.

    Each slot uses the finest level with at least ``min_slot_points`` values: its own slot, else the
    coarser fallback slot (hour-of-day for hour-of-week), else the series median. The sigma of a slot
    belongs to the level it uses: ``max(noise, residual scale of that level) * sqrt(1 + pi / (2 m))``
    where the noise comes from successive differences within the level's groups, the residual scale from
    the MAD around the level's medians (so what the level cannot model, such as a weekly cycle seen
    through hour-of-day slots, widens the band) and the last factor accounts for predicting from a median
    of ``m`` values.

    Args:
        history: Long frame with columns ``series_id``, ``ts`` (UTC) and ``value`` (NaN = missing).
        season: Season slots (see :data:`SEASONS`).
        weeks: Only the last ``weeks`` weeks before each series' last timestamp are used.
        min_slot_points: Slots with fewer values fall back to the coarser level.

    Returns:
        The :class:`Baseline`, indexed by ``(series_id, slot)`` over every slot of the season.
    """
    data = history.loc[history["value"].notna(), ["series_id", "ts", "value"]]
    codes_all, uniques = pd.factorize(data["series_id"])
    stamps = pd.DatetimeIndex(data["ts"])
    seconds_all = np.asarray((stamps - _EPOCH) / pd.Timedelta(seconds=1), dtype=float)
    last = pd.Series(seconds_all).groupby(codes_all).max().to_numpy()
    keep = seconds_all > last[codes_all] - pd.Timedelta(weeks=weeks).total_seconds()
    codes, seconds = codes_all[keep], seconds_all[keep]
    values = data["value"].to_numpy(dtype=float)[keep]
    slots = slot_of(stamps[keep], season)
    n_ids, n_slots = len(uniques), _SLOTS[season]
    grid_codes = np.repeat(np.arange(n_ids), n_slots)
    grid_slots = np.tile(np.arange(n_slots, dtype=np.int64), n_ids)
    coarse_size = 24 if season == "hour_of_week" else 1
    levels = (
        (slots, grid_slots, n_slots),
        (_fallback_slot(slots, season), _fallback_slot(grid_slots, season), coarse_size),
        (np.zeros_like(slots), np.zeros_like(grid_slots), 1),
    )
    expected = np.full(len(grid_codes), np.nan)
    sigma = np.full(len(grid_codes), np.nan)
    inflations = np.ones(len(grid_codes))
    for depth, (data_keys, grid_keys, size) in enumerate(levels):
        median, count, noise = _level_stats(
            codes * size + data_keys, codes, seconds, values, n_ids * size, n_ids
        )
        cell = grid_codes * size + grid_keys
        usable = np.isnan(expected) & ((count[cell] >= min_slot_points) | (depth == len(levels) - 1))
        inflation = np.sqrt(1.0 + np.pi / (2.0 * np.maximum(count[cell], 1.0)))
        expected = np.where(usable, median[cell], expected)
        sigma = np.where(usable, noise[grid_codes] * inflation, sigma)
        inflations = np.where(usable, inflation, inflations)
    scale = np.abs(pd.Series(expected).groupby(grid_codes).transform("median").to_numpy())
    floor = _SIGMA_FLOOR * np.maximum(scale, 1.0)
    sigma = np.where(np.isfinite(sigma), np.maximum(sigma, floor), floor)
    grid = pd.MultiIndex.from_arrays(
        [pd.Index(uniques).take(grid_codes), grid_slots], names=["series_id", "slot"]
    )
    return Baseline(
        pd.Series(expected, index=grid, name="expected"),
        pd.Series(sigma, index=grid, name="sigma"),
        pd.Series(inflations, index=grid, name="inflation"),
    )


def _level_stats(
    keys: np.ndarray,
    codes: np.ndarray,
    seconds: np.ndarray,
    values: np.ndarray,
    n_keys: int,
    n_ids: int,
    min_pairs: int = 10,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Median and count per dense group key, and the noise sigma per series at that level.

    The noise is the larger of the successive-difference scale within groups (``1.4826 * median|diff| /
    sqrt(2)``, when at least ``min_pairs`` differences exist) and the in-sample residual MAD around the
    group medians (inflated by ``sqrt(m / (m - 1))`` for the shrinkage of a median of ``m`` values).

    Returns:
        ``(median, count)`` of length ``n_keys`` (NaN / 0 for empty groups) and ``noise`` of length ``n_ids``.
    """
    median = pd.Series(values).groupby(keys).median().reindex(np.arange(n_keys)).to_numpy(dtype=float)
    count = np.bincount(keys, minlength=n_keys).astype(float)
    order = np.lexsort((seconds, keys))
    ordered_keys = keys[order]
    same_group = ordered_keys[1:] == ordered_keys[:-1]
    diffs = np.abs(np.diff(values[order]))[same_group]
    diff_codes = codes[order][1:][same_group]
    diff_median = (
        pd.Series(diffs).groupby(diff_codes).median().reindex(np.arange(n_ids)).to_numpy(dtype=float)
    )
    diff_count = np.bincount(diff_codes, minlength=n_ids)
    diff_scale = np.where(diff_count >= min_pairs, _MAD_TO_SIGMA * diff_median / np.sqrt(2.0), np.nan)
    m = count[keys]
    shrink = np.sqrt(np.maximum(m, 2.0) / np.maximum(m - 1.0, 1.0))
    residual = np.abs(values - median[keys]) * shrink
    fit_scale = _MAD_TO_SIGMA * pd.Series(residual).groupby(codes).median().reindex(np.arange(n_ids))
    return median, count, np.fmax(diff_scale, fit_scale.to_numpy(dtype=float))


def robust_score_many(
    window: pd.DataFrame, expected: pd.Series, sigma: pd.Series, *, season: Season, z: float
) -> pd.DataFrame:
    """Score a long frame (``series_id``, ``ts``, ``value``) against :func:`robust_baseline` output.

    Returns the frame with ``observed``, ``expected``, ``sigma``, ``lower``, ``upper``, ``score`` added;
    series absent from the baseline get NaN expectations.
    """
    lookup = pd.MultiIndex.from_arrays([window["series_id"], slot_of(window["ts"], season)])
    exp = expected.reindex(lookup).to_numpy(dtype=float)
    sig = sigma.reindex(lookup).to_numpy(dtype=float)
    observed = window["value"].to_numpy(dtype=float)
    return window.assign(
        observed=observed,
        expected=exp,
        sigma=sig,
        lower=exp - z * sig,
        upper=exp + z * sig,
        score=(observed - exp) / sig,
    )


def stored_inflation(state: dict[str, Any]) -> np.ndarray:
    """The per-slot inflation of a stored robust state; ones for states saved before it was kept."""
    return np.asarray(state.get("inflation", np.ones(len(state["expected"]))), dtype=float)


@register
class RobustSeasonalDetector(Detector):
    """Median by season slot over the last ``weeks`` weeks with a robust per-level sigma.

    Args:
        granularity: Bucket size (``"5m"``, ``"1h"``, ``"1d"``); inferred from the history when ``None``.
        season: Slot definition; chosen from the granularity when ``None`` (see :func:`season_for_step`).
        weeks: Weeks of history the baseline looks back.
        min_slot_points: Values a slot needs before its median is trusted.
        interval_width: Coverage of the ``lower``/``upper`` band under normality; its z is also the default
            ``detect`` threshold.
    """

    name: ClassVar[str] = "robust"
    min_history: ClassVar[int] = 8

    expected_: pd.Series
    sigma_: pd.Series
    inflation_: pd.Series
    season_: Season

    def __init__(
        self,
        *,
        granularity: str | None = None,
        season: Season | None = None,
        weeks: int = 4,
        min_slot_points: int = 2,
        interval_width: float = 0.9999,
    ) -> None:
        self.granularity = granularity
        self.season = season
        self.weeks = weeks
        self.min_slot_points = min_slot_points
        self.interval_width = interval_width

    @property
    def z_(self) -> float:
        """Half-width of the band in sigmas, from ``interval_width``."""
        return interval_z(self.interval_width)

    def default_rules(self) -> Any:
        return super().default_rules().replace(threshold=self.z_)

    def _fit(self, frame: pd.DataFrame) -> None:
        step = infer_step(pd.DatetimeIndex(frame.index), self.granularity, series_id=self.series_id_)
        season = self.season or season_for_step(step)
        baseline = robust_baseline(
            self._long(frame), season=season, weeks=self.weeks, min_slot_points=self.min_slot_points
        )
        self.season_ = season
        self.expected_, self.sigma_, self.inflation_ = baseline

    def _long(self, frame: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame(
            {"series_id": self.series_id_, "ts": frame.index, "value": frame["value"].to_numpy(dtype=float)},
            index=frame.index,
        )

    def _score(self, frame: pd.DataFrame) -> pd.DataFrame:
        scored = robust_score_many(
            self._long(frame), self.expected_, self.sigma_, season=self.season_, z=self.z_
        )
        return scored.loc[:, [*SCORE_COLUMNS, SIGMA_COLUMN]]

    def inflation_at(self, index: pd.DatetimeIndex) -> np.ndarray:
        """The median-noise factor of the slot of each timestamp (see :class:`Baseline`)."""
        return self.inflation_.to_numpy(dtype=float)[slot_of(index, self.season_)]

    def _state_to_dict(self) -> dict[str, Any]:
        return {
            "season": self.season_,
            "expected": [float(v) for v in self.expected_.to_numpy()],
            "sigma": [float(v) for v in self.sigma_.to_numpy()],
            "inflation": [float(v) for v in self.inflation_.to_numpy()],
        }

    def _state_from_dict(self, state: dict[str, Any]) -> None:
        self.season_ = state["season"]
        index = pd.MultiIndex.from_product(
            [[self.series_id_], np.arange(len(state["expected"]), dtype=np.int64)],
            names=["series_id", "slot"],
        )
        self.expected_ = pd.Series(np.asarray(state["expected"], dtype=float), index=index, name="expected")
        self.sigma_ = pd.Series(np.asarray(state["sigma"], dtype=float), index=index, name="sigma")
        self.inflation_ = pd.Series(stored_inflation(state), index=index, name="inflation")
