"""Square and Clover payment JSON -> provider-neutral `PaymentRecord` / `RefundRecord`.

THE one mapping: file import, the Square API sync and webhooks all use it, so a payment means
the same thing whichever way it arrived. Malformed input raises `ValidationError` with a reason
(`load_payment_file` turns that into a `SkippedRecord`); nothing is ever half-mapped.

Square: `amount_money` (excludes tip), `status`, `created_at` (payment time) / `updated_at`,
`location_id`, `order_id`, `customer_id`, `buyer_email_address`, `refunded_money` + `refund_ids`.
Clover: `amount` (cents, excludes tip), `result`, `createdTime` / `modifiedTime` (epoch ms),
`refunds.elements`, `order.lineItems.elements`, `order.customers.elements`; Clover payments
carry no currency, so it comes from the tenant's country (`currency.country_currency`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from salesarck.errors import ValidationError
from salesarck.pos.records import PaymentRecord, Provider, RefundRecord, SkippedRecord
from salesarck.rewards.currency import exponent_table
from salesarck.timeutil import parse_time

MAX_INT32 = 2_147_483_647
MAX_ID_CHARS = 255
MAX_TEXT_CHARS = 320
MAX_FILE_BYTES = 1 << 30  # 1 GiB: beyond this, split the export
MAX_LINE_ITEMS = 500
SQUARE_STATUSES = frozenset({"APPROVED", "PENDING", "COMPLETED", "CANCELED", "FAILED"})
SQUARE_VOIDED = frozenset({"CANCELED", "FAILED"})
SQUARE_REFUND_STATUSES = frozenset({"PENDING", "COMPLETED", "REJECTED", "FAILED"})
CLOVER_VOIDED = frozenset({"VOIDED", "FAIL"})
# A Square payment lists several refund ids but only their total: the split is provisional until
# each refund object (API sync, webhook) arrives with its own amount and replaces it.
SPLIT_REFUND_STATUS = "REPORTED_SPLIT"
# Clover epoch-ms bounds: 2000-01-01 .. 2100-01-01 (a seconds value would land in 1970)
_MS_MIN, _MS_MAX = 946_684_800_000, 4_102_444_800_000


def _text(obj: dict[str, Any], key: str, *, required: bool = False, limit: int = MAX_TEXT_CHARS) -> str | None:
    value = obj.get(key)
    if value is None or value == "":
        if required:
            raise ValidationError(f"missing {key}")
        return None
    if not isinstance(value, str):
        raise ValidationError(f"{key} must be a string")
    if len(value) > limit:
        raise ValidationError(f"{key} is longer than {limit} characters")
    if "\x00" in value:
        raise ValidationError(f"{key} contains a NUL character")
    return value


def _id(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value or len(value) > MAX_ID_CHARS:
        if value is None or value == "":
            raise ValidationError(f"missing {key}")
        if not isinstance(value, str):
            raise ValidationError(f"{key} must be a string")
        raise ValidationError(f"{key} is longer than {MAX_ID_CHARS} characters")
    if not value.isprintable() or not value.strip():
        raise ValidationError(f"{key} is blank or has control characters")
    return value


def _amount(value: Any, what: str) -> int:
    """Non-negative 32-bit integer minor units; floats, strings and booleans are refused."""
    if value is None:
        raise ValidationError(f"missing {what}")
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{what} is not an integer ({str(value)[:32]!r})")
    if value < 0:
        raise ValidationError(f"{what} is negative ({value})")
    if value > MAX_INT32:
        raise ValidationError(f"{what} {value} is beyond a 32-bit integer")
    return value


def _currency(value: Any) -> str:
    if not isinstance(value, str) or value.upper() not in exponent_table():
        raise ValidationError(f"unknown currency {str(value)[:16]!r}")
    return value.upper()


def _money(obj: dict[str, Any], key: str, *, required: bool) -> tuple[int, str] | None:
    money = obj.get(key)
    if money is None:
        if required:
            raise ValidationError(f"missing {key}")
        return None
    if not isinstance(money, dict):
        raise ValidationError(f"{key} must be an object")
    return _amount(money.get("amount"), f"{key}.amount"), _currency(money.get("currency"))


def _rfc3339(obj: dict[str, Any], key: str, *, required: bool) -> datetime | None:
    """RFC 3339 with an offset -> naive UTC (fast path for the common forms, else `parse_time`)."""
    raw = obj.get(key)
    if raw is None:
        if required:
            raise ValidationError(f"missing {key}")
        return None
    if not isinstance(raw, str):
        raise ValidationError(f"{key} must be an RFC 3339 string")
    if len(raw) <= 40:
        try:
            parsed = datetime.fromisoformat(raw)
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            offset = parsed.utcoffset()
            return (parsed - offset if offset else parsed).replace(tzinfo=None)
    return parse_time(raw)


def _ms(obj: dict[str, Any], key: str, *, required: bool) -> datetime | None:
    raw = obj.get(key)
    if raw is None:
        if required:
            raise ValidationError(f"missing {key}")
        return None
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise ValidationError(f"{key} must be epoch milliseconds (an integer)")
    if not _MS_MIN <= raw <= _MS_MAX:
        raise ValidationError(f"{key} {raw} is not epoch milliseconds between 2000 and 2100")
    return datetime.fromtimestamp(raw / 1000, UTC).replace(tzinfo=None)


def _dict(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValidationError(f"{what} must be a JSON object")
    return value


def _elements(value: Any, what: str) -> list[Any]:
    """Clover's `{"elements": [...]}` wrapper (absent: empty)."""
    if value is None:
        return []
    if isinstance(value, dict):
        value = value.get("elements", [])
    if not isinstance(value, list):
        raise ValidationError(f"{what} must be a list")
    return value


