"""The Detector contract shared by every detector.

A detector follows the scikit-learn / ruptures shape:

* hyper-parameters are explicit keyword arguments of ``__init__`` stored under the same name, with no logic
  there;
* ``fit(history, *, series_id=..., exclude=None) -> self`` learns state into trailing-underscore attributes
  (fitting again replaces it). ``exclude`` (a boolean mask or a list of ``(start, end)`` UTC intervals) drops
  known incidents and confirmed anomalies from training so one incident does not widen the band and hide the
  next;
* ``score(window) -> frame`` returns one row per timestamp with the columns of :data:`SCORE_COLUMNS`;
  a missing bucket (NaN value) gets a NaN score, never a dip;
* ``detect(window, rules=None) -> list[Anomaly]`` runs the post-rules of :mod:`detectors.postrules`
  (threshold, k-of-n, noise floors, direction, suppression, merge and spike/dip/level-shift
  classification) with ``rules`` or :meth:`Detector.default_rules`.

The public methods validate (through :mod:`detectors.validation`) and call private hooks
(``_fit``, ``_score``) that subclasses implement and that may assume clean input.

Scores are calibrated as signed standard-normal deviations ("sigmas"): positive above the expectation,
negative below, so one threshold means the same thing for every detector. ``_score`` may add a
:data:`SIGMA_COLUMN` (the model's one-sigma scale per point) which :class:`detectors.stack.DetectorStack`
uses for volume-aware scoring; :meth:`Detector.score` returns only :data:`SCORE_COLUMNS`.

State is JSON (``to_json`` / ``from_json``, ``to_dict`` / ``from_dict``), never pickle; ``state_version``
guards the layout and golden files under ``tests/detectors/golden`` must keep loading.
"""

from __future__ import annotations

import inspect
import json
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any, ClassVar, Literal, Self, TypeVar

import pandas as pd

from detectors.errors import InvalidSeriesError, NotFittedError
from detectors.validation import Exclusions, SeriesLike, exclusion_mask, to_frame

__all__ = [
    "DETECTORS",
    "SCORE_COLUMNS",
    "SIGMA_COLUMN",
    "Anomaly",
    "AnomalyKind",
    "Detector",
    "Direction",
    "interval_z",
    "register",
]

AnomalyKind = Literal["spike", "dip", "level_shift"]


def interval_z(interval_width: float) -> float:
    """Half-width in sigmas of a central band holding ``interval_width`` of a normal distribution."""
    return float(NormalDist().inv_cdf(0.5 + interval_width / 2))


Direction = Literal["up", "down", "both"]

#: Columns of the frame returned by :meth:`Detector.score`, indexed by UTC timestamp.
SCORE_COLUMNS: tuple[str, ...] = ("observed", "expected", "lower", "upper", "score")

#: Optional extra column of ``_score`` output: the model's one-sigma scale at each point.
SIGMA_COLUMN = "sigma"

#: Registry of detector classes by their ``name``; filled by :func:`register`.
DETECTORS: dict[str, type[Detector]] = {}


