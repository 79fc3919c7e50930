"""Timelines and KPIs as DataFrames, aggregated in SQL and scoped to the actor's tenants.

The app draws these and the notebooks call them, so both show the same numbers. Every function
takes an open `Connection` and the acting user; a tenant outside the actor's scope is refused
(`PermissionDenied`), never silently widened. Rows are aggregated in the database: only buckets
and pages leave it, so a 10M-row ledger stays cheap to chart.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from salesarck.authz import Actor, Permission
from salesarck.errors import NotFound, PermissionDenied, ValidationError
from salesarck.timeutil import utcnow

Freq = Literal["hour", "day", "week", "month"]
FREQS: tuple[str, ...] = ("hour", "day", "week", "month")
TX_GROUPS: tuple[str, ...] = ("none", "tenant", "provider", "location")
MAX_PAGE_SIZE = 500
MAX_PAGE = 10_000_000  # keeps page * page_size far inside PostgreSQL's bigint OFFSET
MAX_BUCKETS = 5000  # beyond this the caller asked for a freq too fine for the window
POINT_SERIES_LIMIT = 5000  # a wallet with more ledger entries is charted per day


@dataclass(frozen=True)
class Page:
    """One page of a table, with the total row count so the UI can page through it."""

    frame: pd.DataFrame
    total: int
    page: int
    page_size: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.page_size))


# --- scope and input checks ----------------------------------------------------------------


def tenant_filter(actor: Actor, permission: Permission, tenant_id: uuid.UUID | str | None = None) -> list[uuid.UUID] | None:
    """Tenants a query may read: None = every tenant (admins, no filter), else a non-empty list.

    A named tenant outside the actor's scope, or an actor with no tenant at all, is refused.
    """
    scope = actor.tenant_scope(permission)
    if scope is not None and not scope:
        raise PermissionDenied(f"{actor} may not {permission.value.replace('_', ' ')} in any tenant")
    if tenant_id is None or tenant_id == "":
        return scope
    tid = parse_uuid(tenant_id, "tenant id")
    if scope is not None and tid not in scope:
        raise PermissionDenied(f"{actor} may not {permission.value.replace('_', ' ')} for tenant {tid}")
    return [tid]


def parse_uuid(value: uuid.UUID | str, what: str = "id") -> uuid.UUID:
    """A UUID from user input, or a clear error."""
    if isinstance(value, uuid.UUID):
        return value
    text = str(value or "").strip()
    if len(text) > 64:
        raise ValidationError(f"{what} is too long to be a UUID")
    try:
        return uuid.UUID(text)
    except ValueError:
        raise ValidationError(f"{what} {text[:40]!r} is not a valid UUID") from None


def check_freq(freq: str) -> str:
    if freq not in FREQS:
        raise ValidationError(f"freq must be one of {', '.join(FREQS)} (got {str(freq)[:20]!r})")
    return freq


def check_window(start: datetime | None, end: datetime | None, freq: str, *, default_days: int = 90) -> tuple[datetime, datetime]:
    """A [start, end) window in naive UTC; defaults to the last `default_days` days."""
    end = end or utcnow()
    start = start or end - timedelta(days=default_days)
    if start.tzinfo is not None or end.tzinfo is not None:
        from salesarck.timeutil import to_naive_utc

        start, end = to_naive_utc(start), to_naive_utc(end)
    if start >= end:
        raise ValidationError("the window's start must be before its end")
    step = {"hour": 3600, "day": 86400, "week": 7 * 86400, "month": 28 * 86400}[check_freq(freq)]
    if (end - start).total_seconds() / step > MAX_BUCKETS:
        raise ValidationError(f"{freq} buckets over this window would be more than {MAX_BUCKETS} points; pick a coarser freq")
    return start, end


def check_timezone(tz: str | None) -> str:
    """An IANA zone name (default UTC); unknown names are refused rather than guessed."""
    name = (tz or "UTC").strip() or "UTC"
    if len(name) > 64:
        raise ValidationError("time zone name is too long")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError(f"unknown time zone {name[:40]!r}") from None
    return name


def _page_args(page: int, page_size: int) -> tuple[int, int]:
    # bools are ints in Python and a huge page overflows the bigint OFFSET: both refused clearly
    if isinstance(page, bool) or not isinstance(page, int) or not 1 <= page <= MAX_PAGE:
        raise ValidationError(f"page must be a whole number from 1 to {MAX_PAGE}")
    if isinstance(page_size, bool) or not isinstance(page_size, int) or not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValidationError(f"page size must be between 1 and {MAX_PAGE_SIZE}")
    return page, page_size


def _frame(conn: Connection, sql: str, params: dict[str, Any]) -> pd.DataFrame:
    result = conn.execute(sa.text(sql), params)
    return pd.DataFrame(result.fetchall(), columns=list(result.keys()))


def _has_table(conn: Connection, name: str) -> bool:
    return conn.execute(sa.text("select to_regclass(:n) is not null"), {"n": name}).scalar_one()


# --- tenants -------------------------------------------------------------------------------


def tenants(conn: Connection, *, actor: Actor, permission: Permission = Permission.VIEW_FINANCE) -> pd.DataFrame:
    """The tenants the actor may see for `permission`: id, name, country, status, timezone."""
    scope = tenant_filter(actor, permission)
    return _frame(
        conn,
        "select id as tenant_id, name, country, status, coalesce(onboarding_profile->>'timezone', 'UTC') as timezone"
        " from tenants where (cast(:scope as uuid[]) is null or id = any(cast(:scope as uuid[]))) order by name, id",
        {"scope": scope},
    )


def display_timezone(conn: Connection, *, actor: Actor, tenant_id: uuid.UUID | str | None,
                     permission: Permission = Permission.VIEW_FINANCE) -> str:
    """The zone time axes use: the tenant's own (`onboarding_profile.timezone`) when one is shown, else UTC."""
    if not tenant_id:
        return "UTC"
    scope = tenant_filter(actor, permission, tenant_id)
    assert scope is not None
    name = conn.execute(
        sa.text("select onboarding_profile->>'timezone' from tenants where id = :t"), {"t": scope[0]}
    ).scalar()
    try:
        return check_timezone(name)
    except ValidationError:
        return "UTC"  # a malformed profile value must not break every chart of the tenant


