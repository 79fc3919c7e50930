"""Fetching what an event only refers to, with each connection's stored tokens.

Clover events name payments (`P:` ids): the payment is fetched with the sync's expansions. Square
payment events carry the payment, but the polling sync also loads line items, customer email and
phone, and the exact refunds before posting; the processor runs the very same enrichment
(`salesarck.pos.sync`'s Square session and enrichment) so a webhook gives the state a poll gives.
Sessions are opened once per connection for the life of a processing batch; token refresh and
status changes are the sync's (refresh before expiry and on a 401, rotated tokens stored atomically).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import sqlalchemy as sa
from pydantic import SecretStr
from sqlalchemy.engine import Engine

from salesarck.config import Settings
from salesarck.errors import NotFound, SalesarckError
from salesarck.pos import connections as conns
from salesarck.pos.records import PaymentRecord
from salesarck.pos.sync_runs import ConnectionAuthError


class Fetcher(Protocol):
    def clover_payment(self, tenant_id: uuid.UUID, merchant_id: str, payment_id: str) -> dict[str, Any]: ...

    def square_payment(self, tenant_id: uuid.UUID, merchant_id: str, payment_id: str) -> dict[str, Any]: ...

    def square_refund(self, tenant_id: uuid.UUID, merchant_id: str, refund_id: str) -> dict[str, Any]: ...

    def square_enrich(self, tenant_id: uuid.UUID, merchant_id: str,
                      items: list[tuple[dict[str, Any], PaymentRecord]]) -> dict[str, PaymentRecord | str]: ...

    def close(self) -> None: ...


class _SkipCollector:
    """Stands in for a sync lease where the enrichment reports a record it had to skip."""

    def __init__(self) -> None:
        self.ids: list[str | None] = []
        self.reasons: list[str] = []

    def add_skipped(self, provider_id: str | None, reason: str) -> None:
        self.ids.append(provider_id)
        self.reasons.append(reason)


@dataclass
class ProviderFetcher:
    """Fetches from the configured (real or fake) provider APIs."""

    engine: Engine
    settings: Settings
    client_factory: Callable[[str, SecretStr], Any] | None = None
    _clover: dict[str, Any] = field(default_factory=dict)
    _square: dict[str, Any] = field(default_factory=dict)
    _square_ctx: dict[Any, Any] = field(default_factory=dict)

    def _connection(self, provider: str, merchant_id: str) -> conns.ConnectionInfo:
        with self.engine.connect() as conn:
            cid = conn.execute(sa.text(
                "select id from pos_connections where pos_type = :p and merchant_account_id = :m"
                " and status <> 'disconnected' order by created_at limit 1"), {"p": provider, "m": merchant_id}
            ).scalar()
            if cid is None:
                raise NotFound(f"no connected {provider} merchant {merchant_id}")
            return conns.get_connection(conn, cid)

    def _auth_failed(self, info: conns.ConnectionInfo, exc: ConnectionAuthError) -> None:
        """Outside a sync nobody else moves the connection's status: do it here, then fail the event."""
        with self.engine.begin() as conn:
            conns.set_status(conn, info.id, exc.to_status, reason=str(exc), error_code=exc.code)

    def clover_payment(self, tenant_id: uuid.UUID, merchant_id: str, payment_id: str) -> dict[str, Any]:
        from salesarck.pos.clover_sync import CloverSession

        session = self._clover.get(merchant_id)
        info = self._connection("clover", merchant_id) if session is None else None
        try:
            if session is None:
                assert info is not None
                session = CloverSession.open(self.engine, info.id, settings=self.settings,
                                             client_factory=self.client_factory)
                self._clover[merchant_id] = session
            client = session.client
            result: dict[str, Any] = session.call(lambda: client.get_payment(merchant_id, payment_id))
            return result
        except ConnectionAuthError as exc:
            self._auth_failed(info or self._connection("clover", merchant_id), exc)
            raise

    def _square_session(self, merchant_id: str) -> Any:
        from salesarck.pos.sync import SquareSession, SyncContext

        session = self._square.get(merchant_id)
        if session is None:
            info = self._connection("square", merchant_id)
            collector = _SkipCollector()
            ctx = SyncContext(self.engine, collector, info, self.settings, None, None,  # type: ignore[arg-type]
                              self.client_factory)
            try:
                session = SquareSession(ctx)
            except ConnectionAuthError as exc:
                self._auth_failed(info, exc)
                raise
            self._square[merchant_id] = session
            self._square_ctx[merchant_id] = (ctx, collector)
        return session

    def _square_call(self, merchant_id: str, fn: Callable[[Any], Any]) -> Any:
        session = self._square_session(merchant_id)
        try:
            return session.call(lambda: fn(session.client))
        except ConnectionAuthError as exc:
            self._auth_failed(session.ctx.connection, exc)
            raise

    def square_payment(self, tenant_id: uuid.UUID, merchant_id: str, payment_id: str) -> dict[str, Any]:
        from urllib.parse import quote

        body = self._square_call(merchant_id, lambda c: c.http.request(
            "GET", f"/v2/payments/{quote(payment_id, safe='')}"))
        payment = body.get("payment") if isinstance(body, dict) else None
        if not isinstance(payment, dict):
            raise SalesarckError(f"Square GET /v2/payments/{payment_id[:40]} answered without a payment")
        return payment

    def square_refund(self, tenant_id: uuid.UUID, merchant_id: str, refund_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._square_call(merchant_id, lambda c: c.get_refund(refund_id))
        return result

    def square_enrich(self, tenant_id: uuid.UUID, merchant_id: str,
                      items: list[tuple[dict[str, Any], PaymentRecord]]) -> dict[str, PaymentRecord | str]:
        """The sync's enrichment of a merchant's payments in one go (one orders batch, cached customers
        and refunds): payment id -> enriched record, or the reason it could not be enriched."""
        from salesarck.pos.sync import EnrichCache, enrich_square_records

        session = self._square_session(merchant_id)
        ctx, collector = self._square_ctx[merchant_id]
        cache = self._square_ctx.setdefault(("cache", merchant_id), EnrichCache())
        out: dict[str, PaymentRecord | str] = {}
        for start in range(0, len(items), 100):  # orders batch-retrieve takes 100 ids
            chunk = items[start:start + 100]
            collector.reasons.clear()
            collector.ids.clear()
            try:
                enriched = enrich_square_records(ctx, session, [(raw, rec, None) for raw, rec in chunk], cache)
            except ConnectionAuthError as exc:
                self._auth_failed(ctx.connection, exc)
                raise
            for rec in enriched:
                out[rec.provider_payment_id] = rec
            for pid, reason in zip(collector.ids, collector.reasons, strict=True):
                if pid is not None:
                    out[pid] = reason
        for _raw, rec in items:
            out.setdefault(rec.provider_payment_id, "the payment could not be enriched")
        return out

    def __enter__(self) -> ProviderFetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for s in [*self._clover.values(), *self._square.values()]:
            s.close()
        self._clover.clear()
        self._square.clear()
        self._square_ctx.clear()
