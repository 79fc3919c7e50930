"""The webhook processor: stored events -> the one posting path, exactly once, with retries.

A batch claims unprocessed events in arrival order with `FOR UPDATE SKIP LOCKED` (so processors
running at once never take the same event), resolves each into payment or refund records (fetching
the object when the event only names it), posts them through `salesarck.rewards.posting` (the same
code the polling sync uses, so a webhook and a poll of one payment double nothing), and marks the
events processed in the same transaction. A failing event stays unprocessed with its attempts and
last error in `pos_webhook_event_attempts`, is retried with exponential backoff, and is dead-lettered
after `MAX_ATTEMPTS` (or at once when the failure is permanent, e.g. a payment that cannot be mapped):
still stored, listed, and replayable by an operator.
"""

from __future__ import annotations

import json
import logging
import random
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError

from salesarck import audit
from salesarck.authz import Actor, Permission
from salesarck.config import Settings
from salesarck.errors import NotFound, SalesarckError, ValidationError
from salesarck.pos.http import ProviderHTTPError
from salesarck.pos.mapping import map_clover_payment, map_square_payment, map_square_refund
from salesarck.pos.records import PaymentRecord, RefundRecord
from salesarck.pos.webhooks.fetch import Fetcher
from salesarck.pos.webhooks.verify import verify_square_signature
from salesarck.rewards.currency import country_currency
from salesarck.rewards.posting import post_payments, post_refunds
from salesarck.timeutil import utcnow

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 10
BACKOFF_BASE_SECONDS = 15
BACKOFF_MAX_SECONDS = 3600
MAX_ERROR_CHARS = 500
DEFAULT_BATCH = 200
DEADLOCK_SQLSTATE = "40P01"
DEADLOCK_RETRIES = 3
REPLAY_CHUNK = 1000


def backoff_seconds(attempts: int) -> int:
    """Wait before attempt `attempts + 1`: 15 s, 30 s, 60 s ... capped at an hour."""
    return int(min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, attempts - 1)))


class PermanentEventError(SalesarckError):
    """The event can never succeed as it is (malformed object): dead-letter it at once."""


@dataclass
class _Work:
    """One claimed event and what it resolved to."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    provider: str
    event_type: str
    attempts: int
    payments: list[PaymentRecord] = field(default_factory=list)
    refunds: list[RefundRecord] = field(default_factory=list)
    note: str | None = None
    error: str | None = None
    permanent: bool = False
    to_enrich: tuple[str, dict[str, Any]] | None = None  # (merchant, raw Square payment)
    enriched: bool = False


@dataclass
class BatchResult:
    """What one batch did (the CLI prints it, the worker logs it, the bench counts it)."""

    claimed: int = 0
    processed: int = 0
    failed: int = 0
    dead_lettered: int = 0
    ignored: int = 0  # processed events that carry nothing to post (orders, customers, other types)
    transactions_inserted: int = 0
    points_credited: int = 0
    points_debited: int = 0
    errors: list[str] = field(default_factory=list)

    def merge(self, other: BatchResult) -> None:
        for name in ("claimed", "processed", "failed", "dead_lettered", "ignored", "transactions_inserted",
                     "points_credited", "points_debited"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.errors.extend(other.errors[:20])

    def as_dict(self) -> dict[str, Any]:
        return {"claimed": self.claimed, "processed": self.processed, "failed": self.failed,
                "dead_lettered": self.dead_lettered, "ignored": self.ignored,
                "transactions_inserted": self.transactions_inserted, "points_credited": self.points_credited,
                "points_debited": self.points_debited}


# --- claiming -----------------------------------------------------------------------------------

_CLAIM = """
select e.id, e.tenant_id, e.provider, e.event_type, e.raw_payload, b.merchant_id, coalesce(a.attempts, 0) as attempts,
       t.country
from pos_webhook_events_raw e
join tenants t on t.id = e.tenant_id
left join pos_webhook_event_bodies b on b.event_id = e.id
left join pos_webhook_event_attempts a on a.event_id = e.id
where e.processed = false
  and (a.event_id is null or (a.dead_lettered_at is null
       and (a.next_attempt_at is null or a.next_attempt_at <= :now)))
  and (cast(:all_tenants as boolean) or e.tenant_id = any(cast(:scope as uuid[])))
  and (cast(:only_ids as uuid[]) is null or e.id = any(cast(:only_ids as uuid[])))
  and (cast(:provider as text) is null or e.provider = :provider)