# --- overview -----------------------------------------------------------------------------


def overview_kpis(conn: Connection, *, actor: Actor) -> dict[str, Any]:
    """Headline numbers: tenants, wallets, points outstanding (snapshot liability), webhook backlog."""
    scope = tenant_filter(actor, Permission.VIEW_FINANCE)
    row = conn.execute(
        sa.text(
            "select (select count(*) from tenants where (cast(:scope as uuid[]) is null or id = any(cast(:scope as uuid[])))) as tenants,"
            " count(*) as wallets, coalesce(sum(points_balance), 0)::bigint as points_outstanding,"
            " count(*) filter (where status = 'frozen') as frozen_wallets"
            " from wallets where (cast(:scope as uuid[]) is null or tenant_id = any(cast(:scope as uuid[])))"
        ),
        {"scope": scope},
    ).one()
    backlog = webhook_backlog(conn, actor=actor, permission=Permission.VIEW_FINANCE)
    return {
        "tenants": int(row.tenants),
        "wallets": int(row.wallets),
        "points_outstanding": int(row.points_outstanding),
        "frozen_wallets": int(row.frozen_wallets),
        **backlog,
    }


def webhook_backlog(conn: Connection, *, actor: Actor, permission: Permission = Permission.VIEW_SYNC) -> dict[str, Any]:
    """Received webhook events not yet processed, and the oldest one's arrival time (naive UTC)."""
    scope = tenant_filter(actor, permission)
    row = conn.execute(
        sa.text(
            "select count(*), min(created_at) from pos_webhook_events_raw where processed is not true"
            " and (cast(:scope as uuid[]) is null or tenant_id = any(cast(:scope as uuid[])))"
        ),
        {"scope": scope},
    ).one()
    return {"webhook_backlog": int(row[0]), "webhook_backlog_oldest": row[1]}


def connections_status(conn: Connection, *, actor: Actor, permission: Permission = Permission.VIEW_SYNC) -> pd.DataFrame:
    """Every POS connection in scope with status, last sync, watermark and token expiry (never tokens)."""
    scope = tenant_filter(actor, permission)
    return _frame(
        conn,
        "select c.id as connection_id, c.tenant_id, t.name as tenant, c.pos_type, c.merchant_account_id,"
        " c.status, c.last_synced_at, c.square_payments_watermark_at as watermark_at, c.token_expires_at,"
        " c.created_at"
        " from pos_connections c join tenants t on t.id = c.tenant_id"
        " where (cast(:scope as uuid[]) is null or c.tenant_id = any(cast(:scope as uuid[]))) order by t.name, c.pos_type, c.created_at",
        {"scope": scope},
    )


# --- transactions -------------------------------------------------------------------------


def _tx_group_expr(conn: Connection, by: str) -> tuple[str, str]:
    """SQL for the group column and any join it needs; location comes from the rewards side table."""
    if by not in TX_GROUPS:
        raise ValidationError(f"group by must be one of {', '.join(TX_GROUPS)}")
    if by == "tenant":
        return "tn.name", ""
    if by == "provider":
        return "t.provider", ""
    if by == "location":
        if _has_table(conn, "transaction_details"):
            return ("coalesce(d.location_id, '(no location)')",
                    " left join transaction_details d on d.transaction_id = t.id")
        return "'(no location)'", ""
    return "'all'", ""


def transactions_timeline(
    conn: Connection,
    *,
    actor: Actor,
    freq: str = "day",
    start: datetime | None = None,
    end: datetime | None = None,
    tenant_id: uuid.UUID | str | None = None,
    by: str = "none",
    tz: str = "UTC",
) -> pd.DataFrame:
    """Transaction counts and amounts per time bucket (in `tz`) and group, per currency.

    Columns: bucket (naive local time of `tz`), group, currency, transactions, amount_minor_units.
    """
    scope = tenant_filter(actor, Permission.VIEW_TRANSACTIONS, tenant_id)
    start, end = check_window(start, end, freq)
    tz = check_timezone(tz)
    group, join = _tx_group_expr(conn, by)
    df = _frame(
        conn,
        f"select date_trunc(:freq, (t.transaction_at at time zone 'UTC') at time zone :tz) as bucket,"  # noqa: S608  constant SQL fragments; values are bound
        f" {group} as \"group\", t.currency, count(*)::bigint as transactions,"
        f" coalesce(sum(t.amount_minor_units), 0)::bigint as amount_minor_units"
        f" from transactions t join tenants tn on tn.id = t.tenant_id{join}"
        f" where (cast(:scope as uuid[]) is null or t.tenant_id = any(cast(:scope as uuid[]))) and t.transaction_at >= :start and t.transaction_at < :end"
        f" group by 1, 2, 3 order by 1, 2, 3",
        {"freq": freq, "tz": tz, "start": start, "end": end, "scope": scope},
    )
    return df.astype({"transactions": "int64", "amount_minor_units": "int64"}) if len(df) else df


