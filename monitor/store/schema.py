"""Tables, column types and errors of the livewatch state store (SQLAlchemy Core).

Every timestamp column is :class:`UTCDateTime`: it accepts only timezone-aware values and returns UTC-aware
``datetime`` on every backend. Migrations (``monitor/store/migrations``) freeze their own copies of these
types, so a change here never alters what an old revision created.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

__all__ = [
    "IDENTIFIER",
    "LONG_ID",
    "RUN_STATUSES",
    "MigrationError",
    "NaiveTimestampError",
    "RunStatus",
    "StoreError",
    "UTCDateTime",
    "UnknownNotificationError",
    "WatermarkRegressionError",
    "false_positives",
    "incident_actions",
    "incident_events",
    "incident_members",
    "incidents",
    "metadata",
    "model_states",
    "notification_steps",
    "notifications",
    "runs",
    "silences",
    "slack_channels",
    "slack_threads",
    "watermarks",
]


# -- errors ---------------------------------------------------------------------------------------
class StoreError(Exception):
    """Base class of every error raised by :mod:`monitor.store`."""


class NaiveTimestampError(StoreError, ValueError):
    """A timestamp without timezone was given; the store only accepts UTC-aware (or offset-aware) values."""


class WatermarkRegressionError(StoreError, ValueError):
    """``advance_watermark`` was asked to move a watermark backwards or to stay in place."""


class MigrationError(StoreError, RuntimeError):
    """The database schema is not at the revision this livewatch expects."""


class UnknownNotificationError(StoreError, KeyError):
    """An outbox method was called with a notification id that was never enqueued."""


# -- column types ---------------------------------------------------------------------------------
def _to_utc(value: datetime, what: str) -> datetime:
    """A plain ``datetime`` in UTC (also turns ``pandas.Timestamp`` into ``datetime``)."""
    if not isinstance(value, datetime):
        raise TypeError(f"{what} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise NaiveTimestampError(
            f"{what} {value.isoformat()} has no timezone; pass a UTC-aware datetime "
            "(e.g. datetime(..., tzinfo=UTC) or pandas.Timestamp(..., tz='UTC'))"
        )
    utc = value.astimezone(UTC)
    return datetime(
        utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second, utc.microsecond, tzinfo=UTC
    )


class UTCDateTime(sa.TypeDecorator[datetime]):
    """``DateTime(timezone=True)`` that only accepts aware values and always returns UTC-aware ones.

    PostgreSQL stores ``timestamptz``; SQLite has no timezone support, so values are stored as naive UTC
    text (fixed width, so text order is time order) and tagged UTC again when read.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        utc = _to_utc(value, "timestamp")
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# -- schema ---------------------------------------------------------------------------------------
#: Constraint names are deterministic so migrations (and SQLite batch mode) can refer to them.
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

IDENTIFIER = 255  # metric, series, region, receiver, actor and similar names
LONG_ID = 512  # incident and notification ids, which embed names


def _key(length: int) -> sa.types.TypeEngine[str]:
    """A name or id column that sorts by code point on both backends (``COLLATE "C"`` on PostgreSQL),
    so orderings (and their tie-breaks on ids) match Python's ``sorted`` whatever the database locale."""
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")


