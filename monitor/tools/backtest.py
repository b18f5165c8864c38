"""Backtest: replay history as the daemon would and put numbers on the alerting tradeoff.

Three stages, so the expensive one runs once per series and the sweep is cheap:

1. :func:`score_history` (expensive, parallel): for every (metric, series), walk the replay range in steps of
   the configured ``refit_every``. At each refit time ``t`` the daemon's stack is fitted on the ``history``
   before ``t`` only (expanding window, no look-ahead) and the buckets up to the next refit are decided by
   the daemon's own scoring path, :func:`monitor.pipeline.scoring.score_and_decide` (post-rules, CUSUM level
   shifts over each bucket's trailing week, unseen-holiday floor), once per swept threshold. A bucket's
   decision does not depend on how many buckets one call scores, so these are the decisions of the
   daemon's ticks. A ``detector: streaming`` metric is fitted once, at the start of the replay, and
   advanced over it (:func:`monitor.pipeline.scoring.stream_series`), as its ticks do.
2. :func:`sweep`: for each threshold the flagged buckets become signals exactly as in a tick
   (:func:`monitor.pipeline.signals.series_signals`: runs, kinds by :func:`detectors.postrules.classify_run`)
   and are replayed bucket by bucket through :func:`alerts.incidents.group_signals` (the daemon's grouping
   and auto-resolution), giving the incidents the daemon would have opened. They are compared with
   labelled incidents: per metric and overall precision (share of opened incidents with a member on a
   labelled window), recall (labelled rows whose metric and region flagged within their window), F1, median
   and p90 time to detect (from the labelled start to the end of the first flagged bucket plus the
   completeness delay), and alerts per week.
3. :func:`recommend`: the threshold meeting an alert budget with the best recall, or minimising
   ``cost_ratio * missed + false alerts``, or (neither given) maximising F1.

Labels (:func:`load_labels`) are the demo's ``demo_incidents`` table (its ``should_alert = false`` rows are
not counted in recall: alerting on them is a false alert) or a CSV with ``metric, region, start, end``.
Buckets people marked "not an incident" from Slack (the state store's false positives,
:func:`false_positive_labels`) join them as labelled negatives (``should_alert = false``); each score says
how many labelled negatives a setting would still alert on (``negatives_alerted`` of ``negatives``).

Parallelism: :func:`score_history` maps series over a :class:`monitor.pipeline.executor.ChunkExecutor`;
:func:`executor_for` opens the configured one: a process pool over all cores, or a Dask ``distributed``
cluster when the config says ``executor: {type: dask, address: ...}`` (falling back to the local pool, with
the reason, when Dask is not installed or unreachable).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from alerts.incidents import GroupingConfig, group_signals
from alerts.model import AlertSignal, FalsePositive, Incident
from detectors.errors import DetectorError
from detectors.postrules import LEVEL_SHIFT_CONTEXT
from monitor.config import Config, ExecutorConfig, Metric
from monitor.errors import ConfigError, LivewatchError
from monitor.pipeline.executor import (
    ChunkExecutor,
    DaskExecutor,
    InlineExecutor,
    LocalExecutor,
    make_executor,
)
from monitor.pipeline.scoring import SeriesDecisions, stream_series
from monitor.pipeline.signals import series_signals
from monitor.pipeline.spec import post_rules, series_frame
from monitor.source import MetricSource, floor_time
from monitor.tools.investigate import fit_series, series_decisions

__all__ = [
    "DEFAULT_SWEEP",
    "Backtest",
    "BacktestError",
    "Label",
    "Recommendation",
    "Score",
    "SeriesScores",
    "SettingResult",
    "evaluate_setting",
    "executor_for",
    "false_positive_labels",
    "load_labels",
    "recommend",
    "replay_incidents",
    "run_backtest",
    "score_chunk",
    "score_history",
    "score_series",
    "sweep",
]

#: Thresholds (|score| in sigmas) tried when none are given; the configured ones are added.
DEFAULT_SWEEP: tuple[float, ...] = (2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 8.0)
#: Default replay length when ``--from`` is not given.
DEFAULT_SPAN = timedelta(days=14)
#: A labelled incident still counts as detected this many buckets after its labelled end.
DETECT_GRACE_BUCKETS = 6
#: Columns of a labels CSV.
LABEL_COLUMNS = ("metric", "region", "start", "end")


class BacktestError(LivewatchError):
    """The backtest cannot run as asked (bad labels, empty range...); the message says how to fix it."""


@dataclass(frozen=True)
class Label:
    """One labelled incident on one metric and region: ``[start, end)`` in UTC."""

    metric: str
    region: str
    start: datetime
    end: datetime
    should_alert: bool = True
    name: str = ""


@dataclass(frozen=True)
class SeriesTask:
    """Everything one worker needs to score one series (picklable)."""

    metric: Metric
    config: Config
    series: str
    frame: pd.DataFrame
    start: datetime
    end: datetime
    thresholds: tuple[float, ...]


@dataclass(frozen=True)
class SeriesScores:
    """The daemon's decisions of one series over the replay, per swept threshold (module docstring)."""

    metric: str
    series: str
    decisions: Mapping[float, pd.DataFrame]
    refits: int
    errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class Score:
    """Precision, recall and timing of one setting, overall or for one metric.

    Attributes:
        incidents: Incidents opened (alerts).
        true_incidents: Opened incidents with a member on a labelled window.
        labels: Labelled rows that should alert.
        detected: Of those, the ones flagged in time.
        ttd_median: Median time to detect (``None`` when nothing was detected).
        ttd_p90: 90th percentile of the time to detect.
        alerts_per_week: ``incidents`` per 7 days of replay.
        negatives: Labelled negatives (``should_alert = false``, e.g. false positives marked in Slack).
        negatives_alerted: Of those, the ones an opened incident has a member on (false alerts again).
    """

    incidents: int
    true_incidents: int
    labels: int
    detected: int
    ttd_median: timedelta | None
    ttd_p90: timedelta | None
    alerts_per_week: float
    negatives: int = 0
    negatives_alerted: int = 0

    @property
    def false_alerts(self) -> int:
        return self.incidents - self.true_incidents

    @property
    def missed(self) -> int:
        return self.labels - self.detected

    @property
    def precision(self) -> float:
        return self.true_incidents / self.incidents if self.incidents else math.nan

    @property
    def recall(self) -> float:
        return self.detected / self.labels if self.labels else math.nan

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        if math.isnan(p) or math.isnan(r) or p + r == 0:
            return 0.0 if (p == 0 or r == 0) else math.nan
        return 2 * p * r / (p + r)

    def to_dict(self) -> dict[str, Any]:
        return {
            "incidents": self.incidents,
            "true_incidents": self.true_incidents,
            "false_alerts": self.false_alerts,
            "labels": self.labels,
            "detected": self.detected,
            "precision": _json(self.precision),
            "recall": _json(self.recall),
            "f1": _json(self.f1),
            "ttd_median_minutes": _minutes(self.ttd_median),
            "ttd_p90_minutes": _minutes(self.ttd_p90),
            "alerts_per_week": _json(self.alerts_per_week),
            "negatives": self.negatives,
            "negatives_alerted": self.negatives_alerted,
        }


