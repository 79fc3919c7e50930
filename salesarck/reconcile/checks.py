"""The reconciliation checks: stable ids, severities, and the set-based SQL both backends run.

Each query returns only flagged rows (plus one totals row), with raw numbers; the finding's
sentence is written in Python (`findings_from_rows`) so both backends produce identical reports.
The SQL is written in the subset PostgreSQL and DuckDB share; `Dialect` supplies the few differences.
"""

# ruff: noqa: S608  (SQL is composed only from fixed fragments, validated table names and UUID literals)

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from salesarck.errors import ValidationError


@dataclass(frozen=True)
class Check:
    id: str
    severity: str  # error | warning
    title: str


CHECKS: dict[str, Check] = {c.id: c for c in [
    Check("snapshot_drift", "error", "wallet snapshot differs from its ledger balance"),
    Check("negative_balance", "warning", "ledger balance below zero"),
    Check("missing_reward_event", "error", "identified transaction under a rule has no reward event"),
    Check("duplicate_accrual", "error", "more than one accrual for one transaction"),
    Check("rule_mismatch", "error", "net points differ from what the rule version gives"),
    Check("reward_ledger_mismatch", "error", "reward events and ledger entries disagree"),
    Check("cross_tenant", "error", "wallet, transaction or rule of another tenant"),
    Check("frozen_wallet_activity", "warning", "credits or debits while the wallet was frozen"),
]}
ALL_CHECKS: tuple[str, ...] = tuple(CHECKS)
MAX_CHECK_NAMES = 32

WALLET_CHECKS = {"snapshot_drift", "negative_balance", "reward_ledger_mismatch"}
TXN_CHECKS = {"missing_reward_event", "duplicate_accrual", "rule_mismatch", "reward_ledger_mismatch"}

FINDING_COLUMNS = ["check", "severity", "entity_type", "entity_id", "tenant_id", "detail", "wallet_id",
                   "transaction_id"]
DRIFT_COLUMNS = ["wallet_id", "tenant_id", "user_id", "snapshot_points", "ledger_points", "drift_points",
                 "explanation_code", "explanation"]


def parse_checks(checks: str | Iterable[str] | None) -> tuple[str, ...]:
    """Validate check ids (a comma list or an iterable); None means all, in the canonical order."""
    if checks is None:
        return ALL_CHECKS
    names = [c.strip() for c in checks.split(",")] if isinstance(checks, str) else [str(c).strip() for c in checks]
    names = [n for n in names if n]
    if not names:
        raise ValidationError("no checks named; choose from " + ", ".join(ALL_CHECKS))
    if len(names) > MAX_CHECK_NAMES:
        raise ValidationError(f"too many check names (at most {MAX_CHECK_NAMES})")
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        shown = ", ".join(repr(n[:40]) for n in unknown[:3])
        raise ValidationError(f"unknown check {shown}; choose from " + ", ".join(ALL_CHECKS))
    return tuple(c for c in ALL_CHECKS if c in names)


