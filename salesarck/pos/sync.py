"""Polling sync of a POS connection; Square here, other providers register in `SYNC_PROVIDERS`.

Square: every location, ListPayments on `updated_at` ascending from `watermark - lookback` (first
sync: `--since`, default `sync_initial_days` back), so late offline payments, status changes and
refunds on older payments are seen again. Payments newer than their `idempotency_keys` snapshot are
enriched (order line items, customer email/phone, refund objects); per batch of pages
(`batch_size` payments, and always at a location's end), in ONE transaction, the lease is
checked, the batch is posted through the rewards engine, its snapshots are stored and the
run's counters move. The watermark and `last_synced_at` move only in the final
transaction, after every page committed, so a crash anywhere loses and doubles nothing: the next
run re-reads the window and skips what its snapshots say is already applied.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import queue
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import sqlalchemy as sa
from pydantic import SecretStr
from sqlalchemy.engine import Connection, Engine

from salesarck.authz import Actor, Permission
from salesarck.config import Settings, load_settings
from salesarck.crypto import KeyRing
from salesarck.errors import Conflict, NotFound, SalesarckError, ValidationError
from salesarck.jsonutil import dumps
from salesarck.pos import connections as conns
from salesarck.pos.http import ProviderHTTPError
from salesarck.pos.mapping import map_square_payment, map_square_refund
from salesarck.pos.records import PaymentRecord, RefundRecord
from salesarck.pos.square import TOKEN_EXPIRED, TOKEN_REVOKED, CursorLoopError, OAuthTokens, SquareClient
from salesarck.pos.sync_runs import (
    ConnectionAuthError,
    LeaseLost,
    ProgressCallback,
    SyncLease,
    SyncProgress,
    SyncResult,
    acquire_lease,
    recent_failures,
)
from salesarck.rewards.posting import PostingSummary, post_payments
from salesarck.timeutil import iso_utc, parse_time, utcnow

log = logging.getLogger(__name__)

SQUARE_SYNC_HANDLER = "square_sync"
SNAPSHOT_TTL = timedelta(days=30)
FAILURES_BEFORE_ERROR = 3
MAX_CUSTOMER_CACHE = 50_000
PREFETCH_PAGES = 4


@dataclass
class SyncContext:
    """What a provider sync function gets: the connection, its lease, settings and helpers."""

    engine: Engine
    lease: SyncLease
    connection: conns.ConnectionInfo
    settings: Settings
    since: datetime | None
    progress_cb: ProgressCallback | None
    client_factory: Callable[[str, SecretStr], Any] | None = None
    posting: PostingSummary = field(default_factory=PostingSummary)
    batch_size: int = 1000  # payments posted per transaction (posting has a fixed cost per call)

    @property
    def progress(self) -> SyncProgress:
        return self.lease.progress

    def report(self, phase: str | None = None) -> None:
        if phase:
            self.progress.phase = phase
        if self.progress_cb is not None:
            try:
                self.progress_cb(self.progress)
            except Exception:  # a broken progress bar must not break the sync
                log.exception("progress callback failed")

    def window_start(self, watermark: datetime | None) -> datetime:
        """Where polling starts: explicit `since`, else watermark - lookback, else initial days back."""
        if self.since is not None:
            return self.since
        if watermark is not None:
            return watermark - timedelta(hours=self.settings.sync_lookback_hours)
        return utcnow() - timedelta(days=self.settings.sync_initial_days)


@dataclass
class SyncOutcome:
    """A provider sync's result: `finalize(conn)` stores its watermark in the final transaction."""

    watermark_after: datetime | None
    finalize: Callable[[Connection], None] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # what `last_synced_at` becomes: the end of the window read (Clover polls from it), else the finish time
    synced_through: datetime | None = None


ProviderSync = Callable[[SyncContext], SyncOutcome]
SYNC_PROVIDERS: dict[str, ProviderSync] = {}