# --- Square -----------------------------------------------------------------------------------

def map_square_refund(obj: dict[str, Any]) -> RefundRecord:
    """A Square PaymentRefund -> RefundRecord (only COMPLETED refunds will move points)."""
    obj = _dict(obj, "refund")
    refund_id = _id(obj, "id")
    status = _text(obj, "status", required=True, limit=32)
    assert status is not None
    if status not in SQUARE_REFUND_STATUSES:
        raise ValidationError(f"refund {refund_id}: unknown status {status!r}")
    money = _money(obj, "amount_money", required=True)
    assert money is not None
    created = _rfc3339(obj, "created_at", required=False)
    updated = _rfc3339(obj, "updated_at", required=False)
    return RefundRecord(
        provider_refund_id=refund_id,
        provider_payment_id=_id(obj, "payment_id"),
        amount_minor_units=money[0],
        status=status,
        is_completed=status == "COMPLETED",
        refunded_at=updated or created,
    )


def _square_refunds(obj: dict[str, Any], payment_id: str, at: datetime | None,
                    currency: str) -> tuple[RefundRecord, ...]:
    ids = obj.get("refund_ids") or []
    if not isinstance(ids, list) or not all(isinstance(i, str) and 0 < len(i) <= MAX_ID_CHARS for i in ids):
        raise ValidationError("refund_ids must be a list of ids")
    money = _money(obj, "refunded_money", required=False)
    total = money[0] if money else 0
    if money and total and money[1] != currency:
        raise ValidationError("refunded_money is in a different currency from amount_money")
    if not ids:
        if total:
            raise ValidationError("refunded_money is set but refund_ids is empty")
        return ()
    ids = sorted(set(ids))
    if len(ids) == 1:
        return (RefundRecord(ids[0], payment_id, total, "COMPLETED", True, at),)
    share, rest = divmod(total, len(ids))
    return tuple(RefundRecord(rid, payment_id, share + (rest if n == 0 else 0), SPLIT_REFUND_STATUS, True, at)
                 for n, rid in enumerate(ids))


