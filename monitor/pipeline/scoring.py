"""Fit once, score often, at scale: vectorised scoring of many series per tick and chunked refits.

**Scoring** (:class:`BatchScorer`). One tick of one metric scores every new bucket of every series at once
with numpy, from models fitted earlier and kept parsed in memory:

1. *Pull, incrementally.* One query per metric per tick returns the new buckets of all series; the
   :data:`CUSUM_CONTEXT_BUCKETS` buckets before them (the level-shift context) are kept in memory from the
   previous ticks (:class:`_TrailCache`), so the steady state reads only the buckets since the last tick.
2. *Models, parsed once.* :class:`ModelCache` keeps a :class:`CompiledModel` per series (Prophet's
   parameters as :class:`detectors.prophet.ProphetParams`, the robust baseline's slot tables, the band
   sigmas). Each tick it reads only ``(series, fitted_at)`` of the stored models and re-parses the JSON of
   those refitted since (:func:`compile_state` skips Prophet's history frames, ~40x faster than
   ``DetectorStack.from_json``); a refit run through :func:`refit_all` fills it directly.
3. *Score.* :func:`score_stack_batch` evaluates the :class:`~detectors.stack.DetectorStack` of every
   series on a (series x time) grid: Prophet's expectation from stored parameters
   (:func:`detectors.prophet.prophet_expected_batch`), the robust baseline by slot lookup, both made
   volume-aware (:mod:`detectors.volume`), combined per point by the smaller ``|score|``.
4. *Post-rules.* :func:`evaluate_batch` runs :mod:`detectors.postrules`' own steps on the flattened grid;
   the online CUSUM (:func:`detectors.online.online_cusum`) runs over context + window of all series at
   once, and only series where it confirms a shift (or that flag at all) go through the per-series
   :func:`monitor.pipeline.spec.level_shifts` / :func:`monitor.pipeline.spec.holiday_floor`, so their decisions are
   exactly those of the per-series path.

The output, per series, is the decision frame :meth:`monitor.pipeline.tick.Monitor._score_series` builds
(same columns, dtypes and values within 1e-9), ready for the alert stage. Series without a fresh stored
model (never fitted, or older than ``refit_every``) are returned as ``pending`` for the per-series path,
which fits inline.

**Refits** (:func:`refit_all`). Every series of every metric is refitted on its history up to its watermark
(series never scored: up to where their first tick will start), streamed in chunks: the history of a few
hundred series is fetched at a time (``source.fetch(..., series=...)``), fitted through a
:class:`monitor.pipeline.executor.ChunkExecutor` (process pool or Dask) many series per task, saved as JSON and
put in the :class:`ModelCache` as they come back, so memory stays bounded for any number of series.

Differences from the per-series path (documented, none affects decisions in steady state): the context of a
tick is cached rather than re-read, so a late revision of an already-scored bucket is not seen by the CUSUM;
a series with no stored model and no row in the context window is not listed; the holiday floor's "seen in
training" days are the metric's history span rather than the series' own rows.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import pandas as pd
import sqlalchemy as sa
import structlog

from detectors.base import SCORE_COLUMNS, interval_z
from detectors.errors import DetectorError, InvalidSeriesError
from detectors.online import online_cusum
from detectors.postrules import (
    FLAGGED,
    PostRules,
    k_of_n_step,
    noise_floor_step,
    suppression_step,
    threshold_step,
)
from detectors.prophet import ProphetParams, params_from_prophet, prophet_expected_batch
from detectors.robust import Season, slot_of
from detectors.stack import DetectorStack
from detectors.volume import MetricKind, combine_sigma, sampling_sigma
from monitor.config import Config, MetricConfig
from monitor.errors import SourceError
from monitor.pipeline.executor import ChunkExecutor, InlineExecutor, chunked
from monitor.pipeline.spec import (
    CUSUM_CONTEXT_BUCKETS,
    DETECTOR_NAME,
    holiday_floor,
    level_shifts,
    post_rules,
    series_frame,
    stack_params,
)
from monitor.source import DataProblem, MetricSource, floor_time
from monitor.store import SqlStore, model_states

__all__ = [
    "CUSUM_CONTEXT_BUCKETS",
    "BatchScorer",
    "CompiledModel",
    "FitOutcome",
    "FitTask",
    "MetricBatch",
    "ModelCache",
    "RefitSummary",
    "SeriesDecisions",
    "StackScores",
    "compile_stack",
    "compile_state",
    "evaluate_batch",
    "fit_chunk",
    "refit_all",
    "score_stack_batch",
]

log = structlog.get_logger(__name__)

#: How far back :func:`refit_all` looks for series that have never been scored.
DISCOVERY_SPAN = timedelta(days=1)
_STAMP = pd.DatetimeTZDtype("us", "UTC")
#: Rows per source query when the scorer reads a long range (cold start, catch-up).
FETCH_ROWS = 200_000


# -- compiled models ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CompiledModel:
    """What scoring needs of one fitted :class:`DetectorStack`, parsed once and kept in memory.

    Attributes:
        fitted_at: When the stored model was fitted (the cache key together with metric and series).
        kind: The stack's metric kind (volume-aware sigma).
        rate_per: Unit of ``rate`` metrics.
        z: The stack's band half-width in sigmas (used after the volume-aware rescoring).
        season: Slots of the robust baseline.
        robust_expected: Robust expectation per slot.
        robust_sigma: Robust sigma per slot.
        robust_z: The robust member's band half-width.
        prophet: Prophet's parameters, or ``None`` when the history was too short for Prophet.
        prophet_sigma: Prophet's residual sigma per hour of day (24 values), or ``None``.
        prophet_z: The Prophet member's band half-width.
    """

    fitted_at: datetime
    kind: MetricKind
    rate_per: float
    z: float
    season: Season
    robust_expected: np.ndarray
    robust_sigma: np.ndarray
    robust_z: float
    prophet: ProphetParams | None
    prophet_sigma: np.ndarray | None
    prophet_z: float


def compile_stack(stack: DetectorStack, fitted_at: datetime) -> CompiledModel:
    """The :class:`CompiledModel` of a fitted stack."""
    robust = stack.robust_
    prophet = stack.prophet_
    return CompiledModel(
        fitted_at=fitted_at,
        kind=stack.kind,
        rate_per=float(stack.rate_per),
        z=interval_z(stack.interval_width),
        season=robust.season_,
        robust_expected=robust.expected_.to_numpy(dtype=float),
        robust_sigma=robust.sigma_.to_numpy(dtype=float),
        robust_z=robust.z_,
        prophet=None if prophet is None else prophet.params_,
        prophet_sigma=None if prophet is None else np.asarray(prophet.sigma_by_hour_, dtype=float),
        prophet_z=interval_z(stack.interval_width) if prophet is None else prophet.z_,
    )


def _prophet_params_from_json(text: str) -> ProphetParams:
    """:func:`params_from_prophet` of a ``prophet.serialize.model_to_json`` text without rebuilding Prophet.

    ``model_from_json`` re-reads the training history and component frames, which scoring never uses;
    here only the attributes :func:`params_from_prophet` reads are restored, as ``model_from_dict`` does.
    """
    data = json.loads(text)
    names = data["train_holiday_names"]
    model = SimpleNamespace(
        growth=data["growth"],
        extra_regressors=OrderedDict(
            (k, data["extra_regressors"][1][k]) for k in data["extra_regressors"][0]
        ),
        holidays=data["holidays"],
        params={key: np.array(value) for key, value in data["params"].items()},
        seasonalities=OrderedDict((k, data["seasonalities"][1][k]) for k in data["seasonalities"][0]),
        train_holiday_names=None if names is None else pd.Series(json.loads(names)["data"], dtype=object),
        start=pd.Timestamp.fromtimestamp(data["start"], tz="UTC").tz_localize(None),
        t_scale=pd.Timedelta(seconds=data["t_scale"]),
        y_scale=data["y_scale"],
        y_min=data.get("y_min", 0.0),
        scaling=data.get("scaling", "absmax"),
        changepoints_t=np.array(data["changepoints_t"]),
        country_holidays=data["country_holidays"],
        holidays_mode=data.get("holidays_mode", data["seasonality_mode"]),
    )
    return params_from_prophet(cast(Any, model))


def compile_state(text: str, fitted_at: datetime) -> CompiledModel:
    """The :class:`CompiledModel` of a stored ``DetectorStack.to_json()`` text.

    Raises:
        InvalidSeriesError: the text is not a stack state of the supported version (refit it).
        DetectorError: the Prophet member uses features the numpy evaluator does not reproduce.
    """
    payload = json.loads(text)
    series_id = payload.get("series_id")
    if payload.get("detector") != DetectorStack.name or payload.get("version") != DetectorStack.state_version:
        raise InvalidSeriesError(
            f"series {series_id!r}: stored model is {payload.get('detector')!r} version "
            f"{payload.get('version')}, expected {DetectorStack.name!r} version "
            f"{DetectorStack.state_version}; refit it"
        )
    params = payload["params"]
    robust = payload["state"]["robust"]
    prophet = payload["state"]["prophet"]
    width = float(params.get("interval_width", 0.9999))
    return CompiledModel(
        fitted_at=fitted_at,
        kind=params.get("kind", "value"),
        rate_per=float(params.get("rate_per", 1000.0)),
        z=interval_z(width),
        season=robust["state"]["season"],
        robust_expected=np.asarray(robust["state"]["expected"], dtype=float),
        robust_sigma=np.asarray(robust["state"]["sigma"], dtype=float),
        robust_z=interval_z(float(robust["params"].get("interval_width", 0.9999))),
        prophet=None if prophet is None else _prophet_params_from_json(prophet["state"]["prophet"]),
        prophet_sigma=(
            None if prophet is None else np.asarray(prophet["state"]["sigma_by_hour"], dtype=float)
        ),
        prophet_z=interval_z(
            width if prophet is None else float(prophet["params"].get("interval_width", 0.9999))
        ),
    )


def _compile_chunk(rows: list[tuple[str, str, datetime]]) -> list[tuple[str, CompiledModel | None, str]]:
    """Executor task: compile ``(series, state, fitted_at)`` rows; errors come back as text."""
    out: list[tuple[str, CompiledModel | None, str]] = []
    for series, text, fitted_at in rows:
        try:
            out.append((series, compile_state(text, fitted_at), ""))
        except (DetectorError, ValueError, KeyError, TypeError) as exc:
            out.append((series, None, f"{type(exc).__name__}: {exc}"))
    return out


class ModelCache:
    """Parsed models per ``(metric, series)``, refreshed from the store only where ``fitted_at`` changed.

    Thread-safe: the daemon's refit job (its own thread) puts models while scoring ticks sync.

    Args:
        executor: Where to parse many changed models at once (a cold start); ``None`` parses inline.
        chunk_size: Models per parsing task.
    """

    def __init__(self, *, executor: ChunkExecutor | None = None, chunk_size: int = 250) -> None:
        self.executor = executor
        self.chunk_size = chunk_size
        self._entries: dict[str, dict[str, CompiledModel]] = {}
        self._lock = threading.RLock()

    def __len__(self) -> int:
        with self._lock:
            return sum(len(models) for models in self._entries.values())

    def put(self, metric: str, series: str, model: CompiledModel) -> None:
        """Remember ``model`` (e.g. just fitted and saved by :func:`refit_all`)."""
        with self._lock:
            self._entries.setdefault(metric, {})[series] = model

    def get(self, metric: str, series: str) -> CompiledModel | None:
        with self._lock:
            return self._entries.get(metric, {}).get(series)

    def sync(self, store: SqlStore, metric: str) -> tuple[dict[str, CompiledModel], dict[str, str]]:
        """Bring the cache of ``metric`` in line with the store; returns its models and parse errors.

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
            return self._refresh(store, metric, stamps)

    def _refresh(
        self, store: SqlStore, metric: str, stamps: Mapping[str, datetime]
    ) -> tuple[dict[str, CompiledModel], dict[str, str]]:
        cached = self._entries.setdefault(metric, {})
        for gone in set(cached) - set(stamps):
            del cached[gone]
        changed = sorted(s for s, at in stamps.items() if s not in cached or cached[s].fitted_at != at)
        errors: dict[str, str] = {}
        if changed:
            executor = self.executor or InlineExecutor()
            for results in executor.map_chunks(
                _compile_chunk, self._states(store, metric, changed), self.chunk_size
            ):
                for series, model, error in results:
                    if model is None:
                        errors[series] = error
                        cached.pop(series, None)
                    else:
                        cached[series] = model
        return dict(cached), errors

    @staticmethod
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