@dataclass(frozen=True)
class SettingResult:
    """One sensitivity setting: overall and per-metric scores."""

    threshold: float
    overall: Score
    per_metric: Mapping[str, Score]

    def to_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "overall": self.overall.to_dict(),
            "per_metric": {name: score.to_dict() for name, score in self.per_metric.items()},
        }


@dataclass(frozen=True)
class Recommendation:
    """The recommended threshold and why (``met`` is False when no setting meets the budget)."""

    threshold: float
    rule: str
    reason: str
    met: bool = True


@dataclass(frozen=True)
class Backtest:
    """A whole backtest: the replay range, the sweep and the recommendation."""

    start: datetime
    end: datetime
    metrics: tuple[str, ...]
    series: int
    refits: int
    labels: tuple[Label, ...]
    settings: tuple[SettingResult, ...]
    recommendation: Recommendation
    configured: Mapping[str, float]
    errors: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def weeks(self) -> float:
        return (self.end - self.start) / timedelta(days=7)

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": _iso(self.start),
            "end": _iso(self.end),
            "weeks": round(self.weeks, 3),
            "metrics": list(self.metrics),
            "series": self.series,
            "refits": self.refits,
            "labels": [
                {
                    "metric": lb.metric,
                    "region": lb.region,
                    "start": _iso(lb.start),
                    "end": _iso(lb.end),
                    "should_alert": lb.should_alert,
                    "name": lb.name,
                }
                for lb in self.labels
            ],
            "configured_thresholds": dict(self.configured),
            "settings": [s.to_dict() for s in self.settings],
            "recommendation": {
                "threshold": self.recommendation.threshold,
                "rule": self.recommendation.rule,
                "reason": self.recommendation.reason,
                "met": self.recommendation.met,
            },
            "errors": list(self.errors),
            "notes": list(self.notes),
        }


