"""Metric sources: pull per-bucket, per-series aggregates of a metric from SQL.

:class:`MetricSource` is the contract; :class:`SqlMetricSource` implements it with SQLAlchemy Core for any
dialect (SQLite, PostgreSQL, warehouses). Queries always use bound parameters: metric columns come from
the validated config and are quoted by SQLAlchemy, time bounds and filters are bind parameters.

The frame returned by ``fetch`` is tidy, one row per bucket x series (x slice dimensions on request):

========== ============================================================================
ts         bucket start, UTC-aware (source timestamps floored to the metric granularity)
series     value of the series dimension (e.g. the region), as text
<slices>   the slice dimensions, when ``slices=True`` (NULL reads as :data:`NULL_SEGMENT`)
num        sum of the value column (count) or of the numerator (ratio)
den        sum of the denominator (ratio); NaN for counts
value      the metric: ``num`` for counts, ``scale * num / den`` for ratios (NaN when den is 0)
rows       source rows in the bucket
========== ============================================================================

Missing buckets are absent (never zero-filled). Bad data is reported per series as :class:`DataProblem`;
the offending buckets are dropped so they are neither scored nor mistaken for dips.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import numpy as np
import pandas as pd
import sqlalchemy as sa

from monitor.config import MetricConfig
from monitor.errors import SourceError, database_reason

__all__ = [
    "NULL_SEGMENT",
    "DataProblem",
    "FetchResult",
    "MetricSource",
    "SqlMetricSource",
    "check_metrics",
    "floor_time",
    "time_window",
]

#: Rows of a SQLite table whose time column is checked for numbers (epoch seconds) stored in it.
_STORED_SAMPLE = 1000

#: Value of a slice dimension (or of the series dimension) that is NULL in the source.
NULL_SEGMENT = "(null)"


@dataclass(frozen=True)
class DataProblem:
    """A data-quality finding for one metric and series (``series=None``: the whole metric)."""

    metric: str
    series: str | None
    message: str

    def __str__(self) -> str:
        where = f"{self.metric}/{self.series}" if self.series is not None else self.metric
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class FetchResult:
    frame: pd.DataFrame
    problems: list[DataProblem] = field(default_factory=list)


class MetricSource(Protocol):
    """Anything that returns the tidy aggregate frame described in the module docstring."""

    def fetch(
        self,
        metric: MetricConfig,
        start: datetime,
        end: datetime,
        *,
        slices: bool = False,
        series: Sequence[str] | None = None,
    ) -> FetchResult:
        """Aggregates of ``metric`` for buckets in ``[start, end)``, optionally for some series only."""
        ...


def floor_time(moment: datetime | pd.Timestamp, granularity: timedelta) -> pd.Timestamp:
    """The start of the bucket containing ``moment`` (UTC, epoch-aligned)."""
    stamp = pd.Timestamp(moment)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.floor(pd.Timedelta(granularity))


def _require_utc(moment: datetime, name: str) -> None:
    if moment.tzinfo is None:
        raise SourceError(f"{name}={moment.isoformat()} is naive; pass a UTC-aware datetime")


class SqlMetricSource:
    """:class:`MetricSource` over a SQLAlchemy engine."""

    def __init__(self, engine: sa.Engine, *, schema: str | None = None) -> None:
        self.engine = engine
        self.schema = schema
        self._tables: dict[str, sa.Table] = {}
        self._checked_times: set[str] = set()

    # -- public ------------------------------------------------------------------------------------
    def fetch(
        self,
        metric: MetricConfig,
        start: datetime,
        end: datetime,
        *,
        slices: bool = False,
        series: Sequence[str] | None = None,
    ) -> FetchResult:
        _require_utc(start, "start")
        _require_utc(end, "end")
        statement, params = self._statement(metric, start, end, slices=slices, series=series)
        try:
            with self.engine.connect() as conn:
                raw = pd.DataFrame(conn.execute(statement, params).mappings().all())
        except sa.exc.SQLAlchemyError as exc:
            reason = database_reason(exc)
            raise SourceError(f"metric {metric.name!r}: query failed: {reason}") from exc
        return _tidy(metric, raw, slices=slices)

    def table(self, name: str) -> sa.Table:
        """The reflected table (cached); :class:`SourceError` when it does not exist."""
        if name not in self._tables:
            schema, _, bare = name.rpartition(".")
            try:
                self._tables[name] = sa.Table(
                    bare, sa.MetaData(), autoload_with=self.engine, schema=schema or self.schema
                )
            except sa.exc.NoSuchTableError:
                known = sa.inspect(self.engine).get_table_names(schema=schema or self.schema)
                hint = difflib.get_close_matches(bare, known, n=1)
                raise SourceError(
                    f"table {name!r} does not exist" + (f"; did you mean {hint[0]!r}?" if hint else "")
                ) from None
        return self._tables[name]

    # -- query building --------------------------------------------------------------------------
    def _relation(self, metric: MetricConfig) -> tuple[sa.FromClause, sa.types.TypeEngine[datetime]]:
        if metric.source.table is not None:
            table = self.table(metric.source.table)
            missing = [c for c in metric.columns() if c not in table.c]
            if missing:
                raise SourceError(
                    f"metric {metric.name!r}: "
                    + "; ".join(
                        _unknown_column(c, metric.source.table, list(table.c.keys())) for c in missing
                    )
                )
            time_column = metric.time_column or "ts"
            time_type = table.c[time_column].type
            stored = (
                str(time_type)
                if isinstance(time_type, sa.Integer | sa.Numeric)
                else self._stored_number(table, time_column)
            )
            if stored is not None:
                raise SourceError(
                    f"metric {metric.name!r}: time_column {time_column!r} of table {metric.source.table} "
                    f"holds numbers ({stored}), not timestamps; point time_column at a TIMESTAMP or "
                    "ISO 8601 text column, or read the table through a source query that converts it, e.g. "
                    f"SELECT datetime({time_column}, 'unixepoch') AS ts, ... (SQLite) or "
                    f"to_timestamp({time_column}) AS ts (PostgreSQL) for Unix seconds"
                )
            return table, time_type
        assert metric.source.query is not None
        time_type = sa.DateTime(timezone=True)
        textual = (
            sa.text(metric.source.query)
            .bindparams(sa.bindparam("start", type_=time_type), sa.bindparam("end", type_=time_type))
            .columns(*(sa.column(c) for c in metric.columns()))
        )
        return textual.subquery("metric_source"), time_type

    def _stored_number(self, table: sa.Table, column: str) -> str | None:
        """SQLite keeps any value in any declared column: the storage class of a stored number in the time
        column (``integer`` or ``real``, as ``typeof`` names it) among its first rows, else ``None``. Checked
        once per table."""
        if self.engine.dialect.name != "sqlite" or table.name in self._checked_times:
            return None
        sample = sa.select(table.c[column].label("stamp")).limit(_STORED_SAMPLE).subquery()
        kind = sa.func.typeof(sample.c.stamp)
        query = sa.select(kind).where(kind.in_(["integer", "real"])).limit(1)
        try:
            with self.engine.connect() as conn:
                found = conn.execute(query).scalar()
        except sa.exc.SQLAlchemyError as exc:
            reason = database_reason(exc)
            raise SourceError(f"table {table.name!r}: reading column {column!r} failed: {reason}") from exc
        if found is None:
            self._checked_times.add(table.name)
        return None if found is None else f"stored as SQLite {found}"

    def _statement(
        self,
        metric: MetricConfig,
        start: datetime,
        end: datetime,
        *,
        slices: bool,
        series: Sequence[str] | None,
    ) -> tuple[sa.Select[tuple[object, ...]], dict[str, object]]:
        relation, column_type = self._relation(metric)
        column = relation.c[metric.time_column or "ts"]
        ts, window, params = time_window(self.engine.dialect.name, column, column_type, start, end)
        # SQLite: group on the stored text (pandas parses it far faster than datetime() per row)
        stamp = sa.type_coerce(column, sa.String) if self.engine.dialect.name == "sqlite" else ts
        keys = [stamp.label("ts"), relation.c[metric.series_dimension or "region"].label("series")]
        if slices:
            keys += [relation.c[d].label(d) for d in metric.slice_dimensions or ()]
        numerator, denominator = metric.measure_columns
        measures: list[sa.ColumnElement[Any]] = [sa.func.count().label("rows")]
        measures += _measure("num", relation.c[numerator])
        if denominator is not None:
            measures += _measure("den", relation.c[denominator])
        statement = sa.select(*keys, *measures).group_by(*keys)
        # A table is filtered here; a query filters itself on the same :start / :end parameters.
        if metric.source.table is not None:
            statement = statement.where(*window)
        if series is not None:
            statement = statement.where(keys[1].expression.in_(sa.bindparam("series", expanding=True)))
            params["series"] = list(series)
        return statement, params


def _comparable_time(
    dialect: str, column: sa.ColumnElement[Any], column_type: sa.types.TypeEngine[Any]
) -> tuple[sa.ColumnElement[Any], Callable[[str], sa.ColumnElement[Any]], bool]:
    """A time column as compared with a window, a factory of the bound parameters it is compared with, and
    whether those bounds are bound UTC-aware.

    Text timestamps compare as strings, so ISO 8601 text with a ``T`` or an offset
    (``2026-12-03T05:00:00+01:00``) never falls inside a window bound as ``2026-12-03 04:00:00``; both sides
    are converted in SQL first (SQLite: ``datetime()``, which normalises either to UTC text). SQLite stores
    every timestamp as text, whatever the declared type (DATETIME, TIMESTAMP or none), so it always converts;
    :func:`_indexed_time_range` lets an index on the column still narrow the scan.
    """
    if dialect == "sqlite":
        return (
            sa.func.datetime(column),
            lambda name: sa.func.datetime(sa.bindparam(name, sa.DateTime())),
            False,
        )
    if not isinstance(column_type, sa.String):
        aware = bool(getattr(column_type, "timezone", False))
        return column, lambda name: sa.bindparam(name, type_=column_type), aware
    timestamp = sa.DateTime(timezone=True)
    return sa.cast(column, timestamp), lambda name: sa.bindparam(name, type_=timestamp), True


def _indexed_time_range(
    dialect: str, column: sa.ColumnElement[Any], start: datetime, end: datetime
) -> list[sa.ColumnElement[bool]]:
    """Conditions on the raw column that an index can serve, wider than the window (SQLite only).

    ISO 8601 text of any date in ``[d1, d2)`` sorts between the strings ``d1`` and ``d2``, whatever follows
    the date; a day of margin each side covers every UTC offset (at most 14 h).
    """
    if dialect != "sqlite":
        return []
    low = (pd.Timestamp(start).tz_convert("UTC") - pd.Timedelta(days=1)).strftime("%Y-%m-%d")
    high = (pd.Timestamp(end).tz_convert("UTC") + pd.Timedelta(days=2)).strftime("%Y-%m-%d")
    return [
        sa.type_coerce(column, sa.String) >= sa.literal(low, sa.String),
        sa.type_coerce(column, sa.String) < sa.literal(high, sa.String),
    ]


def time_window(
    dialect: str,
    column: sa.ColumnElement[Any],
    column_type: sa.types.TypeEngine[Any],
    start: datetime,
    end: datetime,
) -> tuple[sa.ColumnElement[Any], list[sa.ColumnElement[bool]], dict[str, object]]:
    """A time column as compared, the conditions keeping ``[start, end)`` for a table, and the values of the
    ``:start`` / ``:end`` parameters (which a source query uses itself)."""
    ts, bound, aware = _comparable_time(dialect, column, column_type)
    conditions = [ts >= bound("start"), ts < bound("end"), *_indexed_time_range(dialect, column, start, end)]
    return ts, conditions, {"start": _bind_time(start, aware), "end": _bind_time(end, aware)}


def _bind_time(moment: datetime, aware: bool) -> datetime:
    utc = pd.Timestamp(moment).tz_convert("UTC").to_pydatetime()
    return utc if aware else utc.replace(tzinfo=None)


def _measure(prefix: str, column: sa.ColumnElement[Any]) -> list[sa.ColumnElement[Any]]:
    return [
        sa.func.sum(column).label(prefix),
        sa.func.count(column).label(f"{prefix}_nonnull"),
        sa.func.min(column).label(f"{prefix}_min"),
        sa.func.max(column).label(f"{prefix}_max"),
    ]


def _unknown_column(column: str, table: str, known: list[str]) -> str:
    hint = difflib.get_close_matches(column, known, n=1)
    return f"unknown column {column!r} in table {table}" + (f" (did you mean {hint[0]!r}?)" if hint else "")


def _as_numeric(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(numeric values, mask of entries that were present but not numbers)."""
    numeric = pd.to_numeric(values, errors="coerce")
    return numeric.astype(float), numeric.isna() & values.notna()


