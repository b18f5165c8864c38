"""DetectorStack: the one object the pipeline uses per series.

Usage by the pipeline::

    stack = DetectorStack(kind="ratio", granularity="1h", country="BR").fit(
        history_frame, series_id="violation_rate/BR", exclude=[(incident_start, incident_end)]
    )
    scores = stack.score(window_frame)            # frame: observed, expected, lower, upper, score
    anomalies = stack.detect(window_frame, PostRules(threshold=4.0, direction="up", min_volume=100))
    text = stack.to_json(); same = DetectorStack.from_json(text)
    compiled = DetectorStack.compile_state(json.loads(text))   # what scoring keeps in memory
    scores = score_compiled([compiled, ...], timestamps, values, volumes)   # many series at once

Frames have a UTC index and columns ``value`` (the metric, e.g. a rate) and ``volume`` (its denominator
or exposure, NaN when unknown).

Signatures:

* ``DetectorStack(*, kind="value", granularity="1h", country=None, interval_width=0.9999,
  prophet_min_days=14.0, rate_per=1000.0)``
* ``fit(history, *, series_id="series", exclude=None) -> DetectorStack``
* ``score(window) -> DataFrame[observed, expected, lower, upper, score]``
* ``detect(window, rules=None) -> list[Anomaly]`` (post-rules live in :class:`~detectors.postrules.PostRules`)
* ``to_json() -> str`` / ``DetectorStack.from_json(text) -> DetectorStack``
* ``compile() -> CompiledStack`` / ``DetectorStack.compile_state(payload) -> CompiledStack``: the arrays
  scoring needs, from a fitted stack or straight from its stored JSON (no Prophet object is rebuilt);
  :func:`score_compiled` scores many of them on one time grid in numpy, equal to ``score`` per series.

Rules:

* **Model choice.** The robust seasonal baseline is always fitted. Prophet is fitted too when the history
  (after exclusions) spans at least ``prophet_min_days`` days.
* **Volume.** For ``kind`` ``"ratio"``, ``"rate"`` and ``"count"`` each member's sigma is made volume-aware
  (:func:`detectors.volume.rescore`) before combining; a count's Poisson floor on the robust baseline also
  counts the noise of the median it predicts from (:attr:`detectors.robust.Baseline.inflation`).
* **Combination.** With both members fitted, each point takes the member whose ``|score|`` is smaller:
  a point is only as anomalous as the more forgiving model says, so Prophet's extrapolation errors and the
  baseline's short memory do not page alone. With one member, its scores are used as they are. A member
  with a NaN score at a point defers to the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import numpy as np
import pandas as pd

from detectors.base import SCORE_COLUMNS, SIGMA_COLUMN, Detector, interval_z, register
from detectors.errors import InvalidSeriesError
from detectors.prophet import ProphetDetector, ProphetParams, prophet_expected_batch
from detectors.robust import RobustSeasonalDetector, Season, slot_of, stored_inflation
from detectors.volume import METRIC_KINDS, MetricKind, combine_sigma, rescore, sampling_sigma

__all__ = ["CompiledStack", "DetectorStack", "StackScores", "score_compiled", "score_members"]

#: Hyper-parameters of stack state version 1 that now live in :class:`~detectors.postrules.PostRules`.
_LEGACY_RULE_PARAMS = frozenset(
    {"threshold", "direction", "min_volume", "min_abs_effect", "min_rel_effect", "k", "n"}
)


@register
class DetectorStack(Detector):
    """Prophet when history allows, the robust seasonal baseline always, volume-aware.

    Args:
        kind: Metric kind: ``"value"`` (gauge), ``"ratio"`` (proportion of ``volume``), ``"rate"``
            (events per ``rate_per`` of ``volume``) or ``"count"`` (Poisson count).
        granularity: Bucket size of the series (``"5m"``, ``"1h"``, ``"1d"``).
        country: ISO country code for Prophet's holidays, or ``None``.
        interval_width: Coverage of the ``lower``/``upper`` band under normality.
        prophet_min_days: Days of history from which Prophet is fitted too.
        rate_per: Unit of ``rate`` metrics.
    """

    name: ClassVar[str] = "stack"
    min_history: ClassVar[int] = RobustSeasonalDetector.min_history

    robust_: RobustSeasonalDetector
    #: First and last observed timestamps of the training history (``None`` in version-1 states).
    trained_: tuple[pd.Timestamp, pd.Timestamp] | None
    prophet_: ProphetDetector | None
    #: Version 2 dropped the post-rule keywords (they live in PostRules) and stores Prophet state v2.
    state_version: ClassVar[int] = 2

    def __init__(
        self,
        *,
        kind: MetricKind = "value",
        granularity: str | None = "1h",
        country: str | None = None,
        interval_width: float = 0.9999,
        prophet_min_days: float = 14.0,
        rate_per: float = 1000.0,
    ) -> None:
        self.kind = kind
        self.granularity = granularity
        self.country = country
        self.interval_width = interval_width
        self.prophet_min_days = prophet_min_days
        self.rate_per = rate_per

    @property
    def members_(self) -> list[Detector]:
        """The fitted members, Prophet first when present."""
        return [m for m in (self.prophet_, self.robust_) if m is not None]

    def _fit(self, frame: pd.DataFrame) -> None:
        if self.kind not in METRIC_KINDS:
            raise ValueError(
                f"series {self.series_id_!r}: kind must be one of {METRIC_KINDS}, got {self.kind!r}"
            )
        self.robust_ = RobustSeasonalDetector(
            granularity=self.granularity, interval_width=self.interval_width
        ).fit(frame, series_id=self.series_id_)
        observed = frame.index[frame["value"].notna()]
        span = observed[-1] - observed[0]
        self.trained_ = (pd.Timestamp(observed[0]), pd.Timestamp(observed[-1]))
        self.prophet_ = None
        if span >= pd.Timedelta(days=self.prophet_min_days):
            self.prophet_ = ProphetDetector(
                granularity=self.granularity, country=self.country, interval_width=self.interval_width
            ).fit(frame, series_id=self.series_id_)

    def _member_scores(self, frame: pd.DataFrame) -> list[pd.DataFrame]:
        z = interval_z(self.interval_width)
        scored = []
        for member in self.members_:
            result = member._score(frame)
            result["volume"] = frame["volume"]
            if self.kind != "value":
                inflation = (
                    member.inflation_at(pd.DatetimeIndex(frame.index))
                    if isinstance(member, RobustSeasonalDetector)
                    else 1.0
                )
                result = rescore(result, kind=self.kind, z=z, per=self.rate_per, inflation=inflation)
            scored.append(result)
        return scored

    def _score(self, frame: pd.DataFrame) -> pd.DataFrame:
        scored = self._member_scores(frame)
        combined = scored[0].loc[:, [*SCORE_COLUMNS, SIGMA_COLUMN]].copy()
        for other in scored[1:]:
            mine = np.abs(combined["score"].to_numpy(dtype=float))
            theirs = np.abs(other["score"].to_numpy(dtype=float))
            take = (theirs < mine) | (np.isnan(mine) & ~np.isnan(theirs))
            for column in (*SCORE_COLUMNS, SIGMA_COLUMN):
                combined[column] = np.where(
                    take, other[column].to_numpy(dtype=float), combined[column].to_numpy(dtype=float)
                )
        return combined

    def _state_to_dict(self) -> dict[str, Any]:
        return {
            "robust": self.robust_.to_dict(),
            "prophet": self.prophet_.to_dict() if self.prophet_ is not None else None,
            "trained": None if self.trained_ is None else [t.isoformat() for t in self.trained_],
        }

    @classmethod
    def _upgrade_payload(cls, payload: dict[str, Any]) -> dict[str, Any]:
        """Version 1 carried post-rule keywords among its parameters: drop them (members upgrade alone)."""
        if payload.get("version") != 1:
            return payload
        params = {k: v for k, v in payload["params"].items() if k not in _LEGACY_RULE_PARAMS}
        return {**payload, "version": 2, "params": params}

    def compile(self) -> CompiledStack:
        """The arrays :func:`score_compiled` needs, from this fitted stack."""
        self._check_fitted()
        robust, prophet = self.robust_, self.prophet_
        return CompiledStack(
            kind=self.kind,
            rate_per=float(self.rate_per),
            z=interval_z(self.interval_width),
            season=robust.season_,
            robust_expected=robust.expected_.to_numpy(dtype=float),
            robust_sigma=robust.sigma_.to_numpy(dtype=float),
            robust_inflation=robust.inflation_.to_numpy(dtype=float),
            robust_z=robust.z_,
            prophet=None if prophet is None else prophet.params_,
            prophet_sigma=None if prophet is None else np.asarray(prophet.sigma_by_hour_, dtype=float),
            prophet_z=interval_z(self.interval_width) if prophet is None else prophet.z_,
            trained=self.trained_,
        )

    @classmethod
    def compile_state(cls, payload: dict[str, Any]) -> CompiledStack:
        """The :class:`CompiledStack` of a stored :meth:`to_dict` payload, without rebuilding any model.

        Reads this package's own layout only (Prophet's parameters are stored beside Prophet's JSON);
        older versions are upgraded first, which parses Prophet's JSON once through Prophet's loader.

        Raises:
            InvalidSeriesError: the payload is not a stack state this version can read (refit it).
        """
        series_id = payload.get("series_id")
        if payload.get("detector") != cls.name:
            raise InvalidSeriesError(
                f"series {series_id!r}: stored model is {payload.get('detector')!r}, expected {cls.name!r}; "
                "refit it"
            )
        payload = cls._upgrade_payload(payload)
        if payload.get("version") != cls.state_version:
            raise InvalidSeriesError(
                f"series {series_id!r}: stack state version {payload.get('version')} is not supported "
                f"(this livewatch reads version {cls.state_version}); refit it"
            )
        params, state = payload["params"], payload["state"]
        width = float(params.get("interval_width", 0.9999))
        robust = state["robust"]
        prophet = state["prophet"]
        if prophet is not None:
            prophet = ProphetDetector._upgrade_payload(prophet)
        return CompiledStack(
            kind=params.get("kind", "value"),
            rate_per=float(params.get("rate_per", 1000.0)),
            z=interval_z(width),
            season=robust["state"]["season"],
            robust_expected=np.asarray(robust["state"]["expected"], dtype=float),
            robust_sigma=np.asarray(robust["state"]["sigma"], dtype=float),
            robust_inflation=stored_inflation(robust["state"]),
            robust_z=interval_z(float(robust["params"].get("interval_width", 0.9999))),
            prophet=None if prophet is None else ProphetParams.from_dict(prophet["state"]["params"]),
            prophet_sigma=(
                None if prophet is None else np.asarray(prophet["state"]["sigma_by_hour"], dtype=float)
            ),
            prophet_z=interval_z(
                width if prophet is None else float(prophet["params"].get("interval_width", 0.9999))
            ),
            trained=_trained_span(state),
        )

    def _state_from_dict(self, state: dict[str, Any]) -> None:
        self.trained_ = _trained_span(state)
        self.robust_ = cast(RobustSeasonalDetector, RobustSeasonalDetector.from_dict(state["robust"]))
        self.prophet_ = (
            cast(ProphetDetector, ProphetDetector.from_dict(state["prophet"]))
            if state["prophet"] is not None
            else None
        )


# -- compiled state and batch scoring ----------------------------------------------------------------------
@dataclass(frozen=True)
class CompiledStack:
    """What scoring needs of one fitted :class:`DetectorStack`: a few KB of arrays, no model objects.

    Attributes:
        kind: The stack's metric kind (volume-aware sigma).
        rate_per: Unit of ``rate`` metrics.
        z: The stack's band half-width in sigmas (used after the volume-aware rescoring).
        season: Slots of the robust baseline.
        robust_expected: Robust expectation per slot.
        robust_sigma: Robust sigma per slot.
        robust_inflation: How much predicting from a median widens a count's Poisson floor, per slot.
        robust_z: The robust member's band half-width.
        prophet: Prophet's parameters, or ``None`` when the history was too short for Prophet.
        prophet_sigma: Prophet's residual sigma per hour of day (24 values), or ``None``.
        prophet_z: The Prophet member's band half-width.
        trained: First and last observed timestamps of the training history, when known.
    """

    kind: MetricKind
    rate_per: float
    z: float
    season: Season
    robust_expected: np.ndarray
    robust_sigma: np.ndarray
    robust_inflation: np.ndarray
    robust_z: float
    prophet: ProphetParams | None
    prophet_sigma: np.ndarray | None
    prophet_z: float
    trained: tuple[pd.Timestamp, pd.Timestamp] | None = None

    def trained_days(self) -> pd.DatetimeIndex:
        """The UTC days the model was trained on (empty when unknown)."""
        if self.trained is None:
            return pd.DatetimeIndex([], tz="UTC")
        first, last = self.trained
        return pd.date_range(first.floor("D"), last.floor("D"), freq="D")


def _trained_span(state: dict[str, Any]) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    span = state.get("trained")
    if not span:
        return None
    return pd.Timestamp(span[0]).tz_convert("UTC"), pd.Timestamp(span[1]).tz_convert("UTC")


@dataclass(frozen=True)
class StackScores:
    """Score arrays of many series on one time grid; each of shape (series, time)."""

    observed: np.ndarray
    expected: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    score: np.ndarray
    sigma: np.ndarray


def _volume_aware(
    models: Sequence[CompiledStack],
    observed: np.ndarray,
    expected: np.ndarray,
    sigma: np.ndarray,
    volume: np.ndarray,
    member_z: np.ndarray,
    inflation: np.ndarray | float = 1.0,
) -> StackScores:
    """One member's scores after :func:`detectors.volume.rescore` (for kinds other than ``value``)."""
    sigma = sigma.copy()
    z = member_z.copy()
    groups: dict[tuple[str, float], list[int]] = {}
    for row, model in enumerate(models):
        if model.kind != "value":
            groups.setdefault((model.kind, model.rate_per), []).append(row)
    for (kind, per), rows in groups.items():
        typed = cast(MetricKind, kind)
        sampling = sampling_sigma(expected[rows], volume[rows], typed, per=per)
        factor = inflation[rows] if isinstance(inflation, np.ndarray) else inflation
        sigma[rows] = combine_sigma(sigma[rows], sampling, typed, inflation=factor)
        z[rows] = [models[r].z for r in rows]
    with np.errstate(divide="ignore", invalid="ignore"):
        score = (observed - expected) / sigma
    return StackScores(
        observed, expected, expected - z[:, None] * sigma, expected + z[:, None] * sigma, score, sigma
    )


