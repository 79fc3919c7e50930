"""Row-level reads as pandas DataFrames with proper dtypes, scoped like the app.

Every reader takes an Engine or Connection and an optional `actor`: with an actor, rows are
limited to the tenants `salesarck.authz` lets that actor see for the matching permission (the
same matrix the app uses); without one, the database credentials are the only boundary.

Dtypes: ids are `string`, times are tz-aware UTC (`datetime64[us, UTC]`; the database stores naive
UTC), points and minor units are nullable `Int64`, enumerations are `category`, JSONB stays Python
objects. Reads stream from a server-side cursor in chunks; a read that would exceed `limit` rows
(default 100,000) raises `RowLimitExceeded` instead of quietly filling memory: pass `limit=None`
to read everything, or use `iter_frames` for chunk-by-chunk processing.
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from typing import Any, Literal

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from salesarck.authz import Actor, Permission
from salesarck.db import models
from salesarck.errors import PermissionDenied, ValidationError
from salesarck.timeutil import parse_time

DEFAULT_ROW_LIMIT = 100_000
CHUNK_ROWS = 50_000
MAX_ID_CHARS = 64

Connectable = Engine | Connection
TimeLike = datetime | date | str | None
Kind = Literal["id", "ts", "int", "text", "json", "bool", "cat"]

# Known values of the seed's enumerations; values outside these are kept (appended), never lost.
ENUMS: dict[str, list[str]] = {
    "entry_type": ["credit", "debit"],
    "wallet_status": ["active", "frozen"],
    "provider": ["square", "clover"],
    "pos_provider_preference": ["square", "clover", "other"],
    "user_role": ["consumer", "client", "pos_operator", "admin"],
    "user_status": ["active", "pending_approval", "suspended"],
    "tenant_status": ["active"],
    "tenant_role": ["client", "pos_operator"],
    "arrival": ["file", "poll", "webhook"],
}

T_TENANTS = models.Tenant.__table__
T_USERS = models.User.__table__
T_TENANT_USERS = models.TenantUser.__table__
T_WALLETS = models.Wallet.__table__
T_LEDGER = models.WalletLedger.__table__
T_TRANSACTIONS = models.Transaction.__table__
T_RULES = models.RewardRule.__table__
T_EVENTS = models.RewardEvent.__table__
T_AUDIT = models.AdminAuditLog.__table__
T_CONNECTIONS = models.PosConnection.__table__


class RowLimitExceeded(ValidationError):
    """A read would return more rows than the caller allowed."""


# --------------------------------------------------------------------------------------------
# argument checking: every public reader validates its inputs before touching the database


def as_uuid(value: object, name: str) -> uuid.UUID:
    """Parse an id argument, refusing anything that is not a UUID with one clear sentence."""
    if isinstance(value, uuid.UUID):
        return value
    text = str(value).strip() if isinstance(value, str) else None
    if text is None or len(text) > MAX_ID_CHARS:
        raise ValidationError(f"{name} must be a UUID like 2f1c6f5e-8f0e-4c7a-9d3b-0a1b2c3d4e5f")
    try:
        return uuid.UUID(text)
    except ValueError:
        raise ValidationError(f"{name} is not a UUID: {text[:40]!r}") from None


def as_time(value: TimeLike, name: str) -> datetime | None:
    """Parse a time argument (RFC 3339 with offset, a date, or a datetime) to naive UTC."""
    if value is None:
        return None
    if value is pd.NaT or (isinstance(value, datetime) and pd.isna(value)):
        raise ValidationError(f"{name} is NaT; pass a time or None")
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if not isinstance(value, datetime | date | str):
        raise ValidationError(f"{name} must be a time like 2026-11-01T09:30:00Z or a date, got {type(value).__name__}")
    try:
        return parse_time(value)
    except ValidationError as exc:
        raise ValidationError(f"{name}: {exc}") from None


def check_limit(limit: int | None) -> int | None:
    """A positive row limit, or None for no limit."""
    if limit is None:
        return None
    # capped far below bigint: the query asks for limit + 1 rows, which must not overflow
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10**15:
        raise ValidationError("limit must be a positive integer up to 10^15, or None to read every row")
    return limit


def check_window(start: datetime | None, end: datetime | None) -> None:
    if start is not None and end is not None and end < start:
        raise ValidationError("end is before start; the window is [start, end)")


def check_text(value: str | None, name: str, max_chars: int = 200) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError(f"{name} must be text")
    if len(value) > max_chars or "\x00" in value:
        raise ValidationError(f"{name} is longer than {max_chars} characters or contains a NUL")
    return value


# --------------------------------------------------------------------------------------------
# tenant scope


def visible_tenants(actor: Actor | None, permission: Permission | None) -> list[uuid.UUID] | None:
    """Tenants the actor may read for `permission` (None: any permission). None means all."""
    if actor is None:
        return None
    if permission is not None:
        return actor.tenant_scope(permission)
    scopes = [actor.tenant_scope(p) for p in Permission]
    if any(s is None for s in scopes):
        return None
    return sorted({t for s in scopes if s is not None for t in s})


def scoped(
    actor: Actor | None, permission: Permission | None, tenant: object | None
) -> list[uuid.UUID] | None:
    """The tenant filter for a read: the requested tenant (if allowed) or the actor's scope."""
    scope = visible_tenants(actor, permission)
    if tenant is None:
        return scope
    tenant_id = as_uuid(tenant, "tenant")
    if scope is not None and tenant_id not in scope:
        what = permission.value.replace("_", " ") if permission else "read"
        raise PermissionDenied(f"{actor} may not {what} for tenant {tenant_id}")
    return [tenant_id]