# -- labels --------------------------------------------------------------------------------------------------
def load_labels(spec: str, engine: sa.Engine | None = None) -> list[Label]:
    """Labelled incidents from a CSV path (``metric, region, start, end``) or a table of ``engine``.

    A table must have those columns; a ``should_alert`` column (the demo's ``demo_incidents``) is honoured,
    and ``incident`` names the rows.

    Raises:
        BacktestError: the file or table is missing, a column is missing, or a time does not parse.
    """
    path = Path(spec)
    if path.suffix.lower() == ".csv" or path.exists():
        if not path.exists():
            raise BacktestError(
                f"labels file {spec!r} does not exist; give a CSV with columns "
                f"{', '.join(LABEL_COLUMNS)} or a table name"
            )
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        fields = set(rows[0]) if rows else set()
        where = f"labels file {spec}"
    else:
        if engine is None:
            raise BacktestError(f"labels {spec!r}: not a file, and no database to read a table from")
        try:
            table = sa.Table(spec, sa.MetaData(), autoload_with=engine)
        except sa.exc.NoSuchTableError:
            known = sa.inspect(engine).get_table_names()
            raise BacktestError(
                f"labels {spec!r} is neither a CSV file nor a table; tables: {', '.join(known) or 'none'}"
            ) from None
        with engine.connect() as conn:
            rows = [dict(r) for r in conn.execute(sa.select(table)).mappings()]
        fields = set(table.c.keys())
        where = f"labels table {spec}"
    missing = (
        [c for c in LABEL_COLUMNS if c not in fields] if rows or where.startswith("labels table") else []
    )
    if missing:
        raise BacktestError(
            f"{where}: missing column(s) {', '.join(missing)}; need {', '.join(LABEL_COLUMNS)}"
        )
    labels = []
    for number, row in enumerate(rows, start=1):
        try:
            start, end = _utc(row["start"]), _utc(row["end"])
        except (ValueError, TypeError) as exc:
            raise BacktestError(f"{where} row {number}: bad time ({exc}); use ISO 8601 UTC") from None
        alert = row.get("should_alert", True)
        should = (
            alert if isinstance(alert, bool) else str(alert).strip().lower() not in ("0", "false", "no", "")
        )
        labels.append(
            Label(
                str(row["metric"]),
                str(row["region"]),
                start,
                end,
                bool(should),
                str(row.get("incident") or row.get("name") or ""),
            )
        )
    return labels


def false_positive_labels(false_positives: Iterable[FalsePositive]) -> list[Label]:
    """Labelled negatives from the buckets people marked "not an incident" (``[start, end)`` per member)."""
    return [
        Label(fp.metric, fp.region, fp.start, fp.end, False, f"false positive {fp.incident_id}")
        for fp in false_positives
    ]


