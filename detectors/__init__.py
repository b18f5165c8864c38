"""livewatch detectors: forecasting, baselines, changepoints, post-rules and the root-cause slicer.

This package is a library of its own: it never imports :mod:`monitor` or :mod:`alerts`.
"""

from detectors.base import DETECTORS, SCORE_COLUMNS, Anomaly, Detector, register
from detectors.errors import DetectorError, InsufficientDataError, InvalidSeriesError, NotFittedError

__all__ = [
    "DETECTORS",
    "SCORE_COLUMNS",
    "Anomaly",
    "Detector",
    "DetectorError",
    "InsufficientDataError",
    "InvalidSeriesError",
    "NotFittedError",
    "register",
]
