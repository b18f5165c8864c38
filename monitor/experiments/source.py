"""Assignment and per-unit outcome frames of an experiment, over SQLAlchemy Core with bound parameters.

* :meth:`SqlExperimentSource.assignments`: one row per unit (``unit, arm, assigned_at``), validated: an
  unknown arm, a missing unit or time, or a unit in two arms is an :class:`ExperimentDataError` naming
  the experiment and the column.
* :meth:`SqlExperimentSource.outcomes`: per-unit outcome rows (``ts, unit``, measure and segment columns)
  in ``[start, end)``.

A source is a table (filtered here on its time column) or a SELECT that filters itself on ``:start`` and
``:end``; the assignment source is also filtered on ``experiment = :experiment``. Times are UTC.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa

from monitor.config_types import SqlSource
from monitor.errors import LivewatchError, SourceError, database_reason
from monitor.experiments.config import ExperimentConfig
from monitor.source import time_window

__all__ = ["EPOCH", "ExperimentDataError", "SqlExperimentSource", "validate_assignments"]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EXAMPLES = 5


class ExperimentDataError(LivewatchError):
    """The assignment or outcome rows of one experiment break a rule (unknown arm, unit in two arms...)."""


class SqlExperimentSource:
    """Reads experiment tables and queries from the warehouse engine."""

    def __init__(self, engine: sa.Engine, *, schema: str | None = None) -> None:
        self.engine = engine
        self.schema = schema
        self._tables: dict[str, sa.Table] = {}

    def _table(self, name: str, where: str) -> sa.Table:
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
                    f"{where}: table {name!r} does not exist"
                    + (f"; did you mean {hint[0]!r}?" if hint else "")
                ) from None
        return self._tables[name]

    def _select(
        self, source: SqlSource, columns: Sequence[str], time_column: str, where: str
    ) -> tuple[sa.FromClause, sa.types.TypeEngine[Any]]:
        """The relation to select from and the type of its time column."""
        if source.table is not None:
            table = self._table(source.table, where)
            missing = [c for c in columns if c not in table.c]
            if missing:
                known = list(table.c.keys())
                hints = [
                    f"unknown column {c!r} in table {source.table}"
                    + (
                        f" (did you mean {h[0]!r}?)"
                        if (h := difflib.get_close_matches(c, known, n=1))
                        else ""
                    )
                    for c in missing
                ]
                raise SourceError(f"{where}: " + "; ".join(hints))
            return table, table.c[time_column].type
        assert source.query is not None
        time_type = sa.DateTime(timezone=True)
        textual = (
            sa.text(source.query)
            .bindparams(sa.bindparam("start", type_=time_type), sa.bindparam("end", type_=time_type))
            .columns(*(sa.column(c) for c in columns))
        )
        return textual.subquery("experiment_source"), time_type

    def _read(
        self,
        source: SqlSource,
        columns: Sequence[str],
        time_column: str,
        start: datetime,
        end: datetime,
        where: str,
        filters: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        relation, time_type = self._select(source, columns, time_column, where)
        _, window, params = time_window(
            self.engine.dialect.name, relation.c[time_column], time_type, start, end
        )
        # SQLite keeps times as text: parsing it in pandas (vectorised) is far faster than per row.
        raw_text = self.engine.dialect.name == "sqlite"
        statement = sa.select(
            *(
                sa.type_coerce(relation.c[c], sa.String).label(c)
                if raw_text and c == time_column
                else relation.c[c]
                for c in columns
            )
        )
        if source.table is not None:
            statement = statement.where(*window)
        for i, (column, value) in enumerate((filters or {}).items()):
            statement = statement.where(relation.c[column] == sa.bindparam(f"f{i}"))
            params[f"f{i}"] = value
        try:
            with self.engine.connect() as conn:
                rows = conn.execute(statement, params).all()
        except sa.exc.SQLAlchemyError as exc:
            reason = database_reason(exc)
            raise SourceError(f"{where}: query failed: {reason}") from exc
        frame = pd.DataFrame([tuple(row) for row in rows], columns=list(columns))
        frame[time_column] = pd.to_datetime(frame[time_column], utc=True, format="ISO8601")
        return frame

    def assignments(self, experiment: ExperimentConfig, end: datetime) -> pd.DataFrame:
        """Validated assignment before ``end``: one row per unit, ``unit, arm, assigned_at`` (UTC)."""
        cols = experiment.assignment_columns
        raw = self._read(
            experiment.assignment,
            [cols.experiment, cols.unit, cols.arm, cols.time],
            cols.time,
            EPOCH,
            end,
            f"experiment {experiment.name!r} assignment",
            filters={cols.experiment: experiment.name},
        )
        return validate_assignments(raw, experiment)

    def outcomes(
        self,
        experiment: ExperimentConfig,
        source: SqlSource,
        columns: Sequence[str],
        start: datetime,
        end: datetime,
    ) -> pd.DataFrame:
        """Outcome rows in ``[start, end)``: ``experiment.time_column``, the unit column and ``columns``."""
        wanted = list(dict.fromkeys([experiment.time_column, experiment.unit_column, *columns]))
        return self._read(
            source, wanted, experiment.time_column, start, end, f"experiment {experiment.name!r} outcomes"
        )


def validate_assignments(raw: pd.DataFrame, experiment: ExperimentConfig) -> pd.DataFrame:
    """Check the assignment rows of one experiment; return ``unit, arm, assigned_at``, one row per unit.

    Raises:
        ExperimentDataError: no rows, missing values, an arm outside the split, a unit in two arms.
    """
    cols = experiment.assignment_columns
    where = f"experiment {experiment.name!r}: assignment column"
    if raw.empty:
        raise ExperimentDataError(
            f"experiment {experiment.name!r}: no assignment rows with {cols.experiment} = "
            f"{experiment.name!r}; check the assignment source and the experiment name"
        )
    for column in (cols.unit, cols.arm, cols.time):
        missing = raw[column].isna()
        if missing.any():
            raise ExperimentDataError(
                f"{where} {column!r} has {int(missing.sum())} missing values; every row needs unit, arm, time"
            )
    frame = pd.DataFrame(
        {"unit": raw[cols.unit].astype(str), "arm": raw[cols.arm].astype(str), "assigned_at": raw[cols.time]}
    )
    unknown = sorted(set(frame["arm"]) - set(experiment.split))
    if unknown:
        raise ExperimentDataError(
            f"{where} {cols.arm!r} has arms {unknown[:_EXAMPLES]} not in the configured split "
            f"{sorted(experiment.split)}; fix the assignment export or add them to split"
        )
    arms_per_unit = frame.groupby("unit")["arm"].nunique()
    crossed = arms_per_unit[arms_per_unit > 1]
    if len(crossed):
        raise ExperimentDataError(
            f"{where} {cols.unit!r}: {len(crossed)} units are assigned to more than one arm "
            f"(e.g. {crossed.index[:_EXAMPLES].tolist()}); each unit must stay in one arm"
        )
    frame = frame.sort_values("assigned_at", kind="stable").drop_duplicates("unit")
    return frame.reset_index(drop=True)
