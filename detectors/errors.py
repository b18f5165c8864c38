"""Named errors raised by detectors; every message names the series and the rule broken."""

from __future__ import annotations

__all__ = ["DetectorError", "InsufficientDataError", "InvalidSeriesError", "NotFittedError"]


class DetectorError(Exception):
    """Base class of every error raised by :mod:`detectors`."""


class InvalidSeriesError(DetectorError, ValueError):
    """The series breaks an input rule (index type, timezone, non-numeric or negative values...)."""


class InsufficientDataError(DetectorError, ValueError):
    """The history is too short for the detector to fit."""


class NotFittedError(DetectorError, RuntimeError):
    """``score`` or ``detect`` was called before ``fit``."""
