"""Merchant onboarding fields on tenants (Drizzle 0001_lovely_patch).

Revision ID: 0001
Revises: 0000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = "0000"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tenants", sa.Column("pos_provider_preference", sa.Text()))
    op.add_column("tenants", sa.Column("onboarding_profile", JSONB()))
    op.add_column("tenants", sa.Column("updated_at", sa.DateTime()))


def downgrade() -> None:
    op.drop_column("tenants", "updated_at")
    op.drop_column("tenants", "onboarding_profile")
    op.drop_column("tenants", "pos_provider_preference")
