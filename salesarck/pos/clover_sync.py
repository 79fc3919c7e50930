"""Clover polling sync: payments modified since `last_synced_at - lookback`, posted like every other
source. Registered with `salesarck.pos.sync` on import: `sync_connection` runs it inside the
provider-neutral lease, fails runs, moves connection statuses and sets `last_synced_at`.

Clover has no watermark column of its own, so `pos_connections.last_synced_at` is the watermark; it
advances only in the transaction that finishes the run, after every page has been committed, so a
crash re-reads (idempotently) rather than skipping. SUCCESS payments are posted, refunds and later
VOIDED results reverse points through the rewards engine.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import sqlalchemy as sa
from pydantic import SecretStr
from sqlalchemy.engine import Engine

from salesarck.config import Settings, load_settings
from salesarck.crypto import KeyRing
from salesarck.errors import ValidationError
from salesarck.pos import connections
from salesarck.pos.clover import REGION_BASE_URLS, CloverClient, check_page_advanced, windows
from salesarck.pos.http import ProviderHTTPError, RetryPolicy
from salesarck.pos.mapping import map_clover_payment
from salesarck.pos.records import PaymentRecord
from salesarck.pos.sync import SyncContext, SyncOutcome, register_provider
from salesarck.pos.sync_runs import ConnectionAuthError
from salesarck.rewards.currency import country_currency
from salesarck.rewards.posting import post_payments
from salesarck.timeutil import iso_utc, utcnow

log = logging.getLogger(__name__)
T = TypeVar("T")
FAILURES_BEFORE_ERROR = 3


def clover_base_url(engine: Engine, connection_id: uuid.UUID, settings: Settings) -> str:
    """The connection's region (pos_connection_options) or SALESARCK_CLOVER_BASE_URL."""
    with engine.connect() as conn:
        region = conn.execute(sa.text("select clover_region from pos_connection_options where connection_id = :c"),
                              {"c": connection_id}).scalar()
    return REGION_BASE_URLS[region] if region else settings.clover_base_url


@dataclass
class CloverSession:
    """A Clover client bound to one connection, with its token handling: refresh shortly before
    expiry and once on a 401 (rotating refresh tokens stored atomically); a refresh Clover refuses
    (or a 401 on a legacy token without a refresh token) marks the connection `token_expired`, one
    that got no answer fails the run and the next one tries again (`connections.refresh_failure`)."""

    engine: Engine
    connection_id: uuid.UUID
    merchant_id: str
    tenant_id: uuid.UUID
    settings: Settings
    keyring: KeyRing = field(repr=False)
    tokens: connections.ConnectionTokens = field(repr=False)
    client: CloverClient = field(repr=False)
    policy: RetryPolicy | None = None
    refreshed: int = field(default=0)

    @classmethod
    def open(cls, engine: Engine, connection_id: uuid.UUID, *, settings: Settings | None = None,
             policy: RetryPolicy | None = None, client_factory: Callable[[str, SecretStr], Any] | None = None
             ) -> CloverSession:
        settings = settings or load_settings()
        keyring = KeyRing.from_settings(settings)
        with engine.connect() as conn:
            info = connections.get_connection(conn, connection_id)
            if info.provider != "clover":
                raise ValidationError(f"connection {connection_id} is a {info.provider} connection, not Clover")
            tokens = connections.load_tokens(conn, connection_id, keyring)
        base_url = clover_base_url(engine, connection_id, settings)
        client = (client_factory(base_url, tokens.access_token) if client_factory
                  else CloverClient(base_url, tokens.access_token, policy=policy))
        session = cls(engine, connection_id, info.merchant_id, info.tenant_id, settings, keyring, tokens, client,
                      policy)
        if connections.needs_refresh(tokens):
            session.refresh()
        return session

    def refresh(self) -> None:
        cid = self.connection_id
        if self.tokens.refresh_token is None:
            raise ConnectionAuthError(f"the Clover token of connection {cid} was refused and there is no refresh "
                                      "token (a legacy token); reconnect the merchant", to_status="token_expired",
                                      code="401")
        client_id = self.settings.clover_client_id
        if not client_id:
            raise ConnectionAuthError(f"the Clover token of connection {cid} needs a refresh and CLOVER_CLIENT_ID "
                                      "is not set", to_status="token_expired", code="401")

        def refresher(refresh_token: SecretStr) -> Any:
            return self.client.refresh_access_token(client_id=client_id, refresh_token=refresh_token)

        try:
            self.tokens = connections.refresh_connection_tokens(
                self.engine, self.connection_id, keyring=self.keyring, used_access_token=self.tokens.access_token,
                refresher=refresher)
        except ProviderHTTPError as exc:
            raise connections.refresh_failure(exc, what=f"the Clover token of connection {cid} needed a refresh"
                                              ) from None
        self.client.set_access_token(self.tokens.access_token)
        self.refreshed += 1

    def call(self, fn: Callable[[], T]) -> T:
        """Run one client call; on a 401, refresh once (ConnectionAuthError when it cannot) and retry."""
        try:
            return fn()
        except ProviderHTTPError as exc:
            if exc.status != 401:
                raise
        self.refresh()
        try:
            return fn()
        except ProviderHTTPError as exc:
            if exc.status == 401:
                raise ConnectionAuthError(f"Clover still refuses the token of connection {self.connection_id} "
                                          "after a refresh; reconnect the merchant", to_status="token_expired",
                                          code="401") from None
            raise

    def close(self) -> None:
        self.client.close()