def transaction_daily(conn: Connection, *, actor: Actor, tenant_id: uuid.UUID | str | None = None,
                      tz: str = "UTC") -> pd.DataFrame:
    """Transactions per local day (in `tz`), tenant, provider and currency over the whole history: one scan.

    Columns: day, tenant_id, tenant, provider, currency, transactions, amount_minor_units. The app
    keeps it warm and derives `transactions_from_daily` for any window and day/week/month bucket.
    """
    scope = tenant_filter(actor, Permission.VIEW_TRANSACTIONS, tenant_id)
    tz = check_timezone(tz)
    df = _frame(
        conn,
        "select d.day, d.tenant_id, tn.name as tenant, d.provider, d.currency, d.transactions, d.amount_minor_units"
        " from (select date_trunc('day', (t.transaction_at at time zone 'UTC') at time zone :tz) as day, t.tenant_id,"
        "  t.provider, t.currency, count(*)::bigint as transactions,"
        "  coalesce(sum(t.amount_minor_units), 0)::bigint as amount_minor_units from transactions t"
        "  where (cast(:scope as uuid[]) is null or t.tenant_id = any(cast(:scope as uuid[])))"
        "  group by 1, 2, 3, 4) d join tenants tn on tn.id = d.tenant_id order by 1, 2, 4, 5",
        {"tz": tz, "scope": scope},
    )
    return df.astype({"transactions": "int64", "amount_minor_units": "int64"}) if len(df) else df


def transactions_from_daily(daily: pd.DataFrame, *, start: datetime, end: datetime, freq: str = "day",
                            by: str = "none") -> pd.DataFrame:
    """`transactions_timeline`'s frame (bucket, group, currency, transactions, amount_minor_units) from the rollup."""
    if freq not in ROLLUP_FREQS:
        raise ValidationError(f"freq must be one of {', '.join(ROLLUP_FREQS)} for the daily rollup")
    if by not in ("none", "tenant", "provider"):
        raise ValidationError("the daily rollup groups by tenant, provider or none")
    cols = ["bucket", "group", "currency", "transactions", "amount_minor_units"]
    if daily.empty:
        return pd.DataFrame(columns=cols)
    d = daily.assign(day=pd.to_datetime(daily["day"]))
    d = d[(d["day"] >= pd.Timestamp(start)) & (d["day"] < pd.Timestamp(end))]
    if d.empty:
        return pd.DataFrame(columns=cols)
    d = d.assign(bucket=d["day"].dt.to_period(_PERIOD[freq]).dt.start_time,
                 group=d["tenant"] if by == "tenant" else d["provider"] if by == "provider" else "all")
    out = d.groupby(["bucket", "group", "currency"], as_index=False)[["transactions", "amount_minor_units"]].sum()
    return out[cols].astype({"transactions": "int64", "amount_minor_units": "int64"})


def transactions_page(
    conn: Connection,
    *,
    actor: Actor,
    start: datetime | None = None,
    end: datetime | None = None,
    tenant_id: uuid.UUID | str | None = None,
    provider: str | None = None,
    page: int = 1,
    page_size: int = 50,
    total: int | None = None,
) -> Page:
    """Row-level transactions for a drill-down, newest first, one page at a time.

    Reads each tenant's newest rows through its (tenant_id, transaction_at) index, so a page costs
    milliseconds at millions of rows. Pass `total` when the caller knows it (the timeline's sum);
    otherwise it is counted.
    """
    scope = tenant_filter(actor, Permission.VIEW_TRANSACTIONS, tenant_id)
    start, end = check_window(start, end, "month", default_days=3650)
    page, page_size = _page_args(page, page_size)
    if provider is not None and (len(provider) > 40 or not provider.isascii()):
        raise ValidationError("provider name is not valid")
    params = {"scope": scope, "start": start, "end": end, "provider": provider,
              "limit": page_size, "offset": (page - 1) * page_size, "upto": page * page_size}
    if total is None:
        total = conn.execute(sa.text(
            "select count(*) from transactions t"
            " where (cast(:scope as uuid[]) is null or t.tenant_id = any(cast(:scope as uuid[])))"
            " and t.transaction_at >= :start and t.transaction_at < :end"
            " and (cast(:provider as text) is null or t.provider = :provider)"), params).scalar_one()
    df = _frame(
        conn,
        "select x.transaction_at, tn.name as tenant, x.provider, x.provider_transaction_id, x.amount_minor_units,"
        " x.currency, u.email as customer, x.id as transaction_id, x.tenant_id"
        " from tenants tn cross join lateral (select t.* from transactions t where t.tenant_id = tn.id"
        "   and t.transaction_at >= :start and t.transaction_at < :end"
        "   and (cast(:provider as text) is null or t.provider = :provider)"
        "   order by t.transaction_at desc, t.id limit :upto) x"
        " left join users u on u.id = x.user_id"
        " where (cast(:scope as uuid[]) is null or tn.id = any(cast(:scope as uuid[])))"
        " order by x.transaction_at desc, x.id limit :limit offset :offset",
        params,
    )
    return Page(df, int(total), page, page_size)


# --- rewards and liability ------------------------------------------------------------------


