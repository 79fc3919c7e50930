"""POS API faults (issue 9), provider x fault: each fault is injected on the fake server (real HTTP on
loopback) after the first page of a multi-page sync. The sync either completes through retries or
fails with a clear, secret-free error having written only whole pages (every stored transaction with
exactly the accrual an uninterrupted sync gives it), no watermark, no run left `running`. Then the
fault is cleared (for a lost refresh: the merchant re-authorizes), a second sync runs, and the
database must equal an uninterrupted sync of the same fake data and reconciliation must find nothing.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from pydantic import SecretStr
from sqlalchemy.engine import Engine

from salesarck.authz import Actor
from salesarck.config import Settings
from salesarck.crypto import KeyRing, generate_key_spec
from salesarck.db.engine import make_engine
from salesarck.errors import Conflict
from salesarck.pos import connections
from salesarck.pos.clover import CloverClient, PageRepeatError
from salesarck.pos.fake.clover import FakeClover
from salesarck.pos.fake.server import ThreadServer
from salesarck.pos.fake.square import FakeSquare
from salesarck.pos.http import ProviderHTTPError, RetryPolicy
from salesarck.pos.square import SquareClient
from salesarck.pos.sync import sync_connection
from salesarck.pos.sync_runs import ConnectionAuthError, SyncResult
from salesarck.reconcile import reconcile
from tests.conftest import Databases
from tests.factories import make_admin, make_rule, make_tenant, make_user
from tests.test_rewards_posting import check_invariants
from tests.test_sync_support import db_state

ANCHOR = datetime.now(UTC).replace(microsecond=0)  # every fake of this module holds the same payments
SQUARE_PAYMENTS = 260  # one location: pages of 100, 100 and 60
CLOVER_PAYMENTS = 60
CLOVER_PAGE = 10  # six pages
BATCH = 50  # Square commits every page
# short timeouts and backoff; max_delay above Retry-After so a 429's Retry-After is honoured as sent
POLICY = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=2.0, timeout=httpx.Timeout(1.0, connect=1.0))
PROVIDERS = ("square", "clover")

Fake = FakeSquare | FakeClover


@dataclass
class World:
    engine: Engine
    provider: str
    fake: Any
    settings: Settings
    admin: Actor
    tenant_id: uuid.UUID
    connection_id: uuid.UUID
    originals: list[str] = field(default_factory=list)  # every token the test handed out

    def sync(self) -> SyncResult:
        return sync_connection(self.engine, self.connection_id, actor=None, settings=self.settings,
                               client_factory=_client_factory(self.provider), batch_size=BATCH)

    def secrets(self) -> list[str]:
        """Every token and client secret that ever existed in this world (none may be shown)."""
        f = self.fake
        live = ([f.access_token, f.refresh_token, f.client_secret] if self.provider == "square"
                else [*f.tokens, *f.refresh_tokens])
        return [s for s in {*self.originals, *live} if s]


def _fake(provider: str) -> Fake:
    if provider == "square":  # rotating refresh tokens, like Square's single-use PKCE ones
        return FakeSquare(seed=21, payments=SQUARE_PAYMENTS, days=10, locations=1, anchor=ANCHOR,
                          rotate_refresh_tokens=True)
    return FakeClover(seed=21, payments=CLOVER_PAYMENTS, days=10, anchor=ANCHOR)


def _client_factory(provider: str) -> Callable[[str, SecretStr], Any]:
    if provider == "square":
        return lambda url, token: SquareClient(url, token, policy=POLICY)
    return lambda url, token: CloverClient(url, token, policy=POLICY, page_limit=CLOVER_PAGE)


def _tokens(provider: str, fake: Any) -> tuple[str, str]:
    if provider == "square":
        return fake.access_token, fake.refresh_token
    return fake.access_token_for(fake.merchant_id), fake.refresh_token_for(fake.merchant_id)


def _world(engine: Engine, provider: str, fake: Any, url: str) -> World:
    square = provider == "square"
    settings = Settings(encryption_keys=generate_key_spec(), square_base_url=url, clover_base_url=url,
                        square_client_id=fake.client_id if square else None,
                        square_client_secret=fake.client_secret if square else None,
                        clover_client_id=None if square else fake.client_id)
    emails = ({c["email_address"] for c in fake.customers.values()} if square
              else {e["emailAddress"] for c in fake.customers for e in c["emailAddresses"]["elements"]})
    with engine.begin() as conn:
        admin = make_admin(conn)
        tenant = make_tenant(conn)["id"]
        make_rule(conn, tenant)
        for email in sorted(emails):
            make_user(conn, email=email)
    access, refresh = _tokens(provider, fake)
    info = connections.add_connection(engine, actor=admin, tenant_id=tenant, provider=provider,
                                      merchant_id=fake.merchant_id, access_token=SecretStr(access),
                                      refresh_token=SecretStr(refresh), keyring=KeyRing.from_settings(settings))
    return World(engine, provider, fake, settings, admin, tenant, info.id, [access, refresh])


@pytest.fixture(scope="module")
def references(databases: Databases) -> Iterator[dict[str, dict[str, list[tuple[Any, ...]]]]]:
    """db_state after one uninterrupted sync of each provider's fake data."""
    out = {}
    for provider in PROVIDERS:
        eng = make_engine(databases.clone())
        try:
            fake = _fake(provider)
            with ThreadServer(fake.app) as srv:
                result = _world(eng, provider, fake, srv.base_url).sync()
            assert result.ok and result.pages >= 3 and result.posted > 0, result
            out[provider] = db_state(eng)
        finally:
            eng.dispose()
    yield out


