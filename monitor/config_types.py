"""Config building blocks shared by :mod:`monitor.config` and :mod:`monitor.experiments.config`.

Strict frozen models, durations and SQL sources live here once; ``monitor.config`` imports the experiments
section, so the two modules cannot import each other's pieces.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

import pandas as pd
from pydantic import BaseModel, BeforeValidator, ConfigDict, model_validator

__all__ = ["IDENTIFIER", "STRICT", "Duration", "SqlSource", "parse_duration"]

#: A plain SQL identifier (column, table part, metric name).
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


#: Every config model: frozen, unknown keys are errors, and inf / nan are never valid numbers (1e400 reads
#: as inf). Each module subclasses ``BaseModel`` with it (linters then see the pydantic base).
STRICT = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def parse_duration(value: Any) -> timedelta:
    """Parse ``30s``, ``10m``, ``1h``, ``14d``, ``2w``, ISO 8601 (``PT1H``) or a timedelta.

    Raises:
        ValueError: The text is not a duration, or it is too large for a timedelta (never OverflowError).
    """
    if isinstance(value, timedelta):
        return value
    if isinstance(value, str) and value.strip().upper().startswith("P"):  # ISO 8601, e.g. PT1H
        try:
            return timedelta(seconds=pd.Timedelta(value.strip()).total_seconds())
        except (ValueError, OverflowError) as exc:
            if "out of bounds" in str(exc).lower() or isinstance(exc, OverflowError):
                raise ValueError(f"duration {value!r} is too large (at most about 292 years)") from None
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(
            f"invalid duration {value!r}: use a number and a unit s, m, h, d or w (e.g. 10m, 1h)"
        )
    try:
        return timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})
    except OverflowError:
        raise ValueError(
            f"duration {value!r} is too large to represent (a duration holds at most 999999999 days)"
        ) from None


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
"""Any duration (no bounds)."""


class SqlSource(BaseModel):
    """Either a table name or a SELECT that uses the bound parameters ``:start`` and ``:end``."""

    model_config = STRICT

    table: str | None = None
    query: str | None = None

    @model_validator(mode="after")
    def _one_of(self) -> SqlSource:
        if (self.table is None) == (self.query is None):
            raise ValueError("set exactly one of 'table' or 'query'")
        if self.table is not None and not all(IDENTIFIER.match(p) for p in self.table.split(".")):
            raise ValueError(f"table {self.table!r} is not a plain identifier (schema.table allowed)")
        if self.query is not None and not (":start" in self.query and ":end" in self.query):
            raise ValueError("query must filter on the bound parameters :start and :end")
        return self