def rewards_timeline(
    conn: Connection,
    *,
    actor: Actor,
    freq: str = "day",
    start: datetime | None = None,
    end: datetime | None = None,
    tenant_id: uuid.UUID | str | None = None,
    tz: str = "UTC",
) -> pd.DataFrame:
    """Points earned, redeemed and reversed per bucket and rule version, from `reward_events`.

    Columns: bucket, tenant_id, rule_version (Int64, <NA> for none), earned, redeemed, reversed.
    Reversals are the negative `points_earned` of refund/void events (the rewards representation).
    """
    scope = tenant_filter(actor, Permission.VIEW_FINANCE, tenant_id)
    start, end = check_window(start, end, freq)
    tz = check_timezone(tz)
    df = _frame(
        conn,
        "select date_trunc(:freq, (e.created_at at time zone 'UTC') at time zone :tz) as bucket,"
        " w.tenant_id, r.version as rule_version,"
        " coalesce(sum(greatest(e.points_earned, 0)), 0)::bigint as earned,"
        " coalesce(sum(e.points_redeemed), 0)::bigint as redeemed,"
        " coalesce(sum(greatest(-e.points_earned, 0)), 0)::bigint as reversed"
        " from reward_events e join wallets w on w.id = e.wallet_id"
        " left join reward_rules r on r.id = e.rule_version_id"
        " where (cast(:scope as uuid[]) is null or w.tenant_id = any(cast(:scope as uuid[]))) and e.created_at >= :start and e.created_at < :end"
        " group by 1, 2, 3 order by 1, 2, 3",
        {"freq": freq, "tz": tz, "start": start, "end": end, "scope": scope},
    )
    if len(df):
        df = df.astype({"earned": "int64", "redeemed": "int64", "reversed": "int64", "rule_version": "Int64"})
    return df


def rule_versions(conn: Connection, *, actor: Actor, tenant_id: uuid.UUID | str | None = None) -> pd.DataFrame:
    """Reward rule versions in scope (the timeline marks where each took effect)."""
    scope = tenant_filter(actor, Permission.VIEW_FINANCE, tenant_id)
    df = _frame(
        conn,
        "select r.id as rule_id, r.tenant_id, t.name as tenant, r.version, r.is_active, r.effective_from,"
        " r.created_at, r.rule_config"
        " from reward_rules r join tenants t on t.id = r.tenant_id"
        " where (cast(:scope as uuid[]) is null or r.tenant_id = any(cast(:scope as uuid[]))) order by t.name, r.version",
        {"scope": scope},
    )
    return df


def point_values(conn: Connection, *, actor: Actor, tenant_id: uuid.UUID | str | None = None) -> pd.DataFrame:
    """Per tenant: what one point is worth (`pointValueMinorUnits` of the active rule, default 1)
    and the tenant's currency (its country's legal tender, as the rewards engine prices it)."""
    from salesarck.rewards.currency import country_currency

    scope = tenant_filter(actor, Permission.VIEW_FINANCE, tenant_id)
    df = _frame(
        conn,
        "select t.id as tenant_id, t.name as tenant, t.country,"
        " coalesce((select (r.rule_config->>'pointValueMinorUnits')::numeric from reward_rules r"
        "   where r.tenant_id = t.id and r.is_active order by r.version desc limit 1), 1) as point_value_minor_units"
        " from tenants t where (cast(:scope as uuid[]) is null or t.id = any(cast(:scope as uuid[]))) order by t.name",
        {"scope": scope},
    )
    df["currency"] = [country_currency(c) for c in df["country"]] if len(df) else pd.Series(dtype="object")
    return df


def liability_timeline(
    conn: Connection,
    *,
    actor: Actor,
    freq: str = "day",
    start: datetime | None = None,
    end: datetime | None = None,
    tenant_id: uuid.UUID | str | None = None,
    tz: str = "UTC",
) -> pd.DataFrame:
    """Points outstanding at the end of each bucket, from the ledger (the truth), per tenant.

    Columns: bucket, tenant_id, net_points (flow in the bucket), liability_points (closing balance),
    liability_minor_units (points x the tenant's point value), currency. The opening balance before
    `start` is included, so the line is the real balance, not a sum of the window only.
    """
    scope = tenant_filter(actor, Permission.VIEW_FINANCE, tenant_id)
    start, end = check_window(start, end, freq)
    tz = check_timezone(tz)
    df = _frame(
        conn,
        "with flows as ("
        "  select case when l.created_at < :start then null"
        "         else date_trunc(:freq, (l.created_at at time zone 'UTC') at time zone :tz) end as bucket,"
        "   w.tenant_id,"
        "   sum(case when l.entry_type = 'credit' then l.points else -l.points end)::bigint as net_points"
        "  from wallet_ledger l join wallets w on w.id = l.wallet_id"
        "  where (cast(:scope as uuid[]) is null or w.tenant_id = any(cast(:scope as uuid[]))) and l.created_at < :end"
        "  group by 1, 2)"
        " select bucket, tenant_id, net_points,"
        "  (sum(net_points) over (partition by tenant_id order by bucket nulls first))::bigint as liability_points"
        " from flows order by tenant_id, bucket nulls first",
        {"freq": freq, "tz": tz, "start": start, "end": end, "scope": scope},
    )
    if not len(df):
        return df.assign(liability_minor_units=pd.Series(dtype="int64"), currency=pd.Series(dtype="object"))
    df = df[df["bucket"].notna()].copy()  # the opening row only seeds the running sum
    values = point_values(conn, actor=actor, tenant_id=tenant_id)[["tenant_id", "point_value_minor_units", "currency"]]
    df = df.merge(values, on="tenant_id", how="left")
    pv = df["point_value_minor_units"].fillna(1)
    df["liability_minor_units"] = [int(p * v) for p, v in zip(df["liability_points"], pv, strict=True)]
    df = df.drop(columns=["point_value_minor_units"]).astype({"net_points": "int64", "liability_points": "int64"})
    return df.reset_index(drop=True)


# --- daily rollups: full history per day and tenant, for windows and freqs derived in pandas ---------

