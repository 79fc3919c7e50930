"""Integrity guards the seed states but Drizzle could not express.

- wallet_ledger and admin_audit_logs refuse UPDATE, DELETE and TRUNCATE (append-only);
- at most one active reward rule per tenant (partial unique index);
- reward rule versions unique per tenant (concurrent creators cannot both take N+1).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

APPEND_ONLY = ("wallet_ledger", "admin_audit_logs")


def upgrade() -> None:
    op.execute(
        """
        create or replace function salesarck_refuse_change() returns trigger
        language plpgsql as $$
        begin
            raise exception '% is append-only: % is refused', tg_table_name, tg_op
                using errcode = 'restrict_violation',
                      hint = 'post a compensating entry instead of changing history';
        end
        $$
        """
    )
    for table in APPEND_ONLY:
        op.execute(
            f"create trigger {table}_refuse_update_delete before update or delete on {table} "
            f"for each row execute function salesarck_refuse_change()"
        )
        op.execute(
            f"create trigger {table}_refuse_truncate before truncate on {table} "
            f"for each statement execute function salesarck_refuse_change()"
        )
    op.execute(
        "create unique index if not exists reward_rules_one_active_per_tenant "
        "on reward_rules (tenant_id) where is_active"
    )
    op.execute(
        "create unique index if not exists reward_rules_tenant_version_unique "
        "on reward_rules (tenant_id, version)"
    )


def downgrade() -> None:
    op.execute("drop index if exists reward_rules_tenant_version_unique")
    op.execute("drop index if exists reward_rules_one_active_per_tenant")
    for table in APPEND_ONLY:
        op.execute(f"drop trigger if exists {table}_refuse_truncate on {table}")
        op.execute(f"drop trigger if exists {table}_refuse_update_delete on {table}")
    op.execute("drop function if exists salesarck_refuse_change()")
