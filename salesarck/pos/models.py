"""Side tables of the pos domain (revision 0005), keyed by the seed's ids.

- `sync_runs`: one row per sync of a connection. A row with `status = 'running'` is the lease: a
  partial unique index allows one per connection, `lease_expires_at` (pushed forward by each
  heartbeat) lets a later caller take over from a crashed sync. Counters and the summary are the
  run history the app shows. Works behind a transaction pooler (no session advisory locks).
- `pos_connection_events`: every status change of a connection (who, from, to, why); system-made
  changes have no actor.
- A unique index on `pos_connections (pos_type, merchant_account_id)`: one provider merchant
  belongs to one tenant (an index on a seed table, not a column).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, DateTime, ForeignKey, Index, Integer, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from salesarck.db.base import Base
from salesarck.db.models import PosConnection

SYNC_STATUSES = ("running", "succeeded", "failed", "abandoned")
CONNECTION_STATUSES = ("active", "disconnected", "token_expired", "error")

# one merchant account per provider across all tenants
POS_CONNECTIONS_MERCHANT_UNIQUE = Index(
    "pos_connections_pos_type_merchant_unique", PosConnection.pos_type, PosConnection.merchant_account_id,
    unique=True,
)


def _counter() -> Mapped[int]:
    return mapped_column(Integer, nullable=False, server_default=text("0"))


class SyncRun(Base):
    __tablename__ = "sync_runs"
    __table_args__ = (
        CheckConstraint("status in ('running', 'succeeded', 'failed', 'abandoned')", name="status"),
        Index("sync_runs_one_running_per_connection", "connection_id", unique=True,
              postgresql_where=text("status = 'running'")),
        Index("sync_runs_connection_started_idx", "connection_id", "started_at"),
        Index("sync_runs_tenant_started_idx", "tenant_id", "started_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, server_default=text("gen_random_uuid()"))
    connection_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("pos_connections.id", ondelete="CASCADE"),
                                                     nullable=False)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), nullable=False)
    provider: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("'running'"))
    trigger: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("'manual'"))  # manual, worker
    actor_user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))  # null: the system
    started_at: Mapped[datetime] = mapped_column(DateTime(), nullable=False, server_default=func.now())
    heartbeat_at: Mapped[datetime] = mapped_column(DateTime(), nullable=False, server_default=func.now())
    lease_expires_at: Mapped[datetime] = mapped_column(DateTime(), nullable=False)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime())
    window_start: Mapped[datetime | None] = mapped_column(DateTime())  # updated_at range polled
    watermark_after: Mapped[datetime | None] = mapped_column(DateTime())
    pages: Mapped[int] = _counter()
    payments_seen: Mapped[int] = _counter()
    posted: Mapped[int] = _counter()
    duplicates: Mapped[int] = _counter()
    skipped: Mapped[int] = _counter()
    points_credited: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default=text("0"))
    points_debited: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default=text("0"))
    summary: Mapped[Any | None] = mapped_column(JSONB)
    error: Mapped[str | None] = mapped_column(Text)


class PosConnectionEvent(Base):
    __tablename__ = "pos_connection_events"
    __table_args__ = (Index("pos_connection_events_connection_time_idx", "connection_id", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, server_default=text("gen_random_uuid()"))
    connection_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("pos_connections.id", ondelete="CASCADE"),
                                                     nullable=False)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), nullable=False)
    event: Mapped[str] = mapped_column(Text, nullable=False)  # connected, status_changed, tokens_refreshed, ...
    from_status: Mapped[str | None] = mapped_column(Text)
    to_status: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    error_code: Mapped[str | None] = mapped_column(Text)
    actor_user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))  # null: the system
    created_at: Mapped[datetime] = mapped_column(DateTime(), nullable=False, server_default=func.now())
