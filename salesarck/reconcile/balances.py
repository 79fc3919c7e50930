"""Every wallet's ledger balance at a past moment (the ledger is the truth; snapshots are now only)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from salesarck.authz import Actor, Permission
from salesarck.errors import ValidationError
from salesarck.reconcile.engine import parse_tenant, resolve_tenants
from salesarck.reconcile.runs import _conn
from salesarck.timeutil import parse_time

COLUMNS = ["wallet_id", "tenant_id", "user_id", "balance_points", "entries", "last_entry_at"]


def balances_as_of(conn: Engine | Connection, *, as_of: Any, tenant_id: Any = None,
                   actor: Actor | None = None) -> pd.DataFrame:
    """Ledger balance of every wallet (in scope) from entries created at or before `as_of`.

    Wallets created later are left out; wallets with no entries by then show 0. Set-based: one
    grouped query, results only.
    """
    if as_of is None or (isinstance(as_of, str) and not as_of.strip()):
        raise ValidationError("an --as-of time is required")
    at = parse_time(as_of) if not isinstance(as_of, datetime) else parse_time(as_of)
    tenant = parse_tenant(tenant_id)
    if actor is not None:
        actor.require(Permission.VIEW_FINANCE, tenant)
    tenants = resolve_tenants(actor, tenant)
    sql = sa.text(
        "select w.id as wallet_id, w.tenant_id, w.user_id, coalesce(b.bal, 0) as balance_points,"
        " coalesce(b.n, 0) as entries, b.last_at as last_entry_at"
        " from wallets w left join (select l.wallet_id,"
        "   sum(case when l.entry_type = 'credit' then l.points else -l.points end) as bal, count(*) as n,"
        "   max(l.created_at) as last_at"
        "   from wallet_ledger l where l.created_at <= :at group by l.wallet_id) b on b.wallet_id = w.id"
        " where (w.created_at is null or w.created_at <= :at or b.n is not null)"
        " and (:all_tenants or w.tenant_id = any(:tenants))"
        " order by w.tenant_id, w.id")
    with _conn(conn) as c:
        rows = c.execute(sql, {"at": at, "all_tenants": tenants is None, "tenants": list(tenants or [])}).all()
    df = pd.DataFrame([tuple(r) for r in rows], columns=COLUMNS)
    for col in ("wallet_id", "tenant_id", "user_id"):
        df[col] = df[col].astype(str)
    df["balance_points"] = df["balance_points"].astype("int64")
    df["entries"] = df["entries"].astype("int64")
    return df