def score_members(
    models: Sequence[CompiledStack], index: pd.DatetimeIndex, values: np.ndarray, volumes: np.ndarray
) -> dict[str, StackScores]:
    """Each member's volume-aware scores alone: ``robust`` always, ``prophet`` when any model has one
    (NaN rows for models without Prophet). What ``investigate`` shows as "which detector fired"."""
    if index.tz is None:
        raise InvalidSeriesError("score_members needs UTC-aware timestamps")
    n, width = values.shape
    observed = np.asarray(values, dtype=float)
    robust_expected = np.empty((n, width))
    robust_sigma = np.empty((n, width))
    robust_inflation = np.empty((n, width))
    seasons: dict[str, list[int]] = {}
    for row, model in enumerate(models):
        seasons.setdefault(model.season, []).append(row)
    for season, rows in seasons.items():
        slots = slot_of(index, cast(Season, season))
        robust_expected[rows] = np.stack([models[r].robust_expected for r in rows])[:, slots]
        robust_sigma[rows] = np.stack([models[r].robust_sigma for r in rows])[:, slots]
        robust_inflation[rows] = np.stack([models[r].robust_inflation for r in rows])[:, slots]
    members = {
        "robust": _volume_aware(
            models,
            observed,
            robust_expected,
            robust_sigma,
            volumes,
            np.array([m.robust_z for m in models]),
            robust_inflation,
        )
    }
    with_prophet = [row for row, model in enumerate(models) if model.prophet is not None]
    if with_prophet:
        prophet_expected = np.full((n, width), np.nan)
        prophet_sigma = np.full((n, width), np.nan)
        prophet_expected[with_prophet] = prophet_expected_batch(
            [cast(ProphetParams, models[r].prophet) for r in with_prophet], index
        )
        hours = np.asarray(index.hour)
        prophet_sigma[with_prophet] = np.stack(
            [cast(np.ndarray, models[r].prophet_sigma) for r in with_prophet]
        )[:, hours]
        members["prophet"] = _volume_aware(
            models,
            observed,
            prophet_expected,
            prophet_sigma,
            volumes,
            np.array([m.prophet_z for m in models]),
        )
    return members