order by e.created_at, e.id
limit :n
for update of e skip locked
"""


def _claim(conn: Connection, *, limit: int, scope: list[uuid.UUID] | None, now: datetime,
           only_ids: list[uuid.UUID] | None, provider: str | None) -> list[Any]:
    return list(conn.execute(sa.text(_CLAIM), {
        "now": now, "all_tenants": scope is None, "scope": scope or [], "n": limit,
        "only_ids": only_ids, "provider": provider}).all())


# --- resolving events into records --------------------------------------------------------------


def _merchant(row: Any) -> str:
    if row.merchant_id:
        return str(row.merchant_id)
    payload = row.raw_payload if isinstance(row.raw_payload, dict) else {}
    if row.provider == "square" and isinstance(payload.get("merchant_id"), str):
        return str(payload["merchant_id"])
    merchants = payload.get("merchants")
    if isinstance(merchants, dict) and len(merchants) == 1:
        return str(next(iter(merchants)))
    raise PermanentEventError("the event names no merchant")


def _resolve_square(row: Any, work: _Work, fetcher: Fetcher | None) -> None:
    payload = row.raw_payload if isinstance(row.raw_payload, dict) else {}
    kind = str(row.event_type).split(".", 1)[0]
    data_raw = payload.get("data")
    data: dict[str, Any] = data_raw if isinstance(data_raw, dict) else {}
    obj_raw = data.get("object")
    obj: dict[str, Any] = obj_raw if isinstance(obj_raw, dict) else {}
    object_id = data.get("id") if isinstance(data.get("id"), str) else None
    try:
        if kind == "payment":
            pay = obj.get("payment")
            if not isinstance(pay, dict):
                if fetcher is None or not object_id:
                    raise PermanentEventError("payment event without the payment object or its id")
                pay = fetcher.square_payment(work.tenant_id, _merchant(row), object_id)
            record = map_square_payment(pay)
            if fetcher is not None:  # enriched per batch like the sync: line items, customer, exact refunds
                work.to_enrich = (_merchant(row), pay)
            work.payments.append(record)
        elif kind == "refund":
            ref = obj.get("refund")
            if not isinstance(ref, dict):
                if fetcher is None or not object_id:
                    raise PermanentEventError("refund event without the refund object or its id")
                ref = fetcher.square_refund(work.tenant_id, _merchant(row), object_id)
            work.refunds.append(map_square_refund(ref))
        else:
            work.note = f"nothing to post for {str(row.event_type)[:60]}"
    except ValidationError as exc:
        raise PermanentEventError(str(exc)) from None


def _resolve_clover(row: Any, work: _Work, fetcher: Fetcher | None) -> None:
    payload = row.raw_payload if isinstance(row.raw_payload, dict) else {}
    merchant = _merchant(row)
    events = (payload.get("merchants") or {}).get(merchant) if isinstance(payload.get("merchants"), dict) else None
    if not isinstance(events, list):
        raise PermanentEventError("the event carries no events for its merchant")
    wanted: list[str] = []
    for ev in events:
        object_id = ev.get("objectId") if isinstance(ev, dict) else None
        if not isinstance(object_id, str) or not object_id.startswith("P:") or ev.get("type") == "DELETE":
            continue  # orders, customers, deletions: nothing to post (the poll covers order changes)
        pid = object_id[2:]
        if pid not in wanted:
            wanted.append(pid)
    if not wanted:
        work.note = "no payment changes"
        return
    if fetcher is None:
        raise SalesarckError("Clover events need a fetcher to load the payments they name")
    currency = country_currency(row.country)
    for pid in wanted:
        obj = fetcher.clover_payment(work.tenant_id, merchant, pid)
        try:
            work.payments.append(map_clover_payment(obj, default_currency=currency))
        except ValidationError as exc:
            raise PermanentEventError(str(exc)) from None


def _resolve(row: Any, fetcher: Fetcher | None) -> _Work:
    work = _Work(row.id, row.tenant_id, row.provider, row.event_type, int(row.attempts))
    try:
        if row.provider == "square":
            _resolve_square(row, work, fetcher)
        elif row.provider == "clover":
            _resolve_clover(row, work, fetcher)
        else:
            raise PermanentEventError(f"unknown provider {str(row.provider)[:20]!r}")
    except PermanentEventError as exc:
        work.error, work.permanent = str(exc), True
    except ProviderHTTPError as exc:
        work.error = str(exc)
        work.permanent = exc.status == 404
    except SalesarckError as exc:
        work.error = str(exc)
    except Exception as exc:  # a bug or an unexpected provider answer: keep the event, retry later
        log.exception("webhook event %s failed to resolve", row.id)
        work.error = f"{type(exc).__name__}"
    return work


def _enrich_square(works: list[_Work], fetcher: Fetcher) -> None:
    """Square payments get the sync's enrichment, one call per merchant for the whole batch."""
    by_merchant: dict[tuple[uuid.UUID, str], list[_Work]] = defaultdict(list)
    for w in works:
        if w.error is None and w.to_enrich is not None:
            by_merchant[(w.tenant_id, w.to_enrich[0])].append(w)
    for (tenant_id, merchant), items in by_merchant.items():
        try:
            got = fetcher.square_enrich(tenant_id, merchant,
                                        [(w.to_enrich[1], w.payments[0]) for w in items if w.to_enrich])
        except ProviderHTTPError as exc:
            for w in items:
                w.error = str(exc)[:MAX_ERROR_CHARS]
            continue
        except SalesarckError as exc:
            for w in items:
                w.error = str(exc)[:MAX_ERROR_CHARS]
            continue
        except Exception as exc:
            log.exception("enriching Square payments of merchant %s failed", merchant)
            for w in items:
                w.error = type(exc).__name__
            continue
        for w in items:
            res = got.get(w.payments[0].provider_payment_id)
            if isinstance(res, PaymentRecord):
                w.payments = [res]
                w.enriched = True
            else:
                w.error = (res or "the payment could not be enriched")[:MAX_ERROR_CHARS]