def map_square_payment(obj: dict[str, Any]) -> PaymentRecord:
    """A Square Payment object -> PaymentRecord; raises ValidationError with a reason.

    Amount is `amount_money` (excluding tip); `transaction_at` is `created_at`.
    """
    obj = _dict(obj, "payment")
    payment_id = _id(obj, "id")
    try:
        status = _text(obj, "status", required=True, limit=32)
        if status not in SQUARE_STATUSES:
            raise ValidationError(f"unknown status {status!r}")
        money = _money(obj, "amount_money", required=True)
        assert money is not None
        created = _rfc3339(obj, "created_at", required=True)
        assert created is not None
        updated = _rfc3339(obj, "updated_at", required=False)
        email = _text(obj, "buyer_email_address")
        ref: dict[str, Any] = {}
        if email:
            ref["email"] = email.strip().lower()
        customer_id = _text(obj, "customer_id", limit=MAX_ID_CHARS)
        if customer_id:
            ref["externalCustomerId"] = customer_id
        order_id = _text(obj, "order_id", limit=MAX_ID_CHARS)
        if order_id:
            ref["orderId"] = order_id
        refunds = _square_refunds(obj, payment_id, updated or created, money[1])
        if sum(r.amount_minor_units for r in refunds) > money[0] + _tip(obj):
            raise ValidationError("refunded_money exceeds the payment")
        return PaymentRecord(
            provider="square",
            provider_payment_id=payment_id,
            status=status,
            is_completed=status == "COMPLETED",
            is_voided=status in SQUARE_VOIDED,
            amount_minor_units=money[0],
            currency=money[1],
            transaction_at=created,
            updated_at=updated,
            location_id=_text(obj, "location_id", limit=MAX_ID_CHARS),
            customer_ref=ref,
            line_items=None,
            refunds=refunds,
            version=_text(obj, "version_token", limit=MAX_ID_CHARS) or (updated.isoformat() if updated else None),
        )
    except ValidationError as exc:
        raise ValidationError(f"payment {payment_id}: {exc}") from None


def _tip(obj: dict[str, Any]) -> int:
    tip = _money(obj, "tip_money", required=False)
    return tip[0] if tip else 0


# --- Clover -----------------------------------------------------------------------------------

def _clover_customer(order: dict[str, Any]) -> dict[str, Any]:
    ref: dict[str, Any] = {}
    for cust in _elements(order.get("customers"), "order.customers")[:1]:
        cust = _dict(cust, "customer")
        cid = _text(cust, "id", limit=MAX_ID_CHARS)
        if cid:
            ref["externalCustomerId"] = cid
        for e in _elements(cust.get("emailAddresses"), "emailAddresses")[:1]:
            email = _text(_dict(e, "emailAddress"), "emailAddress")
            if email:
                ref["email"] = email.strip().lower()
        for p in _elements(cust.get("phoneNumbers"), "phoneNumbers")[:1]:
            phone = _text(_dict(p, "phoneNumber"), "phoneNumber", limit=64)
            if phone:
                ref["mobile"] = phone.strip()
    return ref


def _clover_line_items(order: dict[str, Any]) -> list[dict[str, Any]] | None:
    items = _elements(order.get("lineItems"), "order.lineItems")
    if not items:
        return None
    if len(items) > MAX_LINE_ITEMS:
        raise ValidationError(f"more than {MAX_LINE_ITEMS} line items")
    out = []
    for item in items:
        item = _dict(item, "line item")
        price = item.get("price")
        out.append({
            "id": _text(item, "id", limit=MAX_ID_CHARS),
            "name": _text(item, "name"),
            "price": None if price is None else _amount(price, "line item price"),
            "unitQty": item.get("unitQty") if isinstance(item.get("unitQty"), int) else None,
        })
    return out