def _tidy(metric: MetricConfig, raw: pd.DataFrame, *, slices: bool) -> FetchResult:
    dims = list(metric.slice_dimensions or ()) if slices else []
    columns = ["ts", "series", *dims, "num", "den", "value", "rows"]
    if raw.empty:
        return FetchResult(pd.DataFrame({c: pd.Series(dtype=float) for c in columns}))
    frame = raw.copy()
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True, format="mixed")
    frame["series"] = frame["series"].astype(object).where(frame["series"].notna(), NULL_SEGMENT).astype(str)
    problems: list[DataProblem] = []
    bad = pd.Series(False, index=frame.index)
    parts = ["num"] + (["den"] if metric.kind == "ratio" else [])
    numerator, denominator = metric.measure_columns
    for part, column in zip(parts, [numerator, denominator], strict=False):
        frame[part], text_sum = _as_numeric(frame[part])
        _, text_min = _as_numeric(frame[f"{part}_min"])
        _, text_max = _as_numeric(frame[f"{part}_max"])
        non_numeric = text_sum | text_min | text_max
        nulls = frame["rows"] - frame[f"{part}_nonnull"]
        negative = pd.to_numeric(frame[f"{part}_min"], errors="coerce") < 0
        for mask, what in (
            (non_numeric, f"non-numeric values in column {column!r}"),
            (nulls > 0, f"NULL values in column {column!r}"),
            (negative, f"negative values in column {column!r}"),
        ):
            problems += _per_series(metric.name, frame, mask, what)
            bad |= mask
    duplicated = _duplicate_loads(frame, dims)
    problems += _per_series(metric.name, frame, duplicated, "about twice the usual rows (a duplicated load?)")
    bad |= duplicated
    frame = frame.loc[~bad]
    for dim in dims:  # a NULL segment is a segment too (and pandas' group-by would drop its rows)
        frame[dim] = frame[dim].astype(object).where(frame[dim].notna(), NULL_SEGMENT)
    if metric.kind == "count":
        frame["den"] = np.nan
    granularity = pd.Timedelta(metric.granularity or timedelta(hours=1))
    frame["ts"] = frame["ts"].dt.floor(granularity)
    frame = frame.groupby(["ts", "series", *dims], as_index=False, observed=True)[["num", "den", "rows"]].sum(
        min_count=1
    )
    if metric.kind == "count":
        frame["value"] = frame["num"]
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            frame["value"] = np.where(frame["den"] > 0, metric.scale * frame["num"] / frame["den"], np.nan)
    frame = frame.sort_values(["series", "ts", *dims], ignore_index=True)
    return FetchResult(frame.loc[:, columns], problems)