@dataclass(frozen=True)
class Dialect:
    name: str  # postgres | duckdb

    def try_uuid(self, expr: str) -> str:
        if self.name == "duckdb":
            return f"try_cast({expr} as uuid)"
        return (f"(case when {expr} ~* '^[0-9a-f]{{8}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{12}}$' "
                f"then cast({expr} as uuid) end)")

    def json_text(self, expr: str, key: str) -> str:
        return f"({expr} ->> '{key}')"

    def num(self, expr: str) -> str:
        """A JSON text as an exact number, NULL when it is not one (a bad config must not abort a run)."""
        if self.name == "duckdb":
            return f"try_cast({expr} as decimal(38, 10))"
        return f"(case when {expr} ~ '^-?[0-9]+([.][0-9]+)?([eE][-+]?[0-9]+)?$' then cast({expr} as numeric) end)"

    def rule_params(self, cfg: str) -> str:
        """Per rule version: the pieces of the points calculation (the twin of `salesarck_points`)."""
        rate, min_spend, max_points = (self.num(self.json_text(cfg, k)) for k in (
            "conversionRate", "minSpendMinorUnits", "maxPointsPerTransaction"))
        policy = f"coalesce({self.json_text(cfg, 'roundingPolicy')}, 'floor') as policy"
        if self.name == "duckdb":
            rate_expr = f"cast(cast({rate} * 10000000000 as decimal(38, 0)) as hugeint) as rate_e10"
            max_expr = f"coalesce(cast(floor({max_points}) as hugeint), 2147483647) as max_points"
        else:
            rate_expr = f"{rate} as rate"
            max_expr = f"coalesce({max_points}, 2147483647) as max_points"
        return f"{rate_expr}, coalesce({min_spend}, 0) as min_spend, {max_expr}, {policy}"

    def currency_scale(self, exponent: str) -> str:
        if self.name == "duckdb":
            return f"cast(pow(10, {exponent} + 10) as hugeint) as d"
        return f"power(10::numeric, -{exponent}) as scale"

    def points(self, amount: str) -> str:
        """Points for `amount` under rule params `rp` and currency `cm`: exactly `salesarck_points`
        (amount / 10^exponent x rate, rounded by policy, 0 below min spend, capped), inlined so it
        costs arithmetic, not a function call per row. DuckDB uses integer division (no doubles)."""
        if self.name == "duckdb":
            n, d = f"(cast({amount} as hugeint) * rp.rate_e10)", "cm.d"
            rounded = (f"case rp.policy when 'ceil' then ({n} + {d} - 1) // {d} "
                       f"when 'round' then (2 * {n} + {d}) // (2 * {d}) else {n} // {d} end")
        else:
            v = f"(cast({amount} as numeric) * rp.rate * cm.scale)"
            rounded = f"case rp.policy when 'ceil' then ceil({v}) when 'round' then round({v}) else floor({v}) end"
        return (f"(case when rp.idx is null or cm.code is null or rp.rate is null then null "
                f"when {amount} <= 0 or {amount} < rp.min_spend then 0 "
                f"else cast(least({rounded}, rp.max_points, 2147483647) as integer) end)").replace(
                    "rp.rate is null", "rp.rate_e10 is null" if self.name == "duckdb" else "rp.rate is null")


POSTGRES = Dialect("postgres")
DUCKDB = Dialect("duckdb")


@dataclass(frozen=True)
class Scope:
    """Which rows a run covers: tenants (None = all) and, for incremental runs, touched ids.

    Ids are validated UUIDs rendered as SQL literals, so scopes are safe to inline in both backends.
    """

    tenants: tuple[uuid.UUID, ...] | None = None
    wallets: tuple[uuid.UUID, ...] | None = None
    transactions: tuple[uuid.UUID, ...] | None = None

    @staticmethod
    def _in(col: str, ids: Sequence[uuid.UUID]) -> str:
        if not ids:
            return "false"
        return f"{col} in (" + ", ".join(f"'{uuid.UUID(str(i))}'" for i in ids) + ")"

    def wallet_pred(self, alias: str) -> str:
        parts = ["true"]
        if self.tenants is not None:
            parts.append(self._in(f"{alias}.tenant_id", self.tenants))
        if self.wallets is not None:
            parts.append(self._in(f"{alias}.id", self.wallets))
        return " and ".join(parts)

    def txn_pred(self, alias: str) -> str:
        parts = ["true"]
        if self.tenants is not None:
            parts.append(self._in(f"{alias}.tenant_id", self.tenants))
        if self.transactions is not None:
            parts.append(self._in(f"{alias}.id", self.transactions))
        return " and ".join(parts)

    @property
    def restricted(self) -> bool:
        return self.tenants is not None or self.wallets is not None


def wallet_sql(d: Dialect, scope: Scope) -> str:
    """Per-wallet ledger balance, with redemptions and unexplained entries, for wallets that are
    drifted, negative or whose redemptions disagree; plus a totals row (kind 'total')."""
    ledger_filter = ""
    if scope.restricted:
        ledger_filter = f"where l.wallet_id in (select w0.id from wallets w0 where {scope.wallet_pred('w0')})"
    return f"""
with bal as (
    select l.wallet_id,
           sum(case when l.entry_type = 'credit' then l.points else -l.points end) as bal,
           count(*) as n,
           sum(case when l.source_transaction_id is null and l.description = 'redemption'
                    then l.points else 0 end) as red_debits,
           sum(case when l.source_transaction_id is null and l.created_by_admin is null
                     and (l.description is null or l.description <> 'redemption') then 1 else 0 end) as n_orphan
    from wallet_ledger l {ledger_filter}
    group by l.wallet_id
),
evr as (
    select e.wallet_id, sum(coalesce(e.points_redeemed, 0)) as redeemed
    from reward_events e
    where e.transaction_id is null and coalesce(e.points_redeemed, 0) <> 0
    group by e.wallet_id
),
j as (
    select w.id as wallet_id, w.tenant_id, w.user_id, w.points_balance as snapshot_points,
           coalesce(b.bal, 0) as ledger_points, coalesce(b.n, 0) as n,
           coalesce(b.red_debits, 0) as red_debits, coalesce(r.redeemed, 0) as redeemed,
           coalesce(b.n_orphan, 0) as n_orphan
    from wallets w
    left join bal b on b.wallet_id = w.id
    left join evr r on r.wallet_id = w.id
    where {scope.wallet_pred('w')}
)
select 'row' as kind, wallet_id, tenant_id, user_id, snapshot_points, ledger_points, red_debits, redeemed, n_orphan
from j
where snapshot_points <> ledger_points or ledger_points < 0 or red_debits <> redeemed or n_orphan > 0
union all
select 'total', null, null, null, count(*), sum(n), null, null, null from j
"""