watermarks = sa.Table(
    "watermarks",
    metadata,
    sa.Column("metric", _key(IDENTIFIER), primary_key=True),
    sa.Column("series", _key(IDENTIFIER), primary_key=True),
    sa.Column("bucket", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)

model_states = sa.Table(
    "model_states",
    metadata,
    sa.Column("metric", _key(IDENTIFIER), primary_key=True),
    sa.Column("series", _key(IDENTIFIER), primary_key=True),
    sa.Column("detector", _key(IDENTIFIER), primary_key=True),
    sa.Column("state", sa.Text(), nullable=False),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("fitted_at", UTCDateTime(), nullable=False),
    # Covers the per-tick freshness check (series, fitted_at of one metric) without reading the JSON rows.
    sa.Index(None, "metric", "detector", "series", "fitted_at"),
)

RunStatus = Literal["running", "ok", "partial", "failed"]
#: Values of ``runs.status``: ``running`` until :meth:`SqlStore.finish_run` sets one of the others.
RUN_STATUSES: tuple[str, ...] = ("running", "ok", "partial", "failed")

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("run_id", _key(64), primary_key=True),
    sa.Column("started_at", UTCDateTime(), nullable=False, index=True),
    sa.Column("finished_at", UTCDateTime(), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("series_scored", sa.Integer(), nullable=False),
    sa.Column("errors", sa.Integer(), nullable=False),
    sa.Column("detail", sa.JSON(none_as_null=True), nullable=True),
    sa.CheckConstraint(sa.column("status").in_(RUN_STATUSES), name="status"),
)


incidents = sa.Table(
    "incidents",
    metadata,
    sa.Column("id", _key(LONG_ID), primary_key=True),
    sa.Column("group_key", _key(LONG_ID), nullable=False, index=True),
    sa.Column("state", sa.String(16), nullable=False, index=True),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("opened_at", UTCDateTime(), nullable=False, index=True),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("acknowledged_at", UTCDateTime(), nullable=True),
    sa.Column("acknowledged_by", _key(IDENTIFIER), nullable=True),
    sa.Column("resolved_at", UTCDateTime(), nullable=True),
    sa.Column("snoozed_until", UTCDateTime(), nullable=True),
    sa.Column("payload", sa.JSON(), nullable=False),
)

#: Distinct (metric, region) of an incident's member signals, for ``list_incidents(metric=, region=)``.
incident_members = sa.Table(
    "incident_members",
    metadata,
    sa.Column(
        "incident_id",
        _key(LONG_ID),
        sa.ForeignKey("incidents.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("metric", _key(IDENTIFIER), primary_key=True),
    sa.Column("region", _key(IDENTIFIER), primary_key=True),
    sa.Index(None, "metric"),
    sa.Index(None, "region"),
)

#: Append-only audit log; no foreign key, so an event may be recorded before its incident is saved.
incident_events = sa.Table(
    "incident_events",
    metadata,
    sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("incident_id", _key(LONG_ID), nullable=False, index=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("actor", _key(IDENTIFIER), nullable=False),
    sa.Column("detail", sa.Text(), nullable=False),
)

#: The outbox: ``seq`` is the enqueue order, ``incident_seq`` the order within one incident.
notifications = sa.Table(
    "notifications",
    metadata,
    sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("id", _key(LONG_ID), nullable=False, unique=True),
    sa.Column("incident_id", _key(LONG_ID), nullable=False),
    sa.Column("incident_seq", sa.Integer(), nullable=False),
    sa.Column("receiver", _key(IDENTIFIER), nullable=False),
    sa.Column("channel", _key(IDENTIFIER), nullable=False),
    sa.Column("reason", sa.String(32), nullable=False),
    sa.Column("payload", sa.JSON(), nullable=False),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("last_error", sa.Text(), nullable=True),
    sa.Column("retryable", sa.Boolean(), nullable=True),
    sa.Column("delivered_channel", _key(IDENTIFIER), nullable=True),
    sa.Column("slack_ts", sa.String(64), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("last_attempt_at", UTCDateTime(), nullable=True),
    sa.Column("delivered_at", UTCDateTime(), nullable=True),
    sa.Column("failed_at", UTCDateTime(), nullable=True),
    sa.UniqueConstraint("incident_id", "incident_seq"),
    sa.CheckConstraint(sa.column("status").in_(("pending", "delivered", "failed")), name="status"),
)

#: Where each incident's living message is, per receiver (first delivery wins).
slack_threads = sa.Table(
    "slack_threads",
    metadata,
    sa.Column("incident_id", _key(LONG_ID), primary_key=True),
    sa.Column("receiver", _key(IDENTIFIER), primary_key=True),
    sa.Column("channel", _key(IDENTIFIER), nullable=False),
    sa.Column("ts", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
)

silences = sa.Table(
    "silences",
    metadata,
    sa.Column("id", _key(IDENTIFIER), primary_key=True),
    sa.Column("matchers", sa.JSON(), nullable=False),
    sa.Column("reason", sa.Text(), nullable=False),
    sa.Column("created_by", _key(IDENTIFIER), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False, index=True),
)

#: Every step of a notification's delivery (post, upload, update, reply), append-only (alerts.steps).
notification_steps = sa.Table(
    "notification_steps",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("notification_id", _key(LONG_ID), nullable=False, index=True),
    sa.Column("payload", sa.JSON(), nullable=False),
)

#: Slack channel name (without '#') -> channel id, so recovery can read the history of a named channel.
slack_channels = sa.Table(
    "slack_channels",
    metadata,
    sa.Column("name", _key(IDENTIFIER), primary_key=True),
    sa.Column("channel_id", _key(IDENTIFIER), nullable=False),
)

#: People's actions from Slack (acknowledge, snooze, resolve, not an incident), unique per action key.
incident_actions = sa.Table(
    "incident_actions",
    metadata,
    sa.Column("key", _key(LONG_ID), primary_key=True),
    sa.Column("incident_id", _key(LONG_ID), nullable=False, index=True),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("payload", sa.JSON(), nullable=False),
)

#: Buckets marked "not an incident": the refit leaves them out of the baseline.
false_positives = sa.Table(
    "false_positives",
    metadata,
    sa.Column("incident_id", _key(LONG_ID), primary_key=True),
    sa.Column("metric", _key(IDENTIFIER), primary_key=True),
    sa.Column("region", _key(IDENTIFIER), primary_key=True),
    sa.Column("start", UTCDateTime(), nullable=False, index=True),
    sa.Column("end", UTCDateTime(), nullable=False),
    sa.Column("marked_by", _key(IDENTIFIER), nullable=False),
    sa.Column("marked_at", UTCDateTime(), nullable=False),
)
