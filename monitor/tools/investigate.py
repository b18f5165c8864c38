"""Explain one metric in one region over a window: ``livewatch investigate``'s logic, without any printing.

``investigate(config, source, store, metric, region, start=..., end=None, now=...) -> Investigation``

1. **Window.** ``--from T1 --to T2`` is the window as given (bucket-aligned). ``--at T`` is the bucket holding
   ``T``, widened to the run of flagged buckets of one sign around it (at most :data:`MAX_RUN` buckets each
   way), so the root causes describe the whole anomaly rather than one hour of it.
2. **Model.** The stored model of the series (what the daemon scores with; the note says when it was fitted
   after the window start and so has seen it), or with ``refit=True`` (or none stored) a stack fitted like
   the daemon would, on the configured ``history`` before the window. Nothing is written back to the store.
3. **Decisions** come from the daemon's own scoring path,
   :func:`monitor.pipeline.scoring.score_and_decide` (post-rules, CUSUM level shifts over each bucket's
   trailing week, unseen-holiday floor), so they are what a tick decides with that model. Each member of the
   stack (Prophet, robust seasonal baseline) is also scored alone, to say which fired.
4. **Changepoints** of the recent history: :func:`detectors.changepoint.find_changepoints` on the residual
   ``observed - expected`` (the seasonality removed) over the context and the window.
5. **Root causes** from the slicer (:func:`monitor.pipeline.slicing.explain_window`) over the flagged
   buckets (the whole window when none flagged): deviation share, surprise, and mix versus rate for ratios.
6. **Related metrics**: every other configured metric in the same region over the same window, scored with
   its stored model, else a quick robust baseline fit (Prophet fits would cost seconds each).
7. **Covers**: incidents of the store overlapping the window on this metric and region, silences matching
   it while active during the window, and maintenance or event windows of the config.

Bad requests raise :class:`InvestigationError` subclasses whose one-line message lists what is valid.
"""

from __future__ import annotations

import json
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from alerts.model import matches_all
from detectors.changepoint import find_changepoints
from detectors.errors import DetectorError
from detectors.postrules import LEVEL_SHIFT_CONTEXT, PostRules, evaluate_batch
from detectors.slicer import RootCause
from detectors.stack import CompiledStack, DetectorStack, score_members
from monitor.config import Config, Metric
from monitor.errors import LivewatchError, SourceError
from monitor.pipeline.models import FitTask, fit_chunk
from monitor.pipeline.scoring import SeriesDecisions, score_and_decide, series_grid, stream_series
from monitor.pipeline.signals import run_kind
from monitor.pipeline.slicing import explain_window
from monitor.pipeline.spec import DETECTOR_NAME, matchers, post_rules, series_frame, stack_params
from monitor.source import MetricSource, floor_time
from monitor.store import SqlStore

__all__ = [
    "CONTEXT_BEFORE",
    "MAX_RUN",
    "Cover",
    "DetectorVerdict",
    "Investigation",
    "InvestigationError",
    "OutOfRangeError",
    "RelatedMetric",
    "UnknownMetricError",
    "UnknownRegionError",
    "fit_series",
    "investigate",
    "series_decisions",
]

#: Buckets scored before the window, for charts and changepoints (7 days of hourly buckets).
CONTEXT_BEFORE = 168
#: Buckets shown after the window in charts when the data has them.
CONTEXT_AFTER = 24
#: ``--at`` widens the window over flagged buckets at most this far each way.
MAX_RUN = 72
#: Buckets before the window a stored model scores: the widening of ``--at`` and the CUSUM context.
SCORED_BEFORE = MAX_RUN + LEVEL_SHIFT_CONTEXT
#: A model needs at least this much history before the window.
MIN_HISTORY = timedelta(days=3)
#: The stack's own default: Prophet joins the robust baseline from this much history.
PROPHET_MIN_DAYS = 14.0
#: ``prophet_min_days`` that no history reaches: the robust baseline alone.
NEVER_PROPHET_DAYS = 36500.0
#: History of the quick robust fits of related metrics.
QUICK_HISTORY = timedelta(days=28)
#: How far back and forward the error path looks to say which times have data.
SPAN_PROBE = timedelta(days=400)


class InvestigationError(LivewatchError):
    """The investigation cannot run as asked; the message says what is valid."""