def _tenant_filter(column: sa.ColumnElement[Any], tenants: list[uuid.UUID] | None) -> sa.ColumnElement[bool]:
    if tenants is None:
        return sa.true()
    if not tenants:
        return sa.false()
    return column.in_(tenants)


# --------------------------------------------------------------------------------------------
# reading and typing


@contextmanager
def connection(conn: Connectable) -> Iterator[Connection]:
    """Use a Connection as is, or open one from an Engine for the duration of a read."""
    if isinstance(conn, Engine):
        with conn.connect() as c:
            yield c
    else:
        yield conn


# How each kind of column crosses from PostgreSQL's CSV COPY into Arrow.
_ARROW_TYPES: dict[str, pa.DataType] = {
    "id": pa.string(), "text": pa.string(), "cat": pa.string(), "json": pa.string(),
    "ts": pa.timestamp("us"), "int": pa.int64(), "bool": pa.bool_(),
}
_PANDAS_TYPES = {pa.int64(): pd.Int64Dtype(), pa.string(): pd.StringDtype(), pa.bool_(): pd.BooleanDtype()}


class _CopyStream(io.RawIOBase):
    """A file-like view of `COPY ... TO STDOUT`, so pyarrow parses it block by block."""

    def __init__(self, chunks: Iterator[Any]) -> None:
        self._chunks = chunks
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._buf:
            try:
                self._buf = bytes(next(self._chunks))
            except StopIteration:
                return 0
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


def _batches(conn: Connectable, query: sa.Select[Any], spec: Mapping[str, tuple[Kind, str | None]]
             ) -> Iterator[pa.RecordBatch]:
    """Stream a query's rows as Arrow record batches: PostgreSQL's CSV COPY parsed by pyarrow.

    The query keeps its bound parameters (psycopg quotes them client-side for COPY) and runs on the
    caller's connection, inside its transaction, so a read-only session stays read-only.
    """
    with connection(conn) as c:
        compiled = query.compile(dialect=c.dialect, compile_kwargs={"render_postcompile": True})
        names = [str(col.key) for col in query.selected_columns]
        types = {n: _ARROW_TYPES[spec.get(n, ("text", None))[0]] for n in names}
        convert = pacsv.ConvertOptions(column_types=types, strings_can_be_null=True,
                                       quoted_strings_can_be_null=False, true_values=["t"], false_values=["f"])
        raw = c.connection.dbapi_connection
        assert raw is not None
        cur = raw.cursor()
        try:
            with cur.copy(f"copy ({compiled}) to stdout (format csv, header true)", compiled.params) as copy:
                stream = io.BufferedReader(_CopyStream(iter(copy)), buffer_size=1 << 20)
                try:
                    reader = pacsv.open_csv(stream, read_options=pacsv.ReadOptions(block_size=4 << 20),
                                            parse_options=pacsv.ParseOptions(newlines_in_values=True),
                                            convert_options=convert)
                except pa.ArrowInvalid:  # nothing at all came back (not even the header)
                    return
                yield from reader
        finally:
            cur.close()


