"""Explain one metric in one region over a window: ``livewatch investigate``'s logic, without any printing.

``investigate(config, source, store, metric, region, start=..., end=None, now=...) -> Investigation``

1. **Window.** ``--from T1 --to T2`` is the window as given (bucket-aligned). ``--at T`` is the bucket holding
   ``T``, widened to the run of flagged buckets of one sign around it (at most :data:`MAX_RUN` buckets each
   way), so the root causes describe the whole anomaly rather than one hour of it.
2. **Model.** The stored model of the series is used when it was fitted no later than the window start (it
   has then never seen the window); otherwise a :class:`~detectors.stack.DetectorStack` is fitted like the
   daemon would, on the configured ``history`` before the window. Nothing is written back to the store.
3. **Scores.** The window and :data:`CONTEXT_BEFORE` buckets before it (for charts) are scored, and the
   daemon's post-rules (threshold, direction, noise floors, unseen-holiday floor) decide the flags. Each
   member of the stack (Prophet, robust seasonal baseline) is also scored alone, to say which fired.
4. **Changepoints** of the recent history: :func:`detectors.changepoint.find_changepoints` on the residual
   ``observed - expected`` (the seasonality removed) over the context and the window.
5. **Root causes** from the slicer (:func:`monitor.pipeline.slicing.explain_window`) over the flagged buckets (the whole
   window when none flagged): deviation share, surprise, and mix versus rate for ratio metrics.
6. **Related metrics**: every other configured metric in the same region over the same window, scored with
   its stored model when valid, else a quick robust baseline fit (Prophet fits would cost seconds each).
7. **Covers**: incidents of the store overlapping the window on this metric and region, silences matching
   it while active during the window, and maintenance or event windows of the config.

Bad requests raise :class:`InvestigationError` subclasses whose one-line message lists what is valid.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from alerts.model import matches_all
from detectors.base import interval_z
from detectors.changepoint import find_changepoints
from detectors.errors import DetectorError
from detectors.postrules import FLAGGED, PostRules, classify_run, evaluate
from detectors.slicer import RootCause
from detectors.stack import DetectorStack
from detectors.volume import MetricKind, rescore
from monitor.config import Config, MetricConfig
from monitor.errors import LivewatchError, SourceError
from monitor.pipeline.slicing import explain_window
from monitor.pipeline.spec import (
    DETECTOR_NAME,
    holiday_floor,
    level_shifts,
    matchers,
    new_stack,
    post_rules,
    series_frame,
)
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
    "fit_stack",
    "investigate",
    "post_rules",
    "score_frame",
]

#: Buckets scored before the window, for charts and changepoints (7 days of hourly buckets).
CONTEXT_BEFORE = 168
#: Buckets shown after the window in charts when the data has them.
CONTEXT_AFTER = 24
#: ``--at`` widens the window over flagged buckets at most this far each way.
MAX_RUN = 72
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
            or ``cusum`` (level shifts confirmed by the online CUSUM of the stack's scores).
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
def fit_stack(
    metric: MetricConfig, config: Config, series: str, history: pd.DataFrame, *, prophet: bool = True
) -> DetectorStack:
    """Fit the daemon's stack on ``history`` (already cut to the training window).

    Args:
        prophet: ``False`` fits the robust baseline only (fast, for quick looks).
    """
    days = PROPHET_MIN_DAYS if prophet else NEVER_PROPHET_DAYS
    return new_stack(config, metric, series, prophet_min_days=days).fit(
        history, series_id=f"{metric.name}/{series}"
    )


def score_frame(
    model: DetectorStack,
    metric: MetricConfig,
    frame: pd.DataFrame,
    rules: PostRules,
    country: str | None,
    trained_on: pd.DatetimeIndex,
) -> pd.DataFrame:
    """Score ``frame`` (on its regular grid) and decide like the daemon: post-rules, the CUSUM level-shift
    confirmation (run over the whole frame, oldest bucket first) and the unseen-holiday floor.

    Returns:
        ``observed, expected, lower, upper, score, volume, flag, reason, shift_start`` per bucket.
    """
    scores = model.score(frame)
    # Noise floors compare against the denominator of a ratio and the expected count of a count.
    scores["volume"] = frame["volume"].to_numpy() if metric.kind == "ratio" else scores["expected"]
    decisions = evaluate(scores, rules)
    decisions = level_shifts(decisions, decisions.iloc[:0], rules)
    return holiday_floor(decisions, country, trained_on)


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

    Raises:
        UnknownMetricError, UnknownRegionError, OutOfRangeError: one line listing what is valid.
    """
    spec = _metric(config, metric)
    step = pd.Timedelta(spec.granularity or timedelta(hours=1))
    first = floor_time(start, step.to_pytimedelta())
    if end is not None:
        last = floor_time(pd.Timestamp(end) - pd.Timedelta(microseconds=1), step.to_pytimedelta()) + step
        if last <= first:
            raise OutOfRangeError(f"--to {_iso(end)} must be after --from {_iso(start)}")
    else:
        last = first + step
    history_span = pd.Timedelta(spec.history or timedelta(days=56))
    probe_end = last + (MAX_RUN + CONTEXT_AFTER) * step if end is None else last + CONTEXT_AFTER * step
    result = source.fetch(
        spec, (first - history_span).to_pydatetime(), probe_end.to_pydatetime(), series=[region]
    )
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
    if store is not None:
        model, model_note = _model(config, spec, region, history, first, store)
    else:
        model, model_note = _fitted(config, spec, region, history, first)
    rules = post_rules(spec)
    country = config.regions.get(region)
    grid_end = min(probe_end, frame.index.max() + step)
    grid = pd.date_range(first - CONTEXT_BEFORE * step, max(grid_end, last), freq=step, inclusive="left")
    grid = grid[grid >= frame.index.min()]
    scored = score_frame(model, spec, frame.reindex(grid), rules, country, pd.DatetimeIndex(history.index))
    if end is None:
        first, last = _widen(scored, first, step)
        keep_until = last + CONTEXT_AFTER * step
        scored = scored[scored.index < keep_until]
    scored["in_window"] = (scored.index >= first) & (scored.index < last)
    window = scored[scored["in_window"]]
    kind = "none"
    # Buckets past the threshold are classified by their run; a shift only the CUSUM confirmed is a shift.
    beyond = window["flag"] & (window["reason"] == FLAGGED)
    if window["flag"].any() and not beyond.any():
        kind = "level_shift"
    elif beyond.any():
        flagged = window[beyond]
        kind, _ = classify_run(
            (flagged["observed"] - flagged["expected"]).to_numpy(dtype=float), min_points=6, max_spread=0.5
        )
    verdicts = _verdicts(model, spec, frame.reindex(window.index), rules, window)
    changepoints = _changepoints(scored)
    # The slicer and the related metrics each wait mostly on the warehouse: ask both at once.
    with ThreadPoolExecutor(max_workers=2) as pool:
        pending_causes = pool.submit(_root_causes, source, spec, region, window, whole=not beyond.any())
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