@dataclass(frozen=True)
class Anomaly:
    """A run of anomalous points. ``start`` and ``end`` are UTC-aware and inclusive.

    ``observed``, ``expected`` and ``score`` are taken at the peak point of a spike or dip and are medians
    over the run for a level shift. ``reason`` says in words why the run was flagged and classified.
    """

    start: pd.Timestamp
    end: pd.Timestamp
    kind: AnomalyKind
    observed: float
    expected: float
    score: float
    detector: str = ""
    reason: str = ""

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
    #: Minimum number of non-missing points ``fit`` accepts (after exclusions).
    min_history: ClassVar[int] = 2
    #: Version of the JSON layout written by :meth:`to_json`.
    state_version: ClassVar[int] = 1
    #: Anomaly kinds the detector is designed to find (the contract tests only inject these).
    detects: ClassVar[frozenset[str]] = frozenset({"spike", "dip", "level_shift"})

    series_id_: str

    # -- public API: validate, then call the hooks -------------------------------------------------
    def fit(
        self, history: SeriesLike, *, series_id: str = "series", exclude: Exclusions | None = None
    ) -> Self:
        """Learn from ``history``, replacing any previous fit.

        Args:
            history: A Series of values, or a frame with ``value`` and optional ``volume``; UTC index.
            series_id: Name of the series, used in error messages and kept in the JSON state.
            exclude: Points to drop from training (boolean mask, True = drop, or ``(start, end)`` intervals).

        Raises:
            InvalidSeriesError: bad index, values or exclusions.
            InsufficientDataError: too few points left after exclusions.
        """
        frame = to_frame(history, series_id=series_id, min_points=0)
        mask = exclusion_mask(pd.DatetimeIndex(frame.index), exclude, series_id=series_id)
        if mask.any():
            frame.loc[mask, "value"] = float("nan")
        frame = to_frame(frame, series_id=series_id, min_points=self.min_history)
        self.series_id_ = series_id
        self._fit(frame)
        return self

    def score(self, window: SeriesLike) -> pd.DataFrame:
        """Score every timestamp of ``window``; returns a frame with :data:`SCORE_COLUMNS`."""
        return self._validated_score(window).loc[:, list(SCORE_COLUMNS)]

    def detect(self, window: SeriesLike, rules: Any = None) -> list[Anomaly]:
        """Anomalies of ``window`` after the post-rules (``rules``, default :meth:`default_rules`).

        Args:
            window: Series or frame (``value``, optional ``volume``) to check.
            rules: A :class:`detectors.postrules.PostRules`; the one place post-rule settings live.
        """
        from detectors.postrules import apply_rules

        frame = self._validated_score(window)
        return apply_rules(frame, rules if rules is not None else self.default_rules(), detector=self.name)

    def default_rules(self) -> Any:
        """The :class:`detectors.postrules.PostRules` used by :meth:`detect` when no override is given."""
        from detectors.postrules import PostRules

        return PostRules()

    def is_fitted(self) -> bool:
        return hasattr(self, "series_id_")

    def get_params(self) -> dict[str, Any]:
        """Hyper-parameters as passed to ``__init__`` (stored as attributes of the same name)."""
        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {name: getattr(self, name) for name in names}

    # -- persistence -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Hyper-parameters and fitted state as JSON-compatible data."""
        self._check_fitted()
        return {
            "detector": self.name,
            "version": self.state_version,
            "series_id": self.series_id_,
            "params": self.get_params(),
            "state": self._state_to_dict(),
        }

    def to_json(self) -> str:
        """Serialise hyper-parameters and fitted state to a JSON string (never pickle)."""
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> Detector:
        """Rebuild a fitted detector from :meth:`to_dict` output (of this class or, on the base, any).

        Raises:
            InvalidSeriesError: the payload is for another detector or an unsupported state version.
        """
        name = payload.get("detector")
        target = DETECTORS.get(str(name)) if cls is Detector else cls
        if target is None or target.name != name:
            raise InvalidSeriesError(
                f"series {payload.get('series_id')!r}: JSON holds detector {name!r}, "
                f"expected {getattr(cls, 'name', 'a registered one')!r}"
            )
        payload = target._upgrade_payload(payload)
        if payload.get("version") != target.state_version:
            raise InvalidSeriesError(
                f"series {payload.get('series_id')!r}: {name} state version {payload.get('version')} is not "
                f"supported (this livewatch reads version {target.state_version}); refit the model"
            )
        detector = target(**payload["params"])
        detector.series_id_ = payload["series_id"]
        detector._state_from_dict(payload["state"])
        return detector

    @classmethod
    def from_json(cls, text: str) -> Detector:
        """Rebuild a fitted detector from :meth:`to_json` output."""
        return cls.from_dict(json.loads(text))

    @classmethod
    def _upgrade_payload(cls, payload: dict[str, Any]) -> dict[str, Any]:
        """Rewrite a payload of an older ``state_version`` into the current layout (default: unchanged).

        Subclasses that bump ``state_version`` override this so stored models keep loading.
        """
        return payload

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

    # -- helpers ---------------------------------------------------------------------------------
    def _validated_score(self, window: SeriesLike) -> pd.DataFrame:
        """Check fitted, validate ``window``, call ``_score``; keeps extra columns and adds ``volume``."""
        self._check_fitted()
        frame = to_frame(window, series_id=self.series_id_, min_points=0)
        scored = self._score(frame)
        scored["volume"] = frame["volume"]
        missing = frame["value"].isna().to_numpy()
        if missing.any():
            scored.loc[missing, "score"] = float("nan")
        return scored

    def _check_fitted(self) -> None:
        if not self.is_fitted():
            raise NotFittedError(
                f"{type(self).__name__} is not fitted: call fit(history, series_id=...) before "
                "score/detect/to_json"
            )