def _empty_table(spec: Mapping[str, tuple[Kind, str | None]], names: Sequence[str]) -> pa.Table:
    return pa.table({n: pa.array([], type=_ARROW_TYPES[spec.get(n, ("text", None))[0]]) for n in names})


def _frame(table: pa.Table, spec: Mapping[str, tuple[Kind, str | None]], *, final: bool = True) -> pd.DataFrame:
    """Arrow to pandas with the spec's dtypes: UTC-aware times, Int64, string, boolean, categoricals
    (the enumeration's values plus any others seen), JSON as Python objects."""
    fields = [pa.field(f.name, pa.timestamp("us", tz="UTC")) if pa.types.is_timestamp(f.type) else f
              for f in table.schema]
    df = table.cast(pa.schema(fields)).to_pandas(types_mapper=_PANDAS_TYPES.get)
    for col in df.columns:
        kind, enum = spec.get(col, ("text", None))
        if kind == "json":
            df[col] = pd.Series([json.loads(v) if isinstance(v, str) else None for v in df[col]],
                                index=df.index, dtype="object")
        elif kind == "cat":
            known = ENUMS.get(enum or "", [])
            seen = [str(v) for v in df[col].dropna().unique()] if final else []
            cats = known + sorted(v for v in seen if v not in known)
            df[col] = df[col].astype(pd.CategoricalDtype(cats))
    return df


def read_frame(
    conn: Connectable,
    query: sa.Select[Any],
    spec: Mapping[str, tuple[Kind, str | None]],
    *,
    limit: int | None,
    what: str,
    head: int | None = None,
) -> pd.DataFrame:
    """Run `query` through Arrow and return one typed DataFrame; refuse more than `limit` rows.

    `head=N` asks for the first N rows on purpose (a preview), so no limit applies.
    """
    limit = check_limit(limit)
    if head is not None:
        query, limit = query.limit(check_limit(head) or 0), None
    if limit is not None:
        query = query.limit(limit + 1)
    batches: list[pa.RecordBatch] = []
    rows = 0
    for batch in _batches(conn, query, spec):
        rows += batch.num_rows
        if limit is not None and rows > limit:
            raise RowLimitExceeded(
                f"{what} has more than {limit:,} rows in this scope; narrow it (tenant, wallet, start, end), "
                f"raise limit=, or pass limit=None (all=True) to read every row"
            )
        batches.append(batch)
    names = [str(col.key) for col in query.selected_columns]
    table = pa.Table.from_batches(batches) if batches else _empty_table(spec, names)
    return _frame(table, spec)


def iter_frames(
    conn: Connectable,
    query: sa.Select[Any],
    spec: Mapping[str, tuple[Kind, str | None]],
    *,
    chunksize: int = CHUNK_ROWS,
) -> Iterator[pd.DataFrame]:
    """Yield typed DataFrames of `chunksize` rows (the last may be shorter): flat memory for any size."""
    if isinstance(chunksize, bool) or not isinstance(chunksize, int) or not 1 <= chunksize <= 10_000_000:
        raise ValidationError("chunksize must be an integer between 1 and 10,000,000")
    pending: list[pa.RecordBatch] = []
    held = 0
    for batch in _batches(conn, query, spec):
        pending.append(batch)
        held += batch.num_rows
        while held >= chunksize:
            table = pa.Table.from_batches(pending)
            yield _frame(table.slice(0, chunksize), spec, final=False)
            rest = table.slice(chunksize)
            pending, held = rest.to_batches(), rest.num_rows
    if held:
        yield _frame(pa.Table.from_batches(pending), spec, final=False)


