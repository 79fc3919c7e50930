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

    def points(self, amount: str, rp: str = "rp", cm: str = "cm") -> str:
        """Points for `amount` under rule params of `rp` and currency scale of `cm`: exactly
        `salesarck_points` (amount / 10^exponent x rate, rounded by policy, 0 below min spend,
        capped), inlined so it costs arithmetic, not a function call per row. DuckDB uses integer
        division (no doubles)."""
        if self.name == "duckdb":
            n, d = f"(cast({amount} as hugeint) * {rp}.rate_e10)", f"{cm}.d"
            rounded = (f"case {rp}.policy when 'ceil' then ({n} + {d} - 1) // {d} "
                       f"when 'round' then (2 * {n} + {d}) // (2 * {d}) else {n} // {d} end")
            rate, unit = f"{rp}.rate_e10", f"{cm}.d"
        else:
            v = f"(cast({amount} as numeric) * {rp}.rate * {cm}.scale)"
            rounded = f"case {rp}.policy when 'ceil' then ceil({v}) when 'round' then round({v}) else floor({v}) end"
            rate, unit = f"{rp}.rate", f"{cm}.scale"
        return (f"(case when {rp}.idx is null or {unit} is null or {rate} is null then null "
                f"when {amount} <= 0 or {amount} < {rp}.min_spend then 0 "
                f"else cast(least({rounded}, {rp}.max_points, 2147483647) as integer) end)")


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


def wallet_sql(d: Dialect, scope: Scope, *, redemptions: bool = True) -> str:
    """Per-wallet ledger balance for wallets that are drifted or negative (and, with `redemptions`,
    whose purchase-less redemptions or unexplained entries disagree); plus a totals row (kind
    'total'). Without `redemptions` it is the bare GROUP BY plus the comparison."""
    ledger_filter = ""
    if scope.restricted:
        ledger_filter = f"where l.wallet_id in (select w0.id from wallets w0 where {scope.wallet_pred('w0')})"
    extra_sums = extra_cte = extra_join = ""
    extra_cols = "0 as red_debits, 0 as redeemed, 0 as n_orphan"
    extra_where = ""
    if redemptions:
        extra_sums = """,
           sum(case when l.source_transaction_id is null and l.description = 'redemption'
                    then l.points else 0 end) as red_debits,
           sum(case when l.source_transaction_id is null and l.created_by_admin is null
                     and (l.description is null or l.description <> 'redemption') then 1 else 0 end) as n_orphan"""
        extra_cte = """
evr as (
    select e.wallet_id, sum(coalesce(e.points_redeemed, 0)) as redeemed
    from reward_events e
    where e.transaction_id is null and coalesce(e.points_redeemed, 0) <> 0
    group by e.wallet_id
),"""
        extra_join = "left join evr r on r.wallet_id = w.id"
        extra_cols = ("coalesce(b.red_debits, 0) as red_debits, coalesce(r.redeemed, 0) as redeemed,"
                      " coalesce(b.n_orphan, 0) as n_orphan")
        extra_where = " or red_debits <> redeemed or n_orphan > 0"
    return f"""
with bal as (
    select l.wallet_id,
           sum(case when l.entry_type = 'credit' then l.points else -l.points end) as bal,
           count(*) as n{extra_sums}
    from wallet_ledger l {ledger_filter}
    group by l.wallet_id
),{extra_cte}
j as (
    select w.id as wallet_id, w.tenant_id, w.user_id, w.points_balance as snapshot_points,
           coalesce(b.bal, 0) as ledger_points, coalesce(b.n, 0) as n, {extra_cols}
    from wallets w
    left join bal b on b.wallet_id = w.id
    {extra_join}
    where {scope.wallet_pred('w')}
)
select 'row' as kind, wallet_id, tenant_id, user_id, snapshot_points, ledger_points, red_debits, redeemed, n_orphan
from j
where snapshot_points <> ledger_points or ledger_points < 0{extra_where}
union all
select 'total', null, null, null, count(*), sum(n), null, null, null from j
"""


MAX_RULE_ARRAY = 256  # rule versions up to which PostgreSQL looks params up in arrays (see below)