def _store_square_snapshots(conn: Connection, tenant_id: uuid.UUID, works: list[_Work]) -> None:
    """Record the applied provider state in `idempotency_keys` as the sync does, so the next poll
    skips these payments cheaply (only for enriched records: the poll would post exactly these)."""
    from salesarck.pos.sync import store_square_snapshots

    by_merchant: dict[str, list[PaymentRecord]] = defaultdict(list)
    for w in works:
        if w.to_enrich is not None:
            by_merchant[w.to_enrich[0]].extend(w.payments)
    for merchant, records in by_merchant.items():
        store_square_snapshots(conn, tenant_id, merchant, records)


# --- posting ------------------------------------------------------------------------------------


def _post(conn: Connection, tenant_id: uuid.UUID, works: list[_Work], result: BatchResult) -> None:
    """Post a tenant's records in one savepoint; a failing posting falls back to event by event."""
    def post(items: list[_Work], result: BatchResult) -> None:
        payments = [p for w in items for p in w.payments]
        if payments:
            by_provider: dict[str, list[PaymentRecord]] = defaultdict(list)
            for p in payments:
                by_provider[p.provider].append(p)
            for prov, recs in by_provider.items():
                summary = post_payments(conn, tenant_id=tenant_id, records=recs, arrival="webhook")
                if summary.skipped:
                    bad = {s.provider_id for s in summary.skipped}
                    for w in items:
                        if any(p.provider_payment_id in bad for p in w.payments):
                            raise PermanentEventError("; ".join(s.reason for s in summary.skipped)[:MAX_ERROR_CHARS])
                if prov == "square":
                    _store_square_snapshots(conn, tenant_id, [w for w in items if w.enriched])
                result.transactions_inserted += summary.inserted
                result.points_credited += summary.points_credited
                result.points_debited += summary.points_debited
        refunds = [(w.provider, r) for w in items for r in w.refunds]
        if refunds:
            by_prov: dict[str, list[RefundRecord]] = defaultdict(list)
            for prov, r in refunds:
                by_prov[prov].append(r)
            for prov, refund_recs in by_prov.items():
                summary = post_refunds(conn, tenant_id=tenant_id, provider=prov, refunds=refund_recs,
                                       arrival="webhook")
                result.points_debited += summary.points_debited

    def attempt(items: list[_Work]) -> None:
        """One savepoint; a deadlock (concurrent posting of overlapping payments) is retried at once,
        since rolling the savepoint back released what the other transaction waited for."""
        for n in range(DEADLOCK_RETRIES + 1):
            delta = BatchResult()
            try:
                with conn.begin_nested():
                    post(items, delta)
            except OperationalError as exc:
                if getattr(exc.orig, "sqlstate", None) != DEADLOCK_SQLSTATE or n == DEADLOCK_RETRIES:
                    raise
                time.sleep(random.uniform(0.005, 0.05) * (n + 1))
                continue
            result.transactions_inserted += delta.transactions_inserted
            result.points_credited += delta.points_credited
            result.points_debited += delta.points_debited
            return

    try:
        attempt(works)
        return
    except Exception as exc:
        if len(works) == 1:
            works[0].error = _describe(exc)
            works[0].permanent = isinstance(exc, PermanentEventError)
            return
    for w in works:  # isolate the bad one(s)
        try:
            attempt([w])
        except Exception as exc:
            w.error = _describe(exc)
            w.permanent = isinstance(exc, PermanentEventError)


