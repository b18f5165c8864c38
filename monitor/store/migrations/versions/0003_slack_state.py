"""Exactly-once Slack delivery and actions from Slack: steps, channel ids, actions, false positives.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

Types are frozen here (not imported from :mod:`monitor.store`) so later code changes cannot alter what
this revision creates.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
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
        "notification_steps",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("notification_id", _key(512), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_steps")),
    )
    op.create_index(op.f("ix_notification_steps_notification_id"), "notification_steps", ["notification_id"])
    op.create_table(
        "slack_channels",
        sa.Column("name", _key(255), nullable=False),
        sa.Column("channel_id", _key(255), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_slack_channels")),
    )
    op.create_table(
        "incident_actions",
        sa.Column("key", _key(512), nullable=False),
        sa.Column("incident_id", _key(512), nullable=False),
        sa.Column("at", _utc(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_incident_actions")),
    )
    op.create_index(op.f("ix_incident_actions_incident_id"), "incident_actions", ["incident_id"])
    op.create_table(
        "false_positives",
        sa.Column("incident_id", _key(512), nullable=False),
        sa.Column("metric", _key(255), nullable=False),
        sa.Column("region", _key(255), nullable=False),
        sa.Column("start", _utc(), nullable=False),
        sa.Column("end", _utc(), nullable=False),
        sa.Column("marked_by", _key(255), nullable=False),
        sa.Column("marked_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("incident_id", "metric", "region", name=op.f("pk_false_positives")),
    )
    op.create_index(op.f("ix_false_positives_start"), "false_positives", ["start"])


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index(op.f("ix_false_positives_start"), table_name="false_positives")
    op.drop_table("false_positives")
    op.drop_index(op.f("ix_incident_actions_incident_id"), table_name="incident_actions")
    op.drop_table("incident_actions")
    op.drop_table("slack_channels")
    op.drop_index(op.f("ix_notification_steps_notification_id"), table_name="notification_steps")
    op.drop_table("notification_steps")
