"""Side tables of the rewards domain (keyed by the seed's ids; created by migration 0004).

Also declares the indexes 0004 adds on seed tables (reconciliation and posting read by them).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from salesarck.db.base import Base
from salesarck.db.models import RewardEvent, RewardRule, WalletLedger


class CurrencyMinorUnits(Base):
    """ISO 4217 exponents (from the `iso4217` package) for the SQL twin of the points calculation."""

    __tablename__ = "currency_minor_units"
    __table_args__ = (CheckConstraint("exponent between 0 and 6", name="exponent"),)

    code: Mapped[str] = mapped_column(Text, primary_key=True)
    exponent: Mapped[int] = mapped_column(Integer, nullable=False)


class TransactionDetails(Base):
    """Provider facts the seed's `transactions` has no column for."""

    __tablename__ = "transaction_details"
    __table_args__ = (CheckConstraint("arrival in ('file', 'poll', 'webhook')", name="arrival"),)

    transaction_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("transactions.id"), primary_key=True)
    location_id: Mapped[str | None] = mapped_column(Text)
    provider_status: Mapped[str | None] = mapped_column(Text)
    provider_updated_at: Mapped[datetime | None] = mapped_column(DateTime())
    is_voided: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    voided_at: Mapped[datetime | None] = mapped_column(DateTime())
    arrival: Mapped[str] = mapped_column(Text, nullable=False)
    first_seen_at: Mapped[datetime] = mapped_column(DateTime(), nullable=False, server_default=func.now())
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(), nullable=False, server_default=func.now())


class TransactionRefund(Base):
    """One provider refund, recorded once; only completed ones move points."""

    __tablename__ = "transaction_refunds"
    __table_args__ = (
        UniqueConstraint("tenant_id", "provider", "provider_refund_id", name="transaction_refunds_provider_refund_unique"),
        Index("transaction_refunds_transaction_idx", "transaction_id"),
        CheckConstraint("amount_minor_units >= 0", name="amount"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, server_default=text("gen_random_uuid()"))
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), nullable=False)
    provider: Mapped[str] = mapped_column(Text, nullable=False)
    provider_refund_id: Mapped[str] = mapped_column(Text, nullable=False)
    transaction_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("transactions.id"), nullable=False)
    amount_minor_units: Mapped[int] = mapped_column(Integer, nullable=False)
    status: Mapped[str] = mapped_column(Text, nullable=False)
    is_completed: Mapped[bool] = mapped_column(Boolean, nullable=False)
    refunded_at: Mapped[datetime | None] = mapped_column(DateTime())
    created_at: Mapped[datetime] = mapped_column(DateTime(), nullable=False, server_default=func.now())
    updated_at: Mapped[datetime | None] = mapped_column(DateTime())


# Indexes on seed tables (indexes are allowed there; columns are not).
Index("reward_events_transaction_idx", RewardEvent.transaction_id)
Index("reward_events_wallet_idx", RewardEvent.wallet_id)
Index("wallet_ledger_source_transaction_idx", WalletLedger.source_transaction_id)
Index("reward_rules_tenant_effective_idx", RewardRule.tenant_id, RewardRule.effective_from, RewardRule.version)