def _describe(exc: BaseException) -> str:
    """A short reason for an event's last error: ours verbatim, a database error's first line."""
    if isinstance(exc, SalesarckError):
        return str(exc)[:MAX_ERROR_CHARS]
    orig = getattr(exc, "orig", None)
    if orig is not None:
        first = (str(orig).strip().splitlines() or [""])[0]
        return f"database error: {first}"[:MAX_ERROR_CHARS]
    return type(exc).__name__


def _record(conn: Connection, works: list[_Work], now: datetime, result: BatchResult) -> None:
    ok = [w for w in works if w.error is None]
    bad = [w for w in works if w.error is not None]
    if ok:
        conn.execute(sa.text("update pos_webhook_events_raw set processed = true where id = any(:ids)"),
                     {"ids": [w.id for w in ok]})
        conn.execute(sa.text(
            "insert into pos_webhook_event_attempts (event_id, attempts, last_attempt_at, processed_at, result)"
            " select i, 1, :now, :now, cast(r as jsonb) from unnest(cast(:ids as uuid[]), cast(:rs as text[])) as u(i, r)"
            " on conflict (event_id) do update set attempts = pos_webhook_event_attempts.attempts + 1,"
            " last_attempt_at = :now, processed_at = :now, next_attempt_at = null, dead_lettered_at = null,"
            " result = excluded.result"),
            {"now": now, "ids": [w.id for w in ok],
             "rs": [json.dumps({"payments": len(w.payments), "refunds": len(w.refunds), "note": w.note}) for w in ok]})
        result.processed += len(ok)
        result.ignored += sum(1 for w in ok if not w.payments and not w.refunds)
    if bad:
        attempts = [w.attempts + 1 for w in bad]
        dead = [w.permanent or a >= MAX_ATTEMPTS for w, a in zip(bad, attempts, strict=True)]
        conn.execute(sa.text(
            "insert into pos_webhook_event_attempts (event_id, attempts, last_error, last_attempt_at, next_attempt_at,"
            " dead_lettered_at)"
            " select i, a, err, :now, case when d then null else :now + make_interval(secs => b) end,"
            " case when d then :now end"
            " from unnest(cast(:ids as uuid[]), cast(:as as int[]), cast(:errs as text[]), cast(:bs as int[]),"
            " cast(:ds as boolean[])) as u(i, a, err, b, d)"
            " on conflict (event_id) do update set attempts = excluded.attempts, last_error = excluded.last_error,"
            " last_attempt_at = excluded.last_attempt_at, next_attempt_at = excluded.next_attempt_at,"
            " dead_lettered_at = excluded.dead_lettered_at"),
            {"now": now, "ids": [w.id for w in bad], "as": attempts,
             "errs": [(w.error or "")[:MAX_ERROR_CHARS] for w in bad],
             "bs": [backoff_seconds(a) for a in attempts], "ds": dead})
        result.failed += len(bad)
        result.dead_lettered += sum(dead)
        result.errors.extend(f"{w.id}: {w.error}" for w in bad[:20])