# -- vectorised stack scoring ------------------------------------------------------------------------------
@dataclass(frozen=True)
class StackScores:
    """Score arrays of many series on one time grid; each of shape (series, time)."""

    observed: np.ndarray
    expected: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    score: np.ndarray
    sigma: np.ndarray


def _volume_aware(
    models: Sequence[CompiledModel],
    observed: np.ndarray,
    expected: np.ndarray,
    sigma: np.ndarray,
    volume: np.ndarray,
    member_z: np.ndarray,
) -> StackScores:
    """One member's scores after :func:`detectors.volume.rescore` (for kinds other than ``value``)."""
    sigma = sigma.copy()
    z = member_z.copy()
    groups: dict[tuple[str, float], list[int]] = {}
    for row, model in enumerate(models):
        if model.kind != "value":
            groups.setdefault((model.kind, model.rate_per), []).append(row)
    for (kind, per), rows in groups.items():
        typed = cast(MetricKind, kind)
        sampling = sampling_sigma(expected[rows], volume[rows], typed, per=per)
        sigma[rows] = combine_sigma(sigma[rows], sampling, typed)
        z[rows] = [models[r].z for r in rows]
    with np.errstate(divide="ignore", invalid="ignore"):
        score = (observed - expected) / sigma
    return StackScores(
        observed, expected, expected - z[:, None] * sigma, expected + z[:, None] * sigma, score, sigma
    )


