"""POS side tables (sync runs, connection events, merchant uniqueness).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # reserved: filled in by the issue that owns these tables


def downgrade() -> None:
    pass
