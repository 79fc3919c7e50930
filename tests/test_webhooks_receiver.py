"""The webhook receiver: accepted events are stored raw and once; every rejection writes nothing."""

from __future__ import annotations

import json
import uuid
import warnings
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

with warnings.catch_warnings():  # starlette's TestClient warns about httpx at import
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from salesarck.config import Settings
from salesarck.pos.fake.server import ThreadServer
from salesarck.pos.webhooks.receiver import ReceiverMetrics, create_app
from salesarck.pos.webhooks.verify import square_signature, verify_square_signature
from tests.factories import make_tenant

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
KEY = "test-signature-key-" + uuid.uuid4().hex
URL = "https://hooks.example.test/webhooks/square"
CLOVER_CODE = "clover-auth-" + uuid.uuid4().hex
TABLES = ("pos_webhook_events_raw", "pos_webhook_event_bodies", "pos_webhook_event_keys")


def settings() -> Settings:
    return Settings(square_webhook_signature_key=KEY, square_webhook_notification_url=URL,
                    clover_webhook_auth_code=CLOVER_CODE)


def connect(engine: Engine, provider: str, merchant: str, status: str = "active") -> uuid.UUID:
    with engine.begin() as conn:
        tenant = make_tenant(conn)["id"]
        conn.execute(sa.text("insert into pos_connections (tenant_id, pos_type, access_token_enc, refresh_token_enc,"
                             " merchant_account_id, status) values (:t, :p, 'x', '', :m, :s)"),
                     {"t": tenant, "p": provider, "m": merchant, "s": status})
    return tenant


def square_event(merchant: str = "MSQ1", event_id: str | None = None, **payment: Any) -> dict[str, Any]:
    pay = {"id": "PAY1", "status": "COMPLETED", "amount_money": {"amount": 1000, "currency": "USD"},
           "created_at": "2026-11-01T10:00:00Z", "updated_at": "2026-11-01T10:00:01Z", **payment}
    return {"merchant_id": merchant, "type": "payment.updated", "event_id": event_id or str(uuid.uuid4()),
            "created_at": "2026-11-01T10:00:02Z", "data": {"type": "payment", "id": pay["id"],
                                                          "object": {"payment": pay}}}


def signed(body: bytes, key: str = KEY, url: str = URL) -> dict[str, str]:
    return {"content-type": "application/json",
            "x-square-hmacsha256-signature": square_signature(signature_key=key, notification_url=url, body=body)}


def counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {t: conn.execute(sa.text(f"select count(*) from {t}")).scalar_one() for t in TABLES}


@pytest.fixture
def client(engine: Engine) -> Iterator[TestClient]:
    app = create_app(engine, settings(), merchant_cache_seconds=0)
    with TestClient(app) as c:
        yield c


def test_signed_square_event_is_stored_raw_and_reverifies(engine: Engine, client: TestClient) -> None:
    tenant = connect(engine, "square", "MSQ1")
    body = json.dumps(square_event(), indent=1).encode()  # whitespace jsonb would not keep
    r = client.post("/webhooks/square", content=body, headers=signed(body))
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "stored"
    with engine.connect() as conn:
        row = conn.execute(sa.text(
            "select e.tenant_id, e.provider, e.event_type, e.raw_payload, e.signature_header, e.processed, b.raw_body"
            " from pos_webhook_events_raw e join pos_webhook_event_bodies b on b.event_id = e.id")).one()
    assert (row.tenant_id, row.provider, row.event_type, row.processed) == (tenant, "square", "payment.updated", False)
    assert row.raw_payload == json.loads(body)
    assert bytes(row.raw_body) == body
    assert verify_square_signature(signature_key=KEY, notification_url=URL, body=bytes(row.raw_body),
                                   signature=row.signature_header)
    assert not verify_square_signature(signature_key=KEY, notification_url=URL,
                                       body=json.dumps(row.raw_payload).encode(), signature=row.signature_header)


def test_duplicate_square_deliveries_are_stored_once(engine: Engine, client: TestClient) -> None:
    connect(engine, "square", "MSQ1")
    body = json.dumps(square_event(event_id="evt-1")).encode()
    statuses = [client.post("/webhooks/square", content=body, headers=signed(body)).json()["status"] for _ in range(5)]
    assert statuses == ["stored"] + ["duplicate"] * 4
    # the same event id with other bytes (a re-serialised retry) is still the same event
    body2 = json.dumps(square_event(event_id="evt-1"), indent=2).encode()
    assert client.post("/webhooks/square", content=body2, headers=signed(body2)).json()["status"] == "duplicate"
    assert counts(engine) == dict.fromkeys(TABLES, 1)


