"""The one scoring path: score and decide a batch of series over a window, vectorised.

Every caller that turns data into decisions goes through :func:`score_and_decide`: the daemon's tick (via
:class:`MetricScorer`), ``livewatch investigate``, the backtest and the scale benchmark. A single series is a
batch of one, so what ``investigate`` and ``backtest`` report is, by construction, what a tick decides.

:func:`score_and_decide` takes a (series x time) grid whose first :data:`LEVEL_SHIFT_CONTEXT` columns are the
buckets before the window (NaN where a series had no row) and, for every series, its
:class:`~detectors.stack.CompiledStack`. It scores the whole grid in numpy
(:func:`detectors.stack.score_compiled`), applies the post-rules to the window
(:func:`detectors.postrules.evaluate_batch`), confirms level shifts with the CUSUM over each bucket's own
trailing context (:func:`detectors.postrules.confirm_level_shifts`) and unflags small effects on holidays
the model never saw (:func:`detectors.postrules.holiday_floor`).

:class:`MetricScorer` is the tick's use of it for one metric: plan the window (:mod:`monitor.pipeline.plan`),
read only the buckets it does not hold yet, fit whatever has no fresh model (through the executor, saved
and cached: :mod:`monitor.pipeline.models`), then score every series in groups that share a window start.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import structlog

from detectors.base import SCORE_COLUMNS
from detectors.errors import DetectorError
from detectors.postrules import (
    LEVEL_SHIFT_CONTEXT,
    PostRules,
    confirm_level_shifts,
    evaluate_batch,
    holiday_floor,
)
from detectors.stack import CompiledStack, StackScores, score_compiled
from monitor.config import Config, Metric
from monitor.pipeline.executor import ChunkExecutor, chunked
from monitor.pipeline.models import (
    DetectorState,
    FitOutcome,
    ModelCache,
    StoredModel,
    StreamCache,
    fit_chunk,
    fit_models,
    fit_task,
    is_fresh,
)
from monitor.pipeline.plan import MetricPlan, plan_metric
from monitor.pipeline.refit import training_exclusions
from monitor.pipeline.spec import post_rules
from monitor.source import DataProblem, MetricSource
from monitor.store import SqlStore

if TYPE_CHECKING:  # the streaming module imports scipy: only metrics that use it pay for it
    from detectors.streaming import StreamingDetector

__all__ = [
    "LEVEL_SHIFT_CONTEXT",
    "MetricBatch",
    "MetricScorer",
    "SeriesDecisions",
    "SeriesGrid",
    "score_and_decide",
    "series_grid",
    "stream_and_decide",
    "stream_series",
]

log = structlog.get_logger(__name__)

_STAMP = pd.DatetimeTZDtype("us", "UTC")
#: Rows per source query when the scorer reads a long range (cold start, catch-up).
FETCH_ROWS = 200_000


@dataclass(frozen=True)
class SeriesDecisions:
    """The decisions of one series over one window.

    Attributes:
        series: Series name.
        decisions: Per window bucket: the score columns, ``volume``, ``flag``, ``reason`` and
            ``shift_start`` (the estimated start of a confirmed level shift, else NaT).
        context: Scores of the present buckets before the window (charts, level-shift explanations).
        scored: Buckets scored.
        missing: Buckets that never arrived (scored as missing, never as dips).
        flagged: Buckets flagged.
    """

    series: str
    decisions: pd.DataFrame
    context: pd.DataFrame
    scored: int
    missing: int
    flagged: int

    @property
    def last_bucket(self) -> pd.Timestamp:
        return pd.Timestamp(self.decisions.index[-1])


@dataclass(frozen=True)
class SeriesGrid:
    """Values, volumes and presence (the source returned the row) of series on one grid; (series, time)."""

    grid: pd.DatetimeIndex
    values: np.ndarray
    volumes: np.ndarray
    present: np.ndarray


def series_grid(rows: pd.DataFrame, series: Sequence[str], grid: pd.DatetimeIndex) -> SeriesGrid:
    """Pivot present rows (``ts, series, value, volume``) onto ``grid``; absent rows are NaN."""
    row_of = pd.Index(series).get_indexer(pd.Index(rows["series"]))
    column = grid.get_indexer(pd.DatetimeIndex(rows["ts"]))
    keep = (row_of >= 0) & (column >= 0)
    r, c = row_of[keep], column[keep]
    values = np.full((len(series), len(grid)), np.nan)
    volumes = np.full((len(series), len(grid)), np.nan)
    present = np.zeros((len(series), len(grid)), dtype=bool)
    values[r, c] = rows["value"].to_numpy(dtype=float)[keep]
    volumes[r, c] = rows["volume"].to_numpy(dtype=float)[keep]
    present[r, c] = True
    return SeriesGrid(grid, values, volumes, present)


def score_and_decide(
    metric: Metric,
    rules: PostRules,
    series: Sequence[str],
    models: Sequence[CompiledStack],
    data: SeriesGrid,
    *,
    countries: Mapping[str, str | None],
    trained_on: pd.DatetimeIndex,
    full_context: bool = False,
) -> list[SeriesDecisions]:
    """Score and decide ``series`` over the window of ``data`` (see the module docstring).

    Args:
        metric: The metric (its kind picks the volume the noise floors compare with).
        rules: The post-rules (threshold, direction, noise floors, suppression).
        series: Series names, one per row of ``data``.
        models: The compiled model of each series.
        data: The grid: :data:`LEVEL_SHIFT_CONTEXT` buckets of context, then the window.
        countries: Holiday country per series (``None``: no holidays).
        trained_on: The buckets the models were trained on (holidays seen in training), for models that
            do not record their training span.
        full_context: Return the context scores of every series, not only of flagged ones.
    """
    width = LEVEL_SHIFT_CONTEXT
    if len(data.grid) <= width:
        raise ValueError(f"{metric.name}: the grid needs {width} context buckets and a window")
    scores = score_compiled(models, data.grid, data.values, data.volumes)
    return _decide(
        metric,
        rules,
        series,
        scores,
        data,
        context=width,
        holidays=lambda row: (countries.get(series[row]), models[row].trained_days()),
        trained_on=trained_on,
        full_context=full_context,
    )


def stream_and_decide(
    metric: Metric,
    rules: PostRules,
    series: Sequence[str],
    detectors: Sequence[StreamingDetector],
    data: SeriesGrid,
) -> list[SeriesDecisions]:
    """Score ``series`` over the whole grid of ``data`` with streaming detectors, advance them, and decide.

    Each detector's state must end just before the grid (it scores only new points); it is advanced over
    the grid (:meth:`~detectors.streaming.StreamingDetector.update`), missing buckets included as NaN, so
    its state ends at the grid's last bucket, the series' new watermark. The decisions are the post-rules
    of :func:`score_and_decide`; the CUSUM and the holiday floor are the stack's rules (they read its
    seasonal forecast) and do not apply: the streaming scorer has its own short-mean and likelihood
    features for level shifts.
    """
    return _decide(metric, rules, series, _stream(detectors, data), data, context=0, holidays=None)


def stream_series(
    config: Config,
    metric: Metric,
    series: str,
    frame: pd.DataFrame,
    start: pd.Timestamp,
    end: pd.Timestamp,
    rules: Sequence[PostRules],
) -> list[SeriesDecisions]:
    """A ``streaming`` metric's decisions of one series over ``[start, end)``, one per ``rules``, as a tick
    makes them from a state fitted at ``start``: fitted on the series' rows of ``frame`` (``value``,
    ``volume``; UTC index) before ``start``, then advanced over the window (``investigate``, the backtest).

    Raises:
        DetectorError: no history before ``start``, or the fit failed.
    """
    from detectors.streaming import StreamingDetector

    task = fit_task(config, metric, series, frame, start)
    if task is None:
        raise DetectorError(f"{metric.name}/{series}: no history before {start:%Y-%m-%d %H:%M} UTC to fit on")
    outcome = fit_chunk([task])[0]
    detector = StreamingDetector.from_json(outcome.state) if outcome.state is not None else None
    if not isinstance(detector, StreamingDetector):
        raise DetectorError(f"{metric.name}/{series}: {outcome.error}")
    grid = pd.date_range(start, end, freq=pd.Timedelta(metric.granularity), inclusive="left", name="ts")
    rows = pd.DataFrame(
        {"ts": frame.index, "series": series, "value": frame["value"].to_numpy(), "volume": frame["volume"]}
    )
    data = series_grid(rows, [series], grid)
    scores = _stream([detector], data)
    return [_decide(metric, r, [series], scores, data, context=0, holidays=None)[0] for r in rules]


def _stream(detectors: Sequence[StreamingDetector], data: SeriesGrid) -> StackScores:
    """Score every row of ``data`` with its detector and advance the detector over it."""
    shape = data.values.shape
    arrays = {name: np.full(shape, np.nan) for name in ("observed", "expected", "lower", "upper", "score")}
    for row, detector in enumerate(detectors):
        frame = pd.DataFrame({"value": data.values[row], "volume": data.volumes[row]}, index=data.grid)
        scored = detector.score(frame)
        detector.update(frame)  # reuses the state score() just stepped through
        for name, values in arrays.items():
            values[row] = scored[name].to_numpy(dtype=float)
    return StackScores(sigma=np.full(shape, np.nan), **arrays)


def _decide(
    metric: Metric,
    rules: PostRules,
    series: Sequence[str],
    scores: StackScores,
    data: SeriesGrid,
    *,
    context: int,
    holidays: Callable[[int], tuple[str | None, pd.DatetimeIndex]] | None,
    trained_on: pd.DatetimeIndex | None = None,
    full_context: bool = False,
) -> list[SeriesDecisions]:
    """Decide the window of a scored grid (its first ``context`` buckets are context): post-rules, CUSUM
    level shifts (when there is context) and the holiday floor (``holidays(row) -> (country, trained
    days)``, when given)."""
    width = context
    window = slice(width, None)
    index = pd.DatetimeIndex(data.grid[window], name="ts")
    # Noise floors compare with the denominator of a ratio and the expected count of a count.
    volume = data.volumes[:, window] if metric.kind == "ratio" else scores.expected[:, window]
    flags, reasons = evaluate_batch(
        scores.observed[:, window], scores.expected[:, window], scores.score[:, window], volume, rules, index
    )
    span, count = len(index), len(series)
    shift_start = np.full(count * span, np.datetime64("NaT", "us"))
    if width:
        # The CUSUM reads context rows only where the source returned them; window rows are always read.
        trail = np.where(data.present | (np.arange(len(data.grid)) >= width)[None, :], scores.score, np.nan)
        full_volume = data.volumes if metric.kind == "ratio" else scores.expected  # the noise floors' volume
        shifts = confirm_level_shifts(
            scores.observed, scores.expected, trail, rules, context=width, volume=full_volume
        )
        confirmed = shifts.confirmed.ravel()
        if confirmed.any():
            starts = data.grid.tz_convert("UTC").tz_localize(None).to_numpy().astype("datetime64[us]")
            shift_start[confirmed] = starts[shifts.start.ravel()[confirmed]]
            reasons = reasons.ravel().astype(object)
            reasons[confirmed] = [
                f"level shift confirmed by CUSUM ({e:+.0%} since start)"
                for e in shifts.effect.ravel()[confirmed]
            ]
            flags = flags | shifts.confirmed
            reasons = reasons.reshape(count, span)
    # One frame for the whole batch, sliced per series: microseconds per series, not a frame each.
    table = pd.DataFrame(
        {
            "observed": scores.observed[:, window].ravel(),
            "expected": scores.expected[:, window].ravel(),
            "lower": scores.lower[:, window].ravel(),
            "upper": scores.upper[:, window].ravel(),
            "score": scores.score[:, window].ravel(),
            "volume": volume.ravel(),
            "flag": flags.ravel(),
            "reason": pd.array(reasons.ravel().astype(str), dtype="string"),
            "shift_start": pd.array(shift_start, dtype=_STAMP),
        },
        index=pd.DatetimeIndex(np.tile(index.to_numpy(), count), name="ts"),
    )
    missing = np.isnan(data.values[:, window]).sum(axis=1)
    no_context = pd.DataFrame(  # shared, read-only
        {c: pd.Series(dtype=float) for c in SCORE_COLUMNS}, index=pd.DatetimeIndex([], tz="UTC", name="ts")
    )
    out: list[SeriesDecisions] = []
    for row, name in enumerate(series):
        decisions = table.iloc[row * span : (row + 1) * span]
        flagged = int(flags[row].sum())
        if flagged and holidays is not None:
            country, days = holidays(row)
            fallback = trained_on if trained_on is not None else pd.DatetimeIndex([])
            decisions = holiday_floor(decisions, country, days if len(days) else fallback)
            flagged = int(decisions["flag"].sum())
        frame = no_context
        if width and (flagged or full_context):
            keep = np.flatnonzero(data.present[row, :width])
            frame = pd.DataFrame(
                {column: getattr(scores, column)[row, keep] for column in SCORE_COLUMNS},
                index=pd.DatetimeIndex(data.grid[keep], name="ts"),
            )
        out.append(SeriesDecisions(name, decisions, frame, span, int(missing[row]), flagged))
    return out


# -- the tick's scorer ---------------------------------------------------------------------------------------
@dataclass
class MetricBatch:
    """One tick of one metric: decisions per series, fits, errors and data problems.

    Attributes:
        plan: The window plan.
        scored: Decisions of every series that had buckets to score.
        refitted: Series fitted in this tick (no fresh stored model).
        errors: Series that could not be scored, with the reason.
        problems: Data problems the source reported.
        model_errors: Stored models that could not be read (they were refitted).
        states: The advanced state (JSON) of each streaming series, saved with its watermark.
    """

    plan: MetricPlan
    scored: list[SeriesDecisions] = field(default_factory=list)
    refitted: set[str] = field(default_factory=set)
    errors: dict[str, str] = field(default_factory=dict)
    problems: list[DataProblem] = field(default_factory=list)
    model_errors: dict[str, str] = field(default_factory=dict)
    states: dict[str, DetectorState] = field(default_factory=dict)


class _TrailCache:
    """The last buckets of each metric (present rows: ``ts``, ``series``, ``value``, ``volume``)."""

    def __init__(self) -> None:
        self._frames: dict[str, tuple[pd.Timestamp, pd.Timestamp, pd.DataFrame]] = {}

    def rows(
        self, source: MetricSource, metric: Metric, lo: pd.Timestamp, hi: pd.Timestamp, series: int
    ) -> tuple[pd.DataFrame, list[DataProblem]]:
        """Rows with ``lo <= ts < hi``, fetching only what the cache does not hold.

        A long range (a cold start, a catch-up) is read in slices of about :data:`FETCH_ROWS` rows for
        ``series`` series, so the driver's row objects never hold more than one slice.
        """
        cached = self._frames.get(metric.name)
        if cached is not None and cached[0] <= lo and lo <= cached[1] <= hi:
            fetch_from, kept = cached[1], cached[2]
            kept = kept[kept["ts"] >= lo]
        else:
            fetch_from, kept = lo, None
        problems: list[DataProblem] = []
        parts = [] if kept is None else [kept]
        step = pd.Timedelta(metric.granularity)
        span = step * max(1, FETCH_ROWS // max(series, 1))
        while fetch_from < hi:
            until = min(fetch_from + span, hi)
            result = source.fetch(metric, fetch_from.to_pydatetime(), until.to_pydatetime())
            problems += result.problems
            parts.append(_present_rows(metric, result.frame))
            fetch_from = until
        rows = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0] if parts else _empty_rows()
        self._frames[metric.name] = (lo, hi, rows)
        return rows, problems


def _present_rows(metric: Metric, tidy: pd.DataFrame) -> pd.DataFrame:
    volume = tidy["den"].astype(float) if metric.kind == "ratio" else np.nan
    return pd.DataFrame(
        {
            "ts": tidy["ts"],
            "series": tidy["series"].astype(str),
            "value": tidy["value"].astype(float),
            "volume": volume,
        }
    )


def _empty_rows() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ts": pd.Series(dtype=_STAMP),
            "series": pd.Series(dtype=str),
            "value": pd.Series(dtype=float),
            "volume": pd.Series(dtype=float),
        }
    )


class MetricScorer:
    """Scores every series of a metric per tick; see the module docstring.

    Args:
        config: The configuration (metrics, regions, scheduler cadence).
        store: State store (watermarks, models).
        source: Metric source.
        models: The compiled-model cache (shared with the refit job).
        executor: Where fits of series without a fresh model run (``None``: in this process).
        chunk_series: Series scored together; bounds the (series x time) arrays of a long catch-up.
        max_model_age: Models older than this are refitted before scoring (default ``refit_every``). A
            daemon whose refit job takes a while allows more (twice the cadence), so a refit in progress
            never makes ticks fit.
    """

    def __init__(
        self,
        config: Config,
        store: SqlStore,
        source: MetricSource,
        *,
        models: ModelCache,
        executor: ChunkExecutor | None = None,
        chunk_series: int = 2500,
        max_model_age: timedelta | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.source = source
        self.models = models
        self.executor = executor
        self.chunk_series = chunk_series
        self.max_model_age = max_model_age or config.scheduler.refit_every
        self.streams = StreamCache()
        self._trails = _TrailCache()

    def score_metric(self, metric: Metric, now: datetime, *, full_context: bool = False) -> MetricBatch:
        """Score every complete, unscored bucket of every series of ``metric`` at ``now``."""
        watermarks = {w.series: w.bucket for w in self.store.list_watermarks(metric.name)}
        plan = plan_metric(metric, now, watermarks, self.config.scheduler.max_catchup)
        batch = MetricBatch(plan)
        streaming = metric.detector == "streaming"
        models: dict[str, StoredModel] = {}
        if not streaming:
            models, batch.model_errors = self.models.sync(self.store, metric.name)
        for series, error in batch.model_errors.items():
            log.warning("stored model unreadable; refitting", metric=metric.name, series=series, error=error)
        step = plan.step
        lo = plan.first_start - LEVEL_SHIFT_CONTEXT * step
        rows, batch.problems = self._trails.rows(
            self.source, metric, lo, plan.end, max(len(models), len(watermarks))
        )
        known = set(rows["series"].unique()) | set(models) | set(watermarks)
        starts = {s: plan.start_of(s) for s in sorted(known) if plan.start_of(s) < plan.end}
        if not starts:
            return batch
        if streaming:
            self._stream(metric, now, starts, rows, batch)
            return batch
        models = self._fresh_models(metric, now, starts, models, batch)
        groups: dict[pd.Timestamp, list[str]] = {}
        for series, start in starts.items():
            if series in models:
                groups.setdefault(start, []).append(series)
        rules = post_rules(metric)
        countries = {s: self.config.regions.get(s) for s in starts}
        for start, group in sorted(groups.items()):
            grid = pd.date_range(
                start - LEVEL_SHIFT_CONTEXT * step, plan.end, freq=step, inclusive="left", name="ts"
            )
            trained_on = pd.date_range(
                start - pd.Timedelta(metric.history), start, freq=step, inclusive="left"
            )
            group_rows = rows
            if grid[0] < lo:  # a series joining later than the others: read its own span
                result = self.source.fetch(
                    metric, grid[0].to_pydatetime(), plan.end.to_pydatetime(), series=group
                )
                batch.problems += result.problems
                group_rows = _present_rows(metric, result.frame)
            for members in chunked(group, self.chunk_series):  # bounds the (series x time) arrays
                batch.scored += score_and_decide(
                    metric,
                    rules,
                    members,
                    [models[name].model for name in members],
                    series_grid(group_rows, members, grid),
                    countries=countries,
                    trained_on=trained_on,
                    full_context=full_context,
                )
        return batch

    def _stream(
        self,
        metric: Metric,
        now: datetime,
        starts: Mapping[str, pd.Timestamp],
        rows: pd.DataFrame,
        batch: MetricBatch,
    ) -> None:
        """Score a ``streaming`` metric: each detector from its stored state, advanced over its window."""
        ready, to_fit, batch.model_errors = self.streams.ready(self.store, metric, starts)
        if to_fit:
            outcomes, errors = self._fit(metric, now, to_fit)
            for outcome in outcomes:
                if outcome.state is None:
                    errors[outcome.series] = outcome.error or "fit failed"
                    continue
                ready[outcome.series] = self.streams.put(metric.name, outcome.series, outcome.state)
                batch.refitted.add(outcome.series)
            for series, error in errors.items():
                batch.errors[series] = error
                log.error("series failed", metric=metric.name, series=series, error=error)
        groups: dict[pd.Timestamp, list[str]] = {}
        for series in sorted(ready):
            groups.setdefault(starts[series], []).append(series)
        rules = post_rules(metric)
        step, end = pd.Timedelta(metric.granularity), batch.plan.end
        for start, group in sorted(groups.items()):
            grid = pd.date_range(start, end, freq=step, inclusive="left", name="ts")
            for members in chunked(group, self.chunk_series):
                detectors = [ready[name] for name in members]
                batch.scored += stream_and_decide(
                    metric, rules, members, detectors, series_grid(rows, members, grid)
                )
                for name, detector in zip(members, detectors, strict=True):
                    state = DetectorState(detector.name, detector.to_json(), detector.state_version)
                    batch.states[name] = state

    def _fit(
        self, metric: Metric, now: datetime, cutoffs: Mapping[str, pd.Timestamp]
    ) -> tuple[list[FitOutcome], dict[str, str]]:
        """Fit through the executor as the refit job does, with the same training exclusions."""
        left_out = training_exclusions(self.store, metric.name, now)
        return fit_models(self.config, self.source, metric, cutoffs, self.executor, left_out=left_out)

    def _fresh_models(
        self,
        metric: Metric,
        now: datetime,
        starts: Mapping[str, pd.Timestamp],
        models: Mapping[str, StoredModel],
        batch: MetricBatch,
    ) -> dict[str, StoredModel]:
        """``models`` plus fits of every series without a fresh one (trained before its window start)."""
        usable = dict(models)
        stale = {
            s: start
            for s, start in starts.items()
            if s not in models or not is_fresh(models[s].fitted_at, now, self.max_model_age)
        }
        if not stale:
            return usable
        outcomes, fetch_errors = self._fit(metric, now, stale)
        for outcome in outcomes:
            if outcome.state is None or outcome.model is None:
                fetch_errors[outcome.series] = outcome.error or "fit failed"
                continue
            self.models.save(self.store, outcome, now)
            usable[outcome.series] = StoredModel(now, outcome.model)
            batch.refitted.add(outcome.series)
        for series, error in fetch_errors.items():
            if series in usable:  # the old model keeps scoring until a fit succeeds
                log.warning(
                    "refit failed; scoring with the older model",
                    metric=metric.name,
                    series=series,
                    error=error,
                )
            else:
                batch.errors[series] = error
                log.error("series failed", metric=metric.name, series=series, error=error)
        return usable