def process_batch(
    engine: Engine,
    *,
    limit: int = DEFAULT_BATCH,
    fetcher: Fetcher | None = None,
    actor: Actor | None = None,
    only_ids: list[uuid.UUID] | None = None,
    provider: str | None = None,
    now: datetime | None = None,
) -> BatchResult:
    """Claim up to `limit` due events, post them, and record the outcome, in one transaction.
    `actor=None` is the system (the worker); a person needs PROCESS_WEBHOOKS and only reaches their tenants."""
    if not 1 <= limit <= 10_000:
        raise ValidationError("limit must be between 1 and 10000")
    scope = None if actor is None else actor.tenant_scope(Permission.PROCESS_WEBHOOKS)
    if scope == []:
        assert actor is not None
        actor.require(Permission.PROCESS_WEBHOOKS)
    now = now or utcnow()
    result = BatchResult()
    with engine.begin() as conn:
        rows = _claim(conn, limit=limit, scope=scope, now=now, only_ids=only_ids, provider=provider)
        result.claimed = len(rows)
        if not rows:
            return result
        works = [_resolve(r, fetcher) for r in rows]
        if fetcher is not None:
            _enrich_square(works, fetcher)
        by_tenant: dict[uuid.UUID, list[_Work]] = defaultdict(list)
        for w in works:
            if w.error is None and (w.payments or w.refunds):
                by_tenant[w.tenant_id].append(w)
        for tenant_id in sorted(by_tenant):  # tenant posting locks in one global order (see posting)
            _post(conn, tenant_id, by_tenant[tenant_id], result)
        _record(conn, works, now, result)
    return result


def process_pending(
    engine: Engine,
    *,
    limit: int | None = None,
    batch_size: int = DEFAULT_BATCH,
    fetcher: Fetcher | None = None,
    actor: Actor | None = None,
    only_ids: list[uuid.UUID] | None = None,
    provider: str | None = None,
    should_stop: Any = None,
    now: datetime | None = None,
) -> BatchResult:
    """Process batches until nothing is due (or `limit` events were claimed, or `should_stop()`)."""
    total = BatchResult()
    while limit is None or total.claimed < limit:
        size = batch_size if limit is None else min(batch_size, limit - total.claimed)
        batch = process_batch(engine, limit=size, fetcher=fetcher, actor=actor, only_ids=only_ids,
                              provider=provider, now=now)
        total.merge(batch)
        if batch.claimed < size or (should_stop is not None and should_stop()):
            break
    return total


# --- operator views and actions -----------------------------------------------------------------


def backlog(engine: Engine, *, actor: Actor | None = None) -> dict[str, Any]:
    """Unprocessed events, how many wait for a retry, dead letters, and the oldest waiting event."""
    scope = None if actor is None else actor.tenant_scope(Permission.VIEW_SYNC)
    with engine.connect() as conn:
        row = conn.execute(sa.text(
            "select count(*) filter (where a.dead_lettered_at is null) as pending,"
            " count(*) filter (where a.dead_lettered_at is null and a.attempts > 0) as retrying,"
            " count(*) filter (where a.dead_lettered_at is not null) as dead_letters,"
            " min(e.created_at) filter (where a.dead_lettered_at is null) as oldest_pending_at"
            " from pos_webhook_events_raw e left join pos_webhook_event_attempts a on a.event_id = e.id"
            " where e.processed = false"
            " and (cast(:all_tenants as boolean) or e.tenant_id = any(cast(:scope as uuid[])))"),
            {"all_tenants": scope is None, "scope": scope or []}).one()
    return dict(row._mapping)


def list_events(engine: Engine, *, actor: Actor, state: str = "dead", limit: int = 100) -> list[dict[str, Any]]:
    """Events in a state (`dead`, `pending`, `failed` (retrying), `processed`), newest first."""
    if state not in ("dead", "pending", "failed", "processed"):
        raise ValidationError("state must be dead, pending, failed or processed")
    if not 1 <= limit <= 10_000:
        raise ValidationError("limit must be between 1 and 10000")
    scope = actor.tenant_scope(Permission.VIEW_SYNC)
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "select e.id, e.tenant_id, e.provider, e.event_type, b.merchant_id, e.created_at,"
            " coalesce(a.attempts, 0) as attempts, a.last_error, a.last_attempt_at, a.next_attempt_at,"
            " a.dead_lettered_at, a.processed_at"
            " from pos_webhook_events_raw e left join pos_webhook_event_attempts a on a.event_id = e.id"
            " left join pos_webhook_event_bodies b on b.event_id = e.id"
            " where case :state"
            "  when 'dead' then e.processed = false and a.dead_lettered_at is not null"
            "  when 'pending' then e.processed = false and a.dead_lettered_at is null"
            "  when 'failed' then e.processed = false and a.dead_lettered_at is null and a.attempts > 0"
            "  else e.processed = true end"
            " and (cast(:all_tenants as boolean) or e.tenant_id = any(cast(:scope as uuid[])))"
            " order by e.created_at desc limit :n"),
            {"state": state, "all_tenants": scope is None, "scope": scope or [], "n": limit}).mappings().all()
    return [dict(r) for r in rows]