def transaction_sql(d: Dialect, scope: Scope) -> str:
    """Per-transaction reward events vs ledger vs rule: flagged transactions only."""
    ev_filter = le_filter = ""
    if scope.tenants is not None or scope.transactions is not None:
        sub = f"(select t0.id from transactions t0 where {scope.txn_pred('t0')})"
        ev_filter, le_filter = f"and e.transaction_id in {sub}", f"and l.source_transaction_id in {sub}"
    return f"""
with rp as (
    select r.id, cast(r.id as text) as rule_id, row_number() over (order by cast(r.id as text)) as idx,
           {d.rule_params('r.rule_config')}
    from reward_rules r
),
ev as (
    select e.transaction_id as tid,
           sum(case when e.points_earned > 0 then 1 else 0 end) as n_pos_events,
           sum(case when coalesce(e.points_redeemed, 0) = 0 then 1 else 0 end) as n_earn_events,
           sum(coalesce(e.points_earned, 0)) as earned,
           sum(coalesce(e.points_redeemed, 0)) as redeemed,
           min(rp.idx) as rule_idx
    from reward_events e left join rp on rp.id = e.rule_version_id
    where e.transaction_id is not null {ev_filter}
    group by e.transaction_id
),
le as (
    select l.source_transaction_id as tid,
           sum(case when l.entry_type = 'credit' then 1 else 0 end) as n_credits,
           sum(case when l.entry_type = 'credit' then l.points else 0 end) as credits,
           sum(case when l.entry_type = 'debit' and (l.description is null or l.description <> 'redemption')
                    then l.points else 0 end) as debits,
           sum(case when l.entry_type = 'debit' and l.description = 'redemption' then l.points else 0 end)
               as red_debits,
           sum(case when l.description = 'void' then 1 else 0 end) as n_void
    from wallet_ledger l
    where l.source_transaction_id is not null {le_filter}
    group by l.source_transaction_id
),
rf as (
    select transaction_id as tid, sum(amount_minor_units) as refunded
    from transaction_refunds where is_completed group by transaction_id
),
first_rule as (
    select tenant_id, min(effective_from) as first_at from reward_rules group by tenant_id
),
cm as (
    select code, {d.currency_scale('exponent')} from currency_minor_units
),
j as (
    select t.id as transaction_id, t.tenant_id, t.user_id, t.amount_minor_units, t.currency,
           (t.user_id is not null and fr.first_at is not null and t.transaction_at >= fr.first_at) as rule_in_force,
           coalesce(ev.n_pos_events, 0) as n_pos_events, coalesce(ev.n_earn_events, 0) as n_earn_events,
           coalesce(ev.earned, 0) as earned, coalesce(ev.redeemed, 0) as redeemed, ev.rule_idx,
           coalesce(le.n_credits, 0) as n_credits, coalesce(le.credits, 0) as credits,
           coalesce(le.debits, 0) as debits, coalesce(le.red_debits, 0) as red_debits,
           coalesce(rf.refunded, 0) as refunded,
           (coalesce(le.n_void, 0) > 0 or coalesce(td.is_voided, false)) as voided
    from transactions t
    left join ev on ev.tid = t.id
    left join le on le.tid = t.id
    left join rf on rf.tid = t.id
    left join transaction_details td on td.transaction_id = t.id
    left join first_rule fr on fr.tenant_id = t.tenant_id
    where {scope.txn_pred('t')}
),
k as (
    select j.*, rp.rule_id,
           case when j.rule_idx is null then null
                when j.voided then 0
                else {d.points('greatest(j.amount_minor_units - j.refunded, 0)')}
           end as expected
    from j
    left join rp on rp.idx = j.rule_idx
    left join cm on cm.code = j.currency
)
select transaction_id, tenant_id, user_id, amount_minor_units, currency, rule_in_force, n_pos_events,
       n_earn_events, earned, redeemed, rule_id, n_credits, credits, debits, red_debits, refunded, voided,
       expected
from k
where (rule_in_force and n_earn_events = 0)
   or n_pos_events > 1 or n_credits > 1
   or (rule_idx is not null and expected is distinct from earned)
   or earned <> credits - debits or redeemed <> red_debits
"""