def _duplicate_loads(frame: pd.DataFrame, dims: list[str]) -> pd.Series:
    """Buckets with about twice the usual number of source rows for their series."""
    if dims or len(frame) < 8:
        return pd.Series(False, index=frame.index)
    usual = frame.groupby("series")["rows"].transform("median")
    return (usual >= 2) & (frame["rows"] >= 1.9 * usual)


def _per_series(metric: str, frame: pd.DataFrame, mask: pd.Series, what: str) -> list[DataProblem]:
    if not mask.any():
        return []
    problems = []
    for series, group in frame.loc[mask].groupby("series"):
        first, last = group["ts"].min(), group["ts"].max()
        problems.append(
            DataProblem(
                metric,
                str(series),
                f"{what} in {len(group)} bucket(s) from {first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC; "
                "those buckets are skipped, fix the source rows",
            )
        )
    return problems


def missing_buckets(
    frame: pd.DataFrame, start: datetime, end: datetime, granularity: timedelta
) -> pd.DataFrame:
    """(series, ts) pairs absent from ``frame`` within ``[start, end)``, for series that exist in it."""
    grid = pd.date_range(
        floor_time(start, granularity), pd.Timestamp(end), freq=pd.Timedelta(granularity), inclusive="left"
    )
    present = set(zip(frame["series"], frame["ts"], strict=True))
    rows = [(s, t) for s in frame["series"].unique() for t in grid if (s, t) not in present]
    return pd.DataFrame(rows, columns=["series", "ts"])