@dataclass
class ReplayResult:
    selected: int = 0
    verified: int = 0  # Square signatures that re-verified from the stored bytes
    verify_failed: list[uuid.UUID] = field(default_factory=list)
    requeued: int = 0
    batch: BatchResult = field(default_factory=BatchResult)

    def as_dict(self) -> dict[str, Any]:
        return {"selected": self.selected, "signatures_verified": self.verified,
                "signatures_failed": len(self.verify_failed), "requeued": self.requeued, **self.batch.as_dict()}


def replay(
    engine: Engine,
    *,
    actor: Actor,
    since: datetime,
    provider: str | None = None,
    settings: Settings,
    fetcher: Fetcher | None = None,
    event_ids: list[uuid.UUID] | None = None,
    limit: int = 100_000,
) -> ReplayResult:
    """Re-verify stored Square signatures against the stored bytes and re-process the events received
    since `since` (dead letters included). Posting is idempotent, so what was applied stays as it was.
    Events whose signature no longer verifies are reported and left alone."""
    if provider not in (None, "square", "clover"):
        raise ValidationError("provider must be square or clover")
    scope = actor.tenant_scope(Permission.PROCESS_WEBHOOKS)
    if scope == []:
        actor.require(Permission.PROCESS_WEBHOOKS)
    key = settings.square_webhook_signature_key.get_secret_value() if settings.square_webhook_signature_key else ""
    url = settings.square_webhook_notification_url or ""
    out = ReplayResult()
    last_at, last_id = since, uuid.UUID(int=0)
    while out.selected < limit:
        # a chunk at a time: bounded memory (bodies can be 1 MiB each), short transactions
        with engine.begin() as conn:
            rows = conn.execute(sa.text(
                "select e.id, e.created_at, e.provider, e.signature_header, b.raw_body"
                " from pos_webhook_events_raw e left join pos_webhook_event_bodies b on b.event_id = e.id"
                " where e.created_at >= :since and (e.created_at, e.id) > (:last_at, :last_id)"
                " and (cast(:p as text) is null or e.provider = :p)"
                " and (cast(:ids as uuid[]) is null or e.id = any(cast(:ids as uuid[])))"
                " and (cast(:all_tenants as boolean) or e.tenant_id = any(cast(:scope as uuid[])))"
                " order by e.created_at, e.id limit :n for update of e"),
                {"since": since, "last_at": last_at, "last_id": last_id, "p": provider, "ids": event_ids,
                 "all_tenants": scope is None, "scope": scope or [],
                 "n": min(REPLAY_CHUNK, limit - out.selected)}).all()
            if not rows:
                break
            last_at, last_id = rows[-1].created_at, rows[-1].id
            out.selected += len(rows)
            chosen: list[uuid.UUID] = []
            for r in rows:
                if r.provider == "square":
                    body = bytes(r.raw_body) if r.raw_body is not None else b""
                    if not verify_square_signature(signature_key=key, notification_url=url, body=body,
                                                   signature=r.signature_header):
                        out.verify_failed.append(r.id)
                        continue
                    out.verified += 1
                chosen.append(r.id)
            if chosen:
                conn.execute(sa.text("update pos_webhook_events_raw set processed = false where id = any(:ids)"),
                             {"ids": chosen})
                conn.execute(sa.text(
                    "update pos_webhook_event_attempts set attempts = 0, next_attempt_at = null,"
                    " dead_lettered_at = null, last_error = null where event_id = any(:ids)"), {"ids": chosen})
            out.requeued += len(chosen)
        if chosen:
            out.batch.merge(process_pending(engine, fetcher=fetcher, actor=actor, only_ids=chosen))
    with engine.begin() as conn:
        audit.record(conn, actor=actor, action="webhooks.replay", target_type="pos_webhook_events_raw",
                     target_id=None, after={"since": since, "provider": provider, "selected": out.selected,
                                            "requeued": out.requeued, "signatures_failed": len(out.verify_failed),
                                            **out.batch.as_dict()},
                     reason="operator replay")
    return out