def score_stack_batch(
    models: Sequence[CompiledModel], index: pd.DatetimeIndex, values: np.ndarray, volumes: np.ndarray
) -> StackScores:
    """``DetectorStack.score`` of many series on the same UTC timestamps, in numpy.

    Args:
        models: One compiled model per series (row).
        index: UTC-aware timestamps (columns).
        values: Observed values, shape (series, time); NaN = missing.
        volumes: Volumes (denominators), same shape; NaN = unknown.

    Returns:
        The combined scores and the volume-aware sigma of each point.
    """
    if index.tz is None:
        raise InvalidSeriesError("score_stack_batch needs UTC-aware timestamps")
    n, width = values.shape
    observed = np.asarray(values, dtype=float)
    robust_expected = np.empty((n, width))
    robust_sigma = np.empty((n, width))
    seasons: dict[str, list[int]] = {}
    for row, model in enumerate(models):
        seasons.setdefault(model.season, []).append(row)
    for season, rows in seasons.items():
        slots = slot_of(index, cast(Season, season))
        robust_expected[rows] = np.stack([models[r].robust_expected for r in rows])[:, slots]
        robust_sigma[rows] = np.stack([models[r].robust_sigma for r in rows])[:, slots]
    robust = _volume_aware(
        models, observed, robust_expected, robust_sigma, volumes, np.array([m.robust_z for m in models])
    )
    with_prophet = [row for row, model in enumerate(models) if model.prophet is not None]
    if not with_prophet:
        return robust
    prophet_expected = np.full((n, width), np.nan)
    prophet_sigma = np.full((n, width), np.nan)
    prophet_expected[with_prophet] = prophet_expected_batch(
        [cast(ProphetParams, models[r].prophet) for r in with_prophet], index
    )
    hours = np.asarray(index.hour)
    prophet_sigma[with_prophet] = np.stack([cast(np.ndarray, models[r].prophet_sigma) for r in with_prophet])[
        :, hours
    ]
    prophet = _volume_aware(
        models, observed, prophet_expected, prophet_sigma, volumes, np.array([m.prophet_z for m in models])
    )
    # DetectorStack: Prophet first; the robust member wins where its |score| is smaller or Prophet's is NaN.
    mine, theirs = np.abs(prophet.score), np.abs(robust.score)
    take = (theirs < mine) | (np.isnan(mine) & ~np.isnan(theirs))
    lacking = np.ones(n, dtype=bool)
    lacking[with_prophet] = False
    take[lacking] = True
    pick = {
        name: np.where(take, getattr(robust, name), getattr(prophet, name))
        for name in ("expected", "lower", "upper", "score", "sigma")
    }
    score = np.where(np.isnan(observed), np.nan, pick["score"])
    return StackScores(observed, pick["expected"], pick["lower"], pick["upper"], score, pick["sigma"])


