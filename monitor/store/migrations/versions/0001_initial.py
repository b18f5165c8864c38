"""Initial livewatch store schema: incidents (+ members, lifecycle events), notification outbox, Slack
threads, silences, watermarks, model states and runs.

Revision ID: 0001
Revises:
Create Date: 2026-11-29

Types are frozen here (not imported from :mod:`monitor.store`) so later code changes cannot alter what
this revision creates.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _key(length: int) -> sa.types.TypeEngine[str]:
    """Names and ids: byte-order collation on PostgreSQL, like SQLite's default."""
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "incident_events",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("incident_id", _key(512), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("at", _utc(), nullable=False),
        sa.Column("actor", _key(255), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_incident_events")),
    )
    op.create_index(op.f("ix_incident_events_incident_id"), "incident_events", ["incident_id"])

    op.create_table(
        "incidents",
        sa.Column("id", _key(512), nullable=False),
        sa.Column("group_key", _key(512), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("opened_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.Column("acknowledged_at", _utc(), nullable=True),
        sa.Column("acknowledged_by", _key(255), nullable=True),
        sa.Column("resolved_at", _utc(), nullable=True),
        sa.Column("snoozed_until", _utc(), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incidents")),
    )
    op.create_index(op.f("ix_incidents_group_key"), "incidents", ["group_key"])
    op.create_index(op.f("ix_incidents_opened_at"), "incidents", ["opened_at"])
    op.create_index(op.f("ix_incidents_state"), "incidents", ["state"])

    op.create_table(
        "model_states",
        sa.Column("metric", _key(255), nullable=False),
        sa.Column("series", _key(255), nullable=False),
        sa.Column("detector", _key(255), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("fitted_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("metric", "series", "detector", name=op.f("pk_model_states")),
    )
    op.create_table(
        "notifications",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("id", _key(512), nullable=False),
        sa.Column("incident_id", _key(512), nullable=False),
        sa.Column("incident_seq", sa.Integer(), nullable=False),
        sa.Column("receiver", _key(255), nullable=False),
        sa.Column("channel", _key(255), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("retryable", sa.Boolean(), nullable=True),
        sa.Column("delivered_channel", _key(255), nullable=True),
        sa.Column("slack_ts", sa.String(length=64), nullable=True),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("last_attempt_at", _utc(), nullable=True),
        sa.Column("delivered_at", _utc(), nullable=True),
        sa.Column("failed_at", _utc(), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'delivered', 'failed')", name=op.f("ck_notifications_status")
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_notifications")),
        sa.UniqueConstraint("id", name=op.f("uq_notifications_id")),
        sa.UniqueConstraint(
            "incident_id", "incident_seq", name=op.f("uq_notifications_incident_id_incident_seq")
        ),
    )
    op.create_index(op.f("ix_notifications_status"), "notifications", ["status"])

    op.create_table(
        "runs",
        sa.Column("run_id", _key(64), nullable=False),
        sa.Column("started_at", _utc(), nullable=False),
        sa.Column("finished_at", _utc(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("series_scored", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.CheckConstraint("status IN ('running', 'ok', 'partial', 'failed')", name=op.f("ck_runs_status")),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_runs")),
    )
    op.create_index(op.f("ix_runs_started_at"), "runs", ["started_at"])

    op.create_table(
        "silences",
        sa.Column("id", _key(255), nullable=False),
        sa.Column("matchers", sa.JSON(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_by", _key(255), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("expires_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_silences")),
    )
    op.create_index(op.f("ix_silences_expires_at"), "silences", ["expires_at"])

    op.create_table(
        "slack_threads",
        sa.Column("incident_id", _key(512), nullable=False),
        sa.Column("receiver", _key(255), nullable=False),
        sa.Column("channel", _key(255), nullable=False),
        sa.Column("ts", sa.String(length=64), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("incident_id", "receiver", name=op.f("pk_slack_threads")),
    )
    op.create_table(
        "watermarks",
        sa.Column("metric", _key(255), nullable=False),
        sa.Column("series", _key(255), nullable=False),
        sa.Column("bucket", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("metric", "series", name=op.f("pk_watermarks")),
    )
    op.create_table(
        "incident_members",
        sa.Column("incident_id", _key(512), nullable=False),
        sa.Column("metric", _key(255), nullable=False),
        sa.Column("region", _key(255), nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_incident_members_incident_id_incidents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("incident_id", "metric", "region", name=op.f("pk_incident_members")),
    )
    op.create_index(op.f("ix_incident_members_metric"), "incident_members", ["metric"])
    op.create_index(op.f("ix_incident_members_region"), "incident_members", ["region"])


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index(op.f("ix_incident_members_region"), table_name="incident_members")
    op.drop_index(op.f("ix_incident_members_metric"), table_name="incident_members")

    op.drop_table("incident_members")
    op.drop_table("watermarks")
    op.drop_table("slack_threads")
    op.drop_index(op.f("ix_silences_expires_at"), table_name="silences")

    op.drop_table("silences")
    op.drop_index(op.f("ix_runs_started_at"), table_name="runs")

    op.drop_table("runs")
    op.drop_index(op.f("ix_notifications_status"), table_name="notifications")

    op.drop_table("notifications")
    op.drop_table("model_states")
    op.drop_index(op.f("ix_incidents_state"), table_name="incidents")
    op.drop_index(op.f("ix_incidents_opened_at"), table_name="incidents")
    op.drop_index(op.f("ix_incidents_group_key"), table_name="incidents")

    op.drop_table("incidents")
    op.drop_index(op.f("ix_incident_events_incident_id"), table_name="incident_events")

    op.drop_table("incident_events")