def _id(col: sa.ColumnElement[Any], name: str) -> sa.ColumnElement[Any]:
    """UUIDs leave the database as text: cheaper to fetch than uuid objects, and joinable."""
    return sa.cast(col, sa.Text).label(name)


# --------------------------------------------------------------------------------------------
# the readers: each returns (query, dtype spec) so callers can read all, limited or in chunks

Spec = dict[str, tuple[Kind, str | None]]
Query = tuple[sa.Select[Any], Spec]


def tenants_query(*, actor: Actor | None = None) -> Query:
    t = T_TENANTS
    tenants = visible_tenants(actor, None)
    q = (
        sa.select(
            _id(t.c.id, "tenant_id"),
            t.c.name,
            t.c.country,
            t.c.status,
            t.c.pos_provider_preference,
            t.c.onboarding_profile["timezone"].astext.label("timezone"),
            t.c.onboarding_profile,
            t.c.created_at,
            t.c.updated_at,
        )
        .where(_tenant_filter(t.c.id, tenants))
        .order_by(t.c.name, t.c.id)
    )
    spec: Spec = {
        "tenant_id": ("id", None), "name": ("text", None), "country": ("cat", None),
        "status": ("cat", "tenant_status"), "pos_provider_preference": ("cat", "pos_provider_preference"),
        "timezone": ("text", None), "onboarding_profile": ("json", None),
        "created_at": ("ts", None), "updated_at": ("ts", None),
    }
    return q, spec


def wallets_query(
    *, actor: Actor | None = None, tenant: object = None, user: object = None, status: str | None = None
) -> Query:
    w, u = T_WALLETS, T_USERS
    tenants = scoped(actor, Permission.VIEW_FINANCE, tenant)
    status = check_text(status, "status", 40)
    q = (
        sa.select(
            _id(w.c.id, "wallet_id"),
            _id(w.c.tenant_id, "tenant_id"),
            _id(w.c.user_id, "user_id"),
            u.c.email.label("user_email"),
            w.c.points_balance,
            w.c.status,
            w.c.created_at,
            w.c.updated_at,
        )
        .join(u, u.c.id == w.c.user_id)
        .where(_tenant_filter(w.c.tenant_id, tenants))
        .order_by(w.c.tenant_id, w.c.id)
    )
    if user is not None:
        q = q.where(w.c.user_id == as_uuid(user, "user"))
    if status is not None:
        q = q.where(w.c.status == status)
    spec: Spec = {
        "wallet_id": ("id", None), "tenant_id": ("id", None), "user_id": ("id", None),
        "user_email": ("text", None), "points_balance": ("int", None), "status": ("cat", "wallet_status"),
        "created_at": ("ts", None), "updated_at": ("ts", None),
    }
    return q, spec


def _wallet_tenant(conn: Connectable, wallet_id: uuid.UUID) -> uuid.UUID | None:
    with connection(conn) as c:
        return c.execute(sa.select(T_WALLETS.c.tenant_id).where(T_WALLETS.c.id == wallet_id)).scalar()


def _check_wallet(conn: Connectable, actor: Actor | None, wallet: object, permission: Permission) -> uuid.UUID:
    """The wallet's id, refusing (as not found) a wallet outside the actor's scope."""
    wallet_id = as_uuid(wallet, "wallet")
    tenant_id = _wallet_tenant(conn, wallet_id)
    scope = visible_tenants(actor, permission)
    if tenant_id is None or (scope is not None and tenant_id not in scope):
        raise PermissionDenied(f"wallet {wallet_id} does not exist or is outside your tenants")
    return wallet_id