def evaluate_batch(
    observed: np.ndarray,
    expected: np.ndarray,
    score: np.ndarray,
    volume: np.ndarray,
    rules: PostRules,
    index: pd.DatetimeIndex,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`detectors.postrules.evaluate` of many series: ``(flag, reason)``, shape (series, time).

    The same step functions run on the flattened grid (threshold, noise floors and suppression are
    per point); the k-of-n step, which looks along time, runs per series.
    """
    shape = score.shape
    reason = threshold_step(score.ravel(), threshold=rules.threshold, direction=rules.direction)
    if rules.k > 1:
        rows = reason.reshape(shape)
        reason = (
            np.concatenate([k_of_n_step(rows[i], score[i], k=rules.k, n=rules.n) for i in range(shape[0])])
            if shape[0]
            else reason
        )
    reason = noise_floor_step(
        reason,
        pd.DataFrame({"observed": observed.ravel(), "expected": expected.ravel(), "volume": volume.ravel()}),
        min_volume=rules.min_volume,
        min_abs_effect=rules.min_abs_effect,
        min_rel_effect=rules.min_rel_effect,
    )
    if rules.suppress:
        reason = suppression_step(
            reason, pd.DatetimeIndex(np.tile(index.to_numpy(), shape[0])), rules.suppress
        )
    reason = reason.reshape(shape)
    return reason == FLAGGED, reason


# -- one tick of one metric --------------------------------------------------------------------------------
@dataclass(frozen=True)
class SeriesDecisions:
    """The per-series result of a batch tick, as :meth:`Monitor._score_series` would produce it.

    Attributes:
        series: Series name.
        decisions: Score columns, ``volume``, ``flag``, ``reason`` and ``shift_start`` per scored bucket.
        context: Scores of the buckets before the window (charts, level-shift explanations); filled for
            series with a flag (or every series with ``full_context=True``), else empty.
        last_bucket: The last scored bucket (the new watermark).
        previous_watermark: The watermark before this tick (compare-and-set).
        scored: Buckets scored.
        missing: Buckets that never arrived (scored as missing).
        flagged: Buckets flagged.
    """

    series: str
    decisions: pd.DataFrame
    context: pd.DataFrame
    last_bucket: pd.Timestamp
    previous_watermark: datetime | None
    scored: int
    missing: int
    flagged: int


@dataclass
class MetricBatch:
    """A batch tick of one metric: scored series, series left to the per-series path, data problems."""

    metric: str
    scored: list[SeriesDecisions] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    problems: list[DataProblem] = field(default_factory=list)
    model_errors: dict[str, str] = field(default_factory=dict)


class _TrailCache:
    """The last buckets of each metric (present rows: ``ts``, ``series``, ``value``, ``volume``)."""

    def __init__(self) -> None:
        self._frames: dict[str, tuple[pd.Timestamp, pd.Timestamp, pd.DataFrame]] = {}

    def rows(
        self, source: MetricSource, metric: MetricConfig, lo: pd.Timestamp, hi: pd.Timestamp, series: int
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
        step = pd.Timedelta(metric.granularity or timedelta(hours=1))
        span = step * max(1, FETCH_ROWS // max(series, 1))
        while fetch_from < hi:
            until = min(fetch_from + span, hi)
            result = source.fetch(metric, fetch_from.to_pydatetime(), until.to_pydatetime())
            problems += result.problems
            fresh = result.frame
            volume = fresh["den"].astype(float) if metric.kind == "ratio" else np.nan
            parts.append(
                pd.DataFrame(
                    {
                        "ts": fresh["ts"],
                        "series": fresh["series"].astype(str),
                        "value": fresh["value"].astype(float),
                        "volume": volume,
                    }
                )
            )
            fetch_from = until
        rows = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
        self._frames[metric.name] = (lo, hi, rows)
        return rows, problems


class BatchScorer:
    """Scores all series of a metric per tick from stored models; see the module docstring.

    Args:
        config: The configuration (metrics, regions, scheduler cadence).
        store: State store (watermarks, models).
        source: Metric source.
        models: A shared :class:`ModelCache` (e.g. the one :func:`refit_all` fills).
        chunk_series: Series scored together; bounds the (series x time) arrays of a long catch-up
            (about 30 arrays of ``chunk_series x (168 + buckets)`` floats).
        max_model_age: A stored model older than this is left to the per-series path (which refits it
            inline); default ``scheduler.refit_every``, the pipeline's rule. A daemon whose refit job takes
            a while should allow more (e.g. twice the cadence) so a refit in progress never makes ticks
            fit inline.
    """

    def __init__(
        self,
        config: Config,
        store: SqlStore,
        source: MetricSource,
        *,
        models: ModelCache | None = None,
        chunk_series: int = 2500,
        max_model_age: timedelta | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.source = source
        self.models = models if models is not None else ModelCache()
        self.chunk_series = chunk_series
        self.max_model_age = max_model_age or config.scheduler.refit_every
        self._trails = _TrailCache()

    def score_metric(self, metric: MetricConfig, now: datetime, *, full_context: bool = False) -> MetricBatch:
        """Score every complete, unscored bucket of every series of ``metric`` with a fresh stored model.

        Args:
            metric: The metric.
            now: The tick time (UTC-aware).
            full_context: Build the context frame of every series, not only of flagged ones.
        """
        step = pd.Timedelta(metric.granularity or timedelta(hours=1))
        complete_end = floor_time(pd.Timestamp(now) - pd.Timedelta(metric.completeness_delay or 0), step)
        earliest = complete_end - pd.Timedelta(self.config.scheduler.max_catchup)
        watermarks = {w.series: w.bucket for w in self.store.list_watermarks(metric.name)}
        starts = [pd.Timestamp(w) + step for w in watermarks.values()]
        first_needed = max(earliest, min([*starts, complete_end])) if starts else earliest
        models, errors = self.models.sync(self.store, metric.name)
        batch = MetricBatch(metric.name, model_errors=errors)
        width = CUSUM_CONTEXT_BUCKETS
        lo = first_needed - width * step
        rows, batch.problems = self._trails.rows(
            self.source, metric, lo, complete_end, max(len(models), len(watermarks))
        )
        fresh_after = pd.Timestamp(now) - pd.Timedelta(self.max_model_age)
        groups: dict[pd.Timestamp, list[str]] = {}
        for series in sorted(set(rows["series"].unique()) | set(models)):
            previous = watermarks.get(series)
            start = max(earliest, pd.Timestamp(previous) + step) if previous else earliest
            if start >= complete_end:
                continue
            model = models.get(series)
            # A new series among scored ones starts before the rows read here: the per-series path.
            if model is None or pd.Timestamp(model.fitted_at) <= fresh_after or start < first_needed:
                batch.pending.append(series)
            else:
                groups.setdefault(start, []).append(series)
        scored = [name for start in sorted(groups) for name in groups[start]]
        grid = pd.date_range(lo, complete_end, freq=step, inclusive="left", name="ts")
        values, volumes, present = _pivot(rows, scored, grid)
        position = {name: i for i, name in enumerate(scored)}
        rules = post_rules(metric)
        trained_from = first_needed - pd.Timedelta(metric.history or timedelta(days=56))
        for start, group in sorted(groups.items()):
            offset = int((start - lo) / step) - width
            trained_on = pd.date_range(trained_from, start, freq=step, inclusive="left")
            for members in chunked(group, self.chunk_series):  # bounds the (series x time) arrays
                rows_at = [position[name] for name in members]
                batch.scored += self._score_group(
                    metric,
                    members,
                    [models[name] for name in members],
                    grid[offset:],
                    (values[rows_at, offset:], volumes[rows_at, offset:], present[rows_at, offset:]),
                    rules,
                    trained_on,
                    watermarks,
                    full_context,
                )
        return batch

    def _score_group(
        self,
        metric: MetricConfig,
        series: list[str],
        models: list[CompiledModel],
        grid: pd.DatetimeIndex,
        data: tuple[np.ndarray, np.ndarray, np.ndarray],
        rules: PostRules,
        trained_on: pd.DatetimeIndex,
        watermarks: Mapping[str, datetime],
        full_context: bool,
    ) -> list[SeriesDecisions]:
        """Score series that share a window.

        ``grid`` is the CUSUM context followed by the window; ``data`` holds the series' values, volumes
        and presence (the source returned the row) on it, each of shape (series, time).
        """
        width = CUSUM_CONTEXT_BUCKETS
        values, volumes, present = data
        scores = score_stack_batch(models, grid, values, volumes)
        window = slice(width, None)
        volume = volumes[:, window] if metric.kind == "ratio" else scores.expected[:, window]
        flags, reasons = evaluate_batch(
            scores.observed[:, window],
            scores.expected[:, window],
            scores.score[:, window],
            volume,
            rules,
            pd.DatetimeIndex(grid[window]),
        )
        # Level shifts: the CUSUM of every series at once finds the few series the exact rule must see.
        trail = np.where(present | (np.arange(len(grid)) >= width)[None, :], scores.score, np.nan)
        alarms = np.asarray(np.asarray(online_cusum(trail.T).alarms, dtype=bool)[width:].any(axis=0))
        index = pd.DatetimeIndex(grid[window], name="ts")
        span = len(index)
        count = len(series)
        # One frame for the whole group, sliced per series: a few microseconds per series instead of
        # building thousands of small frames column by column.
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
                "shift_start": pd.array(np.full(count * span, np.datetime64("NaT", "us")), dtype=_STAMP),
            },
            index=pd.DatetimeIndex(np.tile(index.to_numpy(), count), name="ts"),
        )
        missing = np.isnan(values[:, window]).sum(axis=1)
        flag_counts = flags.sum(axis=1)
        no_context = pd.DataFrame({c: pd.Series(dtype=float) for c in SCORE_COLUMNS})  # shared, read-only
        out: list[SeriesDecisions] = []
        for row, name in enumerate(series):
            decisions = table.iloc[row * span : (row + 1) * span]
            flagged = int(flag_counts[row])
            context = None
            if alarms[row] or flagged or full_context:
                context = _context(scores, row, grid, width, present[row])
            if alarms[row] and context is not None:
                decisions = level_shifts(decisions.drop(columns="shift_start"), context, rules)
                flagged = int(decisions["flag"].sum())
            if flagged:
                decisions = holiday_floor(decisions, self.config.regions.get(name), trained_on)
                flagged = int(decisions["flag"].sum())
            out.append(
                SeriesDecisions(
                    series=name,
                    decisions=decisions,
                    context=no_context if context is None else context,
                    last_bucket=index[-1],
                    previous_watermark=watermarks.get(name),
                    scored=span,
                    missing=int(missing[row]),
                    flagged=flagged,
                )
            )
        return out


def _pivot(
    rows: pd.DataFrame, series: Sequence[str], grid: pd.DatetimeIndex
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(values, volumes, present)`` of ``series`` on ``grid``, each (series, time); absent rows are NaN."""
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
    return values, volumes, present


def _context(
    scores: StackScores, row: int, grid: pd.DatetimeIndex, width: int, present: np.ndarray
) -> pd.DataFrame:
    """Scores of the buckets before the window that the source returned (the per-series path's context)."""
    keep = np.flatnonzero(present[:width])
    return pd.DataFrame(
        {name: getattr(scores, name)[row, keep] for name in SCORE_COLUMNS},
        index=pd.DatetimeIndex(grid[keep], name="ts"),
    )


# -- refits ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FitTask:
    """One series to fit: its training frame (``value``, ``volume``; UTC index) and stack arguments."""

    metric: str
    series: str
    frame: pd.DataFrame
    params: dict[str, Any]
    fitted_at: datetime


@dataclass(frozen=True)
class FitOutcome:
    """A fitted series (``state`` JSON and its compiled model) or the error that stopped it."""

    metric: str
    series: str
    state: str | None
    model: CompiledModel | None
    error: str | None = None


def fit_chunk(tasks: list[FitTask]) -> list[FitOutcome]:
    """Executor task: fit a :class:`DetectorStack` per task; a series that fails does not stop the others."""
    outcomes = []
    for task in tasks:
        try:
            stack = DetectorStack(**task.params).fit(task.frame, series_id=f"{task.metric}/{task.series}")
            outcomes.append(
                FitOutcome(task.metric, task.series, stack.to_json(), compile_stack(stack, task.fitted_at))
            )
        except Exception as exc:
            outcomes.append(FitOutcome(task.metric, task.series, None, None, f"{type(exc).__name__}: {exc}"))
    return outcomes


@dataclass
class RefitSummary:
    """What :func:`refit_all` did: fitted series (``metric/series``) and errors by series or metric."""

    now: datetime
    fitted: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)


