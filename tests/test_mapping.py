"""Square and Clover JSON -> PaymentRecord/RefundRecord: fields, statuses, and malformed input."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from salesarck.errors import ValidationError
from salesarck.pos.mapping import (
    SPLIT_REFUND_STATUS,
    load_payment_file,
    map_clover_payment,
    map_square_payment,
    map_square_refund,
)


def square(**kw: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "id": "sq-1", "status": "COMPLETED", "created_at": "2026-05-01T10:00:00.123Z",
        "updated_at": "2026-05-01T10:00:05Z", "amount_money": {"amount": 1250, "currency": "USD"},
        "tip_money": {"amount": 200, "currency": "USD"}, "total_money": {"amount": 1450, "currency": "USD"},
        "location_id": "LOC1", "order_id": "ORD1", "customer_id": "CUST1",
        "buyer_email_address": "Ann@Example.COM", "version_token": "v1",
    }
    obj.update(kw)
    return obj


def clover(**kw: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "id": "CL1", "amount": 999, "tipAmount": 100, "result": "SUCCESS",
        "createdTime": 1_746_093_600_000, "modifiedTime": 1_746_093_660_000,
        "order": {"id": "O1", "lineItems": {"elements": [{"id": "LI1", "name": "Latte", "price": 450}]},
                  "customers": {"elements": [{"id": "C9", "emailAddresses": {"elements": [{"emailAddress": "X@Y.io"}]},
                                              "phoneNumbers": {"elements": [{"phoneNumber": "020 7946 0958"}]}}]}},
        "refunds": {"elements": [{"id": "R1", "amount": 300, "createdTime": 1_746_100_000_000, "payment": {"id": "CL1"}}]},
    }
    obj.update(kw)
    return obj


def test_square_payment_fields() -> None:
    rec = map_square_payment(square())
    assert (rec.provider, rec.provider_payment_id, rec.status, rec.is_completed, rec.is_voided) == (
        "square", "sq-1", "COMPLETED", True, False)
    assert (rec.amount_minor_units, rec.currency) == (1250, "USD")       # excludes the tip
    assert rec.transaction_at == datetime(2026, 5, 1, 10, 0, 0, 123000)
    assert rec.updated_at == datetime(2026, 5, 1, 10, 0, 5)
    assert rec.location_id == "LOC1" and rec.version == "v1"
    assert rec.customer_ref == {"email": "ann@example.com", "externalCustomerId": "CUST1", "orderId": "ORD1"}
    assert rec.refunds == ()
    cancelled = map_square_payment(square(status="CANCELED"))
    assert not cancelled.is_completed and cancelled.is_voided
    approved = map_square_payment(square(status="APPROVED", created_at="2026-05-01T12:00:00+02:00"))
    assert not approved.is_completed and not approved.is_voided and approved.transaction_at == datetime(2026, 5, 1, 10)


def test_square_refunds_on_payment() -> None:
    one = map_square_payment(square(refunded_money={"amount": 500, "currency": "USD"}, refund_ids=["r1"]))
    assert [(r.provider_refund_id, r.amount_minor_units, r.is_completed) for r in one.refunds] == [("r1", 500, True)]
    two = map_square_payment(square(refunded_money={"amount": 501, "currency": "USD"}, refund_ids=["b", "a"]))
    assert [(r.provider_refund_id, r.amount_minor_units, r.status) for r in two.refunds] == [
        ("a", 251, SPLIT_REFUND_STATUS), ("b", 250, SPLIT_REFUND_STATUS)]
    ref = map_square_refund({"id": "r1", "status": "PENDING", "payment_id": "sq-1",
                             "amount_money": {"amount": 500, "currency": "USD"}, "created_at": "2026-05-02T00:00:00Z"})
    assert (ref.provider_payment_id, ref.is_completed, ref.refunded_at) == ("sq-1", False, datetime(2026, 5, 2))


@pytest.mark.parametrize(("change", "reason"), [
    ({"amount_money": None}, "missing amount_money"),
    ({"amount_money": {"currency": "USD"}}, "missing amount_money.amount"),
    ({"amount_money": {"amount": "12", "currency": "USD"}}, "not an integer"),
    ({"amount_money": {"amount": 12.5, "currency": "USD"}}, "not an integer"),
    ({"amount_money": {"amount": True, "currency": "USD"}}, "not an integer"),
    ({"amount_money": {"amount": -1, "currency": "USD"}}, "negative"),
    ({"amount_money": {"amount": 2**31, "currency": "USD"}}, "32-bit"),
    ({"amount_money": {"amount": 1, "currency": "XYZ"}}, "unknown currency"),
    ({"status": "WEIRD"}, "unknown status"),
    ({"created_at": "yesterday"}, "RFC 3339"),
    ({"created_at": "2026-05-01T10:00:00"}, "no UTC offset"),
    ({"created_at": None}, "missing created_at"),
    ({"refunded_money": {"amount": 10, "currency": "USD"}, "refund_ids": []}, "refund_ids"),
    ({"refunded_money": {"amount": 99999, "currency": "USD"}, "refund_ids": ["r"]}, "exceeds"),
    ({"refunded_money": {"amount": 1, "currency": "EUR"}, "refund_ids": ["r"]}, "different currency"),
    ({"buyer_email_address": "a" * 1000}, "longer than"),
    ({"location_id": 5}, "must be a string"),
])
def test_square_malformed(change: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        map_square_payment(square(**change))


@pytest.mark.parametrize("obj", [None, [], "x", {"id": ""}, {"id": 5}, {"id": "a\x00b"}, {"id": "x" * 300}])
def test_square_hostile_shapes(obj: Any) -> None:
    with pytest.raises(ValidationError):
        map_square_payment(obj)


def test_clover_payment_fields() -> None:
    rec = map_clover_payment(clover(), default_currency="GBP")
    assert (rec.provider, rec.amount_minor_units, rec.currency, rec.is_completed) == ("clover", 999, "GBP", True)
    assert rec.transaction_at == datetime(2025, 5, 1, 10, 0) and rec.updated_at == datetime(2025, 5, 1, 10, 1)
    assert rec.customer_ref == {"externalCustomerId": "C9", "email": "x@y.io", "mobile": "020 7946 0958",
                                "orderId": "O1"}
    assert rec.line_items == [{"id": "LI1", "name": "Latte", "price": 450, "unitQty": None}]
    assert [(r.provider_refund_id, r.amount_minor_units, r.is_completed) for r in rec.refunds] == [("R1", 300, True)]
    voided = map_clover_payment(clover(result="VOIDED", refunds=None, order=None), default_currency="USD")
    assert voided.is_voided and not voided.is_completed and voided.customer_ref == {}


@pytest.mark.parametrize(("change", "reason"), [
    ({"amount": None}, "missing amount"),
    ({"amount": "5"}, "not an integer"),
    ({"amount": -5}, "negative"),
    ({"amount": 2**32}, "32-bit"),
    ({"createdTime": 1_746_093_600}, "epoch milliseconds"),     # seconds, not ms
    ({"createdTime": "2026"}, "epoch milliseconds"),
    ({"result": None}, "missing result"),
    ({"currency": "ABC"}, "unknown currency"),
    ({"refunds": {"elements": [{"id": "R1", "amount": 5000}]}}, "exceed"),
    ({"refunds": {"elements": [{"id": "R1", "amount": 1}, {"id": "R1", "amount": 1}]}}, "twice"),
    ({"refunds": {"elements": [{"id": "R1", "amount": 1, "payment": {"id": "OTHER"}}]}}, "another payment"),
    ({"refunds": "nope"}, "must be a list"),
])
def test_clover_malformed(change: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        map_clover_payment(clover(**change), default_currency="USD")


def test_load_payment_file_forms_and_skips(tmp_path: Path) -> None:
    f = tmp_path / "sq.json"
    f.write_text(json.dumps({"payments": [square(), square(id="bad", amount_money={"amount": -1, "currency": "USD"}),
                                          "garbage", square(id="sq-2", status="PENDING")]}))
    records, skipped = load_payment_file(f, "square")
    assert [r.provider_payment_id for r in records] == ["sq-1", "sq-2"]
    assert [(s.provider_id, "negative" in s.reason) for s in skipped][0] == ("bad", True)
    assert len(skipped) == 2
    f.write_text(json.dumps([square()]))
    assert len(load_payment_file(f, "square")[0]) == 1
    f.write_text(json.dumps({"elements": [clover()]}))
    recs, _ = load_payment_file(f, "clover", "JPY")
    assert recs[0].currency == "JPY"


@pytest.mark.parametrize("content", [b"", b"{not json", b"\xff\xfe\x00", b'{"payments": 5}', b'"x"', b"[" * 100_000])
def test_load_payment_file_unreadable(tmp_path: Path, content: bytes) -> None:
    f = tmp_path / "bad.json"
    f.write_bytes(content)
    with pytest.raises(ValidationError):
        load_payment_file(f, "square")


def test_load_payment_file_missing_and_bad_provider(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="cannot read"):
        load_payment_file(tmp_path / "nope.json", "square")
    with pytest.raises(ValidationError, match="unknown provider"):
        load_payment_file(tmp_path / "nope.json", "paypal")
