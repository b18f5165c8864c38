"""Fitted models: fit through an executor, store as JSON, keep compiled in memory, decide freshness.

* :func:`fit_models` trains a :class:`~detectors.stack.DetectorStack` per series on its history before a
  cutoff, streaming histories from the source a few hundred series at a time and fitting many series per
  executor task (:func:`fit_chunk`), so memory stays bounded for any number of series.
* :class:`ModelCache` keeps the :class:`~detectors.stack.CompiledStack` of every stored model, refreshed
  from the store only where ``fitted_at`` changed (cold start: every model once; steady state: none).
* :func:`is_fresh` is the freshness rule: a model fitted more than ``max_age`` ago is refitted.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import pandas as pd
import sqlalchemy as sa
import structlog

from detectors.errors import DetectorError, InsufficientDataError
from detectors.stack import CompiledStack, DetectorStack
from monitor.config import Config, DetectorName, Metric
from monitor.errors import SourceError
from monitor.pipeline.executor import ChunkExecutor, InlineExecutor, chunked
from monitor.pipeline.spec import DETECTOR_NAME, detector_params, series_frame
from monitor.source import MetricSource
from monitor.store import SqlStore, model_states

if TYPE_CHECKING:  # scipy comes with it: loaded only for metrics that use it
    from detectors.streaming import StreamingDetector

__all__ = [
    "DetectorState",
    "Exclusions",
    "FitOutcome",
    "FitTask",
    "ModelCache",
    "StoredModel",
    "StreamCache",
    "TrainingExclusions",
    "fit_chunk",
    "fit_models",
    "fit_task",
    "is_fresh",
    "training_reach",
]

log = structlog.get_logger(__name__)


def is_fresh(fitted_at: datetime, now: datetime, max_age: timedelta) -> bool:
    """Whether a model fitted at ``fitted_at`` may still score at ``now`` (the one freshness rule)."""
    return pd.Timestamp(fitted_at) > pd.Timestamp(now) - pd.Timedelta(max_age)


@dataclass(frozen=True)
class StoredModel:
    """A compiled model and when it was fitted."""

    fitted_at: datetime
    model: CompiledStack


@dataclass(frozen=True)
class DetectorState:
    """A detector's JSON state to store: ``text`` in layout ``version`` of ``detector`` (its name)."""

    detector: str
    text: str
    version: int


#: Training points to leave out of one series' fit: inclusive ``(start, end)`` UTC intervals.
Exclusions = tuple[tuple[datetime, datetime], ...]


@dataclass(frozen=True)
class TrainingExclusions:
    """What one metric's fits leave out, by series: ``always`` (buckets marked "not an incident") and
    ``held`` (open level shifts, left out only while enough history remains to fit on)."""

    always: Mapping[str, Exclusions] = field(default_factory=dict)
    held: Mapping[str, Exclusions] = field(default_factory=dict)


@dataclass(frozen=True)
class FitTask:
    """One series to fit: its training frame (``value``, ``volume``; UTC index), stack arguments, and the
    intervals left out of training: ``exclude`` always (buckets people marked "not an incident"), ``held``
    while enough history remains without them (open level shifts)."""

    metric: str
    series: str
    frame: pd.DataFrame
    params: dict[str, Any]
    exclude: Exclusions = ()
    detector: DetectorName = "stack"
    held: Exclusions = ()


@dataclass(frozen=True)
class FitOutcome:
    """A fitted series (``state`` JSON and, for a stack, its compiled model) or the error that stopped it."""

    metric: str
    series: str
    state: str | None
    model: CompiledStack | None
    error: str | None = None


def fit_chunk(tasks: list[FitTask]) -> list[FitOutcome]:
    """Executor task: fit the detector of each task; a series that fails does not stop the others.

    A series whose ``held`` intervals leave too little history is fitted without them: a model that has
    learnt a long shift beats no model at all.
    """
    outcomes = []
    for task in tasks:
        try:
            try:
                outcomes.append(_fit_one(task, task.exclude + task.held))
            except InsufficientDataError:
                if not task.held:
                    raise
                log.warning("open level shift kept in training", metric=task.metric, series=task.series)
                outcomes.append(_fit_one(task, task.exclude))
        except Exception as exc:  # one bad series must not stop the chunk
            outcomes.append(FitOutcome(task.metric, task.series, None, None, f"{type(exc).__name__}: {exc}"))
    return outcomes


