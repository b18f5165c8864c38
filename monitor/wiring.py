"""Builds the runtime objects (engines, source, store, sinks) from a :class:`Config`."""

from __future__ import annotations

import sqlalchemy as sa

from monitor.config import Config, DatabaseConfig
from monitor.source import SqlMetricSource

__all__ = ["make_engine", "warehouse_source"]


def make_engine(database: DatabaseConfig) -> sa.Engine:
    """An engine for ``database``; ``pool_pre_ping`` so a restarted server does not fail the next tick."""
    return sa.create_engine(database.url, pool_pre_ping=True)


def warehouse_source(config: Config) -> SqlMetricSource:
    return SqlMetricSource(make_engine(config.database), schema=config.database.schema_name)
