"""Set-based posting of provider payments: transactions, accruals, refund and void reversals.

One pipeline for file import, API polling and webhooks. Records are staged with COPY into temp
tables and posted with a handful of INSERT ... SELECT statements, whatever the batch size. It runs
inside the caller's transaction (the sync commits a page and its watermark together).

How each event is written (reconciliation relies on exactly this):
- accrual: reward_events points_earned = P >= 0 with rule_version_id; ledger `credit` P (P > 0),
  description `accrual`; on a frozen wallet P = 0, rule_version_id NULL, no ledger row;
- refund or void: reward_events points_earned = -D with the accrual's rule_version_id; ledger
  `debit` D, description `refund:<provider refund id>` or `void`.
A payment's net points always move to what its rule version gives for (amount - completed
refunds), or 0 once voided, so replaying anything in any order changes nothing.

Concurrency: each posting first takes its tenant's transaction-level advisory lock (one global
order, so batches posted together in one transaction cannot deadlock with a concurrent caller);
existing wallets are locked `ORDER BY id FOR UPDATE` before any event is computed,
transactions are inserted in key order and new wallets in user order (each opening with its
accrued points), so concurrent batches neither deadlock nor post an accrual twice.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from salesarck.errors import NotFound, ValidationError
from salesarck.pos.records import Arrival, PaymentRecord, RefundRecord, SkippedRecord
from salesarck.rewards.currency import exponent_table
from salesarck.rewards.customers import normalize_customer_ref
from salesarck.rewards.guard import as_uuid

MAX_INT32 = 2_147_483_647
MAX_ID_CHARS = 255
ARRIVALS = ("file", "poll", "webhook")
MAX_CUSTOMER_REF_CHARS = 4_000
MAX_LINE_ITEMS_CHARS = 200_000


@dataclass
class PostingSummary:
    """What one posting call did. `skipped` lists records refused before anything was written."""

    read: int = 0
    inserted: int = 0  # new transactions
    duplicates: int = 0  # completed payments already stored (dedup on the provider id)
    updated: int = 0  # stored payments reported again with a newer provider update time
    voided: int = 0  # stored payments newly reported voided/cancelled
    not_completed: int = 0  # new payments that are not completed sales: no transaction
    anonymous: int = 0  # new transactions with no matching user (no points)
    refunds_recorded: int = 0  # provider refunds seen for the first time
    refunds_unmatched: int = 0  # refunds of payments we have not stored
    accruals: int = 0  # accrual reward events written
    reversals: int = 0  # refund/void reversal events written
    refunds_applied: int = 0  # reversals caused by refunds (not voids)
    points_credited: int = 0
    points_debited: int = 0
    skipped: list[SkippedRecord] = field(default_factory=list)

    def merge(self, other: PostingSummary) -> None:
        """Add another summary's counts to this one (chunked posting)."""
        for name, value in asdict(other).items():
            if name == "skipped":
                self.skipped.extend(other.skipped)
            else:
                setattr(self, name, getattr(self, name) + value)

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "skipped"}
        out["skipped"] = len(self.skipped)
        out["skipped_reasons"] = [f"{s.provider_id or '?'}: {s.reason}" for s in self.skipped]
        return out


# --- validation -------------------------------------------------------------------------------