def transaction_sql(d: Dialect, scope: Scope, *, cross_tenant: bool = False, rule_arrays: bool = True) -> str:
    """Per-transaction reward events vs ledger vs rule, in ONE grouped pass: the transaction row,
    its events, ledger entries, completed refunds and void marker are stacked (UNION ALL, each joined
    only to tiny tables) and grouped by transaction id, so no two large tables are hash-joined.
    With `cross_tenant`, each row also carries its tenant as a small integer (the wallet's for
    entries and events, the rule's for events): a transaction whose rows disagree is flagged.
    With `rule_arrays`, the rule's params are read after grouping from one-row arrays indexed by
    the rule's number (O(1) in DuckDB; in PostgreSQL a walk over the variable-length elements, so
    callers pass it only for a bounded number of rule versions); otherwise they ride in the pass.
    Returns flagged transactions only."""
    sub = ""
    if scope.tenants is not None or scope.transactions is not None:
        sub = f" in (select t0.id from transactions t0 where {scope.txn_pred('t0')})"
    # tenants as small integers, written inline (not a shared CTE) so the planner sees the tenants
    # and wallets tables' real sizes and hashes them, not the large side
    tn_q = "(select id, row_number() over (order by cast(id as text)) as tidx from tenants)"
    w_join = ("left join wallets w{0} on w{0}.id = {0}.wallet_id "
              f"left join {tn_q} wtn{{0}} on wtn{{0}}.id = w{{0}}.tenant_id") if cross_tenant else ""
    w_tidx = "wtn{}.tidx" if cross_tenant else "cast(null as bigint)"
    duck = d.name == "duckdb"
    unit, rate = ("d", "rate_e10") if duck else ("scale", "rate")
    num = "decimal(38, 10)" if duck else "numeric"
    big = "hugeint" if duck else "numeric"
    if rule_arrays:
        pa_rules = "".join(f",\n           (select array_agg({c} order by idx) from rp) as {n}" for c, n in (
            (rate, "rates"), ("min_spend", "mins"), ("max_points", "maxs"), ("policy", "pols")))
        gp_rules = (f", pa.rates[g.rule_idx] as {rate}, pa.mins[g.rule_idx] as min_spend,"
                    " pa.maxs[g.rule_idx] as max_points, pa.pols[g.rule_idx] as policy")
        rpe_params = carry_t = carry_e = carry_0 = carry_agg = ""
    else:
        pa_rules = gp_rules = ""
        rpe_params = f", rp.{rate}, rp.min_spend, rp.max_points, rp.policy"
        carry_t = (f", cast(null as {big}) as {rate}, cast(null as {num}) as min_spend,"
                   f" cast(null as {big}) as max_points, cast(null as varchar) as policy")
        carry_e = f", rpe.{rate}, rpe.min_spend, rpe.max_points, rpe.policy"
        carry_0 = ", null, null, null, null"
        carry_agg = (f", max({rate}) as {rate}, max(min_spend) as min_spend, max(max_points) as max_points,"
                     " max(policy) as policy")
    # The grouped pass carries few aggregates (PostgreSQL keeps ~16 bytes of state per aggregate per
    # group, so each one costs at 9M groups; the numeric max() states of carried rule params cost
    # most: 598 vs 344 MB at 924k groups): the currency as a small index into a one-row array (`pa`,
    # bounded by the currency table) read after grouping, the rule's params too with `rule_arrays`
    # (a join after grouping instead risks hashing the aggregate on its row misestimate); every
    # tenant index (the transaction's, its wallets', its rules')
    # in one min/max pair, since they agree iff min = max; the transaction row is the one with an
    # amount (NOT NULL in the schema).
    return f"""
with rp as (
    select r.id, r.tenant_id, cast(r.id as text) as rule_id,
           row_number() over (order by cast(r.id as text)) as idx, {d.rule_params('r.rule_config')}
    from reward_rules r
),
first_rule as (select tenant_id, min(effective_from) as first_at from reward_rules group by tenant_id),
cm as (select code, row_number() over (order by code) as cidx, {d.currency_scale('exponent')}
       from currency_minor_units),
pa as (
    select (select array_agg({unit} order by cidx) from cm) as units{pa_rules}
),
rpe as (select rp.id, rp.idx, tn.tidx{rpe_params}
        from rp join {tn_q} tn on tn.id = rp.tenant_id),
x as (
    select t.id as tid, t.amount_minor_units as amount, cm.cidx,
           (t.user_id is not null and fr.first_at is not null and t.transaction_at >= fr.first_at) as rif,
           tn.tidx as tidx, cast(null as bigint) as rule_tidx,
           0 as n_pos, 0 as n_earn, 0 as earned, 0 as redeemed, cast(null as bigint) as rule_idx,
           0 as n_credits, 0 as credits, 0 as debits, 0 as red_debits, 0 as n_void, 0 as refunded{carry_t}
    from transactions t
    join {tn_q} tn on tn.id = t.tenant_id
    left join first_rule fr on fr.tenant_id = t.tenant_id
    left join cm on cm.code = t.currency
    where {scope.txn_pred('t')}
    union all
    select e.transaction_id, null, null, false, {w_tidx.format('e')}, rpe.tidx,
           case when e.points_earned > 0 then 1 else 0 end,
           case when coalesce(e.points_redeemed, 0) = 0 then 1 else 0 end,
           coalesce(e.points_earned, 0), coalesce(e.points_redeemed, 0), rpe.idx,
           0, 0, 0, 0, 0, 0{carry_e}
    from reward_events e
    left join rpe on rpe.id = e.rule_version_id
    {w_join.format('e')}
    where e.transaction_id is not null {('and e.transaction_id' + sub) if sub else ''}
    union all
    select l.source_transaction_id, null, null, false, {w_tidx.format('l')}, null, 0, 0, 0, 0, null,
           case when l.entry_type = 'credit' then 1 else 0 end,
           case when l.entry_type = 'credit' then l.points else 0 end,
           case when l.entry_type = 'debit' and (l.description is null or l.description <> 'redemption')
                then l.points else 0 end,
           case when l.entry_type = 'debit' and l.description = 'redemption' then l.points else 0 end,
           case when l.description = 'void' then 1 else 0 end, 0{carry_0}
    from wallet_ledger l
    {w_join.format('l')}
    where l.source_transaction_id is not null {('and l.source_transaction_id' + sub) if sub else ''}
    union all
    select f.transaction_id, null, null, false, null, null, 0, 0, 0, 0, null, 0, 0, 0, 0, 0,
           f.amount_minor_units{carry_0}
    from transaction_refunds f
    where f.is_completed {('and f.transaction_id' + sub) if sub else ''}
    union all
    select v.transaction_id, null, null, false, null, null, 0, 0, 0, 0, null, 0, 0, 0, 0, 1, 0{carry_0}
    from transaction_details v
    where v.is_voided {('and v.transaction_id' + sub) if sub else ''}
),
g as (
    select tid, max(amount) as amount_minor_units, max(cidx) as cidx, bool_or(rif) as rule_in_force,
           min(least(tidx, rule_tidx)) as min_tidx, max(greatest(tidx, rule_tidx)) as max_tidx,
           sum(n_pos) as n_pos_events, sum(n_earn) as n_earn_events, sum(earned) as earned,
           sum(redeemed) as redeemed, min(rule_idx) as rule_idx, sum(n_credits) as n_credits,
           sum(credits) as credits, sum(debits) as debits, sum(red_debits) as red_debits,
           sum(n_void) > 0 as voided, sum(refunded) as refunded{carry_agg}
    from x group by tid
),
gp as (
    select g.*, g.rule_idx as idx, pa.units[g.cidx] as {unit}{gp_rules}
    from g cross join pa
    where g.amount_minor_units is not null
),
k as (
    select gp.*,
           case when gp.rule_idx is null then null
                when gp.voided then 0
                else {d.points('greatest(gp.amount_minor_units - gp.refunded, 0)', rp='gp', cm='gp')}
           end as expected
    from gp
),
f as (
select k.tid as transaction_id, t.tenant_id, t.user_id, k.amount_minor_units, t.currency, k.rule_in_force,
       k.n_pos_events, k.n_earn_events, k.earned, k.redeemed, k.rule_idx, k.n_credits, k.credits, k.debits,
       k.red_debits, k.refunded, k.voided, k.expected,
       k.min_tidx <> k.max_tidx as cross_tenant
from k join transactions t on t.id = k.tid
where (k.rule_in_force and k.n_earn_events = 0)
   or k.n_pos_events > 1 or k.n_credits > 1
   or (k.rule_idx is not null and k.expected is distinct from k.earned)
   or k.earned <> k.credits - k.debits or k.redeemed <> k.red_debits
   or k.min_tidx <> k.max_tidx
)
select f.*, rp.rule_id from f left join rp on rp.idx = f.rule_idx
"""


