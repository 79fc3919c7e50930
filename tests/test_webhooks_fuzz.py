"""Hostile input: webhook parsers and the receiver answer every body and header with a clear 4xx
(or store a valid event), never a 500, and a refused request writes nothing."""

from __future__ import annotations

import json
import warnings

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from salesarck.errors import ValidationError
from salesarck.pos.webhooks import store
from salesarck.pos.webhooks.receiver import create_app
from salesarck.pos.webhooks.verify import square_signature, verify_clover_auth, verify_square_signature
from tests.test_webhooks_receiver import CLOVER_CODE, KEY, URL, connect
from tests.test_webhooks_receiver import settings as receiver_settings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_parsers_take_any_bytes(body: bytes) -> None:
    try:
        payload = store.parse_json_body(body)
    except ValidationError:
        return
    for parse in (store.square_fields, store.clover_merchant_events):
        try:
            parse(payload)
        except ValidationError:
            pass


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_parsers_take_any_json(value: object) -> None:
    for parse in (store.square_fields, store.clover_merchant_events):
        try:
            parse(value)
        except ValidationError:
            pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.text(max_size=300) | st.none())
def test_signature_checks_never_raise(body: bytes, sig: str | None) -> None:
    assert verify_square_signature(signature_key=KEY, notification_url=URL, body=body, signature=sig) is (
        sig is not None and sig.strip() == square_signature(signature_key=KEY, notification_url=URL, body=body))
    assert verify_clover_auth(expected_code=CLOVER_CODE, presented=sig) is (sig is not None and sig.strip() == CLOVER_CODE)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=400) | json_values.map(lambda v: json.dumps(v).encode()),
       sign=st.booleans(), provider=st.sampled_from(["square", "clover"]),
       ctype=st.sampled_from(["application/json", "application/json; charset=utf-8", "text/plain", ""]))
def test_receiver_never_fails_and_refusals_write_nothing(engine: Engine, body: bytes, sign: bool, provider: str,
                                                         ctype: str) -> None:
    with engine.connect() as conn:
        if not conn.execute(sa.text("select count(*) from pos_connections")).scalar_one():
            connect(engine, "square", "MSQ1")
    app = create_app(engine, receiver_settings(), merchant_cache_seconds=0)
    headers = {"content-type": ctype} if ctype else {}
    if sign:
        if provider == "square":
            headers["x-square-hmacsha256-signature"] = square_signature(signature_key=KEY, notification_url=URL,
                                                                        body=body)
        else:
            headers["x-clover-auth"] = CLOVER_CODE
    with engine.connect() as conn:
        before = conn.execute(sa.text("select count(*) from pos_webhook_events_raw")).scalar_one()
    with TestClient(app) as client:
        r = client.post(f"/webhooks/{provider}", content=body, headers=headers)
    assert r.status_code < 500, r.text
    with engine.connect() as conn:
        after = conn.execute(sa.text("select count(*) from pos_webhook_events_raw")).scalar_one()
    if r.status_code >= 400:
        assert after == before and r.json()["error"]
