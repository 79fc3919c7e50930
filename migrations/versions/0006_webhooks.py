"""Webhook side tables (raw bodies, delivery keys, attempts), connection options, worker state.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_EVENT_FK = "pos_webhook_events_raw.id"


def upgrade() -> None:
    op.create_table(
        "pos_webhook_event_bodies",
        sa.Column("event_id", UUID(as_uuid=True), nullable=False),
        sa.Column("merchant_id", sa.Text(), nullable=False),
        sa.Column("raw_body", sa.LargeBinary(), nullable=False),
        sa.Column("received_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("event_id"),
        sa.ForeignKeyConstraint(["event_id"], [_EVENT_FK], ondelete="CASCADE",
                                name="pos_webhook_event_bodies_event_id_fk"),
    )
    op.create_table(
        "pos_webhook_event_keys",
        sa.Column("provider", sa.Text(), nullable=False),
        sa.Column("dedup_key", sa.Text(), nullable=False),
        sa.Column("event_id", UUID(as_uuid=True), nullable=False),
        sa.PrimaryKeyConstraint("provider", "dedup_key"),
        sa.ForeignKeyConstraint(["event_id"], [_EVENT_FK], ondelete="CASCADE",
                                name="pos_webhook_event_keys_event_id_fk"),
    )
    op.create_index("pos_webhook_event_keys_event_id_idx", "pos_webhook_event_keys", ["event_id"])
    op.create_table(
        "pos_webhook_event_attempts",
        sa.Column("event_id", UUID(as_uuid=True), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.Text()),
        sa.Column("last_attempt_at", sa.DateTime()),
        sa.Column("next_attempt_at", sa.DateTime()),
        sa.Column("dead_lettered_at", sa.DateTime()),
        sa.Column("processed_at", sa.DateTime()),
        sa.Column("result", JSONB()),
        sa.PrimaryKeyConstraint("event_id"),
        sa.ForeignKeyConstraint(["event_id"], [_EVENT_FK], ondelete="CASCADE",
                                name="pos_webhook_event_attempts_event_id_fk"),
        sa.CheckConstraint("attempts >= 0", name="attempts"),
    )
    op.create_index("pos_webhook_event_attempts_dead_idx", "pos_webhook_event_attempts", ["dead_lettered_at"])
    op.create_table(
        "pos_connection_options",
        sa.Column("connection_id", UUID(as_uuid=True), nullable=False),
        sa.Column("poll_interval_seconds", sa.Integer()),
        sa.Column("clover_region", sa.Text()),
        sa.Column("updated_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("connection_id"),
        sa.ForeignKeyConstraint(["connection_id"], ["pos_connections.id"], ondelete="CASCADE",
                                name="pos_connection_options_connection_id_fk"),
        sa.CheckConstraint("poll_interval_seconds is null or poll_interval_seconds between 5 and 86400",
                           name="poll_interval"),
        sa.CheckConstraint("clover_region is null or clover_region in ('na', 'eu', 'la', 'sandbox')",
                           name="clover_region"),
    )
    op.create_table(
        "worker_poll_state",
        sa.Column("connection_id", UUID(as_uuid=True), nullable=False),
        sa.Column("last_started_at", sa.DateTime()),
        sa.Column("last_finished_at", sa.DateTime()),
        sa.Column("last_status", sa.Text()),
        sa.Column("last_error", sa.Text()),
        sa.Column("next_due_at", sa.DateTime()),
        sa.PrimaryKeyConstraint("connection_id"),
        sa.ForeignKeyConstraint(["connection_id"], ["pos_connections.id"], ondelete="CASCADE",
                                name="worker_poll_state_connection_id_fk"),
    )
    op.create_table(
        "worker_heartbeats",
        sa.Column("worker_id", sa.Text(), nullable=False),
        sa.Column("hostname", sa.Text(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("started_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.Column("beat_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.Column("detail", JSONB()),
        sa.PrimaryKeyConstraint("worker_id"),
    )


def downgrade() -> None:
    op.drop_table("worker_heartbeats")
    op.drop_table("worker_poll_state")
    op.drop_table("pos_connection_options")
    op.drop_index("pos_webhook_event_attempts_dead_idx", table_name="pos_webhook_event_attempts")
    op.drop_table("pos_webhook_event_attempts")
    op.drop_index("pos_webhook_event_keys_event_id_idx", table_name="pos_webhook_event_keys")
    op.drop_table("pos_webhook_event_keys")
    op.drop_table("pos_webhook_event_bodies")