def _fit_tasks(
    config: Config,
    source: MetricSource,
    metric: MetricConfig,
    cutoffs: Mapping[str, tuple[pd.Timestamp, bool]],
    now: datetime,
    fetch_size: int,
    errors: dict[str, str],
) -> Iterator[FitTask]:
    """Training frames of the series in ``cutoffs``, fetched ``fetch_size`` series at a time.

    ``cutoffs[series] = (bucket, inclusive)``: train on rows up to ``bucket`` (inclusive or not), over the
    metric's ``history`` span ending at the last such row (as :meth:`Monitor._model` does).
    """
    span = pd.Timedelta(metric.history or timedelta(days=56))
    step = pd.Timedelta(metric.granularity or timedelta(hours=1))
    for group in chunked(sorted(cutoffs), fetch_size):
        lo = min(cutoffs[s][0] for s in group) - span
        hi = max(cutoffs[s][0] for s in group) + step
        try:
            result = source.fetch(metric, lo.to_pydatetime(), hi.to_pydatetime(), series=group)
        except SourceError as exc:  # one failing fetch must not stop the other series' refits
            for name in group:
                errors[f"{metric.name}/{name}"] = f"fetch failed: {exc}"
            continue
        for key, tidy in result.frame.groupby("series", sort=True):
            series = str(key)
            bucket, inclusive = cutoffs[series]
            frame = series_frame(metric, tidy)
            frame = frame[frame.index <= bucket] if inclusive else frame[frame.index < bucket]
            if frame.empty:
                errors[f"{metric.name}/{series}"] = f"no history before {bucket:%Y-%m-%d %H:%M} UTC to fit on"
                continue
            frame = frame[frame.index > frame.index.max() - span]
            yield FitTask(metric.name, series, frame, stack_params(config, metric, series), now)


