"""Provider-neutral records: what the Square and Clover mappers produce and posting consumes.

File import, API polling and webhooks all map provider JSON into these, so there is one posting path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

Provider = Literal["square", "clover"]
Arrival = Literal["file", "poll", "webhook"]


@dataclass(frozen=True, slots=True)
class RefundRecord:
    """One provider refund of one payment. Only completed refunds move points."""

    provider_refund_id: str
    provider_payment_id: str
    amount_minor_units: int
    status: str  # provider's status, e.g. COMPLETED, PENDING (Square); Clover refunds are final
    is_completed: bool
    refunded_at: datetime | None  # naive UTC


@dataclass(frozen=True, slots=True)
class PaymentRecord:
    """One provider payment, validated: amounts are non-negative 32-bit integers in minor units."""

    provider: Provider
    provider_payment_id: str
    status: str  # provider's status: Square COMPLETED/APPROVED/CANCELED/FAILED, Clover SUCCESS/VOIDED/...
    is_completed: bool  # a sale that earns (Square COMPLETED, Clover SUCCESS)
    is_voided: bool  # reported voided/cancelled: all points of a stored payment are reversed
    amount_minor_units: int  # excluding tip
    currency: str  # ISO 4217 alphabetic code, upper case
    transaction_at: datetime  # provider payment time (Square created_at, Clover createdTime), naive UTC
    updated_at: datetime | None  # provider's last change (Square updated_at, Clover modifiedTime), naive UTC
    location_id: str | None = None
    customer_ref: dict[str, Any] = field(default_factory=dict)  # {email?, mobile?, externalCustomerId?}
    line_items: list[dict[str, Any]] | None = None
    refunds: tuple[RefundRecord, ...] = ()
    version: str | None = None  # provider version marker (Square version_token / updated_at, Clover modifiedTime)


@dataclass(frozen=True, slots=True)
class SkippedRecord:
    """A provider record that could not be mapped; reported with the provider id, never half-written."""

    provider_id: str | None
    reason: str