def _fit_one(task: FitTask, exclude: Exclusions) -> FitOutcome:
    series_id, spans = f"{task.metric}/{task.series}", list(exclude) or None
    if task.detector == "streaming":
        from detectors.streaming import StreamingDetector

        stream = StreamingDetector(**task.params).fit(task.frame, series_id=series_id, exclude=spans)
        return FitOutcome(task.metric, task.series, stream.to_json(), None)
    stack = DetectorStack(**task.params).fit(task.frame, series_id=series_id, exclude=spans)
    return FitOutcome(task.metric, task.series, stack.to_json(), stack.compile())


def fit_task(
    config: Config,
    metric: Metric,
    series: str,
    frame: pd.DataFrame,
    cutoff: pd.Timestamp,
    *,
    reach: pd.Timedelta | None = None,
) -> FitTask | None:
    """The fit of one series on its rows of ``frame`` before ``cutoff``, over ``reach`` (default: the
    metric's ``history``) ending there (``None``: no rows there). A streaming detector gets every bucket up
    to the cutoff, missing ones as NaN: its state must end just before the first bucket it scores, and its
    seasonal lag counts buckets."""
    span = pd.Timedelta(metric.history) if reach is None else reach
    training = frame[(frame.index < cutoff) & (frame.index >= cutoff - span)]
    if training.empty:
        return None
    if metric.detector == "streaming":
        step = pd.Timedelta(metric.granularity)
        training = training.reindex(
            pd.date_range(training.index[0], cutoff, freq=step, inclusive="left", name="ts")
        )
    return FitTask(
        metric.name, series, training, detector_params(config, metric, series), detector=metric.detector
    )


def training_reach(history: pd.Timedelta, exclude: Exclusions, cutoff: pd.Timestamp) -> pd.Timedelta:
    """How far before ``cutoff`` a fit reads: ``history`` plus the time the ``exclude`` intervals leave
    out of ``[cutoff - history, cutoff)`` (overlaps once), at most twice ``history``. Pure.

    A model trained while a level shift of days is left out still learns from ``history`` of data, not
    from the few days before the shift (whose hours of the day have one or two values each).
    """
    begin = cutoff - history
    spans: list[tuple[pd.Timestamp, pd.Timestamp]] = []
    for start, end in sorted(exclude):
        lo, hi = max(pd.Timestamp(start), begin), min(pd.Timestamp(end), cutoff)
        if lo >= hi:
            continue
        if spans and lo <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(spans[-1][1], hi))
        else:
            spans.append((lo, hi))
    left_out = sum((hi - lo for lo, hi in spans), pd.Timedelta(0))
    return history + min(left_out, history)


def _fit_tasks(
    config: Config,
    source: MetricSource,
    metric: Metric,
    cutoffs: Mapping[str, pd.Timestamp],
    fetch_size: int,
    errors: dict[str, str],
    left_out: TrainingExclusions,
) -> Iterator[FitTask]:
    """Training frames: the rows before each series' cutoff, over the metric's ``history`` ending there and
    as much again as its exclusions leave out (:func:`training_reach`)."""
    span = pd.Timedelta(metric.history)
    exclude, held = left_out.always, left_out.held
    reach = {s: training_reach(span, exclude.get(s, ()) + held.get(s, ()), cutoffs[s]) for s in cutoffs}
    for group in chunked(sorted(cutoffs), fetch_size):
        lo = min(cutoffs[s] - reach[s] for s in group)
        hi = max(cutoffs[s] for s in group)
        try:
            result = source.fetch(metric, lo.to_pydatetime(), hi.to_pydatetime(), series=group)
        except SourceError as exc:  # one failing fetch must not stop the other series' fits
            for name in group:
                errors[name] = f"fetch failed: {exc}"
            continue
        found = set()
        for key, tidy in result.frame.groupby("series", sort=True):
            series = str(key)
            found.add(series)
            frame = series_frame(metric, tidy)
            task = fit_task(config, metric, series, frame, cutoffs[series], reach=reach[series])
            if task is None:
                errors[series] = f"no history before {cutoffs[series]:%Y-%m-%d %H:%M} UTC to fit on"
                continue
            yield replace(task, exclude=exclude.get(series, ()), held=held.get(series, ()))
        for series in set(group) - found:
            errors[series] = f"no history before {cutoffs[series]:%Y-%m-%d %H:%M} UTC to fit on"


