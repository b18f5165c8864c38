"""Errors of the composition root. Each message names the metric, column or config key and the fix."""

from __future__ import annotations

__all__ = ["ConfigError", "DataQualityError", "LivewatchError", "SourceError", "database_reason"]


class LivewatchError(Exception):
    """Base class: the CLI prints these as one line and exits non-zero."""


class ConfigError(LivewatchError):
    """The configuration is invalid. ``problems`` holds one line per problem (``key.path: message``)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class SourceError(LivewatchError):
    """A metric could not be fetched (query failed, table or column missing)."""


class DataQualityError(SourceError):
    """Fetched rows break a data rule (NaN, negative counts, non-numeric values, duplicates)."""


def database_reason(exc: BaseException) -> str:
    """The first line of what the database driver said (SQLAlchemy wraps it as ``orig``)."""
    return str(getattr(exc, "orig", None) or exc).splitlines()[0]
