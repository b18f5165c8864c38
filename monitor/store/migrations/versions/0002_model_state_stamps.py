"""Covering index for the tick's model freshness check (metric, detector, series, fitted_at).

Without it SQLite reads every stored model's JSON (hundreds of KB each) to answer "which models changed";
with it the check reads the index only (0.65 s -> 7 ms for 10,000 models).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_model_states_metric_detector_series_fitted_at"


def upgrade() -> None:
    """Upgrade schema."""
    op.create_index(op.f(INDEX), "model_states", ["metric", "detector", "series", "fitted_at"])


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index(op.f(INDEX), table_name="model_states")