def fit_models(
    config: Config,
    source: MetricSource,
    metric: Metric,
    cutoffs: Mapping[str, pd.Timestamp],
    executor: ChunkExecutor | None = None,
    *,
    chunk_size: int = 20,
    fetch_size: int = 400,
    left_out: TrainingExclusions | None = None,
) -> tuple[list[FitOutcome], dict[str, str]]:
    """Fit the detector of every series in ``cutoffs`` on its history before its cutoff (never after),
    leaving out each series' ``left_out.always`` intervals (inclusive, see
    :func:`detectors.validation.exclusion_mask`), and its ``left_out.held`` ones while enough history
    remains.

    Returns:
        The outcomes (fitted or failed), and series whose training data could not be read.
    """
    errors: dict[str, str] = {}
    runner = executor or InlineExecutor()
    outcomes: list[FitOutcome] = []
    tasks = _fit_tasks(config, source, metric, cutoffs, fetch_size, errors, left_out or TrainingExclusions())
    for chunk in runner.map_chunks(fit_chunk, tasks, chunk_size):
        outcomes += chunk
    return outcomes, errors


def _compile_chunk(rows: list[tuple[str, str, datetime]]) -> list[tuple[str, StoredModel | None, str]]:
    """Executor task: compile ``(series, state, fitted_at)`` rows; errors come back as text."""
    out: list[tuple[str, StoredModel | None, str]] = []
    for series, text, fitted_at in rows:
        try:
            out.append((series, StoredModel(fitted_at, DetectorStack.compile_state(json.loads(text))), ""))
        except (DetectorError, ValueError, KeyError, TypeError) as exc:
            out.append((series, None, f"{type(exc).__name__}: {exc}"))
    return out


class ModelCache:
    """Compiled models per ``(metric, series)``, refreshed from the store only where ``fitted_at`` changed.

    Thread-safe: the daemon's refit job (its own thread) puts models while scoring ticks sync.

    Args:
        executor: Where to compile many changed models at once (a cold start); ``None`` compiles inline.
        chunk_size: Models per compile task.
    """

    def __init__(self, *, executor: ChunkExecutor | None = None, chunk_size: int = 250) -> None:
        self.executor = executor
        self.chunk_size = chunk_size
        self._entries: dict[str, dict[str, StoredModel]] = {}
        self._lock = threading.RLock()

    def __len__(self) -> int:
        with self._lock:
            return sum(len(models) for models in self._entries.values())

    def put(self, metric: str, series: str, model: StoredModel) -> None:
        """Remember ``model`` (e.g. just fitted and saved)."""
        with self._lock:
            self._entries.setdefault(metric, {})[series] = model

    def get(self, metric: str, series: str) -> StoredModel | None:
        with self._lock:
            return self._entries.get(metric, {}).get(series)

    def sync(self, store: SqlStore, metric: str) -> tuple[dict[str, StoredModel], dict[str, str]]:
        """Bring the cache of ``metric`` in line with the store; returns its models and compile errors.

        Reads ``(series, fitted_at)`` of every stored stack, then the JSON of the new or refitted ones only.
        """
        table = model_states
        where = (table.c.metric == metric) & (table.c.detector == DETECTOR_NAME)
        with store.engine.connect() as connection:
            stamps = {
                str(row.series): row.fitted_at
                for row in connection.execute(sa.select(table.c.series, table.c.fitted_at).where(where))
            }
        with self._lock:
            cached = self._entries.setdefault(metric, {})
            for gone in set(cached) - set(stamps):
                del cached[gone]
            changed = sorted(s for s, at in stamps.items() if s not in cached or cached[s].fitted_at != at)
            errors: dict[str, str] = {}
            if changed:
                executor = self.executor or InlineExecutor()
                for results in executor.map_chunks(
                    _compile_chunk, _states(store, metric, changed), self.chunk_size
                ):
                    for series, model, error in results:
                        if model is None:
                            errors[series] = error
                            cached.pop(series, None)
                        else:
                            cached[series] = model
            return dict(cached), errors

    def save(self, store: SqlStore, outcome: FitOutcome, fitted_at: datetime) -> None:
        """Store a fitted outcome's JSON and remember its compiled model."""
        if outcome.state is None or outcome.model is None:
            raise ValueError(f"{outcome.metric}/{outcome.series}: cannot save a failed fit ({outcome.error})")
        store.save_model_state(
            outcome.metric,
            outcome.series,
            DETECTOR_NAME,
            outcome.state,
            version=DetectorStack.state_version,
            fitted_at=fitted_at,
        )
        self.put(outcome.metric, outcome.series, StoredModel(fitted_at, outcome.model))