def cross_tenant_sql(d: Dialect, scope: Scope) -> str:
    """Ledger entries and reward events whose wallet, transaction or rule is of another tenant."""
    w = scope.wallet_pred("w")
    return f"""
select 'ledger_entry' as entity_type, cast(l.id as text) as entity_id, w.tenant_id, l.wallet_id,
       l.source_transaction_id as transaction_id, t.tenant_id as other_tenant_id, 'transaction' as other
from wallet_ledger l join wallets w on w.id = l.wallet_id join transactions t on t.id = l.source_transaction_id
where w.tenant_id <> t.tenant_id and {w}
union all
select 'reward_event', cast(e.id as text), w.tenant_id, e.wallet_id, e.transaction_id, t.tenant_id, 'transaction'
from reward_events e join wallets w on w.id = e.wallet_id join transactions t on t.id = e.transaction_id
where w.tenant_id <> t.tenant_id and {w}
union all
select 'reward_event', cast(e.id as text), w.tenant_id, e.wallet_id, e.transaction_id, r.tenant_id, 'rule'
from reward_events e join wallets w on w.id = e.wallet_id join reward_rules r on r.id = e.rule_version_id
where w.tenant_id <> r.tenant_id and {w}
"""


def frozen_sql(d: Dialect, scope: Scope) -> str:
    """Ledger entries written while the wallet was frozen (periods from the audit log), other than
    refund/void reversals and admin adjustments with an audit row."""
    wid = d.try_uuid("a.target_entity_id")
    return f"""
with fz as (
    select {wid} as wallet_id, a.action, a.created_at
    from admin_audit_logs a
    where a.target_entity_type = 'wallet' and a.action in ('wallet.freeze', 'wallet.unfreeze')
),
periods as (
    select wallet_id, action, created_at as from_at,
           lead(created_at) over (partition by wallet_id order by created_at) as to_at
    from fz where wallet_id is not null
),
adj as (
    select {wid} as wallet_id, a.actor_user_id
    from admin_audit_logs a
    where a.target_entity_type = 'wallet' and a.action = 'wallet.adjust'
)
select cast(l.id as text) as entity_id, w.tenant_id, l.wallet_id, l.source_transaction_id as transaction_id,
       l.entry_type, l.points, l.created_at, p.from_at
from periods p
join wallet_ledger l on l.wallet_id = p.wallet_id and l.created_at >= p.from_at
     and (p.to_at is null or l.created_at < p.to_at)
join wallets w on w.id = l.wallet_id
where p.action = 'wallet.freeze' and {scope.wallet_pred('w')}
  and not (l.description is not null and (l.description = 'void' or l.description like 'refund:%'))
  and not (l.created_by_admin is not null and exists (
        select 1 from adj where adj.wallet_id = l.wallet_id and adj.actor_user_id = l.created_by_admin))
"""


# ------------------------------------------------------------------------------------------------
# rows -> findings (shared by both backends)


def _s(v: Any) -> str | None:
    return None if v is None else str(v)


def finding(check: str, entity_type: str, entity_id: Any, tenant_id: Any, detail: str, *,
            wallet_id: Any = None, transaction_id: Any = None) -> dict[str, Any]:
    return {"check": check, "severity": CHECKS[check].severity, "entity_type": entity_type,
            "entity_id": str(entity_id), "tenant_id": _s(tenant_id), "detail": detail,
            "wallet_id": _s(wallet_id), "transaction_id": _s(transaction_id)}


