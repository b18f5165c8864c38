"""DetectorStack: the one object the pipeline uses per series.

Usage by the pipeline::

    stack = DetectorStack(kind="ratio", granularity="1h", country="BR").fit(
        history_frame, series_id="violation_rate/BR", exclude=[(incident_start, incident_end)]
    )
    scores = stack.score(window_frame)            # frame: observed, expected, lower, upper, score
    anomalies = stack.detect(window_frame, threshold=4.0, direction="up", min_volume=100,
                             min_abs_effect=0.0, min_rel_effect=0.1, k=2, n=3)
    text = stack.to_json(); same = DetectorStack.from_json(text)

Frames have a UTC index and columns ``value`` (the metric, e.g. a rate) and ``volume`` (its denominator
or exposure, NaN when unknown).

Signatures:

* ``DetectorStack(*, kind="value", granularity="1h", country=None, interval_width=0.9999, threshold=4.0,
  direction="both", min_volume=0.0, min_abs_effect=0.0, min_rel_effect=0.0, k=1, n=1,
  prophet_min_days=14.0, rate_per=1000.0)``
* ``fit(history, *, series_id="series", exclude=None) -> DetectorStack``
* ``score(window) -> DataFrame[observed, expected, lower, upper, score]``
* ``detect(window, *, threshold=None, direction=None, min_volume=None, min_abs_effect=None,
  min_rel_effect=None, k=None, n=None, suppress=None) -> list[Anomaly]`` (``None`` = the stack's
  hyper-parameter)
* ``to_json() -> str`` / ``DetectorStack.from_json(text) -> DetectorStack``

Rules:

* **Model choice.** The robust seasonal baseline is always fitted. Prophet is fitted too when the history
  (after exclusions) spans at least ``prophet_min_days`` days.
* **Volume.** For ``kind`` ``"ratio"``, ``"rate"`` and ``"count"`` each member's sigma is made volume-aware
  (:func:`detectors.volume.rescore`) before combining.
* **Combination.** With both members fitted, each point takes the member whose ``|score|`` is smaller:
  a point is only as anomalous as the more forgiving model says, so Prophet's extrapolation errors and the
  baseline's short memory do not page alone. With one member, its scores are used as they are. A member
  with a NaN score at a point defers to the other.
"""

from __future__ import annotations

from typing import Any, ClassVar, cast

import numpy as np
import pandas as pd

from detectors.base import SCORE_COLUMNS, SIGMA_COLUMN, Detector, Direction, interval_z, register
from detectors.prophet import ProphetDetector
from detectors.robust import RobustSeasonalDetector
from detectors.volume import METRIC_KINDS, MetricKind, rescore

__all__ = ["DetectorStack"]


@register
class DetectorStack(Detector):
    """Prophet when history allows, the robust seasonal baseline always, volume-aware, with post-rules.

    Args:
        kind: Metric kind: ``"value"`` (gauge), ``"ratio"`` (proportion of ``volume``), ``"rate"``
            (events per ``rate_per`` of ``volume``) or ``"count"`` (Poisson count).
        granularity: Bucket size of the series (``"5m"``, ``"1h"``, ``"1d"``).
        country: ISO country code for Prophet's holidays, or ``None``.
        interval_width: Coverage of the ``lower``/``upper`` band under normality.
        threshold: Default ``|score|`` threshold of :meth:`detect`, in sigmas.
        direction: Default direction filter of :meth:`detect`.
        min_volume: Default minimum volume of a flagged point.
        min_abs_effect: Default minimum ``|observed - expected|``.
        min_rel_effect: Default minimum relative effect.
        k: Default k of the k-of-n rule.
        n: Default n of the k-of-n rule.
        prophet_min_days: Days of history from which Prophet is fitted too.
        rate_per: Unit of ``rate`` metrics.
    """

    name: ClassVar[str] = "stack"
    min_history: ClassVar[int] = RobustSeasonalDetector.min_history

    robust_: RobustSeasonalDetector
    prophet_: ProphetDetector | None

    def __init__(
        self,
        *,
        kind: MetricKind = "value",
        granularity: str | None = "1h",
        country: str | None = None,
        interval_width: float = 0.9999,
        threshold: float = 4.0,
        direction: Direction = "both",
        min_volume: float = 0.0,
        min_abs_effect: float = 0.0,
        min_rel_effect: float = 0.0,
        k: int = 1,
        n: int = 1,
        prophet_min_days: float = 14.0,
        rate_per: float = 1000.0,
    ) -> None:
        self.kind = kind
        self.granularity = granularity
        self.country = country
        self.interval_width = interval_width
        self.threshold = threshold
        self.direction = direction
        self.min_volume = min_volume
        self.min_abs_effect = min_abs_effect
        self.min_rel_effect = min_rel_effect
        self.k = k
        self.n = n
        self.prophet_min_days = prophet_min_days
        self.rate_per = rate_per

    def default_rules(self) -> Any:
        return (
            super()
            .default_rules()
            .replace(
                threshold=self.threshold,
                direction=self.direction,
                min_volume=self.min_volume,
                min_abs_effect=self.min_abs_effect,
                min_rel_effect=self.min_rel_effect,
                k=self.k,
                n=self.n,
            )
        )

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
                result = rescore(result, kind=self.kind, z=z, per=self.rate_per)
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
        }

    def _state_from_dict(self, state: dict[str, Any]) -> None:
        self.robust_ = cast(RobustSeasonalDetector, RobustSeasonalDetector.from_dict(state["robust"]))
        self.prophet_ = (
            cast(ProphetDetector, ProphetDetector.from_dict(state["prophet"]))
            if state["prophet"] is not None
            else None
        )