def ledger_query(
    conn: Connectable,
    *,
    actor: Actor | None = None,
    wallet: object = None,
    tenant: object = None,
    start: TimeLike = None,
    end: TimeLike = None,
    running_balance: bool | None = None,
) -> Query:
    """Ledger entries with signed points; `running_balance` (default: when one wallet is asked for)
    adds the wallet's balance after each entry, computed over its whole history before filtering."""
    lo, hi = as_time(start, "start"), as_time(end, "end")
    check_window(lo, hi)
    tenants = scoped(actor, Permission.VIEW_FINANCE, tenant)
    wallet_id = _check_wallet(conn, actor, wallet, Permission.VIEW_FINANCE) if wallet is not None else None
    if running_balance is None:
        running_balance = wallet_id is not None
    ledger, w = T_LEDGER, T_WALLETS
    signed = sa.case((ledger.c.entry_type == "debit", -ledger.c.points), else_=ledger.c.points)
    cols: list[Any] = [
        _id(ledger.c.id, "entry_id"),
        _id(ledger.c.wallet_id, "wallet_id"),
        _id(w.c.tenant_id, "tenant_id"),
        ledger.c.entry_type,
        ledger.c.points,
        signed.label("signed_points"),
        ledger.c.description,
        _id(ledger.c.source_transaction_id, "source_transaction_id"),
        _id(ledger.c.created_by_admin, "created_by_admin"),
        ledger.c.created_at,
    ]
    if running_balance:
        cols.append(
            sa.func.sum(signed)
            .over(partition_by=ledger.c.wallet_id, order_by=(ledger.c.created_at, ledger.c.id))
            .label("balance_after")
        )
    inner = sa.select(*cols).join(w, w.c.id == ledger.c.wallet_id).where(_tenant_filter(w.c.tenant_id, tenants))
    if wallet_id is not None:
        inner = inner.where(ledger.c.wallet_id == wallet_id)
    if not running_balance:  # without the window the time filter can go straight to the index
        if lo is not None:
            inner = inner.where(ledger.c.created_at >= lo)
        if hi is not None:
            inner = inner.where(ledger.c.created_at < hi)
        q = inner.order_by(ledger.c.created_at, ledger.c.id)
    else:
        sub = inner.subquery()
        q = sa.select(sub)
        if lo is not None:
            q = q.where(sub.c.created_at >= lo)
        if hi is not None:
            q = q.where(sub.c.created_at < hi)
        q = q.order_by(sub.c.created_at, sub.c.entry_id)
    spec: Spec = {
        "entry_id": ("id", None), "wallet_id": ("id", None), "tenant_id": ("id", None),
        "entry_type": ("cat", "entry_type"), "points": ("int", None), "signed_points": ("int", None),
        "description": ("text", None), "source_transaction_id": ("id", None), "created_by_admin": ("id", None),
        "created_at": ("ts", None), "balance_after": ("int", None),
    }
    return q, spec