# -- stage 1: scores -----------------------------------------------------------------------------------------
def score_series(task: SeriesTask) -> SeriesScores:
    """Replay one series (runs in a worker process); see the module docstring, stage 1."""
    metric, config = task.metric, task.config
    refit = pd.Timedelta(config.scheduler.refit_every)
    span = pd.Timedelta(metric.history)
    frame = task.frame
    start, end = pd.Timestamp(task.start), pd.Timestamp(task.end)
    parts: dict[float, list[pd.DataFrame]] = {t: [] for t in task.thresholds}
    errors: list[str] = []
    if metric.detector == "streaming":  # fitted once, then advanced over the whole range, as the tick does
        swept = [post_rules(metric, threshold=t) for t in task.thresholds]
        try:
            items = stream_series(config, metric, task.series, frame, start, end, swept)
        except (DetectorError, ValueError) as exc:
            errors.append(f"{metric.name}/{task.series} at {_iso(start)}: {exc}")
            items = []
        decided = {t: item.decisions for t, item in zip(task.thresholds, items, strict=True)}
        empty = {t: pd.DataFrame() for t in task.thresholds}
        return SeriesScores(metric.name, task.series, decided or empty, int(bool(items)), tuple(errors))
    refits = 0
    moment = start
    while moment < end:
        until = min(moment + refit, end)
        training = frame[(frame.index >= moment - span) & (frame.index < moment)]
        try:
            model = fit_series(config, metric, task.series, training)
        except (DetectorError, ValueError) as exc:
            errors.append(f"{metric.name}/{task.series} at {_iso(moment)}: {exc}")
            moment = until
            continue
        refits += 1
        for threshold in task.thresholds:
            rules = post_rules(metric, threshold=threshold)
            item = series_decisions(config, metric, task.series, model, frame, moment, until, rules=rules)
            parts[threshold].append(item.decisions)
        moment = until
    decisions = {t: pd.concat(frames) if frames else pd.DataFrame() for t, frames in parts.items()}
    return SeriesScores(metric.name, task.series, decisions, refits, tuple(errors))


def score_history(
    config: Config,
    source: MetricSource,
    metrics: Sequence[Metric],
    start: datetime,
    end: datetime,
    *,
    thresholds: Sequence[float],
    executor: ChunkExecutor | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[SeriesScores], list[str]]:
    """Stage 1 for every series of ``metrics`` over ``[start, end)``.

    Args:
        thresholds: The sweep: the decisions are made once per threshold.
        executor: Where to run :func:`score_series` (``None``: in this process), see :func:`executor_for`.
        progress: Called with (done, total) after each series.

    Returns:
        The scored series, and data problems / fetch failures as lines.
    """
    tasks: list[SeriesTask] = []
    problems: list[str] = []
    for metric in metrics:
        span = pd.Timedelta(metric.history)
        step = metric.granularity
        lo = floor_time(pd.Timestamp(start) - span - LEVEL_SHIFT_CONTEXT * pd.Timedelta(step), step)
        result = source.fetch(metric, lo.to_pydatetime(), end)
        problems += [str(p) for p in result.problems]
        for series, tidy in result.frame.groupby("series", sort=True):
            frame = series_frame(metric, tidy)
            tasks.append(SeriesTask(metric, config, str(series), frame, start, end, tuple(thresholds)))
    done: list[SeriesScores] = []
    if progress is not None:
        progress(0, len(tasks))
    runner = executor if executor is not None else InlineExecutor()
    for chunk in runner.map_chunks(score_chunk, tasks, chunk_size=1):
        for item in chunk:
            done.append(item)
            if progress is not None:
                progress(len(done), len(tasks))
    done.sort(key=lambda s: (s.metric, s.series))
    return done, problems


def score_chunk(tasks: list[SeriesTask]) -> list[SeriesScores]:
    """:func:`score_series` over a chunk (the unit :mod:`monitor.pipeline.executor` ships to a worker)."""
    return [score_series(task) for task in tasks]


# -- stage 2: incidents and scores ---------------------------------------------------------------------------
@dataclass
class _Opened:
    """An incident the replay opened: when, and which (metric, region, bucket) signals joined it."""

    id: str
    opened_at: datetime
    members: list[tuple[str, str, pd.Timestamp]] = field(default_factory=list)


