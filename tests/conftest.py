"""Fixtures shared by every test package: keep this minimal (package conftests hold the rest)."""

from __future__ import annotations

import pandas as pd
import pytest

#: The fixed "current time" of the test suite (a Monday, UTC).
FIXED_NOW = pd.Timestamp("2026-02-02 12:00", tz="UTC")


@pytest.fixture
def now() -> pd.Timestamp:
    """A fixed, UTC-aware clock value; inject it wherever code takes ``now``."""
    return FIXED_NOW