def register_provider(provider: str, fn: ProviderSync) -> None:
    """Make `sync_connection` handle connections of `provider` (e.g. the Clover sync)."""
    SYNC_PROVIDERS[provider] = fn


def _provider_sync(provider: str) -> ProviderSync:
    if provider not in SYNC_PROVIDERS:
        try:  # convention: salesarck.pos.<provider>_sync registers itself on import
            importlib.import_module(f"salesarck.pos.{provider}_sync")
        except ModuleNotFoundError:
            pass
    fn = SYNC_PROVIDERS.get(provider)
    if fn is None:
        raise ValidationError(f"syncing {provider} connections is not supported yet")
    return fn


# --- the entry point --------------------------------------------------------------------------

def sync_connection(
    engine: Engine,
    connection_id: uuid.UUID,
    *,
    actor: Actor | None,
    progress: ProgressCallback | None = None,
    since: datetime | None = None,
    settings: Settings | None = None,
    trigger: str | None = None,
    client_factory: Callable[[str, SecretStr], Any] | None = None,
    batch_size: int = 1000,
) -> SyncResult:
    """Sync one connection now ("Sync now", `salesarck sync`, the worker).

    `actor=None` is the system (worker); a person needs the SYNC permission for the tenant.
    Raises SyncAlreadyRunning when another sync holds the lease, NotFound/PermissionDenied/Conflict
    before anything starts; provider and token failures end the run as `failed` (stored, returned).
    """
    settings = settings or load_settings()
    if since is not None and since > utcnow():
        raise ValidationError("--since is in the future")
    if not 1 <= batch_size <= 10_000:
        raise ValidationError("batch_size must be between 1 and 10000")
    with engine.connect() as conn:
        info = conns.get_connection(conn, connection_id)
    if actor is not None:
        if not actor.can(Permission.VIEW_SYNC, info.tenant_id):
            raise NotFound(f"no POS connection {connection_id}")
        actor.require(Permission.SYNC, info.tenant_id)
    if info.status in ("disconnected", "token_expired"):
        raise Conflict(f"connection {connection_id} is {info.status.replace('_', ' ')}; reconnect the merchant "
                       "(salesarck connections add) before syncing")
    fn = _provider_sync(info.provider)
    lease = acquire_lease(engine, connection_id=connection_id, tenant_id=info.tenant_id, provider=info.provider,
                          actor_user_id=actor.user_id if actor else None,
                          trigger=trigger or ("manual" if actor else "worker"))
    ctx = SyncContext(engine, lease, info, settings, since, progress, client_factory, batch_size=batch_size)
    ctx.report("starting")
    try:
        outcome = fn(ctx)
        ctx.report("finishing")
        with engine.begin() as conn:
            lease.checkpoint(conn)
            if outcome.finalize is not None:
                outcome.finalize(conn)
            conn.execute(sa.text("update pos_connections set last_synced_at = "
                                 "coalesce(:t, now() at time zone 'utc') where id = :i"),
                         {"i": connection_id, "t": outcome.synced_through})
            if conns.get_connection(conn, connection_id, for_update=True).status == "error":
                conns.set_status(conn, connection_id, "active", reason="a sync succeeded again")
            result = lease.finish(ok=True, watermark_after=outcome.watermark_after, conn=conn,
                                  extra={"posting": ctx.posting.as_dict() | {"skipped_reasons": []},
                                         **outcome.extra})
        ctx.report("done")
        return result
    except LeaseLost:
        raise
    except (ConnectionAuthError, ProviderHTTPError, SalesarckError) as exc:
        message = _safe_message(exc)
        return _fail(ctx, message, exc)
    except Exception as exc:  # a bug: record the run as failed, then let it surface
        log.exception("sync of connection %s failed unexpectedly", connection_id)
        _fail(ctx, f"internal error ({type(exc).__name__}); see the logs", exc)
        raise


