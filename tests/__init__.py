"""livewatch test suite (a package so the root conftest never shadows the real packages)."""
