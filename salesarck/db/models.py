"""The seed's 13 tables, exactly as `shared/spec/data-model.txt` defines them.

Nothing may be added to these tables: what later features need lives in side tables keyed by
these ids (see `salesarck.db.side_models` and each domain's models).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

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
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from salesarck.db.base import Base

GEN_UUID = text("gen_random_uuid()")


def _pk() -> Mapped[uuid.UUID]:
    return mapped_column(UUID(as_uuid=True), primary_key=True, server_default=GEN_UUID)


def _created_at() -> Mapped[datetime | None]:
    return mapped_column(DateTime(), server_default=func.now(), nullable=True)


class User(Base):
    __tablename__ = "users"
    __table_args__ = (Index("users_email_lower_idx", text("lower(email)")),)  # 0009: case-insensitive lookups

    # Supabase auth user id: assigned by the identity provider, never generated here.
    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    email: Mapped[str | None] = mapped_column(Text, unique=True)
    mobile: Mapped[str | None] = mapped_column(Text, unique=True)
    role: Mapped[str] = mapped_column(Text, nullable=False)  # consumer, client, pos_operator, admin
    status: Mapped[str] = mapped_column(Text, nullable=False)  # active, pending_approval, suspended
    created_at: Mapped[datetime | None] = _created_at()
    updated_at: Mapped[datetime | None] = mapped_column(DateTime())


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[uuid.UUID] = _pk()
    name: Mapped[str] = mapped_column(Text, nullable=False)
    country: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("'US'"))
    status: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("'active'"))
    pos_provider_preference: Mapped[str | None] = mapped_column(Text)  # added by 0001
    onboarding_profile: Mapped[dict[str, Any] | None] = mapped_column(JSONB)  # added by 0001
    created_at: Mapped[datetime | None] = _created_at()
    updated_at: Mapped[datetime | None] = mapped_column(DateTime())  # added by 0001


class TenantUser(Base):
    __tablename__ = "tenant_users"
    __table_args__ = (
        UniqueConstraint("user_id", "tenant_id"),
        Index("tenant_users_tenant_idx", "tenant_id"),
    )

    id: Mapped[uuid.UUID] = _pk()
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), nullable=False)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), nullable=False)
    role: Mapped[str] = mapped_column(Text, nullable=False)  # client, pos_operator


class PosConnection(Base):
    __tablename__ = "pos_connections"

    id: Mapped[uuid.UUID] = _pk()
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), nullable=False)
    pos_type: Mapped[str] = mapped_column(Text, nullable=False)  # square, clover
    access_token_enc: Mapped[str] = mapped_column(Text, nullable=False)
    refresh_token_enc: Mapped[str] = mapped_column(Text, nullable=False)  # empty: no refresh token
    merchant_account_id: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str] = mapped_column(Text, nullable=False)  # active, disconnected, token_expired, error
    token_expires_at: Mapped[datetime | None] = mapped_column(DateTime())
    last_synced_at: Mapped[datetime | None] = mapped_column(DateTime())
    square_payments_watermark_at: Mapped[datetime | None] = mapped_column(DateTime())  # added by 0002
    created_at: Mapped[datetime | None] = _created_at()

    def __repr__(self) -> str:  # never show token ciphertexts either
        return f"PosConnection(id={self.id}, pos_type={self.pos_type!r}, status={self.status!r})"


class PosWebhookEventRaw(Base):
    __tablename__ = "pos_webhook_events_raw"
    __table_args__ = (Index("pos_webhook_events_raw_processed_idx", "processed", "created_at"),)

    id: Mapped[uuid.UUID] = _pk()
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), nullable=False)
    provider: Mapped[str] = mapped_column(Text, nullable=False)
    event_type: Mapped[str] = mapped_column(Text, nullable=False)
    raw_payload: Mapped[Any] = mapped_column(JSONB, nullable=False)
    signature_header: Mapped[str | None] = mapped_column(Text)
    processed: Mapped[bool | None] = mapped_column(Boolean, server_default=text("false"))
    created_at: Mapped[datetime | None] = _created_at()


class Transaction(Base):
    __tablename__ = "transactions"
    __table_args__ = (
        UniqueConstraint("tenant_id", "provider", "provider_transaction_id"),
        Index("transactions_tenant_time_idx", "tenant_id", "transaction_at"),
        Index("transactions_user_idx", "user_id"),
    )

    id: Mapped[uuid.UUID] = _pk()
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), nullable=False)
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    provider: Mapped[str] = mapped_column(Text, nullable=False)
    provider_transaction_id: Mapped[str] = mapped_column(Text, nullable=False)
    amount_minor_units: Mapped[int] = mapped_column(Integer, nullable=False)
    currency: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("'USD'"))
    customer_ref: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    line_items: Mapped[Any | None] = mapped_column(JSONB)
    transaction_at: Mapped[datetime] = mapped_column(DateTime(), nullable=False)
    created_at: Mapped[datetime | None] = _created_at()


class Wallet(Base):
    __tablename__ = "wallets"
    __table_args__ = (UniqueConstraint("tenant_id", "user_id"),)

    id: Mapped[uuid.UUID] = _pk()
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), nullable=False)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), nullable=False)
    points_balance: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    status: Mapped[str] = mapped_column(Text, nullable=False, server_default=text("'active'"))
    created_at: Mapped[datetime | None] = _created_at()
    updated_at: Mapped[datetime | None] = mapped_column(DateTime())


class WalletLedger(Base):
    """Append-only: migration 0003 makes the database refuse UPDATE, DELETE and TRUNCATE."""

    __tablename__ = "wallet_ledger"
    __table_args__ = (
        CheckConstraint("entry_type in ('credit', 'debit')", name="entry_type"),
        CheckConstraint("points > 0", name="points"),
        Index("wallet_ledger_wallet_time_idx", "wallet_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = _pk()
    wallet_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("wallets.id"), nullable=False)
    entry_type: Mapped[str] = mapped_column(Text, nullable=False)
    points: Mapped[int] = mapped_column(Integer, nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    source_transaction_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("transactions.id"))
    created_by_admin: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime | None] = _created_at()


class RewardRule(Base):
    __tablename__ = "reward_rules"
    __table_args__ = (
        Index("reward_rules_tenant_active_idx", "tenant_id", "is_active"),
        # 0003: at most one active version per tenant, enforced by the database
        Index(
            "reward_rules_one_active_per_tenant",
            "tenant_id",
            unique=True,
            postgresql_where=text("is_active"),
        ),
        # 0003: versions are unique per tenant, so concurrent creators cannot both take N+1
        Index("reward_rules_tenant_version_unique", "tenant_id", "version", unique=True),
    )

    id: Mapped[uuid.UUID] = _pk()
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    is_active: Mapped[bool | None] = mapped_column(Boolean, server_default=text("true"))
    rule_config: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    effective_from: Mapped[datetime] = mapped_column(DateTime(), nullable=False)
    created_at: Mapped[datetime | None] = _created_at()


class RewardEvent(Base):
    __tablename__ = "reward_events"

    id: Mapped[uuid.UUID] = _pk()
    wallet_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("wallets.id"), nullable=False)
    transaction_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("transactions.id"))
    rule_version_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("reward_rules.id"))
    points_earned: Mapped[int | None] = mapped_column(Integer, server_default=text("0"))
    points_redeemed: Mapped[int | None] = mapped_column(Integer, server_default=text("0"))
    created_at: Mapped[datetime | None] = _created_at()


class IdempotencyKey(Base):
    __tablename__ = "idempotency_keys"

    key: Mapped[str] = mapped_column(Text, primary_key=True)  # {provider}:{merchantId}:{providerTxnId}
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("tenants.id"))
    handler: Mapped[str] = mapped_column(Text, nullable=False)
    result_snapshot: Mapped[Any | None] = mapped_column(JSONB)
    expires_at: Mapped[datetime] = mapped_column(DateTime(), nullable=False)
    created_at: Mapped[datetime | None] = _created_at()


class AdminAuditLog(Base):
    """Immutable: migration 0003 makes the database refuse UPDATE, DELETE and TRUNCATE."""

    __tablename__ = "admin_audit_logs"
    __table_args__ = (
        Index("admin_audit_logs_actor_idx", "actor_user_id", "created_at"),
        Index("admin_audit_logs_target_idx", "target_entity_type", "target_entity_id", "created_at"),
        Index("admin_audit_logs_created_idx", "created_at"),
    )

    id: Mapped[uuid.UUID] = _pk()
    actor_user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), nullable=False)
    action: Mapped[str] = mapped_column(Text, nullable=False)
    target_entity_id: Mapped[str | None] = mapped_column(Text)
    target_entity_type: Mapped[str | None] = mapped_column(Text)
    before_state: Mapped[Any | None] = mapped_column(JSONB)
    after_state: Mapped[Any | None] = mapped_column(JSONB)
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime | None] = _created_at()


SEED_TABLES = [
    "users", "tenants", "tenant_users", "pos_connections", "pos_webhook_events_raw", "transactions",
    "wallets", "wallet_ledger", "reward_rules", "reward_events", "idempotency_keys", "admin_audit_logs",
]
