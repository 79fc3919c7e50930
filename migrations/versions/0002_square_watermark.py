"""Square polling watermark on pos_connections (Drizzle 0002_tired_cannonball).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("pos_connections", sa.Column("square_payments_watermark_at", sa.DateTime()))


def downgrade() -> None:
    op.drop_column("pos_connections", "square_payments_watermark_at")