def retry_dead_letter(engine: Engine, *, actor: Actor, event_id: uuid.UUID, fetcher: Fetcher | None = None
                      ) -> BatchResult:
    """Give a dead-lettered (or failing) event a fresh start now and process it."""
    with engine.begin() as conn:
        row = conn.execute(sa.text("select tenant_id, processed from pos_webhook_events_raw where id = :i"),
                           {"i": event_id}).first()
        if row is None or not actor.can(Permission.PROCESS_WEBHOOKS, row.tenant_id):
            raise NotFound(f"no webhook event {event_id}")
        conn.execute(sa.text(
            "update pos_webhook_event_attempts set attempts = 0, next_attempt_at = null, dead_lettered_at = null"
            " where event_id = :i"), {"i": event_id})
        audit.record(conn, actor=actor, action="webhooks.retry", target_type="pos_webhook_events_raw",
                     target_id=event_id, reason="operator retry")
    return process_batch(engine, limit=1, fetcher=fetcher, actor=actor, only_ids=[event_id])


def purge_expired_keys(engine: Engine, *, actor: Actor, now: datetime | None = None) -> int:
    """Delete idempotency keys past `expires_at` (admins: all; others: their tenants')."""
    scope = actor.tenant_scope(Permission.PROCESS_WEBHOOKS)
    if scope == []:
        actor.require(Permission.PROCESS_WEBHOOKS)
    with engine.begin() as conn:
        n = conn.execute(sa.text(
            "delete from idempotency_keys where expires_at < :now"
            " and (cast(:all_tenants as boolean) or tenant_id = any(cast(:scope as uuid[])))"),
            {"now": now or utcnow(), "all_tenants": scope is None, "scope": scope or []}).rowcount
        audit.record(conn, actor=actor, action="idempotency_keys.purge", target_type="idempotency_keys",
                     target_id=None, after={"deleted": n}, reason="purge expired keys")
    return int(n)


def next_due_in(engine: Engine, *, now: datetime | None = None) -> timedelta | None:
    """How long until the next retry is due (None: nothing waits for a retry)."""
    with engine.connect() as conn:
        at = conn.execute(sa.text(
            "select min(a.next_attempt_at) from pos_webhook_event_attempts a join pos_webhook_events_raw e"
            " on e.id = a.event_id where e.processed = false and a.dead_lettered_at is null")).scalar()
    if at is None:
        return None
    return max(timedelta(0), at - (now or utcnow()))


# --- for the app's buttons: the same operations with their provider fetcher managed -------------


def process_now(engine: Engine, *, actor: Actor | None, settings: Settings, limit: int | None = None,
                batch_size: int = DEFAULT_BATCH, provider: str | None = None) -> BatchResult:
    """"Process now": everything due (or `limit` events), fetching with the connections' tokens."""
    from salesarck.pos.webhooks.fetch import ProviderFetcher

    with ProviderFetcher(engine, settings) as fetcher:
        return process_pending(engine, limit=limit, batch_size=batch_size, fetcher=fetcher, actor=actor,
                               provider=provider)


def replay_now(engine: Engine, *, actor: Actor, settings: Settings, since: datetime, provider: str | None = None,
               event_ids: list[uuid.UUID] | None = None) -> ReplayResult:
    """"Replay": `replay` with its fetcher managed."""
    from salesarck.pos.webhooks.fetch import ProviderFetcher

    with ProviderFetcher(engine, settings) as fetcher:
        return replay(engine, actor=actor, since=since, provider=provider, settings=settings, fetcher=fetcher,
                      event_ids=event_ids)


def retry_now(engine: Engine, *, actor: Actor, settings: Settings, event_id: uuid.UUID) -> BatchResult:
    """"Retry" of one dead letter: `retry_dead_letter` with its fetcher managed."""
    from salesarck.pos.webhooks.fetch import ProviderFetcher

    with ProviderFetcher(engine, settings) as fetcher:
        return retry_dead_letter(engine, actor=actor, event_id=event_id, fetcher=fetcher)