def _rejections(big: bytes) -> list[tuple[str, str, bytes, dict[str, str], int]]:
    good = json.dumps(square_event()).encode()
    unknown = json.dumps(square_event(merchant="NOPE")).encode()
    off = json.dumps(square_event(merchant="MOFF")).encode()
    no_event_id = json.dumps({k: v for k, v in square_event().items() if k != "event_id"}).encode()
    clover_ok = json.dumps({"appId": "A", "merchants": {"MCL1": [{"objectId": "P:X", "type": "CREATE",
                                                                  "ts": 1760000000000}]}}).encode()
    clover_unknown = clover_ok.replace(b"MCL1", b"NOPE")
    cj = {"content-type": "application/json", "x-clover-auth": CLOVER_CODE}
    return [
        ("square", "bad signature", good, signed(good, key="wrong"), 401),
        ("square", "signature for another url", good, signed(good, url="https://evil.test/x"), 401),
        ("square", "missing signature", good, {"content-type": "application/json"}, 401),
        ("square", "legacy sha1 header", good, {"content-type": "application/json", "x-square-signature": "abc"}, 401),
        ("square", "garbage signature", good, {"content-type": "application/json",
                                               "x-square-hmacsha256-signature": "x" * 5000}, 401),
        ("square", "unknown merchant", unknown, signed(unknown), 422),
        ("square", "disconnected merchant", off, signed(off), 422),
        ("square", "over 1 MiB", big, signed(big), 413),
        ("square", "not json", b"{not json", signed(b"{not json"), 400),
        ("square", "NaN", b'{"merchant_id": NaN}', signed(b'{"merchant_id": NaN}'), 400),
        ("square", "NUL", b'{"merchant_id": "MSQ1\\u0000", "event_id": "e", "type": "t"}',
         signed(b'{"merchant_id": "MSQ1\\u0000", "event_id": "e", "type": "t"}'), 400),
        ("square", "array body", b"[1,2]", signed(b"[1,2]"), 400),
        ("square", "missing event_id", no_event_id, signed(no_event_id), 400),
        ("square", "wrong content type", good, {**signed(good), "content-type": "text/plain"}, 415),
        ("square", "no content type", good, {"x-square-hmacsha256-signature": signed(good)[
            "x-square-hmacsha256-signature"]}, 415),
        ("clover", "bad auth", clover_ok, {**cj, "x-clover-auth": "wrong"}, 401),
        ("clover", "no auth", clover_ok, {"content-type": "application/json"}, 401),
        ("clover", "unknown merchant", clover_unknown, cj, 422),
        ("clover", "not json", b"nope", cj, 400),
        ("clover", "bad event type", clover_ok.replace(b"CREATE", b"EXPLODE"), cj, 400),
        ("clover", "ts in seconds as text", clover_ok.replace(b"1760000000000", b'"1760000000"'), cj, 400),
        ("clover", "empty merchants", b'{"merchants": {}}', cj, 400),
        ("clover", "over 1 MiB", big, cj, 413),
        ("clover", "wrong content type", clover_ok, {**cj, "content-type": "application/x-www-form-urlencoded"}, 415),
        ("clover", "handshake with extra keys", b'{"verificationCode": "abc", "merchants": {}}',
         {"content-type": "application/json"}, 401),
    ]


def test_every_rejection_over_real_http_writes_nothing(engine: Engine) -> None:
    connect(engine, "square", "MSQ1")
    connect(engine, "square", "MOFF", status="disconnected")
    connect(engine, "clover", "MCL1")
    big = b'{"merchant_id": "MSQ1", "pad": "' + b"x" * (1024 * 1024) + b'"}'
    metrics = ReceiverMetrics()
    cases = _rejections(big)
    with ThreadServer(create_app(engine, settings(), metrics=metrics, merchant_cache_seconds=0)) as srv, \
            httpx.Client(base_url=srv.base_url, timeout=10) as http:
        for provider, name, body, headers, status in cases:
            r = http.post(f"/webhooks/{provider}", content=body, headers=headers)
            assert r.status_code == status, (name, r.status_code, r.text)
            assert r.json()["error"], name
        health = http.get("/healthz").json()
    assert counts(engine) == dict.fromkeys(TABLES, 0)
    assert health["database"] is True
    assert health["counts"]["rejected"] == len(cases)
    assert metrics.snapshot()["square.rejected.bad signature"] == 3