ROLLUP_FREQS: tuple[str, ...] = ("day", "week", "month")
_PANDAS_FREQ = {"day": "D", "week": "W-MON", "month": "MS"}  # bucket starts, for date_range
_PERIOD = {"day": "D", "week": "W-SUN", "month": "M"}  # periods whose start_time is the bucket start


def ledger_daily_flows(conn: Connection, *, actor: Actor, tenant_id: uuid.UUID | str | None = None,
                       tz: str = "UTC", end: datetime | None = None) -> pd.DataFrame:
    """Net ledger points per local day (in `tz`) and tenant over the whole history: one scan.

    The app keeps this rollup warm (it is small: days x tenants) and derives any window and freq
    of `liability_from_flows` from it without touching the ledger again.
    """
    scope = tenant_filter(actor, Permission.VIEW_FINANCE, tenant_id)
    tz = check_timezone(tz)
    df = _frame(
        conn,
        "select date_trunc('day', (l.created_at at time zone 'UTC') at time zone :tz) as day, w.tenant_id,"
        " sum(case when l.entry_type = 'credit' then l.points else -l.points end)::bigint as net_points"
        " from wallet_ledger l join wallets w on w.id = l.wallet_id"
        " where (cast(:scope as uuid[]) is null or w.tenant_id = any(cast(:scope as uuid[])))"
        " and l.created_at < :end group by 1, 2 order by 1, 2",
        {"tz": tz, "scope": scope, "end": end or utcnow() + timedelta(days=1)},
    )
    return df.astype({"net_points": "int64"}) if len(df) else df


def restrict_to_scope(frame: pd.DataFrame, *, actor: Actor, tenant_id: uuid.UUID | str | None = None,
                      permission: Permission = Permission.VIEW_FINANCE) -> pd.DataFrame:
    """Rows of a per-tenant frame (a shared rollup) that this actor may see, optionally one tenant.

    Refuses exactly as the SQL reads do: a tenant outside the actor's scope is PermissionDenied.
    """
    scope = tenant_filter(actor, permission, tenant_id)
    if scope is None or frame.empty:
        return frame
    return frame[frame["tenant_id"].isin(scope)].reset_index(drop=True)


def liability_from_flows(flows: pd.DataFrame, values: pd.DataFrame, *, start: datetime, end: datetime,
                         freq: str = "day") -> pd.DataFrame:
    """`liability_timeline`'s frame from a daily rollup: closing balance per bucket and tenant.

    `start`/`end` are local days of the rollup's zone; the balance before `start` opens the line.
    """
    if freq not in ROLLUP_FREQS:
        raise ValidationError(f"liability freq must be one of {', '.join(ROLLUP_FREQS)}")
    cols = ["bucket", "tenant_id", "net_points", "liability_points", "currency", "liability_minor_units"]
    if flows.empty:
        return pd.DataFrame(columns=cols)
    f = flows.assign(day=pd.to_datetime(flows["day"]))
    first, last = pd.Timestamp(start), pd.Timestamp(end)
    opening = f.loc[f["day"] < first].groupby("tenant_id")["net_points"].sum()
    inside = f[(f["day"] >= first) & (f["day"] < last)]
    if inside.empty:
        return pd.DataFrame(columns=cols)
    inside = inside.assign(bucket=inside["day"].dt.to_period(_PERIOD[freq]).dt.start_time)
    sums = inside.groupby(["tenant_id", "bucket"], sort=True)["net_points"].sum()
    # every bucket from a tenant's first to its last, quiet ones at 0 (the line must not skip them)
    span = sums.reset_index().groupby("tenant_id")["bucket"].agg(["min", "max"])
    grid = pd.MultiIndex.from_product(
        [span.index, pd.date_range(span["min"].min(), span["max"].max(), freq=_PANDAS_FREQ[freq])],
        names=["tenant_id", "bucket"])
    df = sums.reindex(grid, fill_value=0).reset_index().merge(span, left_on="tenant_id", right_index=True)
    df = df[(df["bucket"] >= df["min"]) & (df["bucket"] <= df["max"])].reset_index(drop=True)
    df["liability_points"] = (df["tenant_id"].map(opening).fillna(0).astype("int64")
                              + df.groupby("tenant_id")["net_points"].cumsum())
    vals = values[["tenant_id", "point_value_minor_units", "currency"]] if len(values) else values
    df = df.merge(vals, on="tenant_id", how="left") if len(vals) else df.assign(point_value_minor_units=1,
                                                                                currency="USD")
    df["liability_minor_units"] = df["liability_points"] * df["point_value_minor_units"].fillna(1).astype("int64")
    df = df.astype({"net_points": "int64", "liability_points": "int64"})
    return df[cols].reset_index(drop=True)


def reward_daily(conn: Connection, *, actor: Actor, tenant_id: uuid.UUID | str | None = None,
                 tz: str = "UTC") -> pd.DataFrame:
    """Earned, redeemed and reversed points per local day, tenant and rule version: one scan."""
    scope = tenant_filter(actor, Permission.VIEW_FINANCE, tenant_id)
    tz = check_timezone(tz)
    df = _frame(
        conn,
        "select date_trunc('day', (e.created_at at time zone 'UTC') at time zone :tz) as day, w.tenant_id,"
        " r.version as rule_version,"
        " coalesce(sum(greatest(e.points_earned, 0)), 0)::bigint as earned,"
        " coalesce(sum(e.points_redeemed), 0)::bigint as redeemed,"
        " coalesce(sum(greatest(-e.points_earned, 0)), 0)::bigint as reversed"
        " from reward_events e join wallets w on w.id = e.wallet_id"
        " left join reward_rules r on r.id = e.rule_version_id"
        " where (cast(:scope as uuid[]) is null or w.tenant_id = any(cast(:scope as uuid[])))"
        " group by 1, 2, 3 order by 1, 2, 3",
        {"tz": tz, "scope": scope},
    )
    if len(df):
        df = df.astype({"earned": "int64", "redeemed": "int64", "reversed": "int64", "rule_version": "Int64"})
    return df


