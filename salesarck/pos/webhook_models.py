"""Side tables of webhooks and the worker (revision 0006), keyed by the seed's ids.

- `pos_webhook_event_bodies`: the exact bytes of each stored event's request body (JSONB does not keep
  them), so a stored Square signature can be re-verified later.
- `pos_webhook_event_keys`: one row per provider delivery key (Square `event_id`; Clover merchant,
  object, type and ts). Its primary key is what makes a duplicate delivery be stored once.
- `pos_webhook_event_attempts`: processing attempts, last error, backoff and dead-lettering.
- `pos_connection_options`: per-connection polling interval and Clover region.
- `worker_poll_state`: when the worker last polled each connection, and how it went.
- `worker_heartbeats`: one row per worker process, beaten every loop, shown by the app.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Index, Integer, LargeBinary, Text, func
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from salesarck.db import models as _seed_models  # noqa: F401  the tables these keys refer to
from salesarck.db.base import Base

CLOVER_REGIONS = ("na", "eu", "la", "sandbox")


class PosWebhookEventBody(Base):
    __tablename__ = "pos_webhook_event_bodies"

    event_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("pos_webhook_events_raw.id", ondelete="CASCADE"), primary_key=True
    )
    merchant_id: Mapped[str] = mapped_column(Text, nullable=False)
    raw_body: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    received_at: Mapped[datetime] = mapped_column(DateTime(), nullable=False, server_default=func.now())


class PosWebhookEventKey(Base):
    __tablename__ = "pos_webhook_event_keys"
    __table_args__ = (Index("pos_webhook_event_keys_event_id_idx", "event_id"),)

    provider: Mapped[str] = mapped_column(Text, primary_key=True)
    dedup_key: Mapped[str] = mapped_column(Text, primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("pos_webhook_events_raw.id", ondelete="CASCADE"), nullable=False
    )


class PosWebhookEventAttempt(Base):
    __tablename__ = "pos_webhook_event_attempts"
    __table_args__ = (
        CheckConstraint("attempts >= 0", name="attempts"),
        Index("pos_webhook_event_attempts_dead_idx", "dead_lettered_at"),
    )

    event_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("pos_webhook_events_raw.id", ondelete="CASCADE"), primary_key=True
    )
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    last_attempt_at: Mapped[datetime | None] = mapped_column(DateTime())
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime())
    dead_lettered_at: Mapped[datetime | None] = mapped_column(DateTime())
    processed_at: Mapped[datetime | None] = mapped_column(DateTime())
    result: Mapped[Any | None] = mapped_column(JSONB)


class PosConnectionOptions(Base):
    __tablename__ = "pos_connection_options"
    __table_args__ = (
        CheckConstraint("poll_interval_seconds is null or poll_interval_seconds between 5 and 86400",
                        name="poll_interval"),
        CheckConstraint("clover_region is null or clover_region in ('na', 'eu', 'la', 'sandbox')",
                        name="clover_region"),
    )

    connection_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("pos_connections.id", ondelete="CASCADE"), primary_key=True
    )
    poll_interval_seconds: Mapped[int | None] = mapped_column(Integer)
    clover_region: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime(), nullable=False, server_default=func.now())


class WorkerPollState(Base):
    __tablename__ = "worker_poll_state"

    connection_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("pos_connections.id", ondelete="CASCADE"), primary_key=True
    )
    last_started_at: Mapped[datetime | None] = mapped_column(DateTime())
    last_finished_at: Mapped[datetime | None] = mapped_column(DateTime())
    last_status: Mapped[str | None] = mapped_column(Text)  # ok, error, skipped (already running)
    last_error: Mapped[str | None] = mapped_column(Text)
    next_due_at: Mapped[datetime | None] = mapped_column(DateTime())


class WorkerHeartbeat(Base):
    __tablename__ = "worker_heartbeats"

    worker_id: Mapped[str] = mapped_column(Text, primary_key=True)
    hostname: Mapped[str] = mapped_column(Text, nullable=False)
    pid: Mapped[int] = mapped_column(Integer, nullable=False)
    state: Mapped[str] = mapped_column(Text, nullable=False)  # running, stopping, stopped
    started_at: Mapped[datetime] = mapped_column(DateTime(), nullable=False, server_default=func.now())
    beat_at: Mapped[datetime] = mapped_column(DateTime(), nullable=False, server_default=func.now())
    detail: Mapped[Any | None] = mapped_column(JSONB)