def replay_incidents(
    flagged: Mapping[tuple[str, str], pd.DataFrame], step: timedelta, resolve_after: int
) -> list[_Opened]:
    """Replay decisions through the daemon's signals and grouping, one evaluation per bucket in order."""
    by_bucket: dict[pd.Timestamp, list[AlertSignal]] = {}
    for (metric, region), frame in flagged.items():
        if frame.empty:
            continue
        item = SeriesDecisions(region, frame, frame.iloc[:0], len(frame), 0, int(frame["flag"].sum()))
        for signal in series_signals(metric, item, charts=False):
            by_bucket.setdefault(pd.Timestamp(signal.end), []).append(signal)
    if not by_bucket:
        return []
    grouping = GroupingConfig(resolve_after_clean=resolve_after)
    buckets = pd.date_range(
        min(by_bucket), max(by_bucket) + resolve_after * pd.Timedelta(step), freq=pd.Timedelta(step)
    )
    active: list[Incident] = []
    opened: dict[str, _Opened] = {}
    for bucket in buckets:
        signals = by_bucket.get(bucket, [])
        if not signals and not active:
            continue
        now = (bucket + pd.Timedelta(step)).to_pydatetime()
        result = group_signals(active, signals, now, config=grouping)
        active = [change.incident for change in result.changes if change.incident.active]
        for change in result.changes:
            incident = change.incident
            if incident.id not in opened:
                opened[incident.id] = _Opened(incident.id, incident.opened_at)
            for member in incident.signals:
                if member.end == bucket:
                    opened[incident.id].members.append((member.metric, member.region, bucket))
    return sorted(opened.values(), key=lambda o: (o.opened_at, o.id))


def evaluate_setting(
    threshold: float,
    scored: Sequence[SeriesScores],
    metrics: Sequence[Metric],
    labels: Sequence[Label],
    *,
    start: datetime,
    end: datetime,
    resolve_after: int,
) -> SettingResult:
    """Stage 2 for one threshold (applied to every metric)."""
    by_name = {m.name: m for m in metrics}
    flagged = {(s.metric, s.series): s.decisions[threshold] for s in scored}
    step = min(m.granularity for m in metrics)
    incidents = replay_incidents(flagged, step, resolve_after)
    weeks = (pd.Timestamp(end) - pd.Timestamp(start)) / pd.Timedelta(days=7)
    known = [lb for lb in labels if lb.metric in by_name]
    wanted = [lb for lb in known if lb.should_alert]
    negatives = [lb for lb in known if not lb.should_alert]
    per_metric = {
        name: _score(
            incidents,
            flagged,
            [lb for lb in wanted if lb.metric == name],
            by_name,
            weeks,
            only=name,
            negatives=[lb for lb in negatives if lb.metric == name],
        )
        for name in by_name
    }
    overall = _score(incidents, flagged, wanted, by_name, weeks, negatives=negatives)
    return SettingResult(threshold, overall, per_metric)


def _score(
    incidents: Sequence[_Opened],
    flagged: Mapping[tuple[str, str], pd.DataFrame],
    labels: Sequence[Label],
    metrics: Mapping[str, Metric],
    weeks: float,
    *,
    only: str | None = None,
    negatives: Sequence[Label] = (),
) -> Score:
    def on_label(metric: str, region: str, bucket: pd.Timestamp) -> bool:
        grace = DETECT_GRACE_BUCKETS * pd.Timedelta(metrics[metric].granularity)
        return any(
            lb.metric == metric and lb.region == region and lb.start <= bucket < pd.Timestamp(lb.end) + grace
            for lb in labels
        )

    def alerted(negative: Label) -> bool:
        return any(
            m == negative.metric and r == negative.region and negative.start <= b < pd.Timestamp(negative.end)
            for i in incidents
            for m, r, b in i.members
        )

    counted = [i for i in incidents if only is None or any(m == only for m, _, _ in i.members)]
    true = sum(
        1 for i in counted if any(on_label(m, r, b) for m, r, b in i.members if only is None or m == only)
    )
    delays: list[timedelta] = []
    for label in labels:
        metric = metrics[label.metric]
        step = pd.Timedelta(metric.granularity)
        frame = flagged.get((label.metric, label.region))
        if frame is None or frame.empty:
            continue
        grace = DETECT_GRACE_BUCKETS * step
        hits = frame[
            frame["flag"] & (frame.index >= label.start) & (frame.index < pd.Timestamp(label.end) + grace)
        ]
        if len(hits):
            seen = hits.index[0] + step + pd.Timedelta(metric.completeness_delay)
            delays.append((seen - pd.Timestamp(label.start)).to_pytimedelta())
    seconds = np.array([d.total_seconds() for d in delays])
    return Score(
        incidents=len(counted),
        true_incidents=true,
        labels=len(labels),
        detected=len(delays),
        ttd_median=timedelta(seconds=float(np.median(seconds))) if len(seconds) else None,
        ttd_p90=timedelta(seconds=float(np.percentile(seconds, 90))) if len(seconds) else None,
        alerts_per_week=len(counted) / weeks if weeks > 0 else math.nan,
        negatives=len(negatives),
        negatives_alerted=sum(1 for negative in negatives if alerted(negative)),
    )