def rewards_from_daily(daily: pd.DataFrame, *, start: datetime, end: datetime, freq: str = "day") -> pd.DataFrame:
    """`rewards_timeline`'s frame (bucket, tenant_id, rule_version, earned, redeemed, reversed) from the rollup."""
    if freq not in ROLLUP_FREQS:
        raise ValidationError(f"rewards freq must be one of {', '.join(ROLLUP_FREQS)}")
    cols = ["bucket", "tenant_id", "rule_version", "earned", "redeemed", "reversed"]
    if daily.empty:
        return pd.DataFrame(columns=cols)
    d = daily.assign(day=pd.to_datetime(daily["day"]))
    d = d[(d["day"] >= pd.Timestamp(start)) & (d["day"] < pd.Timestamp(end))]
    if d.empty:
        return pd.DataFrame(columns=cols)
    d = d.assign(bucket=d["day"].dt.to_period(_PERIOD[freq]).dt.start_time)
    out = (d.assign(rule_version=d["rule_version"].astype("Int64").fillna(-1))
           .groupby(["bucket", "tenant_id", "rule_version"], as_index=False)[["earned", "redeemed", "reversed"]].sum())
    out["rule_version"] = out["rule_version"].astype("Int64").mask(out["rule_version"] == -1)
    return out[cols].astype({"earned": "int64", "redeemed": "int64", "reversed": "int64"})


# --- audit --------------------------------------------------------------------------------

# The tenant an audit entry concerns, resolved from its target (wallet, tenant, rule, connection,
# transaction) or a tenant_id in its before/after state. Entries with no tenant are admins' only.
_AUDIT_TENANT = (
    "coalesce("
    " (select w.tenant_id from wallets w where a.target_entity_type = 'wallet'"
    "   and w.id = case when a.target_entity_id ~* '^[0-9a-f-]{36}$' then a.target_entity_id::uuid end),"
    " (select t.id from tenants t where a.target_entity_type = 'tenant'"
    "   and t.id = case when a.target_entity_id ~* '^[0-9a-f-]{36}$' then a.target_entity_id::uuid end),"
    " (select r.tenant_id from reward_rules r where a.target_entity_type in ('reward_rule', 'rule')"
    "   and r.id = case when a.target_entity_id ~* '^[0-9a-f-]{36}$' then a.target_entity_id::uuid end),"
    " (select c.tenant_id from pos_connections c where a.target_entity_type in ('pos_connection', 'connection')"
    "   and c.id = case when a.target_entity_id ~* '^[0-9a-f-]{36}$' then a.target_entity_id::uuid end),"
    " case when a.after_state->>'tenant_id' ~* '^[0-9a-f-]{36}$' then (a.after_state->>'tenant_id')::uuid end,"
    " case when a.before_state->>'tenant_id' ~* '^[0-9a-f-]{36}$' then (a.before_state->>'tenant_id')::uuid end)"
)


# Every filter is bound (NULL = not filtering); only the constant tenant expression is spliced in.
_AUDIT_WHERE = (
    "a.created_at >= :start and a.created_at < :end"
    " and (cast(:scope as uuid[]) is null or " + _AUDIT_TENANT + " = any(cast(:scope as uuid[])))"
    " and (cast(:actor_email as text) is null or lower(u.email) like :actor_email)"
    " and (cast(:action as text) is null or a.action = :action)"
    " and (cast(:target as text) is null or a.target_entity_id = :target or a.target_entity_type = :target)"
)


def _audit_params(scope: list[uuid.UUID] | None, start: datetime, end: datetime, actor_email: str | None,
                  action: str | None, target: str | None) -> dict[str, Any]:
    for name, value in (("actor", actor_email), ("action", action), ("target", target)):
        if value is not None and len(value) > 200:
            raise ValidationError(f"the {name} filter is longer than 200 characters")
        if value is not None and "\x00" in value:
            raise ValidationError(f"the {name} filter must not contain NUL characters")
    like = None
    if actor_email:
        like = "%" + actor_email.strip().lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    return {"scope": scope, "start": start, "end": end, "actor_email": like,
            "action": (action or "").strip() or None, "target": (target or "").strip() or None}


def audit_timeline(
    conn: Connection,
    *,
    actor: Actor,
    freq: str = "day",
    start: datetime | None = None,
    end: datetime | None = None,
    actor_email: str | None = None,
    action: str | None = None,
    target: str | None = None,
    tz: str = "UTC",
) -> pd.DataFrame:
    """Admin actions per bucket and action. Columns: bucket, action, actions."""
    scope = tenant_filter(actor, Permission.VIEW_AUDIT)
    start, end = check_window(start, end, freq)
    tz = check_timezone(tz)
    params = _audit_params(scope, start, end, actor_email, action, target)
    where = _AUDIT_WHERE
    return _frame(
        conn,
        f"select date_trunc(:freq, (a.created_at at time zone 'UTC') at time zone :tz) as bucket, a.action,"  # noqa: S608  constant SQL fragments; values are bound
        f" count(*)::bigint as actions"
        f" from admin_audit_logs a left join users u on u.id = a.actor_user_id where {where}"
        f" group by 1, 2 order by 1, 2",
        {**params, "freq": freq, "tz": tz},
    )