class UnknownMetricError(InvestigationError):
    """The metric is not configured."""


class UnknownRegionError(InvestigationError):
    """The metric has no series with that value."""


class OutOfRangeError(InvestigationError):
    """The window lies outside the data of the series (or before enough history)."""


@dataclass(frozen=True)
class DetectorVerdict:
    """One detector of the stack over the window.

    Attributes:
        name: ``stack`` (the combination that alerts, CUSUM confirmations included), ``prophet``, ``robust``
            or ``cusum`` (level shifts confirmed by the online CUSUM of the stack's scores); ``streaming``
            for a metric with that detector.
        peak_score: The signed score of largest magnitude in the window (NaN when nothing was scored).
        flagged: Buckets the post-rules flag with this detector's scores alone.
        fired: ``flagged > 0``.
    """

    name: str
    peak_score: float
    flagged: int

    @property
    def fired(self) -> bool:
        return self.flagged > 0


@dataclass(frozen=True)
class RelatedMetric:
    """Another metric of the same region over the same window.

    Attributes:
        model: ``stored`` or ``robust`` (a quick robust-baseline fit).
    """

    metric: str
    peak_score: float
    observed: float
    expected: float
    flagged: int
    model: str
    error: str | None = None

    @property
    def anomalous(self) -> bool:
        return self.flagged > 0


@dataclass(frozen=True)
class Cover:
    """Something that already covers the window: an incident, a silence or a maintenance/event window."""

    kind: str
    id: str
    description: str
    start: datetime
    end: datetime | None
    state: str