def _states(store: SqlStore, metric: str, series: Sequence[str]) -> Iterator[tuple[str, str, datetime]]:
    table = model_states
    for group in chunked(series, 500):
        query = sa.select(table.c.series, table.c.state, table.c.fitted_at).where(
            (table.c.metric == metric) & (table.c.detector == DETECTOR_NAME) & table.c.series.in_(group)
        )
        with store.engine.connect() as connection:
            rows = connection.execute(query).all()
        for row in rows:
            yield str(row.series), str(row.state), row.fitted_at


class StreamCache:
    """Streaming detectors per ``(metric, series)``, each as of the last bucket it scored.

    A streaming detector learns from every bucket it scores, so its state is saved with the watermark (in
    the tick's transaction) and never refitted on a schedule. :meth:`ready` hands out the detectors whose
    state ends just before their series' next bucket: the cached one, else the stored one (after a restart,
    or when a failed tick left the cached one ahead of the store); series with neither are returned to fit.
    """

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, StreamingDetector]] = {}

    def ready(
        self, store: SqlStore, metric: Metric, starts: Mapping[str, pd.Timestamp]
    ) -> tuple[dict[str, StreamingDetector], dict[str, pd.Timestamp], dict[str, str]]:
        """Detectors that can score from each series' start; the series to fit (their start is the fit's
        cutoff); stored states that could not be read (those series are fitted again)."""
        from detectors.streaming import StreamingDetector

        step = pd.Timedelta(metric.granularity)
        cached = self._entries.setdefault(metric.name, {})
        ready: dict[str, StreamingDetector] = {}
        to_fit: dict[str, pd.Timestamp] = {}
        errors: dict[str, str] = {}
        for series, start in starts.items():
            detector = cached.get(series)
            if detector is None or detector.last_ts_ != start - step:
                stored = store.load_model_state(metric.name, series, "streaming")
                detector = None
                if stored is not None:
                    try:
                        loaded = StreamingDetector.from_json(stored.state)
                    except (DetectorError, ValueError, KeyError, TypeError) as exc:
                        errors[series] = f"{type(exc).__name__}: {exc}"
                    else:
                        detector = loaded if isinstance(loaded, StreamingDetector) else None
            if detector is not None and detector.last_ts_ == start - step:
                ready[series] = cached[series] = detector
            else:  # never fitted, or its state does not end where scoring resumes (a gap past max_catchup)
                cached.pop(series, None)
                to_fit[series] = start
        return ready, to_fit, errors

    def put(self, metric: str, series: str, state: str) -> StreamingDetector:
        """Remember the detector of a freshly fitted ``state`` (JSON); returns it."""
        from detectors.streaming import StreamingDetector

        detector = StreamingDetector.from_json(state)
        if not isinstance(detector, StreamingDetector):
            raise DetectorError(f"{metric}/{series}: the fitted state is not a streaming detector's")
        self._entries.setdefault(metric, {})[series] = detector
        return detector