def audit_page(
    conn: Connection,
    *,
    actor: Actor,
    start: datetime | None = None,
    end: datetime | None = None,
    actor_email: str | None = None,
    action: str | None = None,
    target: str | None = None,
    page: int = 1,
    page_size: int = 50,
) -> Page:
    """Audit entries, newest first, with before/after state for the diff view."""
    scope = tenant_filter(actor, Permission.VIEW_AUDIT)
    start, end = check_window(start, end, "month", default_days=3650)
    page, page_size = _page_args(page, page_size)
    params = _audit_params(scope, start, end, actor_email, action, target)
    where = _AUDIT_WHERE
    params.update(limit=page_size, offset=(page - 1) * page_size)
    total = conn.execute(
        sa.text(f"select count(*) from admin_audit_logs a left join users u on u.id = a.actor_user_id where {where}"),  # noqa: S608  constant SQL fragments; values are bound
        params,
    ).scalar_one()
    df = _frame(
        conn,
        f"select a.created_at, u.email as actor, a.action, a.target_entity_type, a.target_entity_id, a.reason,"  # noqa: S608  constant SQL fragments; values are bound
        f" a.before_state, a.after_state, a.id as audit_id"
        f" from admin_audit_logs a left join users u on u.id = a.actor_user_id where {where}"
        f" order by a.created_at desc, a.id limit :limit offset :offset",
        params,
    )
    return Page(df, int(total), page, page_size)


def audit_actions(conn: Connection, *, actor: Actor) -> list[str]:
    """Distinct audit action names (for the filter), scoped like the log itself."""
    scope = tenant_filter(actor, Permission.VIEW_AUDIT)
    rows = conn.execute(
        sa.text("select distinct a.action from admin_audit_logs a where cast(:scope as uuid[]) is null"  # noqa: S608  constant SQL fragments; values are bound
                " or " + _AUDIT_TENANT + " = any(cast(:scope as uuid[])) order by 1"),
        {"scope": scope},
    ).scalars()
    return list(rows)


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {prefix or "value": value}
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out.update(_flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix or "value": value}


def audit_diff(before: Any, after: Any) -> pd.DataFrame:
    """A readable before/after diff: one row per changed, added or removed field (nested keys dotted)."""
    b = _flatten(before) if before is not None else {}
    a = _flatten(after) if after is not None else {}
    rows = []
    for key in sorted(set(b) | set(a)):
        if b.get(key) == a.get(key) and key in b and key in a:
            continue
        change = "added" if key not in b else "removed" if key not in a else "changed"
        rows.append({"field": key, "change": change,
                     "before": None if key not in b else json.dumps(b[key], default=str),
                     "after": None if key not in a else json.dumps(a[key], default=str)})
    return pd.DataFrame(rows, columns=["field", "change", "before", "after"], dtype=object)


# --- wallets ------------------------------------------------------------------------------


def wallet_summary(conn: Connection, *, actor: Actor, wallet_id: uuid.UUID | str) -> dict[str, Any]:
    """One wallet: tenant, customer, status, snapshot, ledger balance and their drift."""
    wid = parse_uuid(wallet_id, "wallet id")
    row = conn.execute(
        sa.text(
            "select w.id, w.tenant_id, t.name as tenant, coalesce(t.onboarding_profile->>'timezone', 'UTC') as timezone,"
            " w.user_id, u.email, w.points_balance, w.status, w.created_at, w.updated_at,"
            " (select coalesce(sum(case when l.entry_type = 'credit' then l.points else -l.points end), 0)"
            "   from wallet_ledger l where l.wallet_id = w.id)::bigint as ledger_balance,"
            " (select count(*) from wallet_ledger l where l.wallet_id = w.id) as entries"
            " from wallets w join tenants t on t.id = w.tenant_id left join users u on u.id = w.user_id"
            " where w.id = :w"
        ),
        {"w": wid},
    ).mappings().first()
    if row is None or not actor.can(Permission.VIEW_FINANCE, row["tenant_id"]):
        raise NotFound(f"no wallet {wid} in your tenants")
    out = dict(row)
    out["drift"] = int(out["points_balance"]) - int(out["ledger_balance"])
    return out


def find_wallets(conn: Connection, *, actor: Actor, query: str, limit: int = 20) -> pd.DataFrame:
    """Wallets whose id, customer email or mobile is `query` (indexed), else contains it (bounded).

    The substring fallback scans users, so it runs under a 1.5 s statement timeout: a miss on a
    huge table answers "type the full email" rather than stalling the page.
    """
    scope = tenant_filter(actor, Permission.VIEW_FINANCE)
    text = (query or "").strip()
    if len(text) > 200:
        raise ValidationError("search text is longer than 200 characters")
    if "\x00" in text:  # PostgreSQL text cannot hold NUL: a clear error, not a DataError
        raise ValidationError("search text must not contain NUL characters")
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise ValidationError(f"limit must be between 1 and {MAX_PAGE_SIZE}")
    if not text:
        return pd.DataFrame(columns=["wallet_id", "tenant", "email", "mobile", "points_balance", "status"])
    select = (
        "select w.id as wallet_id, t.name as tenant, u.email, u.mobile, w.points_balance, w.status"
        " from wallets w join tenants t on t.id = w.tenant_id join users u on u.id = w.user_id"
        " where (cast(:scope as uuid[]) is null or w.tenant_id = any(cast(:scope as uuid[])))"
    )
    exact_id: uuid.UUID | None = None
    try:
        exact_id = uuid.UUID(text)
    except ValueError:
        pass
    params = {"scope": scope, "id": exact_id, "exact": text, "lower": text.lower(), "limit": limit}
    df = _frame(conn, select + " and (w.id = :id or u.email = :exact or u.email = :lower or u.mobile = :exact)"
                " order by u.email nulls last, w.id limit :limit", params)
    if len(df) or len(text) < 3:
        return df
    like = "%" + text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    savepoint = conn.begin_nested()
    try:
        conn.execute(sa.text("set local statement_timeout = 1500"))
        found = _frame(conn, select + " and (lower(u.email) like :like or u.mobile like :like)"
                       " order by u.email nulls last, w.id limit :limit", {**params, "like": like})
        savepoint.rollback()  # also undoes the SET LOCAL
        return found
    except sa.exc.OperationalError as exc:
        savepoint.rollback()
        if "statement timeout" not in str(exc):
            raise
    raise ValidationError("that search would scan every customer; type the customer's full email or mobile")


