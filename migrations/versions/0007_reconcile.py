"""Reconciliation side tables (runs, findings, change tracking, repair requests, settings).

Change tracking for incremental runs: statement-level triggers (transition tables, one insert per
statement, not per row) record which wallets and transactions each database transaction touched,
keyed by `pg_current_xact_id()`. A run stores `pg_current_snapshot()`; the next incremental run
recomputes what was written by transactions not visible in that snapshot, so rows committed after
the checkpoint are found whatever their `created_at`.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

GEN_UUID = sa.text("gen_random_uuid()")


def _fk(table: str, column: str, target: str, **kw: str) -> sa.ForeignKey:
    """Explicitly named FK (the naming convention cannot resolve targets outside this migration)."""
    ref_table, ref_col = target.split(".")
    return sa.ForeignKey(target, name=f"{table}_{column}_{ref_table}_{ref_col}_fk", **kw)

# (trigger name, table, event, function body selecting (kind, entity_id, ledger_rows) from new_rows)
_TRACKED: list[tuple[str, str, str, str]] = [
    ("wallet_ledger_track_ins", "wallet_ledger", "insert",
     "select 'wallet', wallet_id, count(*) from new_rows group by wallet_id"
     " union all select 'transaction', source_transaction_id, 0 from new_rows"
     " where source_transaction_id is not null group by source_transaction_id"),
    ("wallets_track_ins", "wallets", "insert", "select 'wallet', id, 0 from new_rows"),
    # a wallet moved to another tenant or customer invalidates cross-tenant results: recompute all
    ("wallets_track_upd", "wallets", "update",
     "select 'wallet', id, 0 from new_rows union all (select 'all', null::uuid, 0 from new_rows n"
     " join old_rows o on o.id = n.id where o.tenant_id <> n.tenant_id or o.user_id <> n.user_id limit 1)"),
    ("reward_events_track_ins", "reward_events", "insert",
     "select 'wallet', wallet_id, 0 from new_rows group by wallet_id"
     " union all select 'transaction', transaction_id, 0 from new_rows"
     " where transaction_id is not null group by transaction_id"),
    ("transactions_track_ins", "transactions", "insert", "select 'transaction', id, 0 from new_rows"),
    ("transactions_track_upd", "transactions", "update", "select 'transaction', id, 0 from new_rows"),
    ("reward_rules_track_ins", "reward_rules", "insert", "select 'all', null::uuid, 0 from new_rows limit 1"),
    ("reward_rules_track_upd", "reward_rules", "update", "select 'all', null::uuid, 0 from new_rows limit 1"),
    ("admin_audit_logs_track_ins", "admin_audit_logs", "insert",
     "select 'wallet', target_entity_id::uuid, 0 from new_rows where target_entity_type = 'wallet'"
     " and target_entity_id ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'"),
]
# the rewards domain's refunds side table, when present (revision 0004)
_REFUNDS = [
    ("transaction_refunds_track_ins", "transaction_refunds", "insert",
     "select 'transaction', transaction_id, 0 from new_rows where transaction_id is not null"),
    ("transaction_refunds_track_upd", "transaction_refunds", "update",
     "select 'transaction', transaction_id, 0 from new_rows where transaction_id is not null"),
]


def _create_trigger(name: str, table: str, event: str, body: str) -> None:
    op.execute(
        f"create or replace function salesarck_{name}() returns trigger language plpgsql as $$ begin "
        f"insert into reconcile_changes (kind, entity_id, ledger_rows) {body}; return null; end $$"
    )
    old = " old table as old_rows" if event == "update" else ""
    op.execute(
        f"create trigger {name} after {event} on {table} referencing new table as new_rows{old} "
        f"for each statement execute function salesarck_{name}()"
    )


def upgrade() -> None:
    op.create_table(
        "reconcile_runs",
        sa.Column("id", UUID(as_uuid=True), primary_key=True, server_default=GEN_UUID),
        sa.Column("actor_user_id", UUID(as_uuid=True), _fk("reconcile_runs", "actor_user_id", "users.id"), nullable=False),
        sa.Column("tenant_id", UUID(as_uuid=True), _fk("reconcile_runs", "tenant_id", "tenants.id")),
        sa.Column("scope_key", sa.Text(), nullable=False),
        sa.Column("backend", sa.Text(), nullable=False),
        sa.Column("checks", JSONB(), nullable=False),
        sa.Column("incremental", sa.Boolean(), nullable=False, server_default=sa.text("false")),
        sa.Column("base_run_id", UUID(as_uuid=True)),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("db_snapshot", sa.Text()),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime()),
        sa.Column("duration_ms", sa.Integer()),
        sa.Column("wallets_checked", sa.BigInteger()),
        sa.Column("ledger_entries", sa.BigInteger()),
        sa.Column("drift_count", sa.Integer()),
        sa.Column("error_count", sa.Integer()),
        sa.Column("warning_count", sa.Integer()),
        sa.Column("timings", JSONB()),
        sa.Column("error", sa.Text()),
    )
    op.create_index("reconcile_runs_started_idx", "reconcile_runs", ["started_at"])
    op.create_index("reconcile_runs_scope_idx", "reconcile_runs", ["scope_key", "started_at"])
    op.create_table(
        "reconcile_findings",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("run_id", UUID(as_uuid=True), _fk("reconcile_findings", "run_id", "reconcile_runs.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("check_id", sa.Text(), nullable=False),
        sa.Column("severity", sa.Text(), nullable=False),
        sa.Column("entity_type", sa.Text(), nullable=False),
        sa.Column("entity_id", sa.Text(), nullable=False),
        sa.Column("tenant_id", UUID(as_uuid=True)),
        sa.Column("wallet_id", UUID(as_uuid=True)),
        sa.Column("transaction_id", UUID(as_uuid=True)),
        sa.Column("user_id", UUID(as_uuid=True)),
        sa.Column("snapshot_points", sa.BigInteger()),
        sa.Column("ledger_points", sa.BigInteger()),
        sa.Column("drift_points", sa.BigInteger()),
        sa.Column("explanation_code", sa.Text()),
        sa.Column("detail", sa.Text()),
    )
    op.create_index("reconcile_findings_run_idx", "reconcile_findings", ["run_id", "kind"])
    op.create_table(
        "reconcile_changes",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("txid", sa.BigInteger(), nullable=False,
                  server_default=sa.text("(pg_current_xact_id())::text::bigint")),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("entity_id", UUID(as_uuid=True)),
        sa.Column("ledger_rows", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
    )
    op.create_index("reconcile_changes_txid_idx", "reconcile_changes", ["txid"])
    op.create_table(
        "repair_requests",
        sa.Column("id", UUID(as_uuid=True), primary_key=True, server_default=GEN_UUID),
        sa.Column("tenant_id", UUID(as_uuid=True), _fk("repair_requests", "tenant_id", "tenants.id")),
        sa.Column("wallet_ids", JSONB()),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("requested_by", UUID(as_uuid=True), _fk("repair_requests", "requested_by", "users.id"), nullable=False),
        sa.Column("requested_at", sa.DateTime(), nullable=False, server_default=sa.func.now()),
        sa.Column("decided_by", UUID(as_uuid=True), _fk("repair_requests", "decided_by", "users.id")),
        sa.Column("decided_at", sa.DateTime()),
        sa.Column("decision_reason", sa.Text()),
        sa.Column("result", JSONB()),
    )
    op.create_index("repair_requests_status_idx", "repair_requests", ["status", "requested_at"])
    op.create_table(
        "reconcile_settings",
        sa.Column("key", sa.Text(), primary_key=True),
        sa.Column("value", JSONB(), nullable=False),
        sa.Column("updated_by", UUID(as_uuid=True), _fk("reconcile_settings", "updated_by", "users.id")),
        sa.Column("updated_at", sa.DateTime(), server_default=sa.func.now()),
    )
    for name, table, event, body in _TRACKED:
        _create_trigger(name, table, event, body)
    conn = op.get_bind()
    if conn.execute(sa.text("select to_regclass('transaction_refunds') is not null")).scalar():
        for name, table, event, body in _REFUNDS:
            _create_trigger(name, table, event, body)


def downgrade() -> None:
    for name, table, _event, _body in [*_TRACKED, *_REFUNDS]:
        op.execute(
            f"do $$ begin if to_regclass('{table}') is not null then "
            f"drop trigger if exists {name} on {table}; end if; end $$"
        )
        op.execute(f"drop function if exists salesarck_{name}()")
    op.drop_table("reconcile_settings")
    op.drop_index("repair_requests_status_idx", table_name="repair_requests")
    op.drop_table("repair_requests")
    op.drop_index("reconcile_changes_txid_idx", table_name="reconcile_changes")
    op.drop_table("reconcile_changes")
    op.drop_index("reconcile_findings_run_idx", table_name="reconcile_findings")
    op.drop_table("reconcile_findings")
    op.drop_index("reconcile_runs_scope_idx", table_name="reconcile_runs")
    op.drop_index("reconcile_runs_started_idx", table_name="reconcile_runs")
    op.drop_table("reconcile_runs")