def tenant_currency(engine: Engine, tenant_id: uuid.UUID) -> str:
    with engine.connect() as conn:
        country = conn.execute(sa.text("select country from tenants where id = :t"), {"t": tenant_id}).scalar()
    return country_currency(country)


def map_page(payments: list[dict[str, Any]], currency: str) -> tuple[list[PaymentRecord], list[tuple[str | None, str]]]:
    """Map a page; records that cannot be mapped come back as (provider id, reason)."""
    records: list[PaymentRecord] = []
    skipped: list[tuple[str | None, str]] = []
    for obj in payments:
        try:
            records.append(map_clover_payment(obj, default_currency=currency))
        except ValidationError as exc:
            pid = obj.get("id") if isinstance(obj.get("id"), str) else None
            skipped.append((pid[:100] if pid else None, str(exc)))
    return records, skipped


def _post_page(ctx: SyncContext, payments: list[dict[str, Any]], currency: str) -> None:
    """Map and post one page and checkpoint the lease, in one transaction."""
    p = ctx.progress
    lease = ctx.lease
    records, skipped = map_page(payments, currency)
    for pid, reason in skipped:
        lease.add_skipped(pid, reason)
    p.pages += 1
    p.payments_seen += len(payments)
    with ctx.engine.begin() as conn:
        lease.checkpoint(conn)  # fence: refuses if another sync took the lease over
        if records:
            summary = post_payments(conn, tenant_id=ctx.connection.tenant_id, records=records, arrival="poll")
            for s in summary.skipped:
                lease.add_skipped(s.provider_id, s.reason)
            summary.skipped = []
            ctx.posting.merge(summary)
            p.posted += summary.inserted
            p.duplicates += summary.duplicates
            p.points_credited += summary.points_credited
            p.points_debited += summary.points_debited
            lease.checkpoint(conn)


def sync_clover(ctx: SyncContext) -> SyncOutcome:
    """The Clover polling sync, run by `salesarck.pos.sync.sync_connection` inside its lease."""
    info = ctx.connection
    end = utcnow()
    start = ctx.window_start(info.last_synced_at)
    if start >= end:
        raise ValidationError("the sync window starts in the future")
    currency = tenant_currency(ctx.engine, info.tenant_id)
    session = CloverSession.open(ctx.engine, info.id, settings=ctx.settings, client_factory=ctx.client_factory)
    try:
        with ctx.engine.begin() as conn:
            ctx.lease.checkpoint(conn, window_start=start)
        ctx.report("payments")
        for w_start, w_end in windows(start, end):
            offset = 0
            previous: list[dict[str, Any]] | None = None
            while True:
                payments = session.call(partial(session.client.payment_page, info.merchant_id, w_start, w_end, offset))
                check_page_advanced(previous, payments)  # a server ignoring `offset` would loop forever
                _post_page(ctx, payments, currency)
                ctx.report()
                if len(payments) < session.client.page_limit:
                    break
                offset += len(payments)
                previous = payments
        return SyncOutcome(end, None, {"window_start": iso_utc(start), "window_end": iso_utc(end),
                                       "token_refreshes": session.refreshed, "api_calls": session.client.calls},
                           synced_through=end)
    finally:
        session.close()


register_provider("clover", sync_clover)
