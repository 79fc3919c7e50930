"""Reconciliation side tables (runs, findings, repair requests, approval policy).

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # reserved: filled in by the issue that owns these tables


def downgrade() -> None:
    pass