def _check_id(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_ID_CHARS or "\x00" in value:
        raise ValidationError(f"{what} must be a non-empty id of at most {MAX_ID_CHARS} characters")
    return value


def _check_amount(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_INT32:
        raise ValidationError(f"{what} must be an integer between 0 and {MAX_INT32}")
    return value


def _check_time(value: Any, what: str, required: bool) -> datetime | None:
    if value is None and not required:
        return None
    if not isinstance(value, datetime):
        raise ValidationError(f"{what} must be a datetime")
    if value.tzinfo is not None:
        raise ValidationError(f"{what} must be naive UTC")
    return value


def _check_refund(r: Any, provider_payment_id: str | None = None) -> RefundRecord:
    if not isinstance(r, RefundRecord):
        raise ValidationError("refund is not a RefundRecord")
    _check_id(r.provider_refund_id, "refund id")
    _check_id(r.provider_payment_id, "refund payment id")
    if provider_payment_id is not None and r.provider_payment_id != provider_payment_id:
        raise ValidationError(f"refund {r.provider_refund_id} belongs to another payment")
    _check_amount(r.amount_minor_units, "refund amount")
    if not isinstance(r.status, str) or len(r.status) > 32 or not r.status.isprintable():
        raise ValidationError("refund status must be a short printable string")
    if not isinstance(r.is_completed, bool):
        raise ValidationError("refund is_completed must be a boolean")
    _check_time(r.refunded_at, "refunded_at", False)
    return r


def _check_payment(rec: Any) -> PaymentRecord:
    if not isinstance(rec, PaymentRecord):
        raise ValidationError(f"not a PaymentRecord ({type(rec).__name__})")
    if rec.provider not in ("square", "clover"):
        raise ValidationError(f"unknown provider {str(rec.provider)[:20]!r}")
    _check_id(rec.provider_payment_id, "payment id")
    _check_amount(rec.amount_minor_units, "amount")
    if not isinstance(rec.currency, str) or rec.currency not in exponent_table():
        raise ValidationError(f"unknown currency {str(rec.currency)[:16]!r}")
    if not isinstance(rec.status, str) or len(rec.status) > 32 or not rec.status.isprintable():
        raise ValidationError("status must be a short printable string")
    if not isinstance(rec.is_completed, bool) or not isinstance(rec.is_voided, bool):
        raise ValidationError("is_completed and is_voided must be booleans")
    _check_time(rec.transaction_at, "transaction_at", True)
    _check_time(rec.updated_at, "updated_at", False)
    if rec.location_id is not None:
        _check_id(rec.location_id, "location id")
    if not isinstance(rec.refunds, tuple | list):
        raise ValidationError("refunds must be a list of RefundRecords")
    for r in rec.refunds:
        _check_refund(r, rec.provider_payment_id)
    if len({r.provider_refund_id for r in rec.refunds}) != len(rec.refunds):
        raise ValidationError("a refund id is listed twice")
    if sum(r.amount_minor_units for r in rec.refunds if r.is_completed) > MAX_INT32:
        raise ValidationError("refunds total is beyond a 32-bit integer")
    return rec


def _json(value: Any, what: str, limit: int) -> str | None:
    """JSON text for a jsonb column; PostgreSQL refuses NUL characters, so they are refused here."""
    if value is None:
        return None
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValidationError(f"{what} is not plain JSON ({type(exc).__name__})") from None
    if len(text) > limit:
        raise ValidationError(f"{what} is larger than {limit} characters")
    if "\\u0000" in text or "\x00" in text:
        raise ValidationError(f"{what} contains a NUL character")
    return text


def _latest(a: PaymentRecord, b: PaymentRecord) -> PaymentRecord:
    """The newer of two reports of one payment, with the refunds of both (newer wins per refund)."""
    ka = (a.updated_at or a.transaction_at, a.is_voided)
    kb = (b.updated_at or b.transaction_at, b.is_voided)
    new, old = (b, a) if kb >= ka else (a, b)
    refunds = {r.provider_refund_id: r for r in old.refunds}
    refunds.update({r.provider_refund_id: r for r in new.refunds})
    return replace(new, refunds=tuple(refunds.values()))


# --- staging ----------------------------------------------------------------------------------

_STAGE_DDL = """
drop table if exists pg_temp._sa_stage;
create temp table _sa_stage (
    provider text not null, pid text not null, status text, is_completed boolean, is_voided boolean,
    amount integer, currency text, transaction_at timestamp, updated_at timestamp, location_id text,
    customer_ref jsonb, line_items jsonb, email text, mobile text
) on commit drop;
drop table if exists pg_temp._sa_stage_refunds;
create temp table _sa_stage_refunds (
    provider text not null, pid text not null, refund_id text not null, amount integer not null,
    status text not null, is_completed boolean not null, refunded_at timestamp
) on commit drop;
"""

_STAGE_COLS = ("provider", "pid", "status", "is_completed", "is_voided", "amount", "currency", "transaction_at",
               "updated_at", "location_id", "customer_ref", "line_items", "email", "mobile")
_REFUND_COLS = ("provider", "pid", "refund_id", "amount", "status", "is_completed", "refunded_at")


def _exec(conn: Connection, sql: str, params: dict[str, Any] | None = None) -> sa.CursorResult[Any]:
    return conn.execute(sa.text(sql), params or {})


def _copy(conn: Connection, table: str, cols: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """COPY rows into a temp table on the caller's connection (same transaction)."""
    if not rows:
        return
    raw = conn.connection.driver_connection
    assert raw is not None
    statement = f"copy {table} ({', '.join(cols)}) from stdin"
    with raw.cursor() as cur, cur.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


def _tenant_region(conn: Connection, tenant_id: uuid.UUID) -> str:
    row = _exec(conn, "select country from tenants where id = :t", {"t": tenant_id}).first()
    if row is None:
        raise NotFound(f"no tenant {tenant_id}")
    return str(row.country or "US")


# --- the pipeline -----------------------------------------------------------------------------

def post_payments(
    conn: Connection,
    *,
    tenant_id: uuid.UUID,
    records: Sequence[PaymentRecord],
    arrival: Arrival,
) -> PostingSummary:
    """Post provider payments for one tenant, set-based, inside the caller's transaction.

    Completed payments become transactions (dedup on tenant, provider and provider id) and
    accrue; refunds in the records and later void/cancel reports move each payment's net points
    to its target. Malformed records are returned in `skipped` and write nothing. Idempotent.
    """
    if arrival not in ARRIVALS:
        raise ValidationError(f"arrival must be one of {', '.join(ARRIVALS)}")
    tenant_id = as_uuid(tenant_id, "tenant id")
    if isinstance(records, str | bytes) or not isinstance(records, Sequence):
        raise ValidationError("records must be a list of PaymentRecords")
    summary = PostingSummary(read=len(records))
    region = _tenant_region(conn, tenant_id)
    by_key: dict[tuple[str, str], PaymentRecord] = {}
    for rec in records:
        try:
            rec = _check_payment(rec)
        except ValidationError as exc:
            pid = getattr(rec, "provider_payment_id", None)
            summary.skipped.append(SkippedRecord(pid[:MAX_ID_CHARS] if isinstance(pid, str) else None, str(exc)))
            continue
        key = (rec.provider, rec.provider_payment_id)
        prev = by_key.get(key)
        by_key[key] = rec if prev is None else _latest(prev, rec)
    rows: list[tuple[Any, ...]] = []
    refund_rows: list[tuple[Any, ...]] = []
    refund_owner: dict[tuple[str, str], str] = {}
    for rec in by_key.values():
        ref, email, mobile = normalize_customer_ref(rec.customer_ref, region)
        clash = next((refund_owner[(rec.provider, r.provider_refund_id)] for r in rec.refunds
                      if (rec.provider, r.provider_refund_id) in refund_owner), None)
        if clash is not None:
            summary.skipped.append(SkippedRecord(rec.provider_payment_id,
                                                 f"a refund id is also listed under payment {clash}"))
            continue
        refund_owner.update({(rec.provider, r.provider_refund_id): rec.provider_payment_id for r in rec.refunds})
        try:
            ref_json = _json(ref or None, "customer_ref", MAX_CUSTOMER_REF_CHARS)
            items_json = _json(rec.line_items, "line_items", MAX_LINE_ITEMS_CHARS)
        except ValidationError as exc:
            summary.skipped.append(SkippedRecord(rec.provider_payment_id, str(exc)))
            continue
        rows.append((rec.provider, rec.provider_payment_id, rec.status, rec.is_completed, rec.is_voided,
                     rec.amount_minor_units, rec.currency, rec.transaction_at, rec.updated_at, rec.location_id,
                     ref_json, items_json, email, mobile))
        refund_rows.extend((rec.provider, rec.provider_payment_id, r.provider_refund_id, r.amount_minor_units,
                            r.status, r.is_completed, r.refunded_at) for r in rec.refunds)
    _stage(conn, rows, refund_rows)
    _post_staged(conn, tenant_id, arrival, summary)
    return summary


def post_refunds(
    conn: Connection,
    *,
    tenant_id: uuid.UUID,
    provider: str,
    refunds: Sequence[RefundRecord],
    arrival: Arrival,
) -> PostingSummary:
    """Record provider refunds (e.g. Square refund webhooks) and post the reversals they cause.

    Refunds of payments not stored yet are counted as unmatched and not recorded (the payment's
    own record will bring them).
    """
    if arrival not in ARRIVALS:
        raise ValidationError(f"arrival must be one of {', '.join(ARRIVALS)}")
    if provider not in ("square", "clover"):
        raise ValidationError(f"unknown provider {str(provider)[:20]!r}")
    tenant_id = as_uuid(tenant_id, "tenant id")
    if isinstance(refunds, str | bytes) or not isinstance(refunds, Sequence):
        raise ValidationError("refunds must be a list of RefundRecords")
    summary = PostingSummary(read=len(refunds))
    _tenant_region(conn, tenant_id)
    latest: dict[str, RefundRecord] = {}
    for r in refunds:
        try:
            latest[_check_refund(r).provider_refund_id] = r
        except ValidationError as exc:
            rid = getattr(r, "provider_refund_id", None)
            summary.skipped.append(SkippedRecord(rid[:MAX_ID_CHARS] if isinstance(rid, str) else None, str(exc)))
    refund_rows = [(provider, r.provider_payment_id, r.provider_refund_id, r.amount_minor_units, r.status,
                    r.is_completed, r.refunded_at) for r in latest.values()]
    _stage(conn, [], refund_rows)
    _post_staged(conn, tenant_id, arrival, summary)
    return summary


def _stage(conn: Connection, rows: Sequence[tuple[Any, ...]], refund_rows: Sequence[tuple[Any, ...]]) -> None:
    for statement in _STAGE_DDL.split(";"):
        if statement.strip():
            _exec(conn, statement)
    _copy(conn, "_sa_stage", _STAGE_COLS, rows)
    _copy(conn, "_sa_stage_refunds", _REFUND_COLS, refund_rows)
    _exec(conn, "analyze _sa_stage")  # row counts and distinct emails steer the join plans
    _exec(conn, "analyze _sa_stage_refunds")


def _post_staged(conn: Connection, tenant_id: uuid.UUID, arrival: str, summary: PostingSummary) -> None:
    t = {"t": tenant_id}
    # 0. one global lock order: the tenant's posting lock first (held to commit, re-entrant). A caller
    #    that posts several batches in one transaction (the webhook processor: per provider, refunds,
    #    event-by-event fallback) otherwise holds transaction/detail/wallet locks of one batch while
    #    taking the next batch's, in an order a concurrent caller can invert (deadlock). Callers that
    #    post for several tenants in one transaction must do so in tenant id order.
    _exec(conn, "select pg_advisory_xact_lock(hashtextextended('salesarck.posting:' || cast(:t as text), 0))", t)
    # 1. customers (email first, then E.164 mobile; no match: anonymous) and transactions (completed
    #    payments only, dedup on the seed's unique key, inserted in key order: no deadlocks), in one
    #    statement that also maps every staged payment to its stored transaction
    _exec(conn, "drop table if exists pg_temp._sa_tx")
    _exec(conn, """
        create temp table _sa_tx on commit drop as
        with em as (
            select distinct on (lower(u.email)) lower(u.email) as email, u.id from users u
            where lower(u.email) in (select email from _sa_stage where email is not null)
            order by lower(u.email), u.id),
        mo as (
            select u.mobile, u.id from users u
            where u.mobile in (select mobile from _sa_stage where mobile is not null)),
        ins as (
            insert into transactions (tenant_id, user_id, provider, provider_transaction_id, amount_minor_units,
                                      currency, customer_ref, line_items, transaction_at, created_at)
            select :t, coalesce(em.id, mo.id), s.provider, s.pid, s.amount, s.currency, s.customer_ref, s.line_items,
                   s.transaction_at, (now() at time zone 'utc')
            from _sa_stage s left join em on em.email = s.email left join mo on mo.mobile = s.mobile
            where s.is_completed order by s.provider, s.pid
            on conflict (tenant_id, provider, provider_transaction_id) do nothing
            returning id, provider, provider_transaction_id, user_id)
        select s.provider, s.pid, s.status, s.is_completed, s.is_voided, s.updated_at, s.location_id,
               coalesce(ins.id, x.id) as txn_id, ins.id is not null as is_new, coalesce(ins.user_id, x.user_id) as user_id,
               d.is_voided as prev_voided, d.provider_updated_at as prev_updated_at,
               d.transaction_id is not null as had_details
        from _sa_stage s
        left join ins on ins.provider = s.provider and ins.provider_transaction_id = s.pid
        left join transactions x on ins.id is null and x.tenant_id = :t and x.provider = s.provider
                                and x.provider_transaction_id = s.pid
        left join transaction_details d on d.transaction_id = x.id""", t)
    # a row a concurrent batch committed while we waited on its key is not in this statement's snapshot
    _exec(conn, "update _sa_tx s set txn_id = x.id, user_id = x.user_id from transactions x "
                "where s.txn_id is null and s.is_completed and x.tenant_id = :t and x.provider = s.provider "
                "and x.provider_transaction_id = s.pid", t)
    # 2. provider details (side table): voids are sticky, status follows the newest report
    _exec(conn, """
        insert into transaction_details as d (transaction_id, location_id, provider_status, provider_updated_at,
                                              is_voided, voided_at, arrival, first_seen_at, last_seen_at)
        select txn_id, location_id, status, updated_at, coalesce(is_voided, false),
               case when is_voided then (now() at time zone 'utc') end, :arrival, (now() at time zone 'utc'),
               (now() at time zone 'utc')
        from _sa_tx where txn_id is not null order by txn_id
        on conflict (transaction_id) do update set
            location_id = coalesce(excluded.location_id, d.location_id),
            provider_status = case when d.provider_updated_at is null or excluded.provider_updated_at is null
                                     or excluded.provider_updated_at >= d.provider_updated_at
                                   then excluded.provider_status else d.provider_status end,
            provider_updated_at = greatest(d.provider_updated_at, excluded.provider_updated_at),
            is_voided = d.is_voided or excluded.is_voided,
            voided_at = coalesce(d.voided_at, excluded.voided_at),
            last_seen_at = excluded.last_seen_at""", {"arrival": arrival})
    counts = _exec(conn, """
        select count(*) filter (where is_new) as inserted,
               count(*) filter (where is_new and user_id is null) as anonymous,
               count(*) filter (where is_completed and not is_new and txn_id is not null) as duplicates,
               count(*) filter (where txn_id is null) as not_completed,
               count(*) filter (where had_details and updated_at > prev_updated_at) as updated,
               count(*) filter (where txn_id is not null and not is_new and is_voided
                                and not coalesce(prev_voided, false)) as voided
        from _sa_tx""").one()
    summary.inserted += counts.inserted
    summary.anonymous += counts.anonymous
    summary.duplicates += counts.duplicates
    summary.not_completed += counts.not_completed
    summary.updated += counts.updated
    summary.voided += counts.voided
    # 3. refunds (side table): recorded once per provider refund id; completion is sticky; an
    #    exact amount from a refund object replaces a provisional split of a payment's total
    _exec(conn, "drop table if exists pg_temp._sa_ref")
    _exec(conn, """
        create temp table _sa_ref on commit drop as
        select r.*, coalesce(s.txn_id, x.id) as txn_id, coalesce(s.user_id, x.user_id) as user_id
        from _sa_stage_refunds r
        left join _sa_tx s on s.provider = r.provider and s.pid = r.pid and s.txn_id is not null
        left join transactions x on s.txn_id is null and x.tenant_id = :t and x.provider = r.provider
                                and x.provider_transaction_id = r.pid""", t)
    rec = _exec(conn, """
        insert into transaction_refunds as tr (tenant_id, provider, provider_refund_id, transaction_id,
            amount_minor_units, status, is_completed, refunded_at, created_at, updated_at)
        select :t, provider, refund_id, txn_id, amount, status, is_completed, refunded_at,
               (now() at time zone 'utc'), (now() at time zone 'utc')
        from _sa_ref where txn_id is not null order by provider, refund_id
        on conflict (tenant_id, provider, provider_refund_id) do update set
            amount_minor_units = case
                when tr.is_completed and tr.status <> 'REPORTED_SPLIT' then tr.amount_minor_units
                when excluded.status = 'REPORTED_SPLIT' and tr.status <> 'REPORTED_SPLIT' then tr.amount_minor_units
                else excluded.amount_minor_units end,
            status = case
                when tr.is_completed and tr.status <> 'REPORTED_SPLIT' then tr.status
                when excluded.status = 'REPORTED_SPLIT' and tr.status <> 'REPORTED_SPLIT' then 'COMPLETED'
                when tr.is_completed and not excluded.is_completed then 'COMPLETED'
                else excluded.status end,
            is_completed = tr.is_completed or excluded.is_completed,
            refunded_at = coalesce(tr.refunded_at, excluded.refunded_at),
            updated_at = excluded.updated_at
        returning (xmax = 0) as inserted""", t).all()
    summary.refunds_recorded += sum(1 for r in rec if r.inserted)
    summary.refunds_unmatched += _exec(conn, "select count(*) from _sa_ref where txn_id is null").scalar_one()
    # 4. the transactions this batch touched, then their events
    _exec(conn, "drop table if exists pg_temp._sa_aff")
    # `touched`: a refund or a void arrived for it now, so its net points may have to move
    _exec(conn, "create temp table _sa_aff on commit drop as select txn_id, user_id, bool_or(is_new) as is_new, "
                "bool_or(touched) as touched from ("
                "select txn_id, user_id, is_new, coalesce(is_voided, false) as touched from _sa_tx "
                "where txn_id is not null union all "
                "select txn_id, user_id, false, true from _sa_ref where txn_id is not null) a group by txn_id, user_id")
    _post_events(conn, tenant_id, summary)


_ACCRUE = """
    with ev as (
        insert into reward_events (wallet_id, transaction_id, rule_version_id, points_earned, points_redeemed,
                                   created_at)
        select wallet_id, txn_id, rule_id, points, 0, (now() at time zone 'utc') from _sa_post order by txn_id),
    lg as (
        insert into wallet_ledger (wallet_id, entry_type, points, description, source_transaction_id, created_at)
        select wallet_id, 'credit', points, 'accrual', txn_id, (now() at time zone 'utc') from _sa_post
        where points > 0 order by txn_id)
    update wallets w set points_balance = w.points_balance + s.delta, updated_at = (now() at time zone 'utc')
    from (select wallet_id, sum(points)::integer as delta from _sa_post where points > 0 and not new_wallet
          group by wallet_id) s
    where w.id = s.wallet_id"""

_REVERSE = """
    with ev as (
        insert into reward_events (wallet_id, transaction_id, rule_version_id, points_earned, points_redeemed,
                                   created_at)
        select wallet_id, txn_id, rule_version_id, -points, 0, (now() at time zone 'utc') from _sa_rev order by txn_id),
    lg as (
        insert into wallet_ledger (wallet_id, entry_type, points, description, source_transaction_id, created_at)
        select wallet_id, 'debit', points, description, txn_id, (now() at time zone 'utc') from _sa_rev
        order by txn_id)
    update wallets w set points_balance = w.points_balance - s.delta, updated_at = (now() at time zone 'utc')
    from (select wallet_id, sum(points)::integer as delta from _sa_rev group by wallet_id) s
    where w.id = s.wallet_id"""


def _post_events(conn: Connection, tenant_id: uuid.UUID, summary: PostingSummary) -> None:
    """Accruals then reversals for the transactions in `_sa_aff`, under wallet row locks."""
    t = {"t": tenant_id}
    # lock the existing wallets of these customers in id order (a consistent order: no deadlocks);
    # every event below is computed under these locks, so concurrent batches cannot double-post
    _exec(conn, """
        select w.id from wallets w
        where w.tenant_id = :t and w.user_id in (select user_id from _sa_aff where user_id is not null)
        order by w.id for update""", t)
    # accruals: known customer, rule in force at transaction_at, no accrual yet (new rows have none)
    for name in ("_sa_acc0", "_sa_neww", "_sa_post"):
        _exec(conn, f"drop table if exists pg_temp.{name}")
    _exec(conn, """
        create temp table _sa_acc0 on commit drop as
        select x.id as txn_id, x.user_id, w.id as wallet_id, w.id is null as new_wallet,
               case when w.status = 'frozen' then null else r.id end as rule_id,
               case when w.status = 'frozen' then 0
                    else salesarck_points(x.amount_minor_units, c.exponent, r.rule_config) end as points
        from _sa_aff a
        join transactions x on x.id = a.txn_id
        left join wallets w on w.tenant_id = x.tenant_id and w.user_id = x.user_id
        join currency_minor_units c on c.code = x.currency
        join lateral (
            select rr.id, rr.rule_config from reward_rules rr
            where rr.tenant_id = x.tenant_id and rr.effective_from <= x.transaction_at
            order by rr.effective_from desc, rr.version desc limit 1) r on true
        where a.user_id is not null
          and (a.is_new or not exists (select 1 from reward_events e
                                       where e.transaction_id = x.id and coalesce(e.points_redeemed, 0) = 0))""")
    # a stored rule without a conversionRate values nothing: no event (reconciliation reports it)
    _exec(conn, "delete from _sa_acc0 where points is null")
    # get-or-create: a customer's first wallet opens with its accrued points (in user order, so
    # concurrent creators queue on the unique key without deadlocks)
    _exec(conn, """
        create temp table _sa_neww on commit drop as
        with ins as (
            insert into wallets (tenant_id, user_id, points_balance, status, created_at)
            select :t, user_id, sum(case when points > 0 then points else 0 end)::integer, 'active',
                   (now() at time zone 'utc')
            from _sa_acc0 where wallet_id is null group by user_id order by user_id
            on conflict (tenant_id, user_id) do nothing
            returning id, user_id)
        select id, user_id from ins""", t)
    raced = _exec(conn, """
        update _sa_acc0 p set wallet_id = w.id, new_wallet = false from wallets w
        where p.wallet_id is null and w.tenant_id = :t and w.user_id = p.user_id
          and p.user_id not in (select user_id from _sa_neww)""", t).rowcount
    if raced:  # another batch created the wallet meanwhile: lock it and move it like any other
        _exec(conn, "select id from wallets where id in (select wallet_id from _sa_acc0 where not new_wallet) "
                    "order by id for update")
    _exec(conn, """
        create temp table _sa_post on commit drop as
        select p.txn_id, coalesce(p.wallet_id, n.id) as wallet_id, p.new_wallet, p.rule_id, p.points
        from _sa_acc0 p left join _sa_neww n on p.wallet_id is null and n.user_id = p.user_id""")
    _exec(conn, _ACCRUE)
    acc = _exec(conn, "select count(*) as n, coalesce(sum(points), 0) as pts from _sa_post").one()
    summary.accruals += acc.n
    summary.points_credited += int(acc.pts)
    # reversals: transactions a refund or void touched move their net points to the target
    _exec(conn, "drop table if exists pg_temp._sa_rev")
    _exec(conn, """
        create temp table _sa_rev on commit drop as
        with cand as (select txn_id from _sa_aff where touched and user_id is not null),
        acc as (
            select distinct on (e.transaction_id) e.transaction_id, e.wallet_id, e.rule_version_id
            from reward_events e join cand on cand.txn_id = e.transaction_id
            where coalesce(e.points_redeemed, 0) = 0
            order by e.transaction_id, e.created_at, e.id),
        net as (
            select e.transaction_id, sum(coalesce(e.points_earned, 0)) as net
            from reward_events e join cand on cand.txn_id = e.transaction_id
            where coalesce(e.points_redeemed, 0) = 0 group by e.transaction_id),
        ref as (
            select tr.transaction_id, sum(tr.amount_minor_units) as refunded,
                   (array_agg(tr.provider_refund_id order by tr.refunded_at desc nulls last,
                              tr.created_at desc, tr.provider_refund_id desc))[1] as last_refund_id
            from transaction_refunds tr join cand on cand.txn_id = tr.transaction_id
            where tr.is_completed group by tr.transaction_id),
        target as (
            select acc.transaction_id, acc.wallet_id, acc.rule_version_id, net.net,
                   coalesce(d.is_voided, false) as voided, ref.last_refund_id,
                   case when coalesce(d.is_voided, false) or acc.rule_version_id is null then 0
                        else salesarck_points(greatest(x.amount_minor_units - coalesce(ref.refunded, 0), 0),
                                              c.exponent, rr.rule_config) end as target
            from acc join net using (transaction_id)
            join transactions x on x.id = acc.transaction_id
            left join transaction_details d on d.transaction_id = x.id
            left join ref on ref.transaction_id = x.id
            left join reward_rules rr on rr.id = acc.rule_version_id
            left join currency_minor_units c on c.code = x.currency)
        select transaction_id as txn_id, wallet_id, rule_version_id, (net - target)::integer as points,
               voided, case when voided or last_refund_id is null then 'void'
                            else 'refund:' || last_refund_id end as description
        from target where target is not null and net > target""")
    _exec(conn, _REVERSE)
    rev = _exec(conn, "select count(*) as n, count(*) filter (where not voided) as refunds, "
                      "coalesce(sum(points), 0) as pts from _sa_rev").one()
    summary.reversals += rev.n
    summary.refunds_applied += rev.refunds
    summary.points_debited += int(rev.pts)


def accrue(conn: Connection, transaction_id: uuid.UUID) -> int:
    """Post the missed accrual of an already stored transaction; returns the points credited.

    The repair path for reconciliation. A transaction that already has its accrual, or has no
    known customer or no rule in force, posts nothing (returns 0). Any completed refunds or a
    void already recorded are then applied, so the transaction ends at its target.
    """
    transaction_id = as_uuid(transaction_id, "transaction id")
    row = _exec(conn, "select tenant_id from transactions where id = :i", {"i": transaction_id}).first()
    if row is None:
        raise NotFound(f"no transaction {transaction_id}")
    _exec(conn, "drop table if exists pg_temp._sa_aff")
    _exec(conn, "create temp table _sa_aff on commit drop as select id as txn_id, user_id, false as is_new, "
                "true as touched from transactions where id = :i", {"i": transaction_id})
    summary = PostingSummary()
    _post_events(conn, row.tenant_id, summary)
    return summary.points_credited