def _metric(config: Config, name: str) -> MetricConfig:
    names = [m.name for m in config.metrics]
    if name not in names:
        raise UnknownMetricError(f"unknown metric {name!r}; configured metrics: {', '.join(names)}")
    return config.metric(name)


def _where_is_data(
    source: MetricSource,
    metric: MetricConfig,
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


def _model(
    config: Config,
    metric: MetricConfig,
    region: str,
    history: pd.DataFrame,
    first: pd.Timestamp,
    store: SqlStore,
) -> tuple[DetectorStack, str]:
    stored = store.load_model_state(metric.name, region, DETECTOR_NAME)
    if stored is not None and pd.Timestamp(stored.fitted_at) <= first:
        try:
            model = DetectorStack.from_json(stored.state)
        except (DetectorError, ValueError, KeyError):
            return _fitted(config, metric, region, history, first)
        if isinstance(model, DetectorStack):
            return model, f"stored model fitted {_iso(stored.fitted_at)}"
    return _fitted(config, metric, region, history, first)


def _fitted(
    config: Config, metric: MetricConfig, region: str, history: pd.DataFrame, first: pd.Timestamp
) -> tuple[DetectorStack, str]:
    span = pd.Timedelta(metric.history or timedelta(days=56))
    training = history[history.index >= first - span]
    try:
        model = fit_stack(metric, config, region, training)
    except DetectorError as exc:
        raise OutOfRangeError(
            f"{metric.name}/{region}: cannot fit a model before {_iso(first)}: {exc}"
        ) from exc
    days = (
        training.index.max() - training.index.min() + pd.Timedelta(metric.granularity or timedelta(hours=1))
    )
    return model, f"fitted now on {days.days} days before the window ({', '.join(_members(model))})"


def _members(model: DetectorStack) -> list[str]:
    return ["prophet" if m is model.prophet_ else "robust" for m in model.members_]


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
    model: DetectorStack, metric: MetricConfig, frame: pd.DataFrame, rules: PostRules, window: pd.DataFrame
) -> tuple[DetectorVerdict, ...]:
    """The stack's verdict, each member's alone (member bands made volume-aware like the stack's), and the
    CUSUM level-shift confirmation (its flagged buckets; it has no per-point score)."""
    verdicts = [DetectorVerdict("stack", _peak(window["score"]), int(window["flag"].sum()))]
    cusum = int((window["flag"] & (window["reason"] != FLAGGED)).sum())
    z = interval_z(model.interval_width)
    kind: MetricKind = "count" if metric.kind == "count" else "rate"
    for name, member in zip(_members(model), model.members_, strict=True):
        scores = member.score(frame)
        scores["sigma"] = (scores["upper"] - scores["lower"]) / (2 * z)
        scores["volume"] = frame["volume"].to_numpy()
        scores = rescore(scores, kind=kind, z=z, per=model.rate_per)
        scores["volume"] = frame["volume"].to_numpy() if metric.kind == "ratio" else scores["expected"]
        decided = evaluate(
            scores.loc[:, ["observed", "expected", "lower", "upper", "score", "volume"]], rules
        )
        verdicts.append(DetectorVerdict(name, _peak(decided["score"]), int(decided["flag"].sum())))
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
    source: MetricSource, metric: MetricConfig, region: str, window: pd.DataFrame, *, whole: bool
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
    metric: MetricConfig,
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
    metric: MetricConfig,
    region: str,
    first: pd.Timestamp,
    last: pd.Timestamp,
) -> RelatedMetric:
    step = pd.Timedelta(metric.granularity or timedelta(hours=1))
    span = pd.Timedelta(metric.history or timedelta(days=56))
    stored = store.load_model_state(metric.name, region, DETECTOR_NAME) if store is not None else None
    usable = stored is not None and pd.Timestamp(stored.fitted_at) <= first
    fetch_from = first - (CONTEXT_BEFORE * step if usable else min(span, pd.Timedelta(QUICK_HISTORY)))
    tidy = source.fetch(metric, fetch_from.to_pydatetime(), last.to_pydatetime(), series=[region]).frame
    if tidy.empty:
        return RelatedMetric(metric.name, math.nan, math.nan, math.nan, 0, "none", error="no data")
    frame = series_frame(metric, tidy)
    history = frame[frame.index < first]
    model: DetectorStack | None = None
    note = "robust"
    if usable and stored is not None:
        loaded = DetectorStack.from_json(stored.state)
        if isinstance(loaded, DetectorStack):
            model, note = loaded, "stored"
    if model is None:
        model = fit_stack(metric, config, region, history, prophet=False)
    grid = pd.date_range(first, last, freq=step, inclusive="left")
    scored = score_frame(
        model,
        metric,
        frame.reindex(grid),
        post_rules(metric),
        config.regions.get(region),
        pd.DatetimeIndex(history.index),
    )
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