def wallet_balance_series(conn: Connection, *, actor: Actor, wallet_id: uuid.UUID | str,
                          tz: str = "UTC") -> pd.DataFrame:
    """The wallet's running ledger balance: one point per entry, or per day beyond a few thousand.

    Columns: at (naive local time of `tz`), entry_type, points (signed), balance.
    """
    wallet = wallet_summary(conn, actor=actor, wallet_id=wallet_id)
    tz = check_timezone(tz)
    params = {"w": wallet["id"], "tz": tz}
    if int(wallet["entries"]) <= POINT_SERIES_LIMIT:
        sql = (
            "select (l.created_at at time zone 'UTC') at time zone :tz as at, l.entry_type,"
            " (case when l.entry_type = 'credit' then l.points else -l.points end) as points,"
            " (sum(case when l.entry_type = 'credit' then l.points else -l.points end)"
            "   over (order by l.created_at, l.id))::bigint as balance"
            " from wallet_ledger l where l.wallet_id = :w order by l.created_at, l.id"
        )
    else:
        sql = (
            "select at, 'net' as entry_type, points, (sum(points) over (order by at))::bigint as balance from ("
            " select date_trunc('day', (l.created_at at time zone 'UTC') at time zone :tz) as at,"
            " sum(case when l.entry_type = 'credit' then l.points else -l.points end)::bigint as points"
            " from wallet_ledger l where l.wallet_id = :w group by 1) d order by at"
        )
    df = _frame(conn, sql, params)
    return df.astype({"points": "int64", "balance": "int64"}) if len(df) else df


def wallet_ledger_page(conn: Connection, *, actor: Actor, wallet_id: uuid.UUID | str, page: int = 1,
                       page_size: int = 50) -> Page:
    """The wallet's ledger entries, newest first, with the running balance after each."""
    wallet = wallet_summary(conn, actor=actor, wallet_id=wallet_id)
    page, page_size = _page_args(page, page_size)
    df = _frame(
        conn,
        "select * from (select l.created_at, l.entry_type, l.points, l.description, l.source_transaction_id,"
        " a.email as created_by_admin, l.id as ledger_id,"
        " (sum(case when l.entry_type = 'credit' then l.points else -l.points end)"
        "   over (order by l.created_at, l.id))::bigint as balance_after"
        " from wallet_ledger l left join users a on a.id = l.created_by_admin where l.wallet_id = :w) x"
        " order by created_at desc, ledger_id desc limit :limit offset :offset",
        {"w": wallet["id"], "limit": page_size, "offset": (page - 1) * page_size},
    )
    return Page(df, int(wallet["entries"]), page, page_size)


def wallet_reward_events(conn: Connection, *, actor: Actor, wallet_id: uuid.UUID | str,
                         limit: int = 200) -> pd.DataFrame:
    """The wallet's reward events (newest first) with the rule version that priced each."""
    wallet = wallet_summary(conn, actor=actor, wallet_id=wallet_id)
    return _frame(
        conn,
        "select e.created_at, e.points_earned, e.points_redeemed, r.version as rule_version, e.transaction_id,"
        " e.id as reward_event_id from reward_events e left join reward_rules r on r.id = e.rule_version_id"
        " where e.wallet_id = :w order by e.created_at desc, e.id limit :limit",
        {"w": wallet["id"], "limit": max(1, min(int(limit), MAX_PAGE_SIZE))},
    )


def wallet_transactions(conn: Connection, *, actor: Actor, wallet_id: uuid.UUID | str,
                        limit: int = 200) -> pd.DataFrame:
    """The source transactions behind the wallet's ledger entries and reward events."""
    wallet = wallet_summary(conn, actor=actor, wallet_id=wallet_id)
    return _frame(
        conn,
        "select t.transaction_at, t.provider, t.provider_transaction_id, t.amount_minor_units, t.currency,"
        " t.id as transaction_id from transactions t"
        " where t.tenant_id = :tenant and t.id in ("
        "  select source_transaction_id from wallet_ledger where wallet_id = :w and source_transaction_id is not null"
        "  union select transaction_id from reward_events where wallet_id = :w and transaction_id is not null)"
        " order by t.transaction_at desc, t.id limit :limit",
        {"w": wallet["id"], "tenant": wallet["tenant_id"], "limit": max(1, min(int(limit), MAX_PAGE_SIZE))},
    )


def wallet_audit(conn: Connection, *, actor: Actor, wallet_id: uuid.UUID | str) -> pd.DataFrame:
    """Audit entries that target this wallet, newest first."""
    wallet = wallet_summary(conn, actor=actor, wallet_id=wallet_id)
    return _frame(
        conn,
        "select a.created_at, u.email as actor, a.action, a.reason, a.before_state, a.after_state, a.id as audit_id"
        " from admin_audit_logs a left join users u on u.id = a.actor_user_id"
        " where a.target_entity_type = 'wallet' and a.target_entity_id = :w order by a.created_at desc, a.id",
        {"w": str(wallet["id"])},
    )