@dataclass(frozen=True)
class Investigation:
    """Everything ``livewatch investigate`` reports (see the module docstring).

    Attributes:
        start: First bucket of the window (UTC).
        end: Exclusive end of the window.
        scores: Per bucket from the context start to the window end (and after, when the data has it):
            ``observed, expected, lower, upper, score, volume, flag, reason`` and ``in_window``.
        model: How the model was obtained, in words.
        kind: The anomaly kind of the flagged buckets (``spike``, ``dip``, ``level_shift``), ``none`` when
            nothing flagged.
    """

    metric: str
    region: str
    metric_kind: str
    unit: str
    start: datetime
    end: datetime
    at: datetime | None
    threshold: float
    direction: str
    model: str
    kind: str
    scores: pd.DataFrame
    detectors: tuple[DetectorVerdict, ...]
    changepoints: tuple[datetime, ...]
    root_causes: tuple[RootCause, ...]
    related: tuple[RelatedMetric, ...]
    covers: tuple[Cover, ...]
    problems: tuple[str, ...] = ()

    @property
    def window(self) -> pd.DataFrame:
        """The rows of :attr:`scores` inside the window."""
        return self.scores[self.scores["in_window"]]

    @property
    def flagged(self) -> int:
        return int(self.window["flag"].sum())

    def summary(self) -> dict[str, float]:
        """Observed and expected over the window (sums for counts, means for ratios) and the change."""
        window = self.window
        observed = window["observed"].astype(float)
        expected = window["expected"].astype(float)
        ok = observed.notna() & expected.notna()
        if self.metric_kind == "count":
            obs, exp = float(observed[ok].sum()), float(expected[ok].sum())
        else:
            obs = float(observed[ok].mean()) if ok.any() else math.nan
            exp = float(expected[ok].mean()) if ok.any() else math.nan
        change = 100.0 * (obs - exp) / exp if exp else math.nan
        peak = _peak(window["score"])
        return {
            "observed": obs,
            "expected": exp,
            "change_pct": change,
            "peak_score": peak,
            "flagged": float(self.flagged),
            "buckets": float(len(window)),
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dictionary (ISO-8601 times, ``null`` for NaN)."""
        return {
            "metric": self.metric,
            "region": self.region,
            "metric_kind": self.metric_kind,
            "unit": self.unit,
            "window": {"start": _iso(self.start), "end": _iso(self.end), "at": _iso(self.at)},
            "threshold": self.threshold,
            "direction": self.direction,
            "model": self.model,
            "kind": self.kind,
            "summary": {k: _json_float(v) for k, v in self.summary().items()},
            "series": [
                {
                    "ts": _iso(pd.Timestamp(str(ts))),
                    **{c: _json_float(row[c]) for c in ("observed", "expected", "lower", "upper", "score")},
                    "flag": bool(row["flag"]),
                    "in_window": bool(row["in_window"]),
                }
                for ts, row in self.scores.iterrows()
            ],
            "detectors": [
                {
                    "name": d.name,
                    "peak_score": _json_float(d.peak_score),
                    "flagged": d.flagged,
                    "fired": d.fired,
                }
                for d in self.detectors
            ],
            "changepoints": [_iso(t) for t in self.changepoints],
            "root_causes": [
                {
                    "rank": c.rank,
                    "segment": c.label(),
                    "element": dict(c.element),
                    "actual": _json_float(c.actual),
                    "expected": _json_float(c.expected),
                    "deviation_share": _json_float(c.deviation_share),
                    "surprise": _json_float(c.surprise),
                    "mix_share": None if c.mix_share is None else _json_float(c.mix_share),
                    "rate_share": None if c.rate_share is None else _json_float(c.rate_share),
                }
                for c in self.root_causes
            ],
            "related": [
                {
                    "metric": r.metric,
                    "peak_score": _json_float(r.peak_score),
                    "observed": _json_float(r.observed),
                    "expected": _json_float(r.expected),
                    "flagged": r.flagged,
                    "anomalous": r.anomalous,
                    "model": r.model,
                    "error": r.error,
                }
                for r in self.related
            ],
            "covers": [
                {
                    "kind": c.kind,
                    "id": c.id,
                    "description": c.description,
                    "start": _iso(c.start),
                    "end": _iso(c.end),
                    "state": c.state,
                }
                for c in self.covers
            ],
            "problems": list(self.problems),
        }


# -- shared with the backtest ------------------------------------------------------------------------
def fit_series(
    config: Config, metric: Metric, series: str, history: pd.DataFrame, *, prophet: bool = True
) -> CompiledStack:
    """Fit the daemon's stack on ``history`` (already cut to the training window), compiled for scoring.

    Args:
        prophet: ``False`` fits the robust baseline only (fast, for quick looks).

    Raises:
        DetectorError: the history cannot be fitted (too short, bad values).
    """
    params = stack_params(config, metric, series)
    if not prophet:
        params["prophet_min_days"] = NEVER_PROPHET_DAYS
    outcome = fit_chunk([FitTask(metric.name, series, history, params)])[0]
    if outcome.model is None:
        raise DetectorError(f"{metric.name}/{series}: {outcome.error}")
    return outcome.model


def series_decisions(
    config: Config,
    metric: Metric,
    series: str,
    model: CompiledStack,
    frame: pd.DataFrame,
    start: pd.Timestamp,
    end: pd.Timestamp,
    *,
    rules: PostRules | None = None,
) -> SeriesDecisions:
    """The daemon's decisions of one series over ``[start, end)``: :func:`score_and_decide`, a batch of one.

    ``frame`` holds the series' rows (``value``, ``volume``; UTC index) from at least
    :data:`LEVEL_SHIFT_CONTEXT` buckets before ``start``.
    """
    step = pd.Timedelta(metric.granularity)
    grid = pd.date_range(start - LEVEL_SHIFT_CONTEXT * step, end, freq=step, inclusive="left", name="ts")
    rows = pd.DataFrame(
        {"ts": frame.index, "series": series, "value": frame["value"].to_numpy(), "volume": frame["volume"]}
    )
    return score_and_decide(
        metric,
        rules if rules is not None else post_rules(metric),
        [series],
        [model],
        series_grid(rows, [series], grid),
        countries={series: config.regions.get(series)},
        trained_on=pd.date_range(start - pd.Timedelta(metric.history), start, freq=step, inclusive="left"),
        full_context=True,
    )[0]


# -- the investigation ---------------------------------------------------------------------------------
def investigate(
    config: Config,
    source: MetricSource,
    store: SqlStore | None,
    metric: str,
    region: str,
    *,
    start: datetime,
    end: datetime | None = None,
    now: datetime,
    related: bool = True,
    refit: bool = False,
) -> Investigation:
    """Investigate ``metric`` in ``region``; see the module docstring.

    Args:
        config: The configuration (metrics, regions, windows).
        source: The warehouse.
        store: The state store (stored models, incidents, silences), or ``None`` to skip both.
        metric: Configured metric name.
        region: Series value (bound as a query parameter, never interpolated).
        start: ``--at`` time, or the window start when ``end`` is given.
        end: Exclusive window end (``--from/--to``); ``None`` means ``--at start``.
        now: Current time, for open incidents and silences.
        related: Also check the other metrics of the region.
        refit: Fit a model on the history before the window instead of using the stored one.

    Raises:
        UnknownMetricError, UnknownRegionError, OutOfRangeError: one line listing what is valid.
    """
    spec = _metric(config, metric)
    step = pd.Timedelta(spec.granularity)
    first = floor_time(start, step.to_pytimedelta())
    if end is not None:
        last = floor_time(pd.Timestamp(end) - pd.Timedelta(microseconds=1), step.to_pytimedelta()) + step
        if last <= first:
            raise OutOfRangeError(f"--to {_iso(end)} must be after --from {_iso(start)}")
    else:
        last = first + step
    stored = None if refit or spec.detector == "streaming" else _stored_model(store, spec, region, first)
    # A stored model needs only the buckets it scores; a fit needs the configured history.
    reach = (
        pd.Timedelta(spec.history) if stored is None else max(pd.Timedelta(MIN_HISTORY), SCORED_BEFORE * step)
    )
    probe_end = last + (MAX_RUN + CONTEXT_AFTER) * step if end is None else last + CONTEXT_AFTER * step
    result = source.fetch(spec, (first - reach).to_pydatetime(), probe_end.to_pydatetime(), series=[region])
    tidy = result.frame
    if tidy.empty or not ((tidy["ts"] >= first) & (tidy["ts"] < last)).any():
        raise _where_is_data(source, spec, region, first, last, step)
    frame = series_frame(spec, tidy)
    history = frame[frame.index < first]
    if history.empty or history.index.min() > first - pd.Timedelta(MIN_HISTORY):
        data_start = frame.index.min()
        raise OutOfRangeError(
            f"{metric}/{region}: {_iso(first)} has under {MIN_HISTORY.days} days of history before it; data "
            f"starts {_iso(data_start)}, investigate from {_iso(data_start + pd.Timedelta(MIN_HISTORY))} on"
        )
    rules = post_rules(spec)
    # Decide from MAX_RUN buckets before the window, so --at can widen over the run that led to it.
    decide_from = max(first - MAX_RUN * step, frame.index.min()) if end is None else first
    grid_end = max(min(probe_end, frame.index.max() + step), last)
    model: CompiledStack | None = None
    if spec.detector == "streaming":  # its stored state is as of the watermark: fit before the window
        try:
            item = stream_series(config, spec, region, frame, decide_from, grid_end, [rules])[0]
        except DetectorError as exc:
            raise OutOfRangeError(str(exc)) from exc
        model_note = f"streaming detector fitted now on the history before {_iso(decide_from)}"
    else:
        model, model_note = stored or _fitted_model(config, spec, region, history, first)
        item = series_decisions(config, spec, region, model, frame, decide_from, grid_end, rules=rules)
    context = item.context.assign(
        volume=np.nan,
        flag=False,
        reason=pd.array([""] * len(item.context), dtype="string"),
        shift_start=pd.Series(pd.NaT, index=item.context.index, dtype=item.decisions["shift_start"].dtype),
    )
    context = context[context.index >= first - CONTEXT_BEFORE * step]
    scored = pd.concat([context, item.decisions]) if len(context) else item.decisions.copy()
    if end is None:
        first, last = _widen(scored, first, step)
        keep_until = last + CONTEXT_AFTER * step
        scored = scored[scored.index < keep_until]
    scored["in_window"] = (scored.index >= first) & (scored.index < last)
    window = scored[scored["in_window"]]
    flagged = window[window["flag"]]
    kind = run_kind(flagged)[0] if len(flagged) else "none"
    beyond = flagged["shift_start"].isna() if len(flagged) else pd.Series(dtype=bool)
    verdicts = _verdicts(model, spec, frame.reindex(window.index), rules, window)
    changepoints = _changepoints(scored)
    # The slicer and the related metrics each wait mostly on the warehouse: ask both at once.
    with ThreadPoolExecutor(max_workers=2) as pool:
        pending_causes = pool.submit(_root_causes, source, spec, region, window, whole=not bool(beyond.any()))
        pending_others = (
            pool.submit(_related, config, source, store, spec, region, first, last) if related else None
        )
        causes = pending_causes.result()
        others = pending_others.result() if pending_others is not None else []
    labels = {"metric": metric, "region": region, "kind": kind}
    covers = _covers(config, store, labels, first.to_pydatetime(), last.to_pydatetime(), now)
    return Investigation(
        metric=metric,
        region=region,
        metric_kind=spec.kind,
        unit=spec.unit,
        start=first.to_pydatetime(),
        end=last.to_pydatetime(),
        at=None if end is not None else pd.Timestamp(start).to_pydatetime(),
        threshold=rules.threshold,
        direction=rules.direction,
        model=model_note,
        kind=kind,
        scores=scored,
        detectors=verdicts,
        changepoints=changepoints,
        root_causes=tuple(causes),
        related=tuple(others),
        covers=tuple(covers),
        problems=tuple(str(p) for p in result.problems),
    )


def _metric(config: Config, name: str) -> Metric:
    names = [m.name for m in config.metrics]
    if name not in names:
        raise UnknownMetricError(f"unknown metric {name!r}; configured metrics: {', '.join(names)}")
    return config.metric(name)


def _where_is_data(
    source: MetricSource,
    metric: Metric,
    region: str,
    first: pd.Timestamp,
    last: pd.Timestamp,
    step: pd.Timedelta,
) -> InvestigationError:
    """The error for a window without data: unknown region, or the span that has data."""
    probe_start = (first - pd.Timedelta(SPAN_PROBE)).to_pydatetime()
    probe_end = (last + pd.Timedelta(SPAN_PROBE)).to_pydatetime()
    found = source.fetch(metric, probe_start, probe_end, series=[region]).frame
    if found.empty:
        nearby = source.fetch(metric, probe_start, probe_end).frame
        regions = sorted(nearby["series"].unique()) if not nearby.empty else []
        if not regions:
            return OutOfRangeError(f"metric {metric.name!r} has no data around {_iso(first)}")
        return UnknownRegionError(
            f"metric {metric.name!r} has no region {region!r}; regions with data: {', '.join(regions)}"
        )
    lo, hi = found["ts"].min(), found["ts"].max() + step
    return OutOfRangeError(
        f"{metric.name}/{region} has no data in {_iso(first)}..{_iso(last)}; "
        f"data covers {_iso(lo)}..{_iso(hi)}"
    )


def _stored_model(
    store: SqlStore | None, metric: Metric, region: str, first: pd.Timestamp
) -> tuple[CompiledStack, str] | None:
    """The stored model (what the daemon scores with) and a note on it; ``None`` when none is usable."""
    stored = store.load_model_state(metric.name, region, DETECTOR_NAME) if store is not None else None
    if stored is None:
        return None
    try:
        model = DetectorStack.compile_state(json.loads(stored.state))
    except (DetectorError, ValueError, KeyError, TypeError):
        return None
    seen = (
        " (fitted after the window start, so it has seen these buckets; --refit fits on the history before)"
        if pd.Timestamp(stored.fitted_at) > first
        else ""
    )
    return model, f"stored model fitted {_iso(stored.fitted_at)} ({', '.join(_members(model))}){seen}"


def _fitted_model(
    config: Config, metric: Metric, region: str, history: pd.DataFrame, first: pd.Timestamp
) -> tuple[CompiledStack, str]:
    """A stack fitted like the daemon would, on the configured history before the window."""
    span = pd.Timedelta(metric.history)
    training = history[history.index >= first - span]
    try:
        model = fit_series(config, metric, region, training)
    except DetectorError as exc:
        raise OutOfRangeError(
            f"{metric.name}/{region}: cannot fit a model before {_iso(first)}: {exc}"
        ) from exc
    days = training.index.max() - training.index.min() + pd.Timedelta(metric.granularity)
    return model, f"fitted now on {days.days} days before the window ({', '.join(_members(model))})"


def _members(model: CompiledStack) -> list[str]:
    return ["prophet", "robust"] if model.prophet is not None else ["robust"]


def _widen(
    scored: pd.DataFrame, first: pd.Timestamp, step: pd.Timedelta
) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The flagged run of one sign around ``first``.

    When ``first`` itself is not flagged but a level shift confirmed within :data:`MAX_RUN` buckets after it
    is estimated to start at or before ``first`` (the daemon's alert points ``--at`` the shift start), the
    window runs from ``first`` to the end of that confirmation. Otherwise it is ``first``'s bucket alone.
    """
    if first not in scored.index:
        return first, first + step
    flags = scored["flag"].to_numpy(dtype=bool)
    signs = np.sign(scored["score"].to_numpy(dtype=float))
    at = int(np.flatnonzero(scored.index == first)[0])
    if not flags[at]:
        starts = scored["shift_start"] if "shift_start" in scored else pd.Series(pd.NaT, index=scored.index)
        confirmed = [
            i
            for i in range(at + 1, min(len(flags), at + MAX_RUN + 1))
            if flags[i] and pd.notna(starts.iloc[i]) and pd.Timestamp(starts.iloc[i]) <= first
        ]
        if not confirmed:
            return first, first + step
        hi = confirmed[0]
        while hi + 1 < len(flags) and hi + 1 - at < MAX_RUN and flags[hi + 1] and signs[hi + 1] == signs[hi]:
            hi += 1
        return first, scored.index[hi] + step
    lo = hi = at
    while lo - 1 >= 0 and at - (lo - 1) <= MAX_RUN and flags[lo - 1] and signs[lo - 1] == signs[at]:
        lo -= 1
    while hi + 1 < len(flags) and hi + 1 - at < MAX_RUN and flags[hi + 1] and signs[hi + 1] == signs[at]:
        hi += 1
    return scored.index[lo], scored.index[hi] + step


def _peak(scores: pd.Series) -> float:
    values = scores.to_numpy(dtype=float)
    if not np.isfinite(values).any():
        return math.nan
    return float(values[np.nanargmax(np.abs(np.where(np.isfinite(values), values, 0.0)))])


def _verdicts(
    model: CompiledStack | None,
    metric: Metric,
    frame: pd.DataFrame,
    rules: PostRules,
    window: pd.DataFrame,
) -> tuple[DetectorVerdict, ...]:
    """The stack's verdict, each member's alone (volume-aware like the stack's), and the CUSUM level-shift
    confirmation (its flagged buckets; it has no per-point score); a streaming metric's one verdict."""
    if model is None:
        return (DetectorVerdict("streaming", _peak(window["score"]), int(window["flag"].sum())),)
    verdicts = [DetectorVerdict("stack", _peak(window["score"]), int(window["flag"].sum()))]
    cusum = int((window["flag"] & window["shift_start"].notna()).sum())
    index = pd.DatetimeIndex(frame.index)
    values = frame["value"].to_numpy(dtype=float)[None, :]
    volumes = frame["volume"].to_numpy(dtype=float)[None, :]
    members = score_members([model], index, values, volumes)
    for name in _members(model):
        scores = members[name]
        volume = volumes if metric.kind == "ratio" else scores.expected
        flags, _ = evaluate_batch(scores.observed, scores.expected, scores.score, volume, rules, index)
        verdicts.append(DetectorVerdict(name, _peak(pd.Series(scores.score[0])), int(flags.sum())))
    verdicts.append(DetectorVerdict("cusum", math.nan, cusum))
    return tuple(verdicts)


def _changepoints(scored: pd.DataFrame) -> tuple[datetime, ...]:
    """Where the residual (observed minus expected) starts a new regime, over the scored range."""
    residual = (scored["observed"] - scored["expected"]).astype(float)
    if residual.notna().sum() < 20:
        return ()
    positions = find_changepoints(residual.to_numpy(dtype=float), model="level")
    return tuple(pd.Timestamp(scored.index[p]).to_pydatetime() for p in positions)


def _root_causes(
    source: MetricSource, metric: Metric, region: str, window: pd.DataFrame, *, whole: bool
) -> list[RootCause]:
    """Causes over the flagged buckets, or the whole window (a CUSUM-confirmed shift, or nothing flagged)."""
    rows = window if whole else window[window["flag"]]
    rows = rows[rows["observed"].notna() & rows["expected"].notna()]
    if rows.empty:
        return []
    return explain_window(source, metric, region, list(rows.index), rows["expected"].astype(float).tolist())


def _related(
    config: Config,
    source: MetricSource,
    store: SqlStore | None,
    metric: Metric,
    region: str,
    first: pd.Timestamp,
    last: pd.Timestamp,
) -> list[RelatedMetric]:
    found = []
    for other in config.metrics:
        if other.name == metric.name:
            continue
        try:
            found.append(_related_one(config, source, store, other, region, first, last))
        except (SourceError, DetectorError, ValueError) as exc:
            found.append(RelatedMetric(other.name, math.nan, math.nan, math.nan, 0, "none", error=str(exc)))
    return sorted(
        found, key=lambda r: (not r.anomalous, -abs(r.peak_score) if np.isfinite(r.peak_score) else 0)
    )


def _related_one(
    config: Config,
    source: MetricSource,
    store: SqlStore | None,
    metric: Metric,
    region: str,
    first: pd.Timestamp,
    last: pd.Timestamp,
) -> RelatedMetric:
    step = pd.Timedelta(metric.granularity)
    span = pd.Timedelta(metric.history)
    stored = _stored_model(store, metric, region, first)
    context = LEVEL_SHIFT_CONTEXT * step
    fetch_from = first - (
        context if stored is not None else max(context, min(span, pd.Timedelta(QUICK_HISTORY)))
    )
    tidy = source.fetch(metric, fetch_from.to_pydatetime(), last.to_pydatetime(), series=[region]).frame
    if tidy.empty:
        return RelatedMetric(metric.name, math.nan, math.nan, math.nan, 0, "none", error="no data")
    frame = series_frame(metric, tidy)
    if stored is not None:
        model, note = stored[0], "stored"
    else:
        model, note = fit_series(config, metric, region, frame[frame.index < first], prophet=False), "robust"
    scored = series_decisions(config, metric, region, model, frame, first, last).decisions
    peak = _peak(scored["score"])
    at = int(np.nanargmax(np.abs(scored["score"].fillna(0).to_numpy(dtype=float)))) if len(scored) else 0
    return RelatedMetric(
        metric.name,
        peak,
        float(scored["observed"].iloc[at]),
        float(scored["expected"].iloc[at]),
        int(scored["flag"].sum()),
        note,
    )


def _covers(
    config: Config,
    store: SqlStore | None,
    labels: dict[str, str],
    first: datetime,
    last: datetime,
    now: datetime,
) -> list[Cover]:
    found: list[Cover] = []
    if store is not None:
        for incident in store.list_incidents(metric=labels["metric"], region=labels["region"], until=last):
            ended = incident.resolved_at
            if ended is not None and ended < first:
                continue
            if incident.started_at >= last:
                continue
            who = f", acknowledged by {incident.acknowledged_by}" if incident.acknowledged_by else ""
            found.append(
                Cover(
                    "incident",
                    incident.id,
                    f"{incident.severity.value} {'/'.join(incident.metrics)} in "
                    f"{'/'.join(incident.regions)}{who}",
                    incident.opened_at,
                    ended,
                    incident.state.value,
                )
            )
        for silence in store.list_silences():
            if (
                silence.created_at < last
                and silence.expires_at > first
                and matches_all(silence.matchers, labels)
            ):
                state = (
                    "active"
                    if silence.active_at(now)
                    else "expired"
                    if silence.expires_at <= now
                    else "pending"
                )
                found.append(
                    Cover(
                        "silence",
                        silence.id,
                        f"{silence.reason} (by {silence.created_by})",
                        silence.created_at,
                        silence.expires_at,
                        state,
                    )
                )
    for window in config.alerts.windows:
        window_matchers = matchers({str(k): v for k, v in window.match.items()})
        if window.start < last and window.end > first and matches_all(window_matchers, labels):
            found.append(
                Cover(
                    "window",
                    window.name,
                    "suppresses alerts" if window.suppress else "annotates alerts",
                    window.start,
                    window.end,
                    "suppress" if window.suppress else "annotate",
                )
            )
    return found


def _iso(moment: datetime | pd.Timestamp | None) -> str | None:
    if moment is None:
        return None
    stamp = pd.Timestamp(moment)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.strftime("%Y-%m-%dT%H:%MZ")


def _json_float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
