"""POS side tables (sync runs, connection events, merchant uniqueness).

- sync_runs: run history and the one-running-sync-per-connection lease (partial unique index);
- pos_connection_events: status changes of a connection, system- or operator-made;
- a unique index on pos_connections (pos_type, merchant_account_id): one merchant, one tenant.
  A database holding duplicates is refused with the duplicates named, not half-migrated.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _counter(name: str, kind: sa.types.TypeEngine[int] | None = None) -> sa.Column[int]:
    return sa.Column(name, kind or sa.Integer(), server_default=sa.text("0"), nullable=False)


def upgrade() -> None:
    dupes = op.get_bind().execute(sa.text(
        "select pos_type, merchant_account_id, count(*) as n from pos_connections "
        "group by 1, 2 having count(*) > 1 order by 1, 2 limit 5"
    )).all()
    if dupes:
        named = ", ".join(f"{r.pos_type}:{r.merchant_account_id} ({r.n} rows)" for r in dupes)
        raise RuntimeError(
            "pos_connections holds the same provider merchant more than once: "
            f"{named}; keep one row per merchant, then migrate again"
        )
    op.create_index("pos_connections_pos_type_merchant_unique", "pos_connections",
                    ["pos_type", "merchant_account_id"], unique=True)

    op.create_table(
        "sync_runs",
        sa.Column("id", UUID(as_uuid=True), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("connection_id", UUID(as_uuid=True), nullable=False),
        sa.Column("tenant_id", UUID(as_uuid=True), nullable=False),
        sa.Column("provider", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), server_default=sa.text("'running'"), nullable=False),
        sa.Column("trigger", sa.Text(), server_default=sa.text("'manual'"), nullable=False),
        sa.Column("actor_user_id", UUID(as_uuid=True)),
        sa.Column("started_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.Column("lease_expires_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime()),
        sa.Column("window_start", sa.DateTime()),
        sa.Column("watermark_after", sa.DateTime()),
        _counter("pages"),
        _counter("payments_seen"),
        _counter("posted"),
        _counter("duplicates"),
        _counter("skipped"),
        _counter("points_credited", sa.BigInteger()),
        _counter("points_debited", sa.BigInteger()),
        sa.Column("summary", JSONB()),
        sa.Column("error", sa.Text()),
        sa.PrimaryKeyConstraint("id", name="sync_runs_pkey"),
        sa.ForeignKeyConstraint(["connection_id"], ["pos_connections.id"], ondelete="CASCADE",
                                name="sync_runs_connection_id_pos_connections_id_fk"),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name="sync_runs_tenant_id_tenants_id_fk"),
        sa.ForeignKeyConstraint(["actor_user_id"], ["users.id"], name="sync_runs_actor_user_id_users_id_fk"),
        sa.CheckConstraint("status in ('running', 'succeeded', 'failed', 'abandoned')", name="sync_runs_status_check"),
    )
    op.create_index("sync_runs_one_running_per_connection", "sync_runs", ["connection_id"], unique=True,
                    postgresql_where=sa.text("status = 'running'"))
    op.create_index("sync_runs_connection_started_idx", "sync_runs", ["connection_id", "started_at"])
    op.create_index("sync_runs_tenant_started_idx", "sync_runs", ["tenant_id", "started_at"])

    op.create_table(
        "pos_connection_events",
        sa.Column("id", UUID(as_uuid=True), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("connection_id", UUID(as_uuid=True), nullable=False),
        sa.Column("tenant_id", UUID(as_uuid=True), nullable=False),
        sa.Column("event", sa.Text(), nullable=False),
        sa.Column("from_status", sa.Text()),
        sa.Column("to_status", sa.Text()),
        sa.Column("reason", sa.Text()),
        sa.Column("error_code", sa.Text()),
        sa.Column("actor_user_id", UUID(as_uuid=True)),
        sa.Column("created_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pos_connection_events_pkey"),
        sa.ForeignKeyConstraint(["connection_id"], ["pos_connections.id"], ondelete="CASCADE",
                                name="pos_connection_events_connection_id_pos_connections_id_fk"),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name="pos_connection_events_tenant_id_tenants_id_fk"),
        sa.ForeignKeyConstraint(["actor_user_id"], ["users.id"],
                                name="pos_connection_events_actor_user_id_users_id_fk"),
    )
    op.create_index("pos_connection_events_connection_time_idx", "pos_connection_events",
                    ["connection_id", "created_at"])


def downgrade() -> None:
    op.drop_index("pos_connection_events_connection_time_idx", table_name="pos_connection_events")
    op.drop_table("pos_connection_events")
    op.drop_index("sync_runs_tenant_started_idx", table_name="sync_runs")
    op.drop_index("sync_runs_connection_started_idx", table_name="sync_runs")
    op.drop_index("sync_runs_one_running_per_connection", table_name="sync_runs")
    op.drop_table("sync_runs")
    op.drop_index("pos_connections_pos_type_merchant_unique", table_name="pos_connections")