def transactions_query(
    *,
    actor: Actor | None = None,
    tenant: object = None,
    user: object = None,
    provider: str | None = None,
    start: TimeLike = None,
    end: TimeLike = None,
    line_items: bool = False,
) -> Query:
    """Transactions by provider payment time (`transaction_at`), in [start, end), with the provider
    facts the rewards engine keeps beside them (location, provider status, void, how and when the
    payment first arrived)."""
    from salesarck.rewards.models import TransactionDetails

    lo, hi = as_time(start, "start"), as_time(end, "end")
    check_window(lo, hi)
    provider = check_text(provider, "provider", 40)
    tenants = scoped(actor, Permission.VIEW_TRANSACTIONS, tenant)
    t = T_TRANSACTIONS
    d = TransactionDetails.__table__
    cols: list[Any] = [
        _id(t.c.id, "transaction_id"),
        _id(t.c.tenant_id, "tenant_id"),
        _id(t.c.user_id, "user_id"),
        t.c.provider,
        t.c.provider_transaction_id,
        t.c.amount_minor_units,
        t.c.currency,
        t.c.customer_ref,
        t.c.transaction_at,
        t.c.created_at,
        d.c.location_id,
        d.c.provider_status,
        d.c.is_voided,
        d.c.arrival,
        d.c.first_seen_at,
    ]
    if line_items:
        cols.append(t.c.line_items)
    q = (
        sa.select(*cols)
        .select_from(t.outerjoin(d, d.c.transaction_id == t.c.id))
        .where(_tenant_filter(t.c.tenant_id, tenants))
    )
    if user is not None:
        q = q.where(t.c.user_id == as_uuid(user, "user"))
    if provider is not None:
        q = q.where(t.c.provider == provider)
    if lo is not None:
        q = q.where(t.c.transaction_at >= lo)
    if hi is not None:
        q = q.where(t.c.transaction_at < hi)
    q = q.order_by(t.c.transaction_at, t.c.id)
    spec: Spec = {
        "transaction_id": ("id", None), "tenant_id": ("id", None), "user_id": ("id", None),
        "provider": ("cat", "provider"), "provider_transaction_id": ("text", None),
        "amount_minor_units": ("int", None), "currency": ("cat", None), "customer_ref": ("json", None),
        "transaction_at": ("ts", None), "created_at": ("ts", None), "line_items": ("json", None),
        "location_id": ("text", None), "provider_status": ("cat", None), "is_voided": ("bool", None),
        "arrival": ("cat", "arrival"), "first_seen_at": ("ts", None),
    }
    return q, spec


def reward_events_query(
    conn: Connectable,
    *,
    actor: Actor | None = None,
    tenant: object = None,
    wallet: object = None,
    transaction: object = None,
    start: TimeLike = None,
    end: TimeLike = None,
) -> Query:
    """Reward events with their wallet's tenant and the rule version number, by `created_at`."""
    lo, hi = as_time(start, "start"), as_time(end, "end")
    check_window(lo, hi)
    tenants = scoped(actor, Permission.VIEW_FINANCE, tenant)
    e, w, r = T_EVENTS, T_WALLETS, T_RULES
    q = (
        sa.select(
            _id(e.c.id, "event_id"),
            _id(e.c.wallet_id, "wallet_id"),
            _id(w.c.tenant_id, "tenant_id"),
            _id(e.c.transaction_id, "transaction_id"),
            _id(e.c.rule_version_id, "rule_version_id"),
            r.c.version.label("rule_version"),
            e.c.points_earned,
            e.c.points_redeemed,
            e.c.created_at,
        )
        .join(w, w.c.id == e.c.wallet_id)
        .outerjoin(r, r.c.id == e.c.rule_version_id)
        .where(_tenant_filter(w.c.tenant_id, tenants))
    )
    if wallet is not None:
        q = q.where(e.c.wallet_id == _check_wallet(conn, actor, wallet, Permission.VIEW_FINANCE))
    if transaction is not None:
        q = q.where(e.c.transaction_id == as_uuid(transaction, "transaction"))
    if lo is not None:
        q = q.where(e.c.created_at >= lo)
    if hi is not None:
        q = q.where(e.c.created_at < hi)
    q = q.order_by(e.c.created_at, e.c.id)
    spec: Spec = {
        "event_id": ("id", None), "wallet_id": ("id", None), "tenant_id": ("id", None),
        "transaction_id": ("id", None), "rule_version_id": ("id", None), "rule_version": ("int", None),
        "points_earned": ("int", None), "points_redeemed": ("int", None), "created_at": ("ts", None),
    }
    return q, spec


def rules_query(*, actor: Actor | None = None, tenant: object = None) -> Query:
    """Every reward rule version, oldest first per tenant."""
    tenants = scoped(actor, Permission.VIEW_FINANCE, tenant)
    r = T_RULES
    q = (
        sa.select(
            _id(r.c.id, "rule_version_id"),
            _id(r.c.tenant_id, "tenant_id"),
            r.c.version,
            r.c.is_active,
            r.c.rule_config,
            r.c.effective_from,
            r.c.created_at,
        )
        .where(_tenant_filter(r.c.tenant_id, tenants))
        .order_by(r.c.tenant_id, r.c.version)
    )
    spec: Spec = {
        "rule_version_id": ("id", None), "tenant_id": ("id", None), "version": ("int", None),
        "is_active": ("bool", None), "rule_config": ("json", None), "effective_from": ("ts", None),
        "created_at": ("ts", None),
    }
    return q, spec