def check_metrics(source: SqlMetricSource, metrics: Sequence[MetricConfig]) -> list[str]:
    """One line per metric whose table or columns do not exist or cannot be read (empty when all is well)."""
    problems = []
    for index, metric in enumerate(metrics):
        where = f"metrics[{index}]"
        try:
            if metric.source.table is not None:
                table = source.table(metric.source.table)
                missing = [
                    f"{where}.{key}: {_unknown_column(column, metric.source.table, list(table.c.keys()))}"
                    for key, column in _column_keys(metric)
                    if column not in table.c
                ]
                if missing:
                    problems += missing
                    continue
            # an empty window runs the real query: column types (a numeric time column) and SQL errors show
            probe = datetime(1970, 1, 1, tzinfo=pd.Timestamp(0, tz="UTC").tzinfo)
            source.fetch(metric, probe, probe)
        except SourceError as exc:
            problems.append(f"{where}.source: {exc}")
    return problems


def _column_keys(metric: MetricConfig) -> list[tuple[str, str]]:
    keys = [("time_column", metric.time_column), ("series_dimension", metric.series_dimension)]
    keys += [(f"slice_dimensions[{i}]", d) for i, d in enumerate(metric.slice_dimensions or ())]
    keys += [(k, getattr(metric, k)) for k in ("value", "numerator", "denominator") if getattr(metric, k)]
    return [(k, str(c)) for k, c in keys if c]


def volume_of(frame: pd.DataFrame) -> pd.Series:
    """The volume behind each value: the denominator of a ratio, the count itself otherwise."""
    return frame["den"].where(frame["den"].notna(), frame["num"])
