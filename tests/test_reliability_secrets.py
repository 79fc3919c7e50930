"""Secrets: a demo-like flow (syncs against the fake Square and Clover servers, signed and forged webhooks
over real HTTP, processing, a token expiring and refreshing, a revoked token, a bogus connection) with
every logger at DEBUG; no access/refresh token, client secret, webhook key or encryption key appears in
the logs, exception texts, results' reprs or anywhere in the database outside the `*_enc` columns.
The Square signature check refuses missing, wrong, truncated and replayed-with-modified-body signatures."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator

import httpx
import pytest
import sqlalchemy as sa
from pydantic import SecretStr
from sqlalchemy.engine import Engine

from salesarck.crypto import KeyRing
from salesarck.pos import connections
from salesarck.pos.fake.square import sign_webhook
from salesarck.pos.sync import sync_connection
from salesarck.pos.webhooks import processor
from tests.webhook_support import CLOVER_AUTH, NOTIFICATION_URL, SIGNATURE_KEY, Env, provider_env

BOGUS_TOKEN = "bogus-access-token-" + uuid.uuid4().hex


@pytest.fixture
def env(engine: Engine) -> Iterator[Env]:
    with provider_env(engine, square_payments=15, clover_payments=15) as e:
        yield e


def _secrets(env: Env, seen_tokens: set[str]) -> set[str]:
    s = env.settings
    values = {SIGNATURE_KEY, CLOVER_AUTH, BOGUS_TOKEN, env.square.client_secret, *seen_tokens}
    assert s.encryption_keys is not None
    for part in s.encryption_keys.get_secret_value().split(","):
        values.add(part.split(":", 1)[-1])  # the key material after the key id
    for name in ("square_client_secret", "clover_client_secret", "square_webhook_signature_key",
                 "clover_webhook_auth_code"):
        v = getattr(s, name, None)
        if v is not None:
            values.add(v.get_secret_value() if hasattr(v, "get_secret_value") else str(v))
    return {v for v in values if v and len(v) >= 12}


def _database_text(engine: Engine) -> str:
    """Every value in every table of the schema, except the encrypted token columns."""
    parts: list[str] = []
    with engine.connect() as conn:
        cols = conn.execute(sa.text(
            "select table_name, string_agg(format('coalesce(%I::text, '''')', column_name), ' || ''|'' || ')"
            " from information_schema.columns where table_schema = 'public' and column_name not like '%\\_enc'"
            " and table_name in (select table_name from information_schema.tables where table_schema = 'public'"
            " and table_type = 'BASE TABLE') group by table_name")).all()
        for table, expr in cols:
            parts += conn.execute(sa.text(f'select {expr} from "{table}"')).scalars().all()  # noqa: S608
    return "\n".join(parts)


def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    return httpx.post(url, content=body, headers={"content-type": "application/json", **headers}, timeout=10).status_code


def test_no_secret_leaks_through_a_demo_flow(engine: Engine, env: Env, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    logging.getLogger().setLevel(logging.DEBUG)
    seen = {env.square.access_token, env.square.refresh_token,
            env.clover.access_token_for(env.clover.merchant_id), env.clover.refresh_token_for(env.clover.merchant_id)}
    texts: list[str] = []  # exception texts and result reprs a user could see
    keyring = KeyRing.from_settings(env.settings)

    def run_sync(cid: uuid.UUID) -> None:
        try:
            texts.append(repr(sync_connection(engine, cid, actor=env.admin, settings=env.settings)))
        except Exception as exc:  # noqa: BLE001  (the text is what we check)
            texts.extend([str(exc), repr(exc), repr(exc.__cause__), repr(exc.__context__)])

    # 1. syncs of both providers, then one after the Square token expired (refresh rotates both tokens)
    run_sync(env.square_connection)
    run_sync(env.clover_connection)
    env.square.expire_token()
    pid = env.square.add_payment()["id"]
    run_sync(env.square_connection)
    seen |= {env.square.access_token, env.square.refresh_token}
    # 2. webhooks: one signed, then forged variants of it, then processing
    url = env.receiver_url + "/webhooks/square"
    event = env.square.webhook_event("payment.updated", pid)
    body = json.dumps(event).encode()
    good = sign_webhook(SIGNATURE_KEY, NOTIFICATION_URL, body)
    sig = "x-square-hmacsha256-signature"
    with engine.connect() as conn:
        before = conn.execute(sa.text("select count(*) from pos_webhook_events_raw")).scalar_one()
    forged = [
        (body, {}),  # missing
        (body, {sig: "d3Jvbmc="}),  # wrong
        (body, {sig: good[: len(good) // 2]}),  # truncated
        (body, {sig: good + "A"}),  # padded
        (body.replace(pid.encode(), b"evil-" + pid.encode()), {sig: good}),  # replayed, body modified
        (body + b" ", {sig: good}),  # one byte appended
        (body, {sig: sign_webhook("not-" + SIGNATURE_KEY, NOTIFICATION_URL, body)}),  # another key
        (body, {sig: sign_webhook(SIGNATURE_KEY, NOTIFICATION_URL + "x", body)}),  # another URL
    ]
    for forged_body, headers in forged:
        assert _post(url, forged_body, headers) in (400, 401, 403), headers
    with engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from pos_webhook_events_raw")).scalar_one() == before
    assert _post(url, body, {sig: good}) == 200
    assert _post(env.receiver_url + "/webhooks/clover", b'{"merchants": {}}', {"x-clover-auth": "wrong"}) in (
        400, 401, 403)
    texts.append(repr(processor.process_now(engine, actor=None, settings=env.settings)))
    # 3. errors with bad tokens: a revoked token, and a connection holding a bogus one
    env.square.revoke_token()
    run_sync(env.square_connection)
    other = connections.add_connection(engine, actor=env.admin, tenant_id=env.clover_tenant, provider="square",
                                       merchant_id="MERCH-BOGUS-" + uuid.uuid4().hex[:6],
                                       access_token=SecretStr(BOGUS_TOKEN), refresh_token=SecretStr(BOGUS_TOKEN),
                                       keyring=keyring)
    texts.append(repr(other))
    run_sync(other.id)
    with engine.connect() as conn:
        statuses = conn.execute(sa.text("select status, error from sync_runs where connection_id = :c"),
                                {"c": other.id}).all()
    assert statuses and all(st == "failed" and err for st, err in statuses), statuses  # the error path ran
    secrets = _secrets(env, seen)
    assert len(secrets) >= 8
    haystacks = {"logs": caplog.text + "\n".join(r.getMessage() for r in caplog.records),
                 "exceptions and results": "\n".join(texts), "database": _database_text(engine)}
    assert "sync" in haystacks["logs"].lower() or caplog.records, "nothing was logged: the check would be vacuous"
    leaks = [f"{where}: ...{s[:6]}" for where, text in haystacks.items() for s in secrets if s in text]
    assert leaks == []
    # the encrypted columns hold ciphertext, not the token
    with engine.connect() as conn:
        enc = " ".join(conn.execute(sa.text("select access_token_enc || refresh_token_enc from pos_connections"))
                       .scalars().all())
    assert enc and not any(s in enc for s in secrets)
