"""The livewatch state store: schema, migrations and the SQL implementation of every storage port.

``schema`` holds the tables and column types, ``migrate`` the engine settings and Alembic upgrades, and
``sql`` the :class:`SqlStore` that satisfies :mod:`alerts.ports` and keeps the daemon's own state
(watermarks, models, runs).
"""

from monitor.store.migrate import (
    MIGRATIONS_DIR,
    check_up_to_date,
    current_revisions,
    is_up_to_date,
    make_engine,
    upgrade,
)
from monitor.store.schema import (
    RUN_STATUSES,
    MigrationError,
    NaiveTimestampError,
    RunStatus,
    StoreError,
    UnknownNotificationError,
    UTCDateTime,
    WatermarkRegressionError,
    metadata,
    model_states,
    notifications,
    runs,
    watermarks,
)
from monitor.store.sql import (
    HistorySummary,
    IncidentHistory,
    ModelState,
    Run,
    SqlIncidentRepository,
    SqlOutbox,
    SqlSilenceRepository,
    SqlStore,
    Watermark,
)

__all__ = [
    "MIGRATIONS_DIR",
    "RUN_STATUSES",
    "HistorySummary",
    "IncidentHistory",
    "MigrationError",
    "ModelState",
    "NaiveTimestampError",
    "Run",
    "RunStatus",
    "SqlIncidentRepository",
    "SqlOutbox",
    "SqlSilenceRepository",
    "SqlStore",
    "StoreError",
    "UTCDateTime",
    "UnknownNotificationError",
    "Watermark",
    "WatermarkRegressionError",
    "check_up_to_date",
    "current_revisions",
    "is_up_to_date",
    "make_engine",
    "metadata",
    "model_states",
    "notifications",
    "runs",
    "upgrade",
    "watermarks",
]
