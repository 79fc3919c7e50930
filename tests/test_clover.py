"""Clover client and sync against the fake Clover server over real HTTP."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa
from pydantic import SecretStr
from sqlalchemy.engine import Engine

from salesarck.crypto import KeyRing
from salesarck.errors import ValidationError
from salesarck.pos import connections
from salesarck.pos.clover import MAX_WINDOW, CloverClient, TokenRateLimiter, to_ms, windows
from salesarck.pos.clover_sync import clover_base_url
from salesarck.pos.fake.clover import FakeClover
from salesarck.pos.fake.server import ThreadServer
from salesarck.pos.http import ProviderHTTPError, RetryPolicy
from salesarck.pos.sync import sync_connection
from salesarck.timeutil import iso_utc, utcnow
from salesarck.worker import set_connection_options
from tests.webhook_support import provider_env


def _naive(dt: datetime) -> datetime:
    return dt.astimezone(UTC).replace(tzinfo=None)


def test_windows_never_exceed_ninety_days() -> None:
    start = datetime(2026, 1, 1)
    end = start + timedelta(days=200)
    parts = list(windows(start, end))
    assert len(parts) == 3 and parts[0][0] == start and parts[-1][1] == end
    assert all(b - a <= MAX_WINDOW for a, b in parts)
    assert all(parts[i][1] == parts[i + 1][0] for i in range(len(parts) - 1))
    assert list(windows(end, start)) == []
    assert to_ms(datetime(2026, 1, 1)) == 1767225600000  # milliseconds, not seconds


def test_client_pages_every_payment_once_and_the_fake_refuses_what_clover_refuses() -> None:
    fake = FakeClover(seed=3, payments=60, days=10)
    token = fake.access_token_for(fake.merchant_id)
    with ThreadServer(fake.app) as srv:
        with CloverClient(srv.base_url, SecretStr(token), page_limit=7) as client:
            start = _naive(fake.anchor) - timedelta(days=200)
            seen = [p["id"] for page in client.iter_payment_pages(fake.merchant_id, start, _naive(fake.anchor))
                    for p in page.payments]
            assert sorted(seen) == sorted(fake.payment_ids()) and len(seen) == len(set(seen))
            one = client.get_payment(fake.merchant_id, seen[0])
            assert one["id"] == seen[0] and "lineItems" in one["order"]
            with pytest.raises(ValidationError):
                client.get_payment(fake.merchant_id, "../../v3/merchants")
            with pytest.raises(ValidationError):
                client.payment_page(fake.merchant_id, start, start + timedelta(days=91))
        auth = {"authorization": f"Bearer {token}"}
        base = f"{srv.base_url}/v3/merchants/{fake.merchant_id}/payments"
        wide = httpx.get(base, params={"filter": ["modifiedTime>=1", f"modifiedTime<{91 * 86400 * 1000 + 2}"]},
                         headers=auth)
        assert wide.status_code == 400 and "90 days" in wide.json()["message"]
        assert httpx.get(base, params={"limit": 1001}, headers=auth).status_code == 400
        assert httpx.get(base, params={"filter": "modifiedTime>=abc"}, headers=auth).status_code == 400
        assert httpx.get(base, headers={"authorization": "Bearer nope"}).status_code == 401


def test_client_honours_429_and_keeps_under_the_rate_limit() -> None:
    fake = FakeClover(seed=4, payments=5)
    token = fake.access_token_for(fake.merchant_id)
    with ThreadServer(fake.app) as srv:
        fake.faults.rate_limited = 2
        fake.faults.retry_after = "0"
        with CloverClient(srv.base_url, SecretStr(token), limiter=TokenRateLimiter()) as client:
            pid = fake.payment_ids()[0]
            assert client.get_payment(fake.merchant_id, pid)["id"] == pid
            assert client._http.retries == 2
            started = time.monotonic()
            for _ in range(20):
                client.get_payment(fake.merchant_id, pid)
            assert time.monotonic() - started >= 0.9  # 20 requests at 16/s take over a second
        assert fake.stats["rate_limited"] == 0  # the fake's own 16/s limit was never hit


def _stored_tokens(engine: Engine, keyring: KeyRing, connection_id: object) -> connections.ConnectionTokens:
    with engine.connect() as conn:
        return connections.load_tokens(conn, connection_id, keyring)  # type: ignore[arg-type]


def test_sync_posts_refunds_voids_and_resync_changes_nothing(engine: Engine) -> None:
    with provider_env(engine, receiver=False, clover_payments=40) as env:
        r1 = sync_connection(engine, env.clover_connection, actor=None, settings=env.settings)
        assert r1.ok, r1.error
        with engine.connect() as conn:
            n = conn.execute(sa.text("select count(*) from transactions where provider = 'clover'")).scalar_one()
        assert n == len(env.clover.payment_ids(result="SUCCESS")) and n > 0
        r2 = sync_connection(engine, env.clover_connection, actor=None, settings=env.settings)
        assert r2.ok and r2.posted == 0 and r2.points_credited == 0 and r2.points_debited == 0
        # a refund of an old payment, a void, and a late offline payment, all picked up by the next poll
        success = env.clover.payment_ids(result="SUCCESS")
        env.clover.refund_payment(success[0], 100)
        env.clover.void_payment(success[1])
        late = env.clover.add_payment(created_at=datetime.now(UTC) - timedelta(hours=48), amount=1500)
        r3 = sync_connection(engine, env.clover_connection, actor=None, settings=env.settings)
        assert r3.ok and r3.posted == 1 and r3.points_debited > 0
        with engine.connect() as conn:
            descs = set(conn.execute(sa.text("select description from wallet_ledger where entry_type = 'debit'"))
                        .scalars())
            late_at = conn.execute(sa.text("select transaction_at from transactions where provider_transaction_id"
                                           " = :p"), {"p": late["id"]}).scalar_one()
        assert "void" in descs and any(d.startswith("refund:") for d in descs)
        assert abs((utcnow() - late_at) - timedelta(hours=48)) < timedelta(minutes=5)
        r4 = sync_connection(engine, env.clover_connection, actor=None, settings=env.settings)
        assert r4.ok and (r4.posted, r4.points_credited, r4.points_debited) == (0, 0, 0)


def test_expired_token_is_refreshed_and_the_rotated_pair_stored(engine: Engine) -> None:
    with provider_env(engine, receiver=False) as env:
        keyring = KeyRing.from_settings(env.settings)
        old = _stored_tokens(engine, keyring, env.clover_connection)
        env.clover.expire_token()
        result = sync_connection(engine, env.clover_connection, actor=None, settings=env.settings)
        assert result.ok, result.error
        new = _stored_tokens(engine, keyring, env.clover_connection)
        assert new.access_token.get_secret_value() != old.access_token.get_secret_value()
        assert new.refresh_token is not None and old.refresh_token is not None
        assert new.refresh_token.get_secret_value() != old.refresh_token.get_secret_value()
        assert new.refresh_token.get_secret_value() in env.clover.refresh_tokens  # the live one
        assert old.refresh_token.get_secret_value() not in env.clover.refresh_tokens  # single use: spent


def test_legacy_token_without_refresh_is_never_refreshed(engine: Engine) -> None:
    with provider_env(engine, receiver=False) as env:
        keyring = KeyRing.from_settings(env.settings)
        with engine.begin() as conn:
            conn.execute(sa.text("update pos_connections set refresh_token_enc = '' where id = :c"),
                         {"c": env.clover_connection})
        env.clover.expire_token()
        result = sync_connection(engine, env.clover_connection, actor=None, settings=env.settings)
        assert not result.ok and "reconnect" in (result.error or "")
        assert env.clover.stats["refresh"] == 0
        with engine.connect() as conn:
            status = conn.execute(sa.text("select status from pos_connections where id = :c"),
                                  {"c": env.clover_connection}).scalar_one()
        assert status == "token_expired"
        assert _stored_tokens(engine, keyring, env.clover_connection).refresh_token is None


def test_region_selects_the_base_url(engine: Engine) -> None:
    with provider_env(engine, receiver=False) as env:
        assert clover_base_url(engine, env.clover_connection, env.settings) == env.clover_url
        set_connection_options(engine, actor=env.admin, connection_id=env.clover_connection, clover_region="eu")
        assert clover_base_url(engine, env.clover_connection, env.settings) == "https://api.eu.clover.com"
        set_connection_options(engine, actor=env.admin, connection_id=env.clover_connection, clover_region="la")
        assert clover_base_url(engine, env.clover_connection, env.settings) == "https://api.la.clover.com"


def test_server_errors_are_retried_then_fail_the_run_cleanly(engine: Engine) -> None:
    with provider_env(engine, receiver=False) as env:
        env.clover.faults.server_errors = 2
        ok = sync_connection(engine, env.clover_connection, actor=None, settings=env.settings)
        assert ok.ok
        env.clover.faults.server_errors = 10_000
        from salesarck.pos import clover as clover_mod

        policy = RetryPolicy(max_attempts=2, base_delay=0.01)
        bad = sync_connection(engine, env.clover_connection, actor=None, settings=env.settings,
                              client_factory=lambda url, tok: clover_mod.CloverClient(url, tok, policy=policy))
        assert not bad.ok and "500" in (bad.error or "")
        with pytest.raises(ProviderHTTPError):
            clover_mod.CloverClient(env.clover_url, SecretStr("x"), policy=policy).get_payment(
                env.clover.merchant_id, env.clover.payment_ids()[0])


def test_no_token_reaches_logs_or_reprs(engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    from salesarck.pos.clover_sync import CloverSession

    with provider_env(engine, receiver=False) as env, caplog.at_level("DEBUG"):
        old_access = env.clover.access_token_for(env.clover.merchant_id)
        old_refresh = env.clover.refresh_token_for(env.clover.merchant_id)
        env.clover.expire_token()
        env.clover.faults.rate_limited = 1
        assert sync_connection(engine, env.clover_connection, actor=None, settings=env.settings).ok
        session = CloverSession.open(engine, env.clover_connection, settings=env.settings)
        shown = repr(session) + repr(session.client) + str(session.tokens)
        session.close()
        new_access = env.clover.access_token_for(env.clover.merchant_id)
        for secret in (old_access, old_refresh, new_access, *env.clover.refresh_tokens):
            assert secret not in caplog.text and secret not in shown


def test_last_synced_at_is_the_end_of_the_window_read(engine: Engine) -> None:
    """Clover polls from last_synced_at: it must be where the read window ended, not when the run finished,
    or a payment modified in between is skipped when the lookback is 0."""
    with provider_env(engine, receiver=False, clover_payments=10) as env:
        result = sync_connection(engine, env.clover_connection, actor=None, settings=env.settings)
        assert result.ok, result.error
        with engine.connect() as conn:
            synced = conn.execute(sa.text("select last_synced_at from pos_connections where id = :i"),
                                  {"i": env.clover_connection}).scalar_one()
            extra = conn.execute(sa.text("select summary from sync_runs where id = :r"),
                                 {"r": result.run_id}).scalar_one()
        assert iso_utc(synced) == extra["window_end"]
