"""Seed bootstrap (Drizzle 0000_puzzling_proudstar): all tables, without the later fields.

Revision ID: 0000
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0000"
down_revision = None
branch_labels = None
depends_on = None

GEN = sa.text("gen_random_uuid()")
NOW = sa.text("now()")


def _id() -> sa.Column:
    return sa.Column("id", UUID(as_uuid=True), primary_key=True, server_default=GEN)


def _created() -> sa.Column:
    return sa.Column("created_at", sa.DateTime(), server_default=NOW, nullable=True)


def _fk(table: str, column: str, target: str, **kw: object) -> sa.Column:
    """A uuid FK column named as Drizzle names it (the convention cannot see the other table here)."""
    ref_table, ref_col = target.split(".")
    name = f"{table}_{column}_{ref_table}_{ref_col}_fk"
    return sa.Column(column, UUID(as_uuid=True), sa.ForeignKey(target, name=name), **kw)  # type: ignore[arg-type]


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("email", sa.Text(), unique=True),
        sa.Column("mobile", sa.Text(), unique=True),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        _created(),
        sa.Column("updated_at", sa.DateTime()),
    )
    op.create_table(
        "tenants",
        _id(),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("country", sa.Text(), nullable=False, server_default=sa.text("'US'")),
        sa.Column("status", sa.Text(), nullable=False, server_default=sa.text("'active'")),
        _created(),
    )
    op.create_table(
        "tenant_users",
        _id(),
        _fk("tenant_users", "user_id", "users.id", nullable=False),
        _fk("tenant_users", "tenant_id", "tenants.id", nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.UniqueConstraint("user_id", "tenant_id"),
    )
    op.create_index("tenant_users_tenant_idx", "tenant_users", ["tenant_id"])
    op.create_table(
        "pos_connections",
        _id(),
        _fk("pos_connections", "tenant_id", "tenants.id", nullable=False),
        sa.Column("pos_type", sa.Text(), nullable=False),
        sa.Column("access_token_enc", sa.Text(), nullable=False),
        sa.Column("refresh_token_enc", sa.Text(), nullable=False),
        sa.Column("merchant_account_id", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("token_expires_at", sa.DateTime()),
        sa.Column("last_synced_at", sa.DateTime()),
        _created(),
    )
    op.create_table(
        "pos_webhook_events_raw",
        _id(),
        _fk("pos_webhook_events_raw", "tenant_id", "tenants.id", nullable=False),
        sa.Column("provider", sa.Text(), nullable=False),
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.Column("raw_payload", JSONB(), nullable=False),
        sa.Column("signature_header", sa.Text()),
        sa.Column("processed", sa.Boolean(), server_default=sa.text("false")),
        _created(),
    )
    op.create_index("pos_webhook_events_raw_processed_idx", "pos_webhook_events_raw", ["processed", "created_at"])
    op.create_table(
        "transactions",
        _id(),
        _fk("transactions", "tenant_id", "tenants.id", nullable=False),
        _fk("transactions", "user_id", "users.id"),
        sa.Column("provider", sa.Text(), nullable=False),
        sa.Column("provider_transaction_id", sa.Text(), nullable=False),
        sa.Column("amount_minor_units", sa.Integer(), nullable=False),
        sa.Column("currency", sa.Text(), nullable=False, server_default=sa.text("'USD'")),
        sa.Column("customer_ref", JSONB()),
        sa.Column("line_items", JSONB()),
        sa.Column("transaction_at", sa.DateTime(), nullable=False),
        _created(),
        sa.UniqueConstraint("tenant_id", "provider", "provider_transaction_id"),
    )
    op.create_index("transactions_tenant_time_idx", "transactions", ["tenant_id", "transaction_at"])
    op.create_index("transactions_user_idx", "transactions", ["user_id"])
    op.create_table(
        "wallets",
        _id(),
        _fk("wallets", "tenant_id", "tenants.id", nullable=False),
        _fk("wallets", "user_id", "users.id", nullable=False),
        sa.Column("points_balance", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("status", sa.Text(), nullable=False, server_default=sa.text("'active'")),
        _created(),
        sa.Column("updated_at", sa.DateTime()),
        sa.UniqueConstraint("tenant_id", "user_id"),
    )
    op.create_table(
        "wallet_ledger",
        _id(),
        _fk("wallet_ledger", "wallet_id", "wallets.id", nullable=False),
        sa.Column("entry_type", sa.Text(), nullable=False),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("description", sa.Text()),
        _fk("wallet_ledger", "source_transaction_id", "transactions.id"),
        _fk("wallet_ledger", "created_by_admin", "users.id"),
        _created(),
        sa.CheckConstraint("entry_type in ('credit', 'debit')", name="entry_type"),
        sa.CheckConstraint("points > 0", name="points"),
    )
    op.create_index("wallet_ledger_wallet_time_idx", "wallet_ledger", ["wallet_id", "created_at"])
    op.create_table(
        "reward_rules",
        _id(),
        _fk("reward_rules", "tenant_id", "tenants.id", nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("is_active", sa.Boolean(), server_default=sa.text("true")),
        sa.Column("rule_config", JSONB(), nullable=False),
        sa.Column("effective_from", sa.DateTime(), nullable=False),
        _created(),
    )
    op.create_index("reward_rules_tenant_active_idx", "reward_rules", ["tenant_id", "is_active"])
    op.create_table(
        "reward_events",
        _id(),
        _fk("reward_events", "wallet_id", "wallets.id", nullable=False),
        _fk("reward_events", "transaction_id", "transactions.id"),
        _fk("reward_events", "rule_version_id", "reward_rules.id"),
        sa.Column("points_earned", sa.Integer(), server_default=sa.text("0")),
        sa.Column("points_redeemed", sa.Integer(), server_default=sa.text("0")),
        _created(),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("key", sa.Text(), primary_key=True),
        _fk("idempotency_keys", "tenant_id", "tenants.id"),
        sa.Column("handler", sa.Text(), nullable=False),
        sa.Column("result_snapshot", JSONB()),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        _created(),
    )
    op.create_table(
        "admin_audit_logs",
        _id(),
        _fk("admin_audit_logs", "actor_user_id", "users.id", nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("target_entity_id", sa.Text()),
        sa.Column("target_entity_type", sa.Text()),
        sa.Column("before_state", JSONB()),
        sa.Column("after_state", JSONB()),
        sa.Column("reason", sa.Text()),
        _created(),
    )
    op.create_index("admin_audit_logs_actor_idx", "admin_audit_logs", ["actor_user_id", "created_at"])
    op.create_index(
        "admin_audit_logs_target_idx", "admin_audit_logs", ["target_entity_type", "target_entity_id", "created_at"]
    )
    op.create_index("admin_audit_logs_created_idx", "admin_audit_logs", ["created_at"])


def downgrade() -> None:
    for table in (
        "admin_audit_logs", "idempotency_keys", "reward_events", "reward_rules", "wallet_ledger", "wallets",
        "transactions", "pos_webhook_events_raw", "pos_connections", "tenant_users", "tenants", "users",
    ):
        op.drop_table(table)