def sweep(
    scored: Sequence[SeriesScores],
    metrics: Sequence[Metric],
    labels: Sequence[Label],
    thresholds: Iterable[float],
    *,
    start: datetime,
    end: datetime,
    resolve_after: int,
) -> list[SettingResult]:
    """:func:`evaluate_setting` for each threshold, ascending."""
    return [
        evaluate_setting(t, scored, metrics, labels, start=start, end=end, resolve_after=resolve_after)
        for t in sorted(set(thresholds))
    ]


# -- stage 3: the recommendation ----------------------------------------------------------------------------
def recommend(
    settings: Sequence[SettingResult], *, budget: float | None = None, cost_ratio: float | None = None
) -> Recommendation:
    """Pick a threshold (pure): budget, else cost ratio, else best F1; ties go to the faster median detection,
    then to the higher threshold.

    Args:
        budget: Maximum alerts per week: the best recall within it (then precision, then fewer alerts).
        cost_ratio: Cost of a missed labelled incident over the cost of a false alert: the least
            ``cost_ratio * missed + false_alerts``.
    """
    if not settings:
        raise BacktestError("no sensitivity settings to choose from; give at least one threshold")
    if budget is not None and cost_ratio is not None:
        raise BacktestError("give either --budget or --cost-ratio, not both")

    def delay(setting: SettingResult) -> float:
        median = setting.overall.ttd_median
        return math.inf if median is None else median.total_seconds()

    def value(number: float) -> float:
        return -math.inf if math.isnan(number) else number

    if budget is not None:
        within = [s for s in settings if s.overall.alerts_per_week <= budget]
        if not within:
            quietest = min(settings, key=lambda s: (s.overall.alerts_per_week, -s.threshold))
            return Recommendation(
                quietest.threshold,
                "budget",
                f"no setting stays within {budget:g} alerts/week; the quietest, threshold "
                f"{quietest.threshold:g}, gives {quietest.overall.alerts_per_week:.1f}",
                met=False,
            )
        best = max(
            within,
            key=lambda s: (value(s.overall.recall), value(s.overall.precision), -delay(s), s.threshold),
        )
        return Recommendation(
            best.threshold,
            "budget",
            f"best recall ({_pct(best.overall.recall)}) within {budget:g} alerts/week "
            f"({best.overall.alerts_per_week:.1f}/week, precision {_pct(best.overall.precision)})",
        )
    if cost_ratio is not None:

        def cost(s: SettingResult) -> float:
            return cost_ratio * s.overall.missed + s.overall.false_alerts

        best = min(settings, key=lambda s: (cost(s), delay(s), -s.threshold))
        return Recommendation(
            best.threshold,
            "cost",
            f"least expected cost {cost(best):g} = {cost_ratio:g} x {best.overall.missed} missed + "
            f"{best.overall.false_alerts} false alerts",
        )
    best = max(settings, key=lambda s: (value(s.overall.f1), -delay(s), s.threshold))
    return Recommendation(
        best.threshold,
        "f1",
        f"best F1 {best.overall.f1:.2f} (precision {_pct(best.overall.precision)}, recall "
        f"{_pct(best.overall.recall)}, {best.overall.alerts_per_week:.1f} alerts/week)",
    )