def audit_tenant_clause(tenants: list[uuid.UUID] | None) -> sa.ColumnElement[bool]:
    """Audit rows belong to a tenant when their target is the tenant or one of its wallets, rules or
    connections, or their before/after state names the tenant (audit rows have no tenant column)."""
    if tenants is None:
        return sa.true()
    if not tenants:
        return sa.false()
    a = T_AUDIT
    names = [str(t) for t in tenants]
    owned = sa.union_all(
        sa.select(sa.cast(T_TENANTS.c.id, sa.Text)).where(T_TENANTS.c.id.in_(tenants)),
        sa.select(sa.cast(T_WALLETS.c.id, sa.Text)).where(T_WALLETS.c.tenant_id.in_(tenants)),
        sa.select(sa.cast(T_RULES.c.id, sa.Text)).where(T_RULES.c.tenant_id.in_(tenants)),
        sa.select(sa.cast(T_CONNECTIONS.c.id, sa.Text)).where(T_CONNECTIONS.c.tenant_id.in_(tenants)),
    )
    return sa.or_(
        a.c.target_entity_id.in_(owned),
        a.c.after_state["tenant_id"].astext.in_(names),
        a.c.before_state["tenant_id"].astext.in_(names),
    )


def audit_query(
    *,
    actor: Actor | None = None,
    tenant: object = None,
    action: str | None = None,
    actor_email: str | None = None,
    target: object = None,
    target_type: str | None = None,
    start: TimeLike = None,
    end: TimeLike = None,
) -> Query:
    """Admin audit entries (newest last) with the acting user's email."""
    lo, hi = as_time(start, "start"), as_time(end, "end")
    check_window(lo, hi)
    action = check_text(action, "action", 100)
    actor_email = check_text(actor_email, "actor_email", 320)
    target_type = check_text(target_type, "target_type", 100)
    target_text = check_text(None if target is None else str(target), "target", 200)
    tenants = scoped(actor, Permission.VIEW_AUDIT, tenant)
    a, u = T_AUDIT, T_USERS
    q = (
        sa.select(
            _id(a.c.id, "audit_id"),
            _id(a.c.actor_user_id, "actor_user_id"),
            u.c.email.label("actor_email"),
            a.c.action,
            a.c.target_entity_type,
            a.c.target_entity_id,
            a.c.before_state,
            a.c.after_state,
            a.c.reason,
            a.c.created_at,
        )
        .join(u, u.c.id == a.c.actor_user_id)
        .where(audit_tenant_clause(tenants))
    )
    if action is not None:
        q = q.where(a.c.action == action)
    if actor_email is not None:
        q = q.where(sa.func.lower(u.c.email) == actor_email.strip().lower())
    if target_text is not None:
        q = q.where(a.c.target_entity_id == target_text)
    if target_type is not None:
        q = q.where(a.c.target_entity_type == target_type)
    if lo is not None:
        q = q.where(a.c.created_at >= lo)
    if hi is not None:
        q = q.where(a.c.created_at < hi)
    q = q.order_by(a.c.created_at, a.c.id)
    spec: Spec = {
        "audit_id": ("id", None), "actor_user_id": ("id", None), "actor_email": ("text", None),
        "action": ("cat", None), "target_entity_type": ("cat", None), "target_entity_id": ("text", None),
        "before_state": ("json", None), "after_state": ("json", None), "reason": ("text", None),
        "created_at": ("ts", None),
    }
    return q, spec


# --------------------------------------------------------------------------------------------
# one-call readers