def map_clover_payment(obj: dict[str, Any], *, default_currency: str) -> PaymentRecord:
    """A Clover payment (expand=order,refunds) -> PaymentRecord; raises ValidationError with a reason.

    Clover payments carry no currency: `default_currency` is the tenant's (from its country).
    """
    obj = _dict(obj, "payment")
    payment_id = _id(obj, "id")
    try:
        result = _text(obj, "result", required=True, limit=32)
        assert result is not None
        amount = _amount(obj.get("amount"), "amount")
        currency = _currency(obj.get("currency") or default_currency)
        created = _ms(obj, "createdTime", required=True)
        assert created is not None
        modified = _ms(obj, "modifiedTime", required=False)
        order = obj.get("order")
        order = _dict(order, "order") if order is not None else {}
        refunds = []
        for r in _elements(obj.get("refunds"), "refunds"):
            r = _dict(r, "refund")
            pay = r.get("payment")
            if isinstance(pay, dict) and pay.get("id") not in (None, payment_id):
                raise ValidationError("a refund belongs to another payment")
            refunds.append(RefundRecord(
                provider_refund_id=_id(r, "id"),
                provider_payment_id=payment_id,
                amount_minor_units=_amount(r.get("amount"), "refund amount"),
                status="SUCCESS",
                is_completed=True,  # Clover refunds are final once listed
                refunded_at=_ms(r, "createdTime", required=False) or modified or created,
            ))
        if len({r.provider_refund_id for r in refunds}) != len(refunds):
            raise ValidationError("a refund id is listed twice")
        if sum(r.amount_minor_units for r in refunds) > amount + (_amount(obj.get("tipAmount") or 0, "tipAmount")):
            raise ValidationError("refunds exceed the payment")
        ref = _clover_customer(order)
        order_id = _text(order, "id", limit=MAX_ID_CHARS)
        if order_id:
            ref["orderId"] = order_id
        return PaymentRecord(
            provider="clover",
            provider_payment_id=payment_id,
            status=result,
            is_completed=result == "SUCCESS",
            is_voided=result in CLOVER_VOIDED,
            amount_minor_units=amount,
            currency=currency,
            transaction_at=created,
            updated_at=modified,
            location_id=None,
            customer_ref=ref,
            line_items=_clover_line_items(order),
            refunds=tuple(refunds),
            version=None if obj.get("modifiedTime") is None else str(obj["modifiedTime"]),
        )
    except ValidationError as exc:
        raise ValidationError(f"payment {payment_id}: {exc}") from None


# --- files ------------------------------------------------------------------------------------

def _payload_list(data: Any, provider: Provider) -> list[Any]:
    if provider == "square":
        if isinstance(data, dict) and isinstance(data.get("payments"), list):
            return list(data["payments"])
        if isinstance(data, list):
            return data
        raise ValidationError('a Square file must be a ListPayments response {"payments": [...]} or a list of payments')
    if isinstance(data, dict) and isinstance(data.get("elements"), list):
        return list(data["elements"])
    if isinstance(data, list):
        return data
    raise ValidationError('a Clover file must be a payments response {"elements": [...]}')


def map_payments(items: Iterable[Any], provider: Provider,
                 default_currency: str = "USD") -> tuple[list[PaymentRecord], list[SkippedRecord]]:
    """Map provider payment objects; each malformed one becomes a SkippedRecord with its reason."""
    records: list[PaymentRecord] = []
    skipped: list[SkippedRecord] = []
    for item in items:
        try:
            if provider == "square":
                records.append(map_square_payment(item))
            else:
                records.append(map_clover_payment(item, default_currency=default_currency))
        except ValidationError as exc:
            pid = item.get("id") if isinstance(item, dict) else None
            skipped.append(SkippedRecord(pid[:MAX_ID_CHARS] if isinstance(pid, str) else None, str(exc)))
        except (RecursionError, TypeError, ValueError, OverflowError) as exc:  # hostile shapes
            skipped.append(SkippedRecord(None, f"malformed payment: {type(exc).__name__}"))
    return records, skipped


def load_payment_file(path: str | os.PathLike[str], provider: str,
                      default_currency: str = "USD") -> tuple[list[PaymentRecord], list[SkippedRecord]]:
    """Read a provider JSON export: Square ListPayments (or a list of payments), Clover `{"elements"}`.

    A file that cannot be read or parsed raises ValidationError (nothing is posted); malformed
    records inside a good file come back as SkippedRecords.
    """
    if provider not in ("square", "clover"):
        raise ValidationError(f"unknown provider {str(provider)[:20]!r} (use square or clover)")
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ValidationError(f"{p.name} is larger than {MAX_FILE_BYTES >> 20} MiB; split the export")
        raw = p.read_bytes()
    except OSError as exc:
        raise ValidationError(f"cannot read {p}: {exc.strerror or exc}") from None
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, RecursionError) as exc:
        raise ValidationError(f"{p.name} is not UTF-8 JSON ({type(exc).__name__})") from None
    except ValueError as exc:
        raise ValidationError(f"{p.name} is not valid JSON: {exc}") from None
    return map_payments(_payload_list(data, provider), provider, default_currency)  # type: ignore[arg-type]