# -- all together -------------------------------------------------------------------------------------------
def run_backtest(
    config: Config,
    source: MetricSource,
    labels: Sequence[Label],
    *,
    metrics: Sequence[str] | None = None,
    start: datetime | None = None,
    end: datetime,
    thresholds: Sequence[float] | None = None,
    budget: float | None = None,
    cost_ratio: float | None = None,
    executor: ChunkExecutor | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[Backtest, list[SeriesScores]]:
    """Score, sweep and recommend (see the module docstring).

    Args:
        metrics: Metric names (default: all configured).
        start: Replay start (default ``end - 14 days``).
        end: Replay end (exclusive); the caller passes the data end or ``--to``.
        thresholds: Sensitivity settings (default :data:`DEFAULT_SWEEP` plus the configured thresholds).

    Raises:
        BacktestError: unknown metric or an empty range.
    """
    names = [m.name for m in config.metrics]
    chosen = list(metrics or names)
    unknown = [n for n in chosen if n not in names]
    if unknown:
        raise BacktestError(f"unknown metric(s) {', '.join(unknown)}; configured metrics: {', '.join(names)}")
    specs = [config.metric(n) for n in chosen]
    step = min((m.granularity) for m in specs)
    end_at = floor_time(end, step)
    start_at = floor_time(start if start is not None else end_at - pd.Timedelta(DEFAULT_SPAN), step)
    if start_at >= end_at:
        raise BacktestError(
            f"empty replay range {_iso(start_at)}..{_iso(end_at)}: --from must be before --to"
        )
    configured = {m.name: float(m.threshold) for m in specs}
    sweep_values = sorted(set(thresholds or DEFAULT_SWEEP) | set(configured.values()))
    scored, problems = score_history(
        config,
        source,
        specs,
        start_at.to_pydatetime(),
        end_at.to_pydatetime(),
        thresholds=sweep_values,
        executor=executor,
        progress=progress,
    )
    in_range = tuple(
        lb for lb in labels if lb.metric in chosen and lb.start < end_at.to_pydatetime() and lb.end > start_at
    )
    settings = sweep(
        scored,
        specs,
        in_range,
        sweep_values,
        start=start_at.to_pydatetime(),
        end=end_at.to_pydatetime(),
        resolve_after=config.alerts.resolve_after,
    )
    notes = []
    if not any(lb.should_alert for lb in in_range):
        notes.append(
            "no labelled incident falls in the replay range: recall is undefined, precision counts "
            "every alert as false"
        )
    negatives = [lb for lb in in_range if not lb.should_alert]
    chosen_setting = recommend(settings, budget=budget, cost_ratio=cost_ratio)
    if negatives:
        picked = next(s for s in settings if s.threshold == chosen_setting.threshold)
        notes.append(
            f"{len(negatives)} labelled negative(s) (should_alert = false, or marked not an incident in "
            f"Slack); threshold {picked.threshold:g} still alerts on {picked.overall.negatives_alerted}"
        )
    result = Backtest(
        start=start_at.to_pydatetime(),
        end=end_at.to_pydatetime(),
        metrics=tuple(chosen),
        series=len(scored),
        refits=sum(s.refits for s in scored),
        labels=in_range,
        settings=tuple(settings),
        recommendation=chosen_setting,
        configured=configured,
        errors=tuple(problems) + tuple(e for s in scored for e in s.errors),
        notes=tuple(notes),
    )
    return result, scored


@contextmanager
def executor_for(config: Config, *, workers: int | None = None) -> Iterator[tuple[ChunkExecutor, str]]:
    """The configured executor (closed on exit) and a line saying which it is.

    A Dask executor that cannot start (``distributed`` not installed, scheduler unreachable) falls back to
    the local process pool; the line says why. ``workers=1`` scores in this process.
    """
    fallback = ""
    try:
        executor = make_executor(config.executor, workers=workers)
    except ConfigError as exc:
        if config.executor.type != "dask":
            raise
        fallback = f"{'; '.join(exc.problems)}; using the local process pool instead"
        executor = make_executor(
            ExecutorConfig(type="local", workers=config.executor.workers), workers=workers
        )
    if isinstance(executor, DaskExecutor):
        note = f"Dask scheduler {config.executor.address} ({executor.workers} threads)"
    elif isinstance(executor, LocalExecutor):
        note = f"local pool of {executor.workers} processes"
    else:
        note = "scoring in this process"
    with executor:
        yield executor, "; ".join(filter(None, [fallback, note]))


# -- helpers -------------------------------------------------------------------------------------------------
def _utc(value: Any) -> datetime:
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.to_pydatetime()


def _iso(moment: datetime | pd.Timestamp | None) -> str | None:
    if moment is None:
        return None
    return pd.Timestamp(moment).tz_convert("UTC").strftime("%Y-%m-%dT%H:%MZ")


def _json(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 6)


def _minutes(value: timedelta | None) -> float | None:
    return None if value is None else round(value.total_seconds() / 60.0, 1)


def _pct(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.0%}"
