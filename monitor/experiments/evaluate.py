"""Evaluate experiment guardrails and turn breaches into alert signals.

For each configured experiment, :func:`evaluate_experiment` reads the assignment and the per-unit outcome
rows since launch (and the pre-period for CUPED), builds the guardrail frame (``ts, unit, arm, num, den``
and the segment columns; rows before a unit's assignment are dropped) and runs
:func:`detectors.guardrails.guardrail_timeline` for every treatment arm x guardrail metric: one
always-valid look per bucket, so the decision at any past bucket is known (catch-up replays it).

:class:`ExperimentMonitor` is what the tick calls (:class:`monitor.pipeline.tick.Monitor`'s
``experiments`` hook): for the buckets the tick scores it returns, per bucket, one ``guardrail`` signal per
(metric, arm) whose decision is ``harm`` and one ``srm`` signal per experiment with a sample ratio
mismatch. Labels: metric = the guardrail metric (``assignment`` for SRM), region = ``experiment/<name>/<arm>``
(``experiment/<name>`` for SRM), kind ``guardrail`` / ``srm``; the grouping never merges these with
regional anomalies (:data:`alerts.model.EXPERIMENT_KINDS`). A bad experiment is logged and reported; the
others go on.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd
import sqlalchemy as sa
import structlog

from alerts.model import AlertSignal, RootCause
from detectors.errors import DetectorError
from detectors.guardrails import (
    GuardrailResult,
    GuardrailSpec,
    SRMResult,
    check_srm,
    guardrail_timeline,
    segment_breakdown,
)
from detectors.sequential import Decision
from monitor.config import Config, MetricConfig
from monitor.config_types import SqlSource
from monitor.errors import LivewatchError
from monitor.experiments.config import ExperimentConfig, GuardrailConfig
from monitor.experiments.source import ExperimentDataError, SqlExperimentSource

__all__ = [
    "ExperimentEvaluation",
    "ExperimentMonitor",
    "GuardrailEvaluation",
    "evaluate_experiment",
    "experiment_signals",
]

log = structlog.get_logger(__name__)
_TOP_CAUSES = 3


@dataclass(frozen=True)
class GuardrailEvaluation:
    """One guardrail metric for one treatment arm: its timeline (one look per bucket, oldest first)."""

    spec: GuardrailSpec
    metric: MetricConfig
    timeline: list[GuardrailResult]
    frame: pd.DataFrame = field(repr=False)
    pre_period: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def latest(self) -> GuardrailResult:
        return self.timeline[-1]

    def first_harm(self) -> pd.Timestamp | None:
        """Bucket of the first ``harm`` look (the interval only narrows, so harm persists)."""
        for result in self.timeline:
            if result.decision == Decision.HARM:
                return result.ts
        return None

    def breakdown(self, segments: Sequence[str], *, until: pd.Timestamp | None = None) -> pd.DataFrame:
        """:func:`detectors.guardrails.segment_breakdown` over every segment column, most harmful first."""
        frame = self.frame if until is None else self.frame[self.frame["ts"] <= until]
        parts = [segment_breakdown(frame, self.spec, segment=s, pre_period=self.pre_period) for s in segments]
        parts = [p for p in parts if len(p)]
        if not parts:
            return pd.DataFrame(columns=["segment", "value", "effect", "excess", "share", "decision"])
        out = pd.concat(parts, ignore_index=True)
        return out.sort_values("excess", ascending=False, kind="stable").reset_index(drop=True)


@dataclass(frozen=True)
class ExperimentEvaluation:
    """Everything known about one experiment at ``end``."""

    experiment: ExperimentConfig
    launch: pd.Timestamp
    end: pd.Timestamp
    units: dict[str, int]
    srm: SRMResult
    guardrails: list[GuardrailEvaluation]

    def srm_at(self, bucket: pd.Timestamp) -> SRMResult | None:
        """The sequential SRM test as it stood at ``bucket`` (from the first guardrail's timeline)."""
        if not self.guardrails:
            return None
        result = _look_at(self.guardrails[0].timeline, bucket)
        return None if result is None else result.srm


def _look_at(timeline: Sequence[GuardrailResult], bucket: pd.Timestamp) -> GuardrailResult | None:
    """The latest look at or before ``bucket``."""
    stamps = pd.DatetimeIndex([r.ts for r in timeline])
    position = int(stamps.searchsorted(bucket, side="right")) - 1
    return timeline[position] if position >= 0 else None


def _guardrail_kind(metric: MetricConfig, guardrail: GuardrailConfig) -> str:
    if guardrail.kind is not None:
        return guardrail.kind
    return "rate" if metric.kind == "count" else "ratio"


def _measures(experiment: ExperimentConfig, metric: MetricConfig) -> tuple[str, str]:
    numerator, denominator = metric.measure_columns
    if denominator is None:
        if experiment.exposure is None:
            raise ExperimentDataError(
                f"experiment {experiment.name!r}: count metric {metric.name!r} needs 'exposure'"
            )
        denominator = experiment.exposure
    return numerator, denominator


def _outcome_source(experiment: ExperimentConfig, metric: MetricConfig) -> SqlSource:
    if experiment.outcomes is not None:
        return experiment.outcomes
    return metric.source


def evaluate_experiment(
    experiment: ExperimentConfig,
    metrics: Mapping[str, MetricConfig],
    source: SqlExperimentSource,
    end: datetime,
) -> ExperimentEvaluation:
    """Guardrail timelines of every treatment arm x guardrail metric of ``experiment`` up to ``end``.

    Raises:
        ExperimentDataError: bad assignment or outcome rows (names the experiment and the column).
        monitor.errors.SourceError: a table, column or query of the experiment is wrong.
        detectors.guardrails.InvalidExperimentError: the library rejects the frame (message names the
            experiment and metric).
    """
    step = pd.Timedelta(experiment.granularity)
    end_ts = pd.Timestamp(end).tz_convert("UTC")
    if experiment.end is not None:
        end_ts = min(end_ts, pd.Timestamp(experiment.end).tz_convert("UTC"))
    assignment = source.assignments(experiment, end_ts.to_pydatetime())
    launch = (
        pd.Timestamp(experiment.start).tz_convert("UTC")
        if experiment.start is not None
        else assignment["assigned_at"].min()
    ).floor(step)
    if end_ts <= launch:
        raise ExperimentDataError(f"experiment {experiment.name!r}: launches at {launch}, after {end_ts}")
    units = {arm: int((assignment["arm"] == arm).sum()) for arm in experiment.split}
    base = GuardrailSpec(
        experiment=experiment.name,
        metric="assignment",
        control=experiment.control,
        treatment=experiment.treatments[0],
        split=dict(experiment.split),
        alpha=experiment.alpha,
        srm_alpha=experiment.srm_alpha,
    )
    srm = check_srm(units, base)
    fetch_start = launch - pd.Timedelta(experiment.pre_period) if experiment.pre_period else launch
    # One query per outcome source, with the columns of every guardrail that reads it.
    plans = []
    wanted: dict[tuple[str | None, str | None], list[str]] = defaultdict(list)
    for guardrail in experiment.guardrails:
        metric = metrics[guardrail.metric]
        numerator, denominator = _measures(experiment, metric)
        outcome = _outcome_source(experiment, metric)
        wanted[(outcome.table, outcome.query)] += [numerator, denominator, *experiment.segments]
        plans.append((guardrail, metric, numerator, denominator, outcome))
    fetched = {
        key: source.outcomes(
            experiment,
            SqlSource(table=key[0], query=key[1]),
            list(dict.fromkeys(columns)),
            fetch_start.to_pydatetime(),
            end_ts.to_pydatetime(),
        )
        for key, columns in wanted.items()
    }
    guardrails = []
    for guardrail, metric, numerator, denominator, outcome in plans:
        outcomes = fetched[(outcome.table, outcome.query)]
        frame, pre = _frames(experiment, outcomes, assignment, numerator, denominator, launch)
        direction = guardrail.direction or metric.direction
        for treatment in experiment.treatments:
            spec = GuardrailSpec(
                experiment=experiment.name,
                metric=metric.name,
                control=experiment.control,
                treatment=treatment,
                kind=_guardrail_kind(metric, guardrail),  # type: ignore[arg-type]
                direction=direction,  # type: ignore[arg-type]
                min_effect=guardrail.min_effect,
                alpha=experiment.alpha,
                split=dict(experiment.split),
                srm_alpha=experiment.srm_alpha,
            )
            timeline = guardrail_timeline(frame, spec, pre_period=pre)
            guardrails.append(GuardrailEvaluation(spec, metric, timeline, frame, pre))
    return ExperimentEvaluation(experiment, launch, end_ts, units, srm, guardrails)


def _frames(
    experiment: ExperimentConfig,
    outcomes: pd.DataFrame,
    assignment: pd.DataFrame,
    numerator: str,
    denominator: str,
    launch: pd.Timestamp,
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The guardrail frame since launch and the CUPED pre-period (``None`` without ``pre_period``)."""
    step = pd.Timedelta(experiment.granularity)
    where = f"experiment {experiment.name!r}: outcome column"
    rows = outcomes.rename(columns={experiment.time_column: "ts", experiment.unit_column: "unit"})
    for column in (numerator, denominator):
        values = pd.to_numeric(rows[column], errors="coerce")
        bad = values.isna() | (values < 0)
        if bad.any():
            raise ExperimentDataError(
                f"{where} {column!r} has {int(bad.sum())} NULL, non-numeric or negative values"
            )
    if rows["unit"].isna().any():
        raise ExperimentDataError(f"{where} {experiment.unit_column!r} has missing values")
    rows = rows.assign(unit=rows["unit"].astype(str), ts=rows["ts"].dt.floor(step))
    joined = rows.merge(assignment, on="unit", how="inner")
    segments = list(experiment.segments)
    post = joined[(joined["ts"] >= launch) & (joined["ts"] >= joined["assigned_at"].dt.floor(step))]
    if post.empty:
        raise ExperimentDataError(
            f"experiment {experiment.name!r}: no outcome rows of assigned units since launch {launch}"
        )
    frame = (
        post.groupby(["ts", "unit", "arm", *segments], as_index=False, observed=True)[
            [numerator, denominator]
        ]
        .sum()
        .rename(columns={numerator: "num", denominator: "den"})
    )
    pre = None
    if experiment.pre_period is not None:
        before = joined[joined["ts"] < launch]
        pre = (
            before.groupby("unit", as_index=False)[[numerator, denominator]]
            .sum()
            .rename(columns={numerator: "num", denominator: "den"})
        )
        if pre.empty:
            pre = None
    return frame, pre


def _finite(value: float, default: float = 0.0) -> float:
    return float(value) if np.isfinite(value) else default


def _causes(breakdown: pd.DataFrame) -> tuple[RootCause, ...]:
    harmful = breakdown[breakdown["excess"] > 0].head(_TOP_CAUSES)
    return tuple(
        RootCause(segment=f"{row.segment}={row.value}", share=min(1.0, max(0.0, _finite(float(row.share)))))  # type: ignore[arg-type]
        for row in harmful.itertuples()
    )


def experiment_signals(
    evaluation: ExperimentEvaluation, buckets: Sequence[pd.Timestamp]
) -> dict[pd.Timestamp, list[AlertSignal]]:
    """The ``guardrail`` and ``srm`` signals of ``evaluation`` at each of ``buckets`` (bucket starts)."""
    experiment = evaluation.experiment
    live = [b for b in buckets if evaluation.launch <= b < evaluation.end]
    out: dict[pd.Timestamp, list[AlertSignal]] = defaultdict(list)
    investigate = f"livewatch experiments show {experiment.name}"
    for guardrail in evaluation.guardrails:
        first = guardrail.first_harm()
        harmful = [b for b in live if first is not None and b >= first]
        if not harmful:
            continue
        causes = _causes(guardrail.breakdown(experiment.segments, until=harmful[-1]))
        scale = guardrail.metric.scale if guardrail.metric.kind == "ratio" else 1000.0
        for bucket in harmful:
            look = _look_at(guardrail.timeline, bucket)
            if look is None or look.decision != Decision.HARM:
                continue
            score = np.log1p(look.effect) / look.std_error if look.std_error > 0 else np.nan
            out[bucket].append(
                AlertSignal(
                    metric=guardrail.spec.metric,
                    region=f"experiment/{experiment.name}/{guardrail.spec.treatment}",
                    kind="guardrail",
                    observed=_finite(look.treatment_rate * scale),
                    expected=_finite(look.control_rate * scale),
                    change_pct=_finite(100.0 * look.effect),
                    score=_finite(score),
                    volume=_finite(look.treatment_num),
                    start=first.to_pydatetime(),  # type: ignore[union-attr]
                    end=bucket.to_pydatetime(),
                    root_causes=causes,
                    investigate=investigate,
                )
            )
    for bucket in live:
        srm = evaluation.srm_at(bucket)
        if srm is None or not srm.mismatch:
            continue
        total = sum(srm.counts.values()) or 1
        observed = srm.counts.get(experiment.control, 0) / total
        expected = srm.expected_share.get(experiment.control, 0.0)
        out[bucket].append(
            AlertSignal(
                metric="assignment",
                region=f"experiment/{experiment.name}",
                kind="srm",
                observed=100.0 * observed,
                expected=100.0 * expected,
                change_pct=_finite(100.0 * (observed - expected) / expected) if expected else 0.0,
                score=_finite(srm.log_bayes_factor),
                volume=float(total),
                start=evaluation.launch.to_pydatetime(),
                end=bucket.to_pydatetime(),
                investigate=investigate,
            )
        )
    return dict(out)


@dataclass
class ExperimentMonitor:
    """The tick's experiment stage: evaluate every experiment, signals per scored bucket, errors isolated."""

    config: Config
    source: SqlExperimentSource
    last: dict[str, ExperimentEvaluation] = field(default_factory=dict)

    @classmethod
    def from_engine(cls, config: Config, engine: sa.Engine) -> ExperimentMonitor:
        return cls(config, SqlExperimentSource(engine, schema=config.database.schema_name))

    def signals(
        self, buckets: Sequence[pd.Timestamp], now: datetime
    ) -> tuple[dict[pd.Timestamp, list[AlertSignal]], dict[str, str]]:
        """Signals by bucket for ``buckets`` (starts of the scored buckets), and errors by experiment."""
        if not buckets or not self.config.experiments:
            return {}, {}
        ordered = sorted(buckets)
        metrics = {m.name: m for m in self.config.metrics}
        by_bucket: dict[pd.Timestamp, list[AlertSignal]] = defaultdict(list)
        errors: dict[str, str] = {}
        for experiment in self.config.experiments:
            try:
                end = ordered[-1] + pd.Timedelta(experiment.granularity)
                evaluation = evaluate_experiment(experiment, metrics, self.source, end.to_pydatetime())
                self.last[experiment.name] = evaluation
                for bucket, signals in experiment_signals(evaluation, ordered).items():
                    by_bucket[bucket] += signals
            except (LivewatchError, DetectorError, ValueError) as exc:
                # One bad experiment never stops the others (or the tick).
                errors[f"experiment:{experiment.name}"] = str(exc)
                log.error("experiment failed", experiment=experiment.name, error=str(exc))
        return dict(by_bucket), errors