# --- the faults ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FaultCase:
    arm: Callable[[Any], None]  # set the fake's faults (counted ones start after the first page)
    completes: bool  # the faulted sync completes through retries (else it fails cleanly)
    error_words: tuple[str, ...] = ()  # what a failed run's error must say
    fired: Callable[[Any], bool] = lambda fake: fake.faults.after == 0  # the fault was served


def _counted(**counts: Any) -> Callable[[Any], None]:
    def arm(fake: Any) -> None:
        fake.faults.fault_path_prefix = "/v2/payments" if isinstance(fake, FakeSquare) else "/v3/"
        fake.faults.after = 1  # the first page passes (and is committed); the fault hits the second
        for name, value in counts.items():
            setattr(fake.faults, name, value)
    return arm


def _spent(*names: str) -> Callable[[Any], bool]:
    return lambda fake: fake.faults.after == 0 and all(getattr(fake.faults, n) == 0 for n in names)


def _repeat(fake: Any) -> None:
    fake.faults.repeat_cursor = True  # Square: the request's own cursor again; Clover: `offset` ignored


FAULTS: dict[str, FaultCase] = {
    "500s": FaultCase(_counted(server_errors=3), True, fired=_spent("server_errors")),
    "500s_beyond_retries": FaultCase(_counted(server_errors=1000), False, ("HTTP 500",),
                                     fired=lambda f: f.faults.server_errors <= 1000 - POLICY.max_attempts),
    "timeouts": FaultCase(_counted(timeouts=2, timeout_seconds=3.0), True, fired=_spent("timeouts")),
    "connection_reset": FaultCase(_counted(dropped=2), True, fired=_spent("dropped")),
    "429_storm_retry_after": FaultCase(_counted(rate_limited=3, retry_after="1"), True,
                                       fired=_spent("rate_limited")),
    "truncated_json_mid_page": FaultCase(_counted(truncated=1), True, fired=_spent("truncated")),
    "malformed_json": FaultCase(_counted(malformed=1), True, fired=_spent("malformed")),
    "repeating_cursor": FaultCase(_repeat, False, ("endless loop",), fired=lambda f: True),
    "token_expired_mid_sync": FaultCase(_counted(expired=1), True,
                                        fired=lambda f: _spent("expired")(f) and f.stats["refresh"] == 1),
    "refresh_token_lost_in_transit": FaultCase(
        _counted(expired=1, lost_refreshes=1), False, ("refresh failed", "re-authorize"),
        fired=lambda f: _spent("expired", "lost_refreshes")(f) and f.stats["refresh"] == 1),
}


# --- checks -------------------------------------------------------------------------------------


def _rows(engine: Engine, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(sql), params).all()]


def _assert_nothing_half_written(w: World, result: SyncResult, reference: dict[str, list[tuple[Any, ...]]]) -> None:
    """Only whole pages: every stored transaction, its accrual, ledger lines, refunds and snapshot are
    exactly what the uninterrupted sync stored for it; no run left running; a failed run moved no
    watermark."""
    now = db_state(w.engine)
    ids = {t[1] for t in now["transactions"]}
    assert not Counter(now["transactions"]) - Counter(reference["transactions"])
    for table in ("ledger", "events"):  # no transaction without its accrual, none with a partial one
        assert now[table] == [r for r in reference[table] if r[0] in ids], table
    assert not Counter(now["snapshots"]) - Counter(reference["snapshots"])
    assert not Counter(now["refunds"]) - Counter(reference["refunds"])
    with w.engine.connect() as conn:
        check_invariants(conn)
    assert _rows(w.engine, "select status from sync_runs where id = :r", r=result.run_id) == [
        ("succeeded" if result.ok else "failed",)]
    assert _rows(w.engine, "select count(*) from sync_runs where status = 'running'") == [(0,)]
    if not result.ok:
        assert _rows(w.engine, "select square_payments_watermark_at, last_synced_at from pos_connections"
                     ) == [(None, None)]
        assert 0 < len(ids) < len(reference["transactions"])  # it failed mid-sync, after whole pages


