"""The Detector contract shared by every detector.

A detector follows the scikit-learn / ruptures shape:

* hyper-parameters are explicit keyword arguments of ``__init__`` with no logic there;
* ``fit(history) -> self`` learns state into trailing-underscore attributes (fitting again replaces it);
* ``score(window) -> frame`` returns one row per timestamp with the columns of :data:`SCORE_COLUMNS`;
* ``detect(window) -> list[Anomaly]`` thresholds the scores and merges consecutive points.

The public methods validate (through :mod:`detectors.validation`) and call private hooks
(``_fit``, ``_score``) that subclasses implement and that may assume clean input.

Scores are calibrated as signed standard-normal deviations ("sigmas"): positive above the expectation,
negative below, so one threshold means the same thing for every detector.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Literal, Self, TypeVar

import pandas as pd

from detectors.errors import NotFittedError
from detectors.validation import SeriesLike, to_frame

__all__ = [
    "DETECTORS",
    "SCORE_COLUMNS",
    "Anomaly",
    "AnomalyKind",
    "Detector",
    "register",
]

AnomalyKind = Literal["spike", "dip", "level_shift"]

#: Columns of the frame returned by :meth:`Detector.score`, indexed by UTC timestamp.
SCORE_COLUMNS: tuple[str, ...] = ("observed", "expected", "lower", "upper", "score")

#: Registry of detector classes by their ``name``; filled by :func:`register`.
DETECTORS: dict[str, type[Detector]] = {}


@dataclass(frozen=True)
class Anomaly:
    """A run of anomalous points. ``start`` and ``end`` are UTC-aware and inclusive."""

    start: pd.Timestamp
    end: pd.Timestamp
    kind: AnomalyKind
    observed: float
    expected: float
    score: float
    detector: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["start"] = self.start.isoformat()
        data["end"] = self.end.isoformat()
        return data


_D = TypeVar("_D", bound="type[Detector]")


def register(cls: _D) -> _D:
    """Class decorator adding a detector to :data:`DETECTORS` under its ``name``."""
    DETECTORS[cls.name] = cls
    return cls


class Detector(ABC):
    """Base class of every detector. See the module docstring for the contract."""

    name: ClassVar[str]
    #: Minimum number of non-missing points ``fit`` accepts.
    min_history: ClassVar[int] = 2
    #: Version of the JSON layout written by :meth:`to_json`.
    state_version: ClassVar[int] = 1

    series_id_: str

    # -- public API: validate, then call the hooks -------------------------------------------------
    def fit(self, history: SeriesLike, *, series_id: str = "series") -> Self:
        """Learn from ``history`` (a Series of values, or a frame with ``value`` and optional ``volume``)."""
        frame = to_frame(history, series_id=series_id, min_points=self.min_history)
        self.series_id_ = series_id
        self._fit(frame)
        return self

    def score(self, window: SeriesLike) -> pd.DataFrame:
        """Score every timestamp of ``window``; returns a frame with :data:`SCORE_COLUMNS`."""
        self._check_fitted()
        frame = to_frame(window, series_id=self.series_id_, min_points=0)
        scored = self._score(frame)
        return scored.loc[:, list(SCORE_COLUMNS)]

    def detect(self, window: SeriesLike, *, threshold: float = 4.0) -> list[Anomaly]:
        """Anomalies where ``|score| >= threshold``, consecutive points of one sign merged."""
        from detectors.postrules import scores_to_anomalies

        return scores_to_anomalies(self.score(window), threshold=threshold, detector=self.name)

    def is_fitted(self) -> bool:
        return hasattr(self, "series_id_")

    def get_params(self) -> dict[str, Any]:
        """Hyper-parameters as passed to ``__init__`` (stored as attributes of the same name)."""
        import inspect

        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {name: getattr(self, name) for name in names}

    # -- persistence -----------------------------------------------------------------------------
    def to_json(self) -> str:
        """Serialise hyper-parameters and fitted state to a JSON string (never pickle)."""
        self._check_fitted()
        payload = {
            "detector": self.name,
            "version": self.state_version,
            "series_id": self.series_id_,
            "params": self.get_params(),
            "state": self._state_to_dict(),
        }
        return json.dumps(payload)

    @classmethod
    def from_json(cls, text: str) -> Detector:
        """Rebuild a fitted detector from :meth:`to_json` output (of this class or, on the base, any)."""
        payload = json.loads(text)
        name = payload.get("detector")
        target = DETECTORS.get(name) if cls is Detector else cls
        if target is None or target.name != name:
            raise ValueError(f"JSON holds detector {name!r}, expected {getattr(cls, 'name', 'a registered one')!r}")
        if payload.get("version") != target.state_version:
            raise ValueError(
                f"{name} state version {payload.get('version')} is not supported "
                f"(this livewatch reads version {target.state_version}); refit the model"
            )
        detector = target(**payload["params"])
        detector.series_id_ = payload["series_id"]
        detector._state_from_dict(payload["state"])
        return detector

    # -- hooks -----------------------------------------------------------------------------------
    @abstractmethod
    def _fit(self, frame: pd.DataFrame) -> None:
        """Learn from a validated frame (UTC index, ``value`` and ``volume`` columns)."""

    @abstractmethod
    def _score(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Score a validated frame; return at least :data:`SCORE_COLUMNS` on the same index."""

    @abstractmethod
    def _state_to_dict(self) -> dict[str, Any]:
        """Fitted state as JSON-compatible data."""

    @abstractmethod
    def _state_from_dict(self, state: dict[str, Any]) -> None:
        """Restore the fitted state written by :meth:`_state_to_dict`."""

    def _check_fitted(self) -> None:
        if not self.is_fitted():
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit(history) before score/detect")