def tenants(
    conn: Connectable, *, actor: Actor | None = None, limit: int | None = DEFAULT_ROW_LIMIT, head: int | None = None
) -> pd.DataFrame:
    """Tenants the actor belongs to (admins and actor-less reads: all)."""
    q, spec = tenants_query(actor=actor)
    return read_frame(conn, q, spec, limit=limit, what="tenants", head=head)


def wallets(
    conn: Connectable,
    *,
    actor: Actor | None = None,
    tenant: object = None,
    user: object = None,
    status: str | None = None,
    limit: int | None = DEFAULT_ROW_LIMIT,
    head: int | None = None,
) -> pd.DataFrame:
    """Wallets with their snapshot balance (`points_balance`) and the owner's email."""
    q, spec = wallets_query(actor=actor, tenant=tenant, user=user, status=status)
    return read_frame(conn, q, spec, limit=limit, what="wallets", head=head)


def ledger(
    conn: Connectable,
    *,
    actor: Actor | None = None,
    wallet: object = None,
    tenant: object = None,
    start: TimeLike = None,
    end: TimeLike = None,
    running_balance: bool | None = None,
    limit: int | None = DEFAULT_ROW_LIMIT,
    head: int | None = None,
) -> pd.DataFrame:
    """Ledger entries in [start, end) by `created_at`, with `signed_points` (debits negative)."""
    q, spec = ledger_query(
        conn, actor=actor, wallet=wallet, tenant=tenant, start=start, end=end, running_balance=running_balance
    )
    return read_frame(conn, q, spec, limit=limit, what="the ledger", head=head)


def transactions(
    conn: Connectable,
    *,
    actor: Actor | None = None,
    tenant: object = None,
    user: object = None,
    provider: str | None = None,
    start: TimeLike = None,
    end: TimeLike = None,
    line_items: bool = False,
    limit: int | None = DEFAULT_ROW_LIMIT,
    head: int | None = None,
) -> pd.DataFrame:
    """Transactions in [start, end) by provider payment time."""
    q, spec = transactions_query(
        actor=actor, tenant=tenant, user=user, provider=provider, start=start, end=end, line_items=line_items
    )
    return read_frame(conn, q, spec, limit=limit, what="transactions", head=head)


def reward_events(
    conn: Connectable,
    *,
    actor: Actor | None = None,
    tenant: object = None,
    wallet: object = None,
    transaction: object = None,
    start: TimeLike = None,
    end: TimeLike = None,
    limit: int | None = DEFAULT_ROW_LIMIT,
    head: int | None = None,
) -> pd.DataFrame:
    """Reward events (accruals, reversals, redemptions) in [start, end) by `created_at`."""
    q, spec = reward_events_query(
        conn, actor=actor, tenant=tenant, wallet=wallet, transaction=transaction, start=start, end=end
    )
    return read_frame(conn, q, spec, limit=limit, what="reward events", head=head)


def rules(
    conn: Connectable,
    *,
    actor: Actor | None = None,
    tenant: object = None,
    limit: int | None = DEFAULT_ROW_LIMIT,
    head: int | None = None,
) -> pd.DataFrame:
    """Reward rule versions."""
    q, spec = rules_query(actor=actor, tenant=tenant)
    return read_frame(conn, q, spec, limit=limit, what="reward rules", head=head)


def audit(
    conn: Connectable,
    *,
    actor: Actor | None = None,
    tenant: object = None,
    action: str | None = None,
    actor_email: str | None = None,
    target: object = None,
    target_type: str | None = None,
    start: TimeLike = None,
    end: TimeLike = None,
    limit: int | None = DEFAULT_ROW_LIMIT,
    head: int | None = None,
) -> pd.DataFrame:
    """Admin audit log entries in [start, end)."""
    q, spec = audit_query(
        actor=actor, tenant=tenant, action=action, actor_email=actor_email, target=target,
        target_type=target_type, start=start, end=end,
    )
    return read_frame(conn, q, spec, limit=limit, what="the audit log", head=head)