def wallet_findings(rows: Iterable[Mapping[str, Any]], checks: Sequence[str]
                    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, int]]:
    """Split the wallet query's rows into drift rows, findings and totals."""
    drift: list[dict[str, Any]] = []
    out: list[dict[str, Any]] = []
    totals = {"wallets_checked": 0, "ledger_entries": 0}
    for r in rows:
        if r["kind"] == "total":
            totals = {"wallets_checked": int(r["snapshot_points"] or 0), "ledger_entries": int(r["ledger_points"] or 0)}
            continue
        snap, led = int(r["snapshot_points"]), int(r["ledger_points"])
        wid, tid = r["wallet_id"], r["tenant_id"]
        if "snapshot_drift" in checks and snap != led:
            drift.append({"wallet_id": str(wid), "tenant_id": _s(tid), "user_id": _s(r["user_id"]),
                          "snapshot_points": snap, "ledger_points": led, "drift_points": snap - led,
                          "explanation_code": None, "explanation": None})
        if "negative_balance" in checks and led < 0:
            out.append(finding("negative_balance", "wallet", wid, tid, f"ledger balance is {led} points",
                               wallet_id=wid))
        if "reward_ledger_mismatch" in checks:
            red, red_deb = int(r["redeemed"]), int(r["red_debits"])
            if red != red_deb:
                out.append(finding("reward_ledger_mismatch", "wallet", wid, tid,
                                   f"redemptions without a purchase: reward events redeem {red} points, "
                                   f"ledger redemption debits total {red_deb}", wallet_id=wid))
            if int(r["n_orphan"]) > 0:
                out.append(finding("reward_ledger_mismatch", "wallet", wid, tid,
                                   f"{int(r['n_orphan'])} ledger entries have no transaction, redemption "
                                   "or admin behind them", wallet_id=wid))
    return drift, out, totals


def transaction_findings(rows: Iterable[Mapping[str, Any]], checks: Sequence[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for r in rows:
        tid, ten = r["transaction_id"], r["tenant_id"]
        earned, credits, debits = int(r["earned"]), int(r["credits"]), int(r["debits"])

        def add(check: str, detail: str, _tid: Any = tid, _ten: Any = ten) -> None:
            if check in checks:
                out.append(finding(check, "transaction", _tid, _ten, detail, transaction_id=_tid))

        if bool(r["rule_in_force"]) and int(r["n_earn_events"]) == 0:
            add("missing_reward_event", f"identified customer, rule in force, amount {int(r['amount_minor_units'])} "
                f"{r['currency']}: no reward event (missed accrual)")
        if int(r["n_pos_events"]) > 1 or int(r["n_credits"]) > 1:
            add("duplicate_accrual", f"{int(r['n_pos_events'])} positive accrual events and "
                f"{int(r['n_credits'])} accrual credits")
        if r["rule_id"] is not None:
            expected = r["expected"]
            if expected is None:
                add("rule_mismatch", f"rule version {r['rule_id']} cannot value currency {r['currency']}")
            elif int(expected) != earned:
                basis = ("voided: expected 0" if bool(r["voided"]) else
                         f"amount {int(r['amount_minor_units'])} less refunds {int(r['refunded'])}")
                add("rule_mismatch", f"net {earned} points; rule version {r['rule_id']} gives {int(expected)} "
                    f"({basis})")
        if earned != credits - debits:
            add("reward_ledger_mismatch", f"events earn {earned} points; ledger credits {credits} less "
                f"reversals {debits} = {credits - debits}")
        red, red_deb = int(r["redeemed"]), int(r["red_debits"])
        if red != red_deb:
            add("reward_ledger_mismatch", f"events redeem {red} points; ledger redemption debits {red_deb}")
    return out


def cross_tenant_findings(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [finding("cross_tenant", r["entity_type"], r["entity_id"], r["tenant_id"],
                    f"wallet is of tenant {r['tenant_id']} but its {r['other']} is of tenant {r['other_tenant_id']}",
                    wallet_id=r["wallet_id"], transaction_id=r["transaction_id"]) for r in rows]


def frozen_findings(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    from salesarck.timeutil import iso_utc

    return [finding("frozen_wallet_activity", "ledger_entry", r["entity_id"], r["tenant_id"],
                    f"{r['entry_type']} of {int(r['points'])} points at {iso_utc(r['created_at'])} while frozen "
                    f"since {iso_utc(r['from_at'])}", wallet_id=r["wallet_id"], transaction_id=r["transaction_id"])
            for r in rows]
