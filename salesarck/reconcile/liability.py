"""Liability roll-forward: opening + earned - reversed - redeemed +/- adjustments = closing, per
tenant and period, in points and money, tied to the ledger. The report finance signs."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from salesarck.authz import Actor, Permission
from salesarck.errors import NotFound, ValidationError
from salesarck.reconcile.engine import parse_tenant
from salesarck.reconcile.runs import _conn
from salesarck.timeutil import parse_time

PERIODS = {"day": "1 day", "week": "1 week", "month": "1 month", "quarter": "3 months", "year": "1 year"}
MAX_PERIODS = 5000
COLUMNS = ["tenant_id", "period_start", "period_end", "opening_points", "earned_points", "reversed_points",
           "redeemed_points", "adjustment_points", "unclassified_points", "closing_points", "computed_closing_points",
           "difference_points", "ties", "point_value_minor_units", "currency", "opening_money_minor_units",
           "earned_money_minor_units", "reversed_money_minor_units", "redeemed_money_minor_units",
           "adjustment_money_minor_units", "closing_money_minor_units"]

# How each ledger entry is classified (the rewards representation):
#   earned: credit from a transaction; reversed: refund/void debit of a transaction;
#   redeemed: debit described 'redemption'; adjustment: entry with created_by_admin (+credit/-debit);
#   anything else is unclassified: it makes its period not tie.
_BUCKETS = """
    sum(case when l.created_by_admin is null and l.entry_type = 'credit' and l.source_transaction_id is not null
             then l.points else 0 end) as earned,
    sum(case when l.created_by_admin is null and l.entry_type = 'debit' and l.source_transaction_id is not null
              and (l.description is null or l.description <> 'redemption') then l.points else 0 end) as reversed,
    sum(case when l.created_by_admin is null and l.entry_type = 'debit' and l.description = 'redemption'
             then l.points else 0 end) as redeemed,
    sum(case when l.created_by_admin is not null
             then case when l.entry_type = 'credit' then l.points else -l.points end else 0 end) as adjustments,
    sum(case when l.entry_type = 'credit' then l.points else -l.points end) as net
"""


def _money(points: int, value: Decimal) -> int | Decimal:
    amount = Decimal(points) * value
    return int(amount) if amount == amount.to_integral_value() else amount


def liability_rollforward(conn: Engine | Connection, *, tenant_id: Any, start: Any, end: Any,
                          period: str = "month", actor: Actor | None = None) -> pd.DataFrame:
    """One row per period in [start, end): the roll-forward and whether it ties to the ledger.

    `closing_points` is the ledger balance at the period's end, computed independently of the
    buckets; `ties` is False when opening + earned - reversed - redeemed + adjustments differs.
    Money uses the `pointValueMinorUnits` of the rule in force at the period's end (default 1).
    """
    tenant = parse_tenant(tenant_id)
    if tenant is None:
        raise ValidationError("a tenant is required")
    if period not in PERIODS:
        raise ValidationError(f"unknown period {str(period)[:20]!r}; choose {', '.join(PERIODS)}")
    t0, t1 = parse_time(start), parse_time(end)
    if t1 <= t0:
        raise ValidationError("the end must be after the start")
    if actor is not None:
        actor.require(Permission.VIEW_FINANCE, tenant)
    with _conn(conn) as c:
        meta = c.execute(sa.text("select id from tenants where id = :t"), {"t": tenant}).first()
        if meta is None:
            raise NotFound(f"no tenant {tenant}")
        bounds = c.execute(sa.text(
            "select greatest(p, :s) as ps, least(p + cast(:step as interval), :e) as pe"
            " from generate_series(date_trunc(:unit, cast(:s as timestamp)), cast(:e as timestamp)"
            " - interval '1 microsecond', cast(:step as interval)) p order by 1 limit :lim"),
            {"s": t0, "e": t1, "unit": "month" if period == "quarter" else period, "step": PERIODS[period],
             "lim": MAX_PERIODS + 1}).all()
        if len(bounds) > MAX_PERIODS:
            raise ValidationError(f"more than {MAX_PERIODS} periods; choose a longer period or a shorter range")
        opening = int(c.execute(sa.text(
            "select coalesce(sum(case when l.entry_type = 'credit' then l.points else -l.points end), 0)"
            " from wallet_ledger l join wallets w on w.id = l.wallet_id"
            " where w.tenant_id = :t and l.created_at < :s"), {"t": tenant, "s": t0}).scalar_one())
        sums = c.execute(sa.text(
            f"select b.ps, {_BUCKETS} from unnest(cast(:ps as timestamp[]), cast(:pe as timestamp[])) as b(ps, pe)"  # noqa: S608
            " join wallet_ledger l on l.created_at >= b.ps and l.created_at < b.pe"
            " join wallets w on w.id = l.wallet_id and w.tenant_id = :t group by b.ps"),
            {"t": tenant, "ps": [b.ps for b in bounds], "pe": [b.pe for b in bounds]}).mappings().all()
        rules = c.execute(sa.text(
            "select effective_from, version, rule_config ->> 'pointValueMinorUnits' as pv,"
            " (select default_currency from (select 'USD' as default_currency) d) as cur"
            " from reward_rules where tenant_id = :t order by effective_from, version"), {"t": tenant}).all()
        currency = c.execute(sa.text(
            "select currency from transactions where tenant_id = :t order by transaction_at desc limit 1"),
            {"t": tenant}).scalar() or "USD"
    by_start = {r["ps"]: r for r in sums}
    rows: list[dict[str, Any]] = []
    balance = opening
    for b in bounds:
        r = by_start.get(b.ps)
        earned, reversed_, redeemed, adj, net = (int(r[k] or 0) for k in (
            "earned", "reversed", "redeemed", "adjustments", "net")) if r else (0, 0, 0, 0, 0)
        closing = balance + net
        computed = balance + earned - reversed_ - redeemed + adj
        value = _point_value(list(rules), b.pe)
        rows.append({
            "tenant_id": str(tenant), "period_start": b.ps, "period_end": b.pe, "opening_points": balance,
            "earned_points": earned, "reversed_points": reversed_, "redeemed_points": redeemed,
            "adjustment_points": adj, "unclassified_points": closing - computed, "closing_points": closing,
            "computed_closing_points": computed, "difference_points": closing - computed, "ties": closing == computed,
            "point_value_minor_units": value, "currency": currency,
            "opening_money_minor_units": _money(balance, value), "earned_money_minor_units": _money(earned, value),
            "reversed_money_minor_units": _money(reversed_, value),
            "redeemed_money_minor_units": _money(redeemed, value),
            "adjustment_money_minor_units": _money(adj, value), "closing_money_minor_units": _money(closing, value)})
        balance = closing
    return pd.DataFrame(rows, columns=COLUMNS)


def _point_value(rules: list[Any], at: datetime) -> Decimal:
    value = Decimal(1)
    for r in rules:
        if r.effective_from <= at - timedelta(microseconds=1) and r.pv is not None:
            try:
                value = Decimal(str(r.pv))
            except ArithmeticError:
                continue
        elif r.effective_from <= at - timedelta(microseconds=1):
            value = Decimal(1)
    return value
