"""Side tables of the reconcile domain (keyed by the seed's ids; added by revision 0007).

- `reconcile_runs` / `reconcile_findings`: every recorded run, its scope, timings, counts and results,
  so the app can show the trend and compare two runs, and incremental runs can reuse a checkpoint.
- `reconcile_changes`: change tracking for incremental runs, filled by statement-level triggers on the
  seed's tables and keyed on the writing transaction's id (`pg_current_xact_id()`), so a row whose
  transaction commits after a checkpoint is seen even when its `created_at` is earlier.
- `repair_requests` and `reconcile_settings` (the repair approval policy).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, DateTime, ForeignKey, Index, Integer, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from salesarck.db.base import Base

GEN_UUID = text("gen_random_uuid()")


class ReconcileRun(Base):
    __tablename__ = "reconcile_runs"
    __table_args__ = (
        Index("reconcile_runs_started_idx", "started_at"),
        Index("reconcile_runs_scope_idx", "scope_key", "started_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, server_default=GEN_UUID)
    actor_user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), nullable=False)
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("tenants.id"))
    scope_key: Mapped[str] = mapped_column(Text, nullable=False)  # tenants + checks: what a checkpoint covers
    backend: Mapped[str] = mapped_column(Text, nullable=False)
    checks: Mapped[Any] = mapped_column(JSONB, nullable=False)
    incremental: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    base_run_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))  # checkpoint an incremental run used
    status: Mapped[str] = mapped_column(Text, nullable=False)  # completed, failed
    db_snapshot: Mapped[str | None] = mapped_column(Text)  # pg_current_snapshot() the run read
    started_at: Mapped[datetime] = mapped_column(DateTime(), nullable=False)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime())
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    wallets_checked: Mapped[int | None] = mapped_column(BigInteger)
    ledger_entries: Mapped[int | None] = mapped_column(BigInteger)
    drift_count: Mapped[int | None] = mapped_column(Integer)
    error_count: Mapped[int | None] = mapped_column(Integer)
    warning_count: Mapped[int | None] = mapped_column(Integer)
    timings: Mapped[Any | None] = mapped_column(JSONB)
    error: Mapped[str | None] = mapped_column(Text)


class ReconcileFinding(Base):
    """One drifted wallet (kind 'drift') or one finding of a check (kind 'finding') of a run."""

    __tablename__ = "reconcile_findings"
    __table_args__ = (Index("reconcile_findings_run_idx", "run_id", "kind"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("reconcile_runs.id", ondelete="CASCADE"), nullable=False)
    kind: Mapped[str] = mapped_column(Text, nullable=False)
    check_id: Mapped[str] = mapped_column(Text, nullable=False)
    severity: Mapped[str] = mapped_column(Text, nullable=False)
    entity_type: Mapped[str] = mapped_column(Text, nullable=False)
    entity_id: Mapped[str] = mapped_column(Text, nullable=False)
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    wallet_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    transaction_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    user_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    snapshot_points: Mapped[int | None] = mapped_column(BigInteger)
    ledger_points: Mapped[int | None] = mapped_column(BigInteger)
    drift_points: Mapped[int | None] = mapped_column(BigInteger)
    explanation_code: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[str | None] = mapped_column(Text)


class ReconcileChange(Base):
    """A wallet or transaction touched by a database transaction (`txid`), or `kind='all'`."""

    __tablename__ = "reconcile_changes"
    __table_args__ = (Index("reconcile_changes_txid_idx", "txid"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    txid: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default=text("(pg_current_xact_id())::text::bigint"))
    kind: Mapped[str] = mapped_column(Text, nullable=False)  # wallet, transaction, all
    entity_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    ledger_rows: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default=text("0"))


class RepairRequest(Base):
    __tablename__ = "repair_requests"
    __table_args__ = (Index("repair_requests_status_idx", "status", "requested_at"),)

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, server_default=GEN_UUID)
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("tenants.id"))
    wallet_ids: Mapped[Any | None] = mapped_column(JSONB)  # explicit wallets, or null = every drifted wallet of tenant
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str] = mapped_column(Text, nullable=False)  # pending, applied, rejected, failed
    requested_by: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), nullable=False)
    requested_at: Mapped[datetime] = mapped_column(DateTime(), nullable=False, server_default=func.now())
    decided_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime())
    decision_reason: Mapped[str | None] = mapped_column(Text)
    result: Mapped[Any | None] = mapped_column(JSONB)


class ReconcileSetting(Base):
    """Reconciliation settings stored in the database (e.g. `repair_approval_required`)."""

    __tablename__ = "reconcile_settings"

    key: Mapped[str] = mapped_column(Text, primary_key=True)
    value: Mapped[Any] = mapped_column(JSONB, nullable=False)
    updated_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    updated_at: Mapped[datetime | None] = mapped_column(DateTime(), server_default=func.now())