def _safe_message(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 1000 else text[:1000] + "..."


def _fail(ctx: SyncContext, message: str, exc: BaseException) -> SyncResult:
    cid = ctx.connection.id
    try:
        with ctx.engine.begin() as conn:
            if isinstance(exc, ConnectionAuthError):
                conns.set_status(conn, cid, exc.to_status, reason=message, error_code=exc.code)
            elif not isinstance(exc, Conflict):
                failures = recent_failures(conn, cid, limit=FAILURES_BEFORE_ERROR - 1) + 1
                if failures >= FAILURES_BEFORE_ERROR:
                    conns.set_status(conn, cid, "error",
                                     reason=f"{failures} syncs in a row failed; last: {message[:300]}",
                                     error_code=str(exc.status) if isinstance(exc, ProviderHTTPError)
                                     and exc.status else None)
            result = ctx.lease.finish(ok=False, error=message, conn=conn,
                                      extra={"posting": ctx.posting.as_dict() | {"skipped_reasons": []}})
    except LeaseLost:
        raise
    ctx.report("failed")
    return result


# --- Square -----------------------------------------------------------------------------------

def _square_key(merchant_id: str, payment_id: str) -> str:
    return f"square:{merchant_id}:{payment_id}"


class SquareSession:
    """A Square client for one connection that refreshes its token once on ACCESS_TOKEN_EXPIRED."""

    def __init__(self, ctx: SyncContext) -> None:
        self.ctx = ctx
        self.keyring = KeyRing.from_settings(ctx.settings)
        with ctx.engine.connect() as conn:
            self.tokens = conns.load_tokens(conn, ctx.connection.id, self.keyring)
        factory = ctx.client_factory or (lambda url, token: SquareClient(url, token))
        self.client: SquareClient = factory(ctx.settings.square_base_url, self.tokens.access_token)
        self.refreshed = False
        if conns.needs_refresh(self.tokens):
            try:
                self.refresh("the access token expires soon")
            except (ConnectionAuthError, ProviderHTTPError) as exc:
                expires = self.tokens.expires_at
                if expires is None or expires <= utcnow():
                    raise
                # still valid for a few minutes: use it; the next sync (or a 401) tries again
                log.warning("early token refresh of connection %s failed: %s", ctx.connection.id, exc)

    def close(self) -> None:
        self.client.close()

    def refresh(self, why: str) -> None:
        s = self.ctx.settings
        cid = self.ctx.connection.id
        if self.tokens.refresh_token is None:
            raise ConnectionAuthError(f"the access token of connection {cid} expired and there is no refresh "
                                      "token; reconnect the merchant", to_status="token_expired", code=TOKEN_EXPIRED)
        if not s.square_client_id or s.square_client_secret is None:
            raise ConnectionAuthError(f"the access token of connection {cid} expired and SQUARE_CLIENT_ID / "
                                      "SQUARE_CLIENT_SECRET are not set, so it cannot be refreshed",
                                      to_status="token_expired", code=TOKEN_EXPIRED)
        client_id, secret = s.square_client_id, s.square_client_secret

        def ask(refresh_token: SecretStr) -> conns.RefreshedTokens:
            got: OAuthTokens = self.client.refresh_access_token(client_id=client_id, client_secret=secret,
                                                                refresh_token=refresh_token)
            return conns.RefreshedTokens(got.access_token, got.refresh_token, got.expires_at)

        try:
            self.tokens = conns.refresh_connection_tokens(self.ctx.engine, cid, keyring=self.keyring,
                                                          used_access_token=self.tokens.access_token, refresher=ask)
        except ProviderHTTPError as exc:
            raise conns.refresh_failure(exc, what=f"the Square access token of connection {cid} expired ({why})"
                                        ) from None
        self.client.set_access_token(self.tokens.access_token)
        self.refreshed = True
        log.info("refreshed the Square token of connection %s (%s)", cid, why)

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run a client call; on ACCESS_TOKEN_EXPIRED refresh once and retry; revoked -> disconnected."""
        for attempt in (1, 2):
            try:
                return fn()
            except ProviderHTTPError as exc:
                codes = exc.codes
                cid = self.ctx.connection.id
                if exc.status == 401 and TOKEN_REVOKED in codes:
                    raise ConnectionAuthError(f"Square revoked the access token of connection {cid}; "
                                              "reconnect the merchant", to_status="disconnected",
                                              code=TOKEN_REVOKED) from None
                if exc.status == 401 and TOKEN_EXPIRED in codes and attempt == 1:
                    self.refresh("Square answered ACCESS_TOKEN_EXPIRED")
                    continue
                if exc.status == 401 and TOKEN_EXPIRED in codes:
                    raise ConnectionAuthError(f"the access token of connection {cid} is still expired after a "
                                              "refresh", to_status="token_expired", code=TOKEN_EXPIRED) from None
                raise
        raise AssertionError("unreachable")


def sync_square(ctx: SyncContext) -> SyncOutcome:
    """The Square polling sync (see the module docstring)."""
    session = SquareSession(ctx)
    try:
        return _sync_square(ctx, session)
    finally:
        session.close()


def _sync_square(ctx: SyncContext, session: SquareSession) -> SyncOutcome:
    conn_info = ctx.connection
    old_wm = conn_info.watermark_at
    begin = ctx.window_start(old_wm)
    started = utcnow()
    ctx.report("locations")
    locations = session.call(session.client.list_locations)
    location_ids = [loc["id"] for loc in locations if isinstance(loc.get("id"), str)]
    if not location_ids:
        raise ProviderHTTPError(f"Square lists no locations for merchant {conn_info.merchant_id}", status=200)
    with ctx.engine.begin() as conn:
        ctx.lease.checkpoint(conn, window_start=begin)
    # fetching (pages, orders, customers, refunds) runs one page ahead of posting, in a thread, so
    # the sync's speed is the slower of the two rather than their sum
    pages: queue.Queue[tuple[Any, ...]] = queue.Queue(maxsize=PREFETCH_PAGES)
    stop = threading.Event()
    producer = threading.Thread(target=_fetch_pages, args=(ctx, session, location_ids, begin, pages, stop),
                                name=f"square-fetch-{conn_info.id}", daemon=True)
    producer.start()
    max_seen: datetime | None = None
    pending: list[PaymentRecord] = []
    ctx.report("payments")
    try:
        while True:
            try:
                item = pages.get(timeout=ctx.lease.lease_seconds / 4)
            except queue.Empty:
                ctx.lease.heartbeat()  # fetching is slow (retries, Retry-After): keep the lease
                continue
            if item[0] == "error":
                raise item[1]
            if item[0] == "done":
                break
            _, location_id, records, page_max, last_of_location = item
            ctx.progress.location_id = location_id
            pending.extend(records)
            if page_max is not None and (max_seen is None or page_max > max_seen):
                max_seen = page_max
            if len(pending) >= ctx.batch_size or last_of_location:
                commit_square_batch(ctx, pending)  # a location's last page always commits
                pending = []
            ctx.report()
    finally:
        stop.set()
        while True:  # unblock a producer waiting to put
            try:
                pages.get_nowait()
            except queue.Empty:
                break
        producer.join(timeout=60)
    candidates = [t for t in (old_wm, min(max_seen, started) if max_seen else None) if t is not None]
    new_wm = max(candidates) if candidates else begin

    def finalize(conn: Connection) -> None:
        conn.execute(sa.text("update pos_connections set square_payments_watermark_at = :w where id = :i"),
                     {"w": new_wm, "i": conn_info.id})

    return SyncOutcome(new_wm, finalize, {"window_start": iso_utc(begin), "locations": len(location_ids),
                                          "token_refreshed": session.refreshed,
                                          "api_calls": session.client.http.calls,
                                          "retries": session.client.http.retries})


@dataclass
class EnrichCache:
    customers: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    refunds: dict[str, RefundRecord] = field(default_factory=dict)


def _snapshot_of(rec: PaymentRecord) -> dict[str, Any]:
    """Fixed-width `updated_at` so the database can compare snapshots as text."""
    stamp = rec.updated_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if rec.updated_at else None
    return {"updated_at": stamp, "version": rec.version, "status": rec.status,
            "refunds": {r.provider_refund_id: r.status for r in rec.refunds}}


def _is_applied(snapshot: Any, rec: PaymentRecord) -> bool:
    """True when the stored snapshot is this version or a newer one."""
    if not isinstance(snapshot, dict):
        return False
    stored = snapshot.get("updated_at")
    if not isinstance(stored, str) or rec.updated_at is None:
        return rec.version is not None and snapshot.get("version") == rec.version
    try:
        stored_at = parse_time(stored)
    except ValidationError:
        return False
    if rec.updated_at < stored_at:
        return True
    return rec.updated_at == stored_at and (snapshot.get("version") == rec.version or rec.version is None)


def _fetch_pages(ctx: SyncContext, session: SquareSession, location_ids: list[str], begin: datetime,
                 out: queue.Queue[tuple[Any, ...]], stop: threading.Event) -> None:
    """Producer: page every location, map and enrich each page, hand it over (or the error)."""

    def put(item: tuple[Any, ...]) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    cache = EnrichCache()
    try:
        for location_id in location_ids:
            cursor: str | None = None
            seen: set[str] = set()
            while not stop.is_set():
                page = session.call(partial(session.client.list_payments_page, cursor=cursor, location_id=location_id,
                                            updated_at_begin_time=begin, sort_field="UPDATED_AT", sort_order="ASC",
                                            limit=100))
                records, page_max = prepare_square_payments(ctx, session, page.payments, cache)
                if not put(("page", location_id, records, page_max, page.cursor is None)) or page.cursor is None:
                    break
                if page.cursor in seen:
                    raise CursorLoopError("Square ListPayments repeated a cursor; the sync stopped to avoid an "
                                          "endless loop (nothing after the last good batch was written)", status=200)
                seen.add(page.cursor)
                cursor = page.cursor
        put(("done",))
    except BaseException as exc:  # handed to the consumer, which raises it in the sync's thread
        put(("error", exc))


def prepare_square_payments(ctx: SyncContext, session: SquareSession, raw_payments: list[Any],
                            cache: EnrichCache) -> tuple[list[PaymentRecord], datetime | None]:
    """Map one page, drop what its snapshot says is applied, enrich the rest (no writes).
    Returns the records to post and the newest `updated_at` seen (for the watermark)."""
    lease = ctx.lease
    merchant = ctx.connection.merchant_id
    lease.count(pages=1, payments_seen=len(raw_payments))
    mapped: list[tuple[dict[str, Any], PaymentRecord]] = []
    newest: datetime | None = None
    for raw in raw_payments:
        try:
            rec = map_square_payment(raw)
        except ValidationError as exc:
            lease.add_skipped(_raw_id(raw), str(exc))
            continue
        except (TypeError, ValueError, KeyError, RecursionError, OverflowError) as exc:
            lease.add_skipped(_raw_id(raw), f"malformed payment ({type(exc).__name__})")
            continue
        mapped.append((raw, rec))
        if rec.updated_at is not None and (newest is None or rec.updated_at > newest):
            newest = rec.updated_at
    keys = [_square_key(merchant, rec.provider_payment_id) for _, rec in mapped]
    snaps: dict[str, Any] = {}
    if keys:
        with ctx.engine.connect() as conn:
            snaps = dict(conn.execute(sa.text("select key, result_snapshot from idempotency_keys where key = any(:k)"),
                                      {"k": keys}).all())
    fresh: list[tuple[PaymentRecord, dict[str, Any] | None]] = []
    for _raw, rec in mapped:
        snap = snaps.get(_square_key(merchant, rec.provider_payment_id))
        if _is_applied(snap, rec):
            lease.count(duplicates=1)
        else:
            fresh.append((rec, snap if isinstance(snap, dict) else None))
    return (enrich_square_records(ctx, session, fresh, cache) if fresh else []), newest


def commit_square_batch(ctx: SyncContext, records: list[PaymentRecord]) -> None:
    """Post records and store their snapshots and the run's counters in ONE transaction, fenced on
    the lease (refused if another sync took it over)."""
    lease = ctx.lease
    with ctx.engine.begin() as conn:
        lease.checkpoint(conn)
        if records:
            summary = post_payments(conn, tenant_id=ctx.connection.tenant_id, records=records, arrival="poll")
            bad = {s.provider_id for s in summary.skipped}
            for s in summary.skipped:
                lease.add_skipped(s.provider_id, s.reason)
            applied = [r for r in records if r.provider_payment_id not in bad]
            store_square_snapshots(conn, ctx.connection.tenant_id, ctx.connection.merchant_id, applied)
            summary.skipped = []
            ctx.posting.merge(summary)
            lease.count(posted=summary.inserted, duplicates=summary.duplicates,
                        points_credited=summary.points_credited, points_debited=summary.points_debited)
            lease.checkpoint(conn)  # store the counters with the batch they describe


def _raw_id(raw: Any) -> str | None:
    pid = raw.get("id") if isinstance(raw, dict) else None
    return pid[:255] if isinstance(pid, str) else None


def store_square_snapshots(conn: Connection, tenant_id: uuid.UUID, merchant: str,
                           records: list[PaymentRecord]) -> None:
    """Upsert the last applied provider state per payment (set-based; never moves a snapshot back).
    Used by the sync and by the webhook processor, so each skips what the other applied."""
    newest: dict[str, PaymentRecord] = {}
    for r in records:  # one row per key: ON CONFLICT cannot touch a row twice in one statement
        key = _square_key(merchant, r.provider_payment_id)
        prev = newest.get(key)
        if prev is None or (r.updated_at or datetime.min) >= (prev.updated_at or datetime.min):
            newest[key] = r
    if not newest:
        return
    keys = list(newest)
    snaps = [dumps(_snapshot_of(r)) for r in newest.values()]
    conn.execute(sa.text(
        "insert into idempotency_keys as k (key, tenant_id, handler, result_snapshot, expires_at, created_at)"
        " select v.key, :t, :h, cast(v.snap as jsonb), now() at time zone 'utc' + make_interval(days => :ttl),"
        " now() at time zone 'utc'"
        " from unnest(cast(:keys as text[]), cast(:snaps as text[])) as v(key, snap) order by v.key"
        " on conflict (key) do update set result_snapshot = excluded.result_snapshot, handler = excluded.handler,"
        " expires_at = excluded.expires_at"
        " where k.result_snapshot is null or k.result_snapshot->>'updated_at' is null"
        " or excluded.result_snapshot->>'updated_at' >= k.result_snapshot->>'updated_at'"
    ), {"t": tenant_id, "h": SQUARE_SYNC_HANDLER, "ttl": SNAPSHOT_TTL.days, "keys": keys, "snaps": snaps})


def enrich_square_records(ctx: SyncContext, session: SquareSession, items: Sequence[tuple[Any, ...]],
                          cache: EnrichCache) -> list[PaymentRecord]:
    """Line items (orders batch-retrieve), customer email/phone (customers), exact refunds (refunds).
    `items` are `(record, snapshot or None)` pairs (a leading raw object is accepted and ignored)."""
    fresh: list[tuple[PaymentRecord, dict[str, Any] | None]] = [(it[-2], it[-1]) for it in items]
    client = session.client
    order_ids = sorted({r.customer_ref["orderId"] for r, _ in fresh if r.customer_ref.get("orderId")})
    orders: dict[str, dict[str, Any]] = session.call(lambda: client.batch_retrieve_orders(order_ids)) if order_ids else {}
    out: list[PaymentRecord] = []
    for rec, snap in fresh:
        ref = dict(rec.customer_ref)
        cust_id = ref.get("externalCustomerId")
        if isinstance(cust_id, str):
            if cust_id not in cache.customers:
                if len(cache.customers) >= MAX_CUSTOMER_CACHE:
                    cache.customers.clear()
                cache.customers[cust_id] = session.call(partial(client.get_customer, cust_id))
            customer = cache.customers[cust_id]
            if customer:
                email, phone = customer.get("email_address"), customer.get("phone_number")
                if isinstance(email, str) and email and "email" not in ref:
                    ref["email"] = email.strip().lower()
                if isinstance(phone, str) and phone:
                    ref["mobile"] = phone.strip()
        order = orders.get(ref.get("orderId", "")) if ref.get("orderId") else None
        refunds: list[RefundRecord] = []
        known_raw = (snap or {}).get("refunds")
        known: dict[str, Any] = known_raw if isinstance(known_raw, dict) else {}
        skip_reason: str | None = None
        for rid in sorted({r.provider_refund_id for r in rec.refunds}):
            if known.get(rid) == "COMPLETED":
                continue  # completed refunds are final and already applied
            if rid not in cache.refunds:
                try:
                    cache.refunds[rid] = map_square_refund(session.call(partial(client.get_refund, rid)))
                except ValidationError as exc:
                    skip_reason = f"refund {rid}: {exc}"
                    break
                except ProviderHTTPError as exc:
                    if exc.status != 404:
                        raise
                    skip_reason = f"refund {rid} is listed on the payment but Square has no such refund (yet)"
                    break
            refunds.append(cache.refunds[rid])
        if skip_reason:
            ctx.lease.add_skipped(rec.provider_payment_id, skip_reason)
            continue
        out.append(dataclasses.replace(rec, customer_ref=ref, line_items=_line_items(order),
                                       refunds=tuple(refunds)))
    return out


def _line_items(order: dict[str, Any] | None) -> list[dict[str, Any]] | None:
    """Square order line items, compact: name, quantity, unit and total prices in minor units."""
    if not isinstance(order, dict) or not isinstance(order.get("line_items"), list):
        return None
    items = []
    for item in order["line_items"][:500]:
        if not isinstance(item, dict):
            continue
        items.append({
            "uid": _str(item.get("uid")), "name": _str(item.get("name")), "quantity": _str(item.get("quantity")),
            "catalogObjectId": _str(item.get("catalog_object_id")),
            "basePriceMinorUnits": _money(item.get("base_price_money")),
            "totalMinorUnits": _money(item.get("total_money")),
        })
    return items or None


def _str(value: Any) -> str | None:
    return value[:320] if isinstance(value, str) else None


def _money(value: Any) -> int | None:
    amount = value.get("amount") if isinstance(value, dict) else None
    return amount if isinstance(amount, int) and not isinstance(amount, bool) and 0 <= amount <= 2**31 - 1 else None


register_provider("square", sync_square)


# --- several connections (CLI, worker) --------------------------------------------------------

def connections_to_sync(engine: Engine, *, actor: Actor | None, connection_id: uuid.UUID | None = None,
                        tenant_id: uuid.UUID | None = None, all_connections: bool = False) -> list[uuid.UUID]:
    """The connections a `salesarck sync` selection names (active or error ones for --tenant/--all)."""
    chosen = sum(x is not None and x is not False for x in (connection_id, tenant_id, all_connections or None))
    if chosen != 1:
        raise ValidationError("name exactly one of --connection ID, --tenant ID or --all")
    if connection_id is not None:
        return [connection_id]
    scope = actor.tenant_scope(Permission.SYNC) if actor is not None else None
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "select id from pos_connections where status in ('active', 'error')"
            " and (cast(:t as uuid) is null or tenant_id = :t)"
            " and (cast(:all_tenants as boolean) or tenant_id = any(cast(:scope as uuid[])))"
            " order by created_at, id"),
            {"t": tenant_id, "all_tenants": scope is None, "scope": scope or []}).scalars().all()
    return list(rows)