def test_clover_handshake_logs_code_and_stores_nothing(engine: Engine, client: TestClient,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING"):
        r = client.post("/webhooks/clover", json={"verificationCode": "code-123"})
    assert r.status_code == 200
    assert "code-123" in caplog.text
    assert counts(engine) == dict.fromkeys(TABLES, 0)


def test_clover_batch_is_one_row_per_known_merchant_and_dedups_per_event(engine: Engine, client: TestClient) -> None:
    t1 = connect(engine, "clover", "MCL1")
    t2 = connect(engine, "clover", "MCL2")
    ev = [{"objectId": "P:AAA", "type": "CREATE", "ts": 1760000000000},
          {"objectId": "O:OOO", "type": "UPDATE", "ts": 1760000000001}]
    body = {"appId": "APP", "merchants": {"MCL1": ev, "MCL2": ev[:1], "NOPE": ev}}
    headers = {"x-clover-auth": CLOVER_CODE}
    r = client.post("/webhooks/clover", json=body, headers=headers)
    assert r.status_code == 200 and r.json()["stored"] == 2 and r.json()["unknown_merchants"] == 1
    # a re-batched retry: one old event plus one new one; only the new one is stored
    new = {"objectId": "P:BBB", "type": "UPDATE", "ts": 1760000000002}
    r = client.post("/webhooks/clover", json={"appId": "APP", "merchants": {"MCL1": [ev[0], new]}}, headers=headers)
    assert r.json() == {"status": "stored", "stored": 1, "duplicates": 1, "unknown_merchants": 0}
    r = client.post("/webhooks/clover", json=body, headers=headers)
    assert r.json()["status"] == "duplicate"
    with engine.connect() as conn:
        rows = conn.execute(sa.text("select tenant_id, event_type, raw_payload, signature_header"
                                    " from pos_webhook_events_raw order by created_at, event_type")).all()
        keys = conn.execute(sa.text("select count(*) from pos_webhook_event_keys")).scalar_one()
    assert keys == 4
    assert {(r.tenant_id, r.event_type) for r in rows} == {
        (t1, "order.update,payment.create"), (t2, "payment.create"), (t1, "payment.update")}
    assert all(r.signature_header is None for r in rows)  # the auth code is never stored
    narrowed = [r.raw_payload for r in rows if r.event_type == "payment.update"][0]
    assert narrowed == {"appId": "APP", "merchants": {"MCL1": [new]}}
    with engine.connect() as conn:
        stored_text = conn.execute(sa.text("select string_agg(raw_payload::text, '') from pos_webhook_events_raw"
                                           )).scalar_one()
    assert CLOVER_CODE not in stored_text


def test_unconfigured_secrets_refuse_with_503(engine: Engine) -> None:
    connect(engine, "square", "MSQ1")
    app = create_app(engine, Settings(), merchant_cache_seconds=0)
    body = json.dumps(square_event()).encode()
    with TestClient(app) as c:
        assert c.post("/webhooks/square", content=body, headers=signed(body)).status_code == 503
        assert c.post("/webhooks/clover", json={"merchants": {}}, headers={"x-clover-auth": "x"}).status_code == 503
    assert counts(engine) == dict.fromkeys(TABLES, 0)


@pytest.mark.slow
def test_serve_commands_run_as_processes(engine: Engine, test_env: object, tmp_path: object) -> None:
    """`salesarck webhooks serve` (two uvicorn workers) and `salesarck fakepos serve clover` answer over HTTP."""
    import os

    from salesarck.pos.fake.clover import DEFAULT_ACCESS_TOKEN, FakeClover
    from salesarck.pos.fake.server import ProcessServer

    connect(engine, "square", "MSQ1")
    env = {"SQUARE_WEBHOOK_SIGNATURE_KEY": KEY, "SQUARE_WEBHOOK_NOTIFICATION_URL": URL,
           "CLOVER_WEBHOOK_AUTH_CODE": CLOVER_CODE, "DATABASE_URL": os.environ["DATABASE_URL"]}
    body = json.dumps(square_event()).encode()
    with ProcessServer(["webhooks", "serve", "--workers", "2"], env=env) as rv, \
            ProcessServer(["fakepos", "serve", "clover", "--payments", "5"]) as cl:
        r = httpx.post(rv.base_url + "/webhooks/square", content=body, headers=signed(body), timeout=30)
        assert r.status_code == 200 and r.json()["stored"] == 1
        assert httpx.get(rv.base_url + "/healthz", timeout=30).json()["database"] is True
        mid = FakeClover(seed=1, payments=5).merchant_id  # the served fake's data is the same for the seed
        got = httpx.get(f"{cl.base_url}/v3/merchants/{mid}/payments", timeout=30,
                        headers={"authorization": f"Bearer {DEFAULT_ACCESS_TOKEN}"})
        assert got.status_code == 200 and len(got.json()["elements"]) == 5
    assert counts(engine)["pos_webhook_events_raw"] == 1
