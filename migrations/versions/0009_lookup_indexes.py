"""Expression index for case-insensitive email lookups (customer matching, actor sign-in).

Posting matches customers by `lower(email)` for every batch; without this index each batch scans
all users.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("create index if not exists users_email_lower_idx on users (lower(email))")


def downgrade() -> None:
    op.execute("drop index if exists users_email_lower_idx")