def _assert_secret_free(w: World, result: SyncResult, log_text: str) -> None:
    shown = [result.error or "", log_text]
    shown += [r[0] or "" for r in _rows(w.engine, "select error from sync_runs")]
    shown += [r[0] or "" for r in _rows(w.engine, "select reason from pos_connection_events")]
    for secret in w.secrets():
        assert not [s for s in shown if secret in s]


def _reauthorize(w: World) -> None:
    """The merchant authorizes the app again; the operator stores the fresh pair (`connections add`)."""
    with pytest.raises(Conflict, match="token expired"):  # until then the connection is not synced
        w.sync()
    access, refresh = w.fake.authorize() if w.provider == "square" else w.fake.authorize(w.fake.merchant_id)
    w.originals += [access, refresh]
    connections.add_connection(w.engine, actor=w.admin, tenant_id=w.tenant_id, provider=w.provider,
                               merchant_id=w.fake.merchant_id, access_token=SecretStr(access),
                               refresh_token=SecretStr(refresh), keyring=KeyRing.from_settings(w.settings))


@pytest.mark.slow
@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("provider", PROVIDERS)
def test_fault_mid_sync_then_resync_equals_uninterrupted(
        engine: Engine, references: dict[str, dict[str, list[tuple[Any, ...]]]], caplog: pytest.LogCaptureFixture,
        provider: str, fault: str) -> None:
    case = FAULTS[fault]
    reference = references[provider]
    fake = _fake(provider)
    caplog.set_level(logging.DEBUG)
    with ThreadServer(fake.app) as srv:
        w = _world(engine, provider, fake, srv.base_url)
        case.arm(fake)
        started = time.monotonic()
        first = w.sync()
        took = time.monotonic() - started
        assert first.ok is case.completes, first.error
        assert case.fired(fake), fake.faults
        _assert_nothing_half_written(w, first, reference)
        if fault == "429_storm_retry_after":
            assert took >= 3.0  # three 429s, each honoured for its Retry-After of 1 s
        if not first.ok:
            assert all(word in (first.error or "") for word in case.error_words), first.error
        if fault == "refresh_token_lost_in_transit":
            # operators see it: the connection waits for re-authorization, with the reason recorded
            events = _rows(engine, "select to_status, error_code, reason from pos_connection_events"
                           " where event = 'status_changed'")
            assert [e[:2] for e in events] == [("token_expired", connections.REFRESH_FAILED)]
            assert "re-authorize" in events[0][2]
            _reauthorize(w)
        fake.faults.clear()
        second = w.sync()
        assert second.ok, second.error
        _assert_secret_free(w, first, caplog.text)
    assert db_state(engine) == reference
    report = reconcile(engine)
    assert report.drift.empty, report.drift.head().to_dict()
    assert report.findings.empty, report.findings.head().to_dict()


def test_refresh_failures_are_classified_for_operators() -> None:
    """A refused refresh (or an unreadable success) means the refresh token is dead: re-authorize;
    no answer or a server error leaves the stored token possibly good: the next sync tries again."""
    for status in (400, 401, 403, 200):
        dead = connections.refresh_failure(ProviderHTTPError("x", status=status), what="the token of c1 expired")
        assert isinstance(dead, ConnectionAuthError), status
        assert (dead.to_status, dead.code) == ("token_expired", connections.REFRESH_FAILED)
        assert "re-authorize" in str(dead) and "refresh failed" in str(dead)
    for status in (None, 429, 500, 503):
        transient = connections.refresh_failure(ProviderHTTPError("x", status=status), what="the token of c1")
        assert not isinstance(transient, ConnectionAuthError) and isinstance(transient, ProviderHTTPError)
        assert transient.status == status and "tries again" in str(transient)


def test_clover_client_stops_when_offset_is_ignored() -> None:
    """The client's own pager (used outside the sync) stops on a repeated page too, instead of
    paging to ten million rows."""
    fake = FakeClover(seed=3, payments=30, days=10, anchor=ANCHOR)
    fake.faults.repeat_cursor = True
    start = ANCHOR.replace(tzinfo=None) - timedelta(days=30)
    with ThreadServer(fake.app) as srv, CloverClient(srv.base_url, SecretStr(fake.access_token_for(fake.merchant_id)),
                                                     policy=POLICY, page_limit=7) as client:
        with pytest.raises(PageRepeatError, match="endless loop"):
            list(client.iter_payment_pages(fake.merchant_id, start, ANCHOR.replace(tzinfo=None)))
    assert fake.stats["payment_pages"] == 2