def cross_tenant_sql(d: Dialect, scope: Scope, transaction_ids: Sequence[Any]) -> str:
    """The ledger entries and reward events behind transactions the grouped pass flagged as
    cross-tenant (a handful: read by id)."""
    ids = Scope._in("t.id", [uuid.UUID(str(i)) for i in transaction_ids])
    return f"""
select 'ledger_entry' as entity_type, cast(l.id as text) as entity_id, t.tenant_id, w.tenant_id as wallet_tenant_id,
       l.wallet_id, l.source_transaction_id as transaction_id, t.tenant_id as other_tenant_id, 'transaction' as other
from transactions t join wallet_ledger l on l.source_transaction_id = t.id join wallets w on w.id = l.wallet_id
where {ids} and w.tenant_id <> t.tenant_id
union all
select 'reward_event', cast(e.id as text), t.tenant_id, w.tenant_id, e.wallet_id, e.transaction_id, t.tenant_id,
       'transaction'
from transactions t join reward_events e on e.transaction_id = t.id join wallets w on w.id = e.wallet_id
where {ids} and w.tenant_id <> t.tenant_id
union all
select 'reward_event', cast(e.id as text), t.tenant_id, w.tenant_id, e.wallet_id, e.transaction_id, r.tenant_id, 'rule'
from transactions t join reward_events e on e.transaction_id = t.id join wallets w on w.id = e.wallet_id
join reward_rules r on r.id = e.rule_version_id
where {ids} and w.tenant_id <> r.tenant_id
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
                    f"wallet is of tenant {r['wallet_tenant_id']} but its {r['other']} is of tenant "
                    f"{r['other_tenant_id']}",
                    wallet_id=r["wallet_id"], transaction_id=r["transaction_id"]) for r in rows]


def frozen_findings(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    from salesarck.timeutil import iso_utc

    return [finding("frozen_wallet_activity", "ledger_entry", r["entity_id"], r["tenant_id"],
                    f"{r['entry_type']} of {int(r['points'])} points at {iso_utc(r['created_at'])} while frozen "
                    f"since {iso_utc(r['from_at'])}", wallet_id=r["wallet_id"], transaction_id=r["transaction_id"])
            for r in rows]