def score_compiled(
    models: Sequence[CompiledStack], index: pd.DatetimeIndex, values: np.ndarray, volumes: np.ndarray
) -> StackScores:
    """:meth:`DetectorStack.score` of many series on the same UTC timestamps, in numpy.

    Args:
        models: One compiled stack per series (row).
        index: UTC-aware timestamps (columns).
        values: Observed values, shape (series, time); NaN = missing.
        volumes: Volumes (denominators), same shape; NaN = unknown.

    Returns:
        The combined scores and the volume-aware sigma of each point.
    """
    members = score_members(models, index, values, volumes)
    robust = members["robust"]
    prophet = members.get("prophet")
    if prophet is None:
        return robust
    # Prophet first; the robust member wins where its |score| is smaller or Prophet's is NaN.
    mine, theirs = np.abs(prophet.score), np.abs(robust.score)
    take = (theirs < mine) | (np.isnan(mine) & ~np.isnan(theirs))
    lacking = np.array([model.prophet is None for model in models])
    take[lacking] = True
    pick = {
        name: np.where(take, getattr(robust, name), getattr(prophet, name))
        for name in ("expected", "lower", "upper", "score", "sigma")
    }
    score = np.where(np.isnan(robust.observed), np.nan, pick["score"])
    return StackScores(robust.observed, pick["expected"], pick["lower"], pick["upper"], score, pick["sigma"])
