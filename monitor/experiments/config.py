"""The ``experiments:`` section of ``config.yaml``: strict models, reference checks against the metrics.

Example::

    experiments:
      - name: feed_ranking_v2
        assignment: {table: experiment_assignments}   # experiment, arm, unit, assigned_at
        outcomes: {table: experiment_unit_hourly}      # ts, unit, the metrics' columns, segments
        control: control
        split: {control: 0.5, ranked_feed: 0.5}
        segments: [category, language]
        pre_period: 7d                                 # CUPED from the week before launch
        guardrails:
          - {metric: report_rate_per_1k, direction: up, min_effect: 0.1}
          - {metric: violation_rate, min_effect: 0.1}

This module imports nothing from :mod:`monitor.config` (which imports it); the shared pieces (durations,
SQL sources) come from :mod:`monitor.config_types`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field, field_validator, model_validator

from monitor.config_types import IDENTIFIER, STRICT, Duration, SqlSource

__all__ = [
    "AssignmentColumns",
    "ExperimentConfig",
    "GuardrailConfig",
    "check_references",
]

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class _Strict(BaseModel):
    model_config = STRICT


def _identifier(value: str) -> str:
    if not IDENTIFIER.match(value):
        raise ValueError(f"column {value!r} is not a plain identifier")
    return value


Column = Annotated[str, BeforeValidator(lambda v: _identifier(str(v)))]


class AssignmentColumns(_Strict):
    """Column names of the assignment source (one row per unit assigned to an arm)."""

    experiment: Column = "experiment"
    arm: Column = "arm"
    unit: Column = "unit"
    time: Column = Field("assigned_at", description="when the unit was assigned (UTC)")


class GuardrailConfig(_Strict):
    """One guardrail: a configured metric, read per unit from the experiment's outcome source."""

    metric: str = Field(description="a configured count or ratio metric")
    direction: Literal["up", "down"] | None = Field(
        None, description="harmful direction; default the metric's own when it is up or down"
    )
    min_effect: float = Field(0.05, gt=0, description="smallest relative change that matters (0.05 = 5 %)")
    kind: Literal["rate", "ratio"] | None = Field(
        None, description="rate (events per exposure) or ratio (num / den trials); default by metric kind"
    )


class ExperimentConfig(_Strict):
    """One experiment watched by guardrails."""

    name: str
    description: str = ""
    assignment: SqlSource
    assignment_columns: AssignmentColumns = AssignmentColumns()
    outcomes: SqlSource | None = Field(
        None, description="per-unit outcome rows; default each guardrail metric's own source (needs unit)"
    )
    unit_column: Column = "unit"
    time_column: Column = "ts"
    exposure: Column | None = Field(None, description="denominator column for count metrics (e.g. views)")
    control: str
    split: dict[str, float] = Field(description="arm -> expected assignment share (normalised)")
    segments: tuple[Column, ...] = Field((), description="outcome columns for the per-segment breakdown")
    pre_period: Duration | None = Field(None, description="CUPED: this long before launch, per unit")
    start: datetime | None = Field(None, description="launch (UTC); default the first assignment")
    end: datetime | None = Field(None, description="stop evaluating after this time (UTC)")
    granularity: Duration = timedelta(hours=1)
    alpha: float = Field(0.05, gt=0, lt=0.5)
    srm_alpha: float = Field(0.001, gt=0, lt=1)
    guardrails: tuple[GuardrailConfig, ...] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not _NAME.match(name):
            raise ValueError(f"experiment name {name!r} must be letters, digits, '_', '-' or '.'")
        return name

    @field_validator("start", "end")
    @classmethod
    def _aware(cls, moment: datetime | None) -> datetime | None:
        if moment is not None and moment.tzinfo is None:
            raise ValueError("needs a timezone, e.g. 2026-11-01T10:00:00Z")
        return moment

    @model_validator(mode="after")
    def _arms(self) -> ExperimentConfig:
        if len(self.split) < 2:
            raise ValueError(
                f"split: needs the control and at least one treatment arm, got {sorted(self.split)}"
            )
        bad = {arm: share for arm, share in self.split.items() if not share > 0}
        if bad:
            raise ValueError(f"split: shares must be > 0, got {bad}")
        if self.control not in self.split:
            raise ValueError(
                f"control: arm {self.control!r} is not among the arms of split {sorted(self.split)}"
            )
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise ValueError("end must be after start")
        return self

    @property
    def treatments(self) -> list[str]:
        """Every arm but control, in split order."""
        return [arm for arm in self.split if arm != self.control]


Loc = tuple[str | int, ...]


def check_references(
    experiments: Sequence[ExperimentConfig], metrics: Sequence[Any]
) -> list[tuple[Loc, str]]:
    """``(key path, message)`` per broken reference: duplicate names, unknown metrics, missing exposure...

    ``metrics`` are the resolved :class:`monitor.config.MetricConfig` (not imported here: it imports us).
    """
    problems: list[tuple[Loc, str]] = []
    known = {m.name: m for m in metrics}
    names = [e.name for e in experiments]
    for dupe in sorted({n for n in names if names.count(n) > 1}):
        problems.append((("experiments",), f"duplicate experiment name {dupe!r}"))
    for i, experiment in enumerate(experiments):
        seen: set[str] = set()
        for j, guardrail in enumerate(experiment.guardrails):
            where: Loc = ("experiments", i, "guardrails", j)
            metric = known.get(guardrail.metric)
            if metric is None:
                problems.append(
                    ((*where, "metric"), f"unknown metric {guardrail.metric!r} (known: {sorted(known)})")
                )
                continue
            if guardrail.metric in seen:
                problems.append(((*where, "metric"), f"metric {guardrail.metric!r} is guarded twice"))
            seen.add(guardrail.metric)
            if metric.kind == "count" and experiment.exposure is None:
                problems.append(
                    (
                        (*where, "metric"),
                        f"count metric {guardrail.metric!r} needs experiments[{i}].exposure "
                        "(the per-unit denominator column, e.g. views)",
                    )
                )
            direction = guardrail.direction or getattr(metric, "direction", None)
            if direction not in ("up", "down"):
                problems.append(
                    (
                        (*where, "direction"),
                        f"metric {guardrail.metric!r} watches {direction!r}; say which direction is harmful "
                        "(up or down)",
                    )
                )
    return problems
