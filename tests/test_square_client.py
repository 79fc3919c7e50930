"""The Square client and the retrying HTTP helper against the fake Square over real HTTP, and the
official `squareup` SDK paging through the same fake (proof the fake speaks Square's contract)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from salesarck.errors import ValidationError
from salesarck.pos.fake.server import ThreadServer
from salesarck.pos.fake.square import (
    DEFAULT_ACCESS_TOKEN,
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    FakeSquare,
)
from salesarck.pos.http import JsonHttp, ProviderHTTPError, RetryPolicy, parse_error_body, retry_after_seconds
from salesarck.pos.square import CursorLoopError, SquareClient

FAST = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05)


@pytest.fixture(scope="module")
def fake() -> FakeSquare:
    return FakeSquare(seed=3, payments=450, days=20)


@pytest.fixture(scope="module")
def url(fake: FakeSquare) -> Iterator[str]:
    with ThreadServer(fake.app) as srv:
        yield srv.base_url


@pytest.fixture
def client(url: str) -> Iterator[SquareClient]:
    with SquareClient(url, DEFAULT_ACCESS_TOKEN, policy=FAST) as c:
        yield c


def _all_ids(client: SquareClient, fake: FakeSquare, **kw: object) -> list[str]:
    ids: list[str] = []
    for loc in client.list_locations():
        for page in client.iter_payment_pages(location_id=loc["id"], **kw):  # type: ignore[arg-type]
            assert len(page.payments) <= 100
            ids.extend(p["id"] for p in page.payments)
    return ids


def test_pages_every_payment_of_every_location_once(client: SquareClient, fake: FakeSquare) -> None:
    ids = _all_ids(client, fake, updated_at_begin_time=datetime.now(UTC) - timedelta(days=60))
    assert len(ids) == len(set(ids)) == len(fake.payments)
    main_only = [p["id"] for page in client.iter_payment_pages() for p in page.payments]
    assert 0 < len(main_only) < len(ids)  # ListPayments without location_id: the main location only


def test_updated_at_window_and_ascending_order(client: SquareClient, fake: FakeSquare) -> None:
    begin = datetime.now(UTC) - timedelta(days=5)
    loc = fake.locations[0]["id"]
    got = [p for page in client.iter_payment_pages(location_id=loc, updated_at_begin_time=begin) for p in page.payments]
    stamps = [p["updated_at"] for p in got]
    assert stamps == sorted(stamps)
    expected = {p["id"] for p in fake.payments.values() if p["location_id"] == loc
                and p["updated_at"] >= begin.strftime("%Y-%m-%dT%H:%M:%S.000Z")}
    assert {p["id"] for p in got} == expected


def test_official_sdk_pages_through_the_fake(url: str, client: SquareClient, fake: FakeSquare) -> None:
    from square import Square

    sdk = Square(base_url=url, token=DEFAULT_ACCESS_TOKEN)
    locations = sdk.locations.list().locations or []
    assert [loc.id for loc in locations] == [loc["id"] for loc in fake.locations]
    begin = (datetime.now(UTC) - timedelta(days=60)).isoformat()
    sdk_ids: list[str] = []
    for loc in locations:
        pager = sdk.payments.list(location_id=loc.id, sort_field="UPDATED_AT", sort_order="ASC", limit=100,
                                  updated_at_begin_time=begin)
        for payment in pager:
            assert payment.amount_money is not None and isinstance(payment.amount_money.amount, int)
            sdk_ids.append(payment.id or "")
    assert sdk_ids == _all_ids(client, fake, updated_at_begin_time=datetime.now(UTC) - timedelta(days=60))
    refund_id = next(iter(fake.refunds))
    refund = sdk.refunds.get(refund_id=refund_id).refund
    assert refund is not None and refund.payment_id == fake.refunds[refund_id]["payment_id"]
    order_ids = list(fake.orders)[:3]
    orders = sdk.orders.batch_get(order_ids=order_ids).orders or []
    assert sorted(o.id or "" for o in orders) == sorted(order_ids)
    cust_id = next(iter(fake.customers))
    customer = sdk.customers.get(customer_id=cust_id).customer
    assert customer is not None and customer.email_address == fake.customers[cust_id]["email_address"]
    sdk_refunds = [r.id for r in sdk.refunds.list(limit=10)]
    assert len(sdk_refunds) == len(fake.refunds)


def test_refunds_orders_customers(client: SquareClient, fake: FakeSquare) -> None:
    rid = next(iter(fake.refunds))
    assert client.get_refund(rid)["id"] == rid
    listed = list(client.iter_refunds(limit=7))
    assert sorted(r["id"] for r in listed) == sorted(fake.refunds)
    many = list(fake.orders)[:150]  # more than one batch of 100
    assert set(client.batch_retrieve_orders(many + ["OMISSING"])) == set(many)
    cid = next(iter(fake.customers))
    assert client.get_customer(cid)["id"] == cid  # type: ignore[index]
    assert client.get_customer("CNOSUCH") is None
    with pytest.raises(ProviderHTTPError) as info:
        client.get_refund("RNOSUCH")
    assert info.value.status == 404 and info.value.codes == {"NOT_FOUND"}


def test_hostile_ids_and_parameters_are_refused_before_any_request(client: SquareClient, fake: FakeSquare) -> None:
    before = client.http.calls
    for bad in ["../v2/locations", "a b", "x" * 500, "", "id?x=1"]:
        with pytest.raises(ValidationError):
            client.get_refund(bad)
        with pytest.raises(ValidationError):
            client.get_customer(bad)
    with pytest.raises(ValidationError):
        list(client.iter_payment_pages(limit=101))
    with pytest.raises(ValidationError):
        list(client.iter_payment_pages(sort_field="AMOUNT"))
    with pytest.raises(ValidationError):
        client.batch_retrieve_orders(["ok", "not ok"])
    assert client.http.calls == before


def test_invalid_cursor_is_a_clear_provider_error(client: SquareClient) -> None:
    with pytest.raises(ProviderHTTPError) as info:
        client.list_payments_page(cursor="bm90LWEtY3Vyc29y")
    assert info.value.status == 400 and "INVALID_CURSOR" in str(info.value)


def test_repeated_cursor_stops_hard(client: SquareClient, fake: FakeSquare) -> None:
    fake.faults.repeat_cursor = True
    try:
        with pytest.raises(CursorLoopError, match="already returned"):
            for _ in client.iter_payment_pages(location_id=fake.locations[0]["id"],
                                               updated_at_begin_time=datetime.now(UTC) - timedelta(days=60)):
                pass
    finally:
        fake.faults.repeat_cursor = False


def test_retries_429_with_retry_after_and_500_with_backoff(url: str, fake: FakeSquare) -> None:
    waits: list[float] = []
    http = JsonHttp(url, policy=RetryPolicy(max_attempts=5, base_delay=0.2, max_delay=1.0), sleep=waits.append,
                    provider="Square")
    client = SquareClient(url, DEFAULT_ACCESS_TOKEN, http=http)
    fake.faults.rate_limited, fake.faults.retry_after, fake.faults.server_errors = 1, "0.7", 2
    assert client.list_locations()
    assert len(waits) == 3 and waits[0] == 0.7 and all(0 <= w <= 0.8 for w in waits[1:])
    fake.faults.server_errors = 10
    with pytest.raises(ProviderHTTPError) as info:
        client.list_locations()
    assert info.value.status == 500 and http.calls == 4 + 5
    fake.faults.server_errors = 0


def test_auth_errors_are_not_retried(url: str, fake: FakeSquare) -> None:
    client = SquareClient(url, "wrong-token", policy=FAST)
    with pytest.raises(ProviderHTTPError) as info:
        client.list_locations()
    assert info.value.status == 401 and info.value.codes == {"UNAUTHORIZED"} and client.http.calls == 1


def test_oauth_refresh(url: str, fake: FakeSquare) -> None:
    client = SquareClient(url, DEFAULT_ACCESS_TOKEN, policy=FAST)
    tokens = client.refresh_access_token(client_id=DEFAULT_CLIENT_ID, client_secret=SecretStr(DEFAULT_CLIENT_SECRET),
                                         refresh_token=SecretStr(fake.refresh_token))
    assert tokens.access_token.get_secret_value() == fake.access_token
    assert tokens.expires_at is not None and tokens.expires_at > datetime.now(UTC).replace(tzinfo=None)
    assert fake.access_token not in repr(tokens)
    with pytest.raises(ProviderHTTPError) as info:
        client.refresh_access_token(client_id=DEFAULT_CLIENT_ID, client_secret=SecretStr("nope"),
                                    refresh_token=SecretStr(fake.refresh_token))
    assert info.value.status == 401


def test_tokens_never_in_repr_or_logs(url: str, caplog: pytest.LogCaptureFixture, fake: FakeSquare) -> None:
    secret = "sq-secret-token-value-123"
    client = SquareClient(url, secret, policy=FAST)
    caplog.set_level(logging.DEBUG)
    fake.faults.server_errors = 1
    with pytest.raises(ProviderHTTPError) as info:
        client.list_locations()  # 500 then 401: retried and logged
    assert secret not in repr(client) and secret not in repr(client.http)
    assert secret not in caplog.text and secret not in str(info.value)
    assert "retry" in caplog.text


def _weird_app() -> Starlette:
    async def garbage(request: Request) -> Response:
        return Response(b"{not json", media_type="application/json")

    async def html_error(request: Request) -> Response:
        return Response(b"<html>bad gateway</html>", status_code=502)

    async def clover_error(request: Request) -> Response:
        return Response(json.dumps({"message": "Unauthorized"}), status_code=401)

    return Starlette(routes=[Route("/garbage", garbage, methods=["GET", "POST"]), Route("/html", html_error),
                             Route("/clover", clover_error)])


def test_http_helper_on_malformed_answers() -> None:
    with ThreadServer(_weird_app()) as srv, JsonHttp(srv.base_url, policy=FAST, sleep=lambda s: None) as http:
        with pytest.raises(ProviderHTTPError, match="malformed JSON"):
            http.request("GET", "/garbage")
        assert http.retries == 3  # a GET's unreadable body is read again (cut short in transit), then reported
        with pytest.raises(ProviderHTTPError, match="malformed JSON"):
            http.request("POST", "/garbage")
        assert http.retries == 3  # a POST's is not: it may have done its work
        with pytest.raises(ProviderHTTPError) as info:
            http.request("GET", "/html")
        assert info.value.status == 502 and info.value.errors == () and http.retries == 6
        with pytest.raises(ProviderHTTPError) as info:
            http.request("GET", "/clover")
        assert info.value.codes == {"ERROR"} and "Unauthorized" in str(info.value)


def test_http_helper_connection_refused_and_timeouts() -> None:
    from salesarck.pos.fake.server import free_port

    http = JsonHttp(f"http://127.0.0.1:{free_port()}", policy=FAST, sleep=lambda s: None)
    with pytest.raises(ProviderHTTPError, match="ConnectError") as info:
        http.request("GET", "/v2/locations")
    assert info.value.status is None and http.calls == 4
    fake = FakeSquare(seed=1, payments=5)
    fake.faults.delay_seconds = 0.5
    with ThreadServer(fake.app) as srv:
        slow = JsonHttp(srv.base_url, sleep=lambda s: None,
                        policy=RetryPolicy(max_attempts=2, timeout=httpx.Timeout(0.1)))
        with pytest.raises(ProviderHTTPError, match="ReadTimeout"):
            slow.request("GET", "/v2/locations")
        assert slow.calls == 2


def test_error_body_and_retry_after_parsing() -> None:
    body = json.dumps({"errors": [{"category": "RATE_LIMIT_ERROR", "code": "RATE_LIMITED", "detail": "x" * 1000}]})
    (err,) = parse_error_body(body.encode())
    assert err.code == "RATE_LIMITED" and err.category == "RATE_LIMIT_ERROR" and len(err.detail or "") < 400
    assert parse_error_body(b"\xff\xfe") == () and parse_error_body(b"[1,2]") == () and parse_error_body(b"") == ()
    assert retry_after_seconds("3") == 3.0 and retry_after_seconds("-4") == 0.0
    assert retry_after_seconds("junk") is None and retry_after_seconds(None) is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0


def test_fake_emits_signed_webhooks(fake: FakeSquare) -> None:
    import base64
    import hashlib
    import hmac

    received: list[tuple[bytes, str]] = []

    async def hook(request: Request) -> Response:
        received.append((await request.body(), request.headers["x-square-hmacsha256-signature"]))
        return Response(status_code=200)

    with ThreadServer(Starlette(routes=[Route("/hook", hook, methods=["POST"])])) as srv:
        pid = next(iter(fake.payments))
        resp = fake.emit_webhook(f"{srv.base_url}/hook", signature_key="test-key", event_type="payment.updated",
                                 object_id=pid, notification_url="https://example.test/hook")
    assert resp.status_code == 200
    body, sig = received[0]
    expected = base64.b64encode(hmac.new(b"test-key", b"https://example.test/hook" + body, hashlib.sha256).digest())
    assert sig == expected.decode()
    event = json.loads(body)
    assert event["type"] == "payment.updated" and event["data"]["object"]["payment"]["id"] == pid
    assert event["merchant_id"] == fake.merchant_id
