"""Seeded synthetic series for detector tests (ground truth comes from :mod:`detectors.synthetic`)."""

from __future__ import annotations

import pandas as pd
import pytest

from detectors.synthetic import make_series

HOURS_HISTORY = 21 * 24
HOURS_WINDOW = 48


def split(frame: pd.DataFrame, history: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(frame[:history], frame[history:])``."""
    return frame.iloc[:history], frame.iloc[history:]


@pytest.fixture(scope="session")
def hourly() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Three weeks of clean hourly history (level 100, noise 1) and the two clean days that follow."""
    return split(make_series(HOURS_HISTORY + HOURS_WINDOW, "1h", seed=11), HOURS_HISTORY)


@pytest.fixture(scope="session")
def hourly_short() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Five days of clean hourly history and the two days that follow (too short for Prophet).

    No weekly cycle: five days cannot teach one, so the baseline falls back to hour-of-day slots.
    """
    return split(make_series(5 * 24 + HOURS_WINDOW, "1h", seed=12, weekly_amp=0.0), 5 * 24)
