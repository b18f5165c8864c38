"""livewatch detectors: forecasting, baselines, changepoints, post-rules and the root-cause slicer.

This package is a library of its own: it never imports :mod:`monitor` or :mod:`alerts`.
Importing it registers the core detectors (``prophet``, ``robust``, ``stack``) in :data:`DETECTORS`;
Prophet itself is imported lazily on the first fit or load.
"""

from detectors.base import (
    DETECTORS,
    SCORE_COLUMNS,
    SIGMA_COLUMN,
    Anomaly,
    AnomalyKind,
    Detector,
    Direction,
    register,
)
from detectors.errors import DetectorError, InsufficientDataError, InvalidSeriesError, NotFittedError
from detectors.postrules import PostRules, apply_rules, evaluate
from detectors.prophet import ProphetDetector, ProphetParams, params_from_prophet, prophet_expected_batch
from detectors.robust import Baseline, RobustSeasonalDetector, robust_baseline, robust_score_many
from detectors.stack import DetectorStack
from detectors.volume import MetricKind, combine_sigma, sampling_sigma

__all__ = [
    "DETECTORS",
    "SCORE_COLUMNS",
    "SIGMA_COLUMN",
    "Anomaly",
    "AnomalyKind",
    "Baseline",
    "Detector",
    "DetectorError",
    "DetectorStack",
    "Direction",
    "InsufficientDataError",
    "InvalidSeriesError",
    "MetricKind",
    "NotFittedError",
    "PostRules",
    "ProphetDetector",
    "ProphetParams",
    "RobustSeasonalDetector",
    "apply_rules",
    "combine_sigma",
    "evaluate",
    "params_from_prophet",
    "prophet_expected_batch",
    "register",
    "robust_baseline",
    "robust_score_many",
    "sampling_sigma",
]