def refit_all(
    config: Config,
    store: SqlStore,
    source: MetricSource,
    now: datetime,
    executor: ChunkExecutor,
    *,
    cache: ModelCache | None = None,
    metrics: Collection[str] | None = None,
    series: Collection[str] | None = None,
    chunk_size: int = 20,
    fetch_size: int = 400,
) -> RefitSummary:
    """Refit and store the :class:`DetectorStack` of every series, chunked through ``executor``.

    A series with a watermark is trained on its history up to the watermark; a series never scored (seen
    in the last :data:`DISCOVERY_SPAN`) on the history before the first bucket its first tick will score.
    Models are saved with ``fitted_at = now`` and put in ``cache`` as they arrive.

    Args:
        config: The configuration.
        store: Where models are saved.
        source: Metric source (queried ``fetch_size`` series at a time).
        now: The refit time (UTC-aware).
        executor: Where fits run (:func:`monitor.pipeline.executor.make_executor`).
        cache: The scorer's :class:`ModelCache`, updated in place.
        metrics: Only these metrics (default: all).
        series: Only these series of each metric (default: all).
        chunk_size: Series per executor task (about ``0.1 s`` of fitting each).
        fetch_size: Series per history query; bounds memory with the executor's in-flight limit.
    """
    summary = RefitSummary(now)
    for metric in config.metrics:
        if metrics is not None and metric.name not in metrics:
            continue
        step = pd.Timedelta(metric.granularity or timedelta(hours=1))
        complete_end = floor_time(pd.Timestamp(now) - pd.Timedelta(metric.completeness_delay or 0), step)
        earliest = complete_end - pd.Timedelta(config.scheduler.max_catchup)
        cutoffs: dict[str, tuple[pd.Timestamp, bool]] = {
            w.series: (pd.Timestamp(w.bucket), True) for w in store.list_watermarks(metric.name)
        }
        try:
            recent = source.fetch(
                metric,
                (complete_end - pd.Timedelta(DISCOVERY_SPAN)).to_pydatetime(),
                complete_end.to_pydatetime(),
            )
        except SourceError as exc:  # the metric's refit fails, the others go on
            summary.errors[metric.name] = f"series discovery failed: {exc}"
            log.error("refit discovery failed", metric=metric.name, error=str(exc))
            continue
        for name in recent.frame["series"].astype(str).unique():
            cutoffs.setdefault(name, (earliest, False))
        if series is not None:
            wanted = set(series)
            cutoffs = {name: cut for name, cut in cutoffs.items() if name in wanted}
        tasks = _fit_tasks(config, source, metric, cutoffs, now, fetch_size, summary.errors)
        for outcomes in executor.map_chunks(fit_chunk, tasks, chunk_size):
            for outcome in outcomes:
                key = f"{outcome.metric}/{outcome.series}"
                if outcome.state is None or outcome.model is None:
                    summary.errors[key] = outcome.error or "fit failed"
                    log.error(
                        "refit failed", metric=outcome.metric, series=outcome.series, error=outcome.error
                    )
                    continue
                store.save_model_state(
                    outcome.metric,
                    outcome.series,
                    DETECTOR_NAME,
                    outcome.state,
                    version=DetectorStack.state_version,
                    fitted_at=now,
                )
                if cache is not None:
                    cache.put(outcome.metric, outcome.series, outcome.model)
                summary.fitted.append(key)
    log.info("refit done", fitted=len(summary.fitted), errors=len(summary.errors))
    return summary
