"""Fast, consistent generated data (demo and benchmark), with optional planted faults of every check.

Bulk rows are generated inside PostgreSQL (`INSERT ... SELECT` over `generate_series`, the same
server-side path as COPY, without shipping 10M rows through Python), following the rewards
representation exactly: an accrual is an event with `points_earned = P` and `rule_version_id` plus a
`credit` P; a refund is an event `-D` and a `debit` D described `refund:<id>` (with its row in
`transaction_refunds`); a void reverses everything (`void`); a redemption is an event with
`points_redeemed` and a `redemption` debit; an admin adjustment is a ledger entry with
`created_by_admin` and an audit row. Snapshots equal ledger sums unless drift is asked for.

Ids are deterministic (`gen_id(kind, seed, n)`), so tests can name what was planted.
"""

# ruff: noqa: S608  (SQL is composed only from fixed fragments and integer-derived id formulas)

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine

from salesarck.errors import ValidationError
from salesarck.jsonutil import dumps

log = logging.getLogger(__name__)

MAX_TENANTS = 10_000
MAX_WALLETS = 50_000_000
MAX_LEDGER = 500_000_000
RESERVED = 0  # bulk wallets are all ordinary; planted faults get wallets of their own

# id kinds (first uuid group): one per table/role so ids never collide
K_TENANT, K_RULE, K_USER, K_WALLET, K_TXN, K_EVENT, K_REV_EVENT, K_RED_EVENT = 1, 2, 3, 4, 5, 6, 7, 8
K_CREDIT, K_REV_DEBIT, K_RED_DEBIT, K_ADJ, K_AUDIT, K_REFUND, K_ADMIN, K_ANON = 9, 10, 11, 12, 13, 14, 15, 16
K_PLANT = 0x99

RULES = [
    {"conversionRate": 1, "roundingPolicy": "floor", "maxPointsPerTransaction": 1000},
    {"conversionRate": 1.5, "roundingPolicy": "round"},
    {"conversionRate": 2, "roundingPolicy": "ceil", "maxPointsPerTransaction": 300},
    {"conversionRate": 0.5, "roundingPolicy": "floor"},
]
EPOCH = datetime(2025, 1, 1)
SPAN_DAYS = 600


def gen_id(kind: int, seed: int, n: int) -> uuid.UUID:
    """The deterministic id the generator gives row `n` of `kind` (same formula as `_U` in SQL)."""
    return uuid.UUID(f"{kind:08x}-{seed:04x}-4000-8000-{n:012x}")


def _U(kind: int, expr: str) -> str:  # noqa: N802
    return f"cast('{kind:08x}-' || :seedhex || '-4000-8000-' || lpad(to_hex({expr}), 12, '0') as uuid)"


def _pts(amount: str) -> str:
    """Points for `amount` (USD, exponent 2) under the rule params of `rp`: salesarck_points inlined."""
    v = f"(cast({amount} as numeric) * rp.rate * 0.01)"
    rounded = f"case rp.policy when 'ceil' then ceil({v}) when 'round' then round({v}) else floor({v}) end"
    return (f"(case when {amount} <= 0 or {amount} < rp.min_spend then 0 "
            f"else cast(least({rounded}, rp.max_points, 2147483647) as integer) end)")


# Secondary indexes rebuilt after a bulk load into empty tables (sorted builds beat row-by-row upkeep).
BULK_INDEXES = ("transactions_user_idx", "transactions_tenant_time_idx", "reward_events_transaction_idx",
                "reward_events_wallet_idx", "wallet_ledger_wallet_time_idx", "wallet_ledger_source_transaction_idx",
                "users_email_lower_idx", "transaction_refunds_transaction_idx")
# Unique constraints (no foreign key depends on them) rebuilt the same way: re-adding one is a
# sorted build that still verifies uniqueness, where upkeep was a random btree insert per row
# (the transactions one, on text, cost about half of that table's load).
BULK_UNIQUE = ("users_email_unique", "users_mobile_unique", "wallets_tenant_id_user_id_unique",
               "transactions_tenant_id_provider_provider_transaction_id_unique",
               "transaction_refunds_provider_refund_unique")


@dataclass
class GenerateSummary:
    tenants: int
    wallets: int
    transactions: int
    reward_events: int
    ledger_entries: int
    refunds: int
    drifted_wallets: int
    seconds: float
    seed: int
    planted: dict[str, set[str]] = field(default_factory=dict)  # check -> entity ids it must report
    planted_drift: dict[str, str] = field(default_factory=dict)  # wallet id -> expected explanation code


def _validate(tenants: Any, wallets: Any, ledger_entries: Any, drift_rate: Any, seed: Any) -> None:
    for name, value, lo, hi in (("tenants", tenants, 1, MAX_TENANTS), ("wallets", wallets, 1, MAX_WALLETS),
                                ("ledger entries", ledger_entries, 0, MAX_LEDGER), ("seed", seed, 0, 0xFFFF)):
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            raise ValidationError(f"{name} must be a whole number from {lo} to {hi}")
    if wallets < tenants:
        raise ValidationError("wallets must be at least the number of tenants")
    if isinstance(drift_rate, bool) or not isinstance(drift_rate, int | float) or not 0 <= drift_rate <= 1:
        raise ValidationError("drift rate must be between 0 and 1")


def _engine(engine_or_url: Engine | Connection | URL | str) -> Engine:
    if isinstance(engine_or_url, Engine):
        return engine_or_url
    if isinstance(engine_or_url, Connection):
        return engine_or_url.engine
    from salesarck.config import normalize_database_url
    from salesarck.db.engine import make_engine

    url = engine_or_url if isinstance(engine_or_url, URL) else normalize_database_url(str(engine_or_url))
    return make_engine(url)


def generate(engine_or_url: Engine | Connection | URL | str, *, tenants: int, wallets: int, ledger_entries: int,
             drift_rate: float = 0.0, plant_faults: bool = False, seed: int = 0) -> GenerateSummary:
    """Fill the database with `tenants`, `wallets` (one customer each) and about `ledger_entries`
    ledger rows of consistent history; `drift_rate` of wallets get a wrong snapshot; with
    `plant_faults` one known fault of every check is added (needs at least 2 tenants)."""
    _validate(tenants, wallets, ledger_entries, drift_rate, seed)
    if plant_faults and tenants < 2:
        raise ValidationError("planting faults needs at least 2 tenants (one fault is cross-tenant)")
    engine = _engine(engine_or_url)
    t0 = time.perf_counter()
    # share of ledger rows: accrual credits 88%, refunds/voids ~4.5%, redemptions 7%, adjustments the rest
    n_txn = max(int(ledger_entries * 0.88), 0)
    n_red = int(ledger_entries * 0.07)
    p = {"seedhex": f"{seed:04x}", "seed": seed, "T": tenants, "W": wallets, "N": n_txn, "R": n_red,
         "epoch": EPOCH, "span": SPAN_DAYS * 86400.0 / max(n_txn, 1)}
    with engine.begin() as conn:
        exists = conn.execute(sa.text("select 1 from tenants where id = :i"), {"i": gen_id(K_TENANT, seed, 0)}).first()
        if exists:
            raise ValidationError(f"data generated with seed {seed} is already here; use another seed")
        replica = _try_replica(conn)
        conn.execute(sa.text("set local work_mem = '256MB'"))
        conn.execute(sa.text("set local synchronous_commit = off"))
        rebuild = _drop_indexes(conn) if replica else []
        counts = _bulk(conn, p, ledger_entries, replica)
        for ddl in rebuild:
            t = time.perf_counter()
            conn.execute(sa.text(ddl))
            log.info("generate index %.2fs: %s", time.perf_counter() - t, ddl[:60])
        drifted = _drift(conn, p, drift_rate) if drift_rate > 0 else 0
        if replica:
            # triggers were off: tell incremental reconciliation that everything changed
            conn.execute(sa.text("insert into reconcile_changes (kind) values ('all')"))
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(
            sa.text("analyze tenants, users, wallets, wallet_ledger, transactions, reward_events, reward_rules,"
                    " transaction_refunds, transaction_details, admin_audit_logs, currency_minor_units"))
    summary = GenerateSummary(tenants=counts["tenants"], wallets=counts["wallets"],
                              transactions=counts["transactions"], reward_events=counts["reward_events"],
                              ledger_entries=counts["ledger_entries"], refunds=counts["refunds"],
                              drifted_wallets=drifted, seconds=0.0, seed=seed)
    if plant_faults:
        with engine.begin() as conn:
            _plant(conn, seed, summary)
    summary.seconds = time.perf_counter() - t0
    return summary


def _drop_indexes(conn: Connection) -> list[str]:
    """On an empty ledger, drop the secondary indexes for the load; returns the DDL to rebuild them
    (same transaction: a failure restores them)."""
    if conn.execute(sa.text("select exists (select 1 from wallet_ledger)")).scalar():
        return []
    rows = conn.execute(sa.text("select indexname, indexdef from pg_indexes where schemaname = 'public'"
                                " and indexname = any(:names)"), {"names": list(BULK_INDEXES)}).all()
    for r in rows:
        conn.execute(sa.text(f'drop index "{r.indexname}"'))
    uniques = conn.execute(sa.text(
        "select c.conname, cast(c.conrelid::regclass as text) as tbl, pg_get_constraintdef(c.oid) as condef"
        " from pg_constraint c where c.contype = 'u' and c.conname = any(:names)"
        " and c.connamespace = 'public'::regnamespace"
        " and not exists (select 1 from pg_constraint f where f.contype = 'f' and f.conindid = c.conindid)"),
        {"names": list(BULK_UNIQUE)}).all()
    for u in uniques:
        conn.execute(sa.text(f'alter table {u.tbl} drop constraint "{u.conname}"'))
    conn.execute(sa.text("set local maintenance_work_mem = '512MB'"))
    return [r.indexdef for r in rows] + [f'alter table {u.tbl} add constraint "{u.conname}" {u.condef}' for u in uniques]


def _try_replica(conn: Connection) -> bool:
    """Skip FK and tracking triggers for the bulk load when allowed (superuser); data is consistent
    by construction. Without the privilege the load runs with every trigger on."""
    try:
        with conn.begin_nested():
            conn.execute(sa.text("set local session_replication_role = replica"))
        return True
    except sa.exc.DBAPIError:
        return False


def _bulk(conn: Connection, p: dict[str, Any], ledger_entries: int, replica: bool) -> dict[str, int]:
    def x(stmt: Any, params: dict[str, Any] | None = None) -> Any:
        t = time.perf_counter()
        result = conn.execute(stmt, params or {})
        log.info("generate step %.2fs: %s", time.perf_counter() - t, " ".join(str(stmt).split())[:60])
        return result
    x(sa.text(f"""insert into tenants (id, name, country, status, onboarding_profile, created_at)
        select {_U(K_TENANT, 'i')}, 'Generated tenant ' || i, 'US', 'active',
               jsonb_build_object('timezone', (array['UTC', 'America/New_York', 'Europe/Paris'])[1 + i % 3]),
               :epoch - interval '30 days'
        from generate_series(cast(0 as bigint), :T - 1) i"""), p)
    x(sa.text(f"""insert into reward_rules (id, tenant_id, version, is_active, rule_config, effective_from, created_at)
        select {_U(K_RULE, 'i')}, {_U(K_TENANT, 'i')}, 1, true,
               jsonb_build_object('minSpendMinorUnits', 500, 'minBalanceToRedeem', 0,
                                  'maxRedemptionPercentage', 100, 'pointValueMinorUnits', 1)
               || (cast(:rules as jsonb) -> cast(i % {len(RULES)} as int)), :epoch - interval '30 days', :epoch - interval '30 days'
        from generate_series(cast(0 as bigint), :T - 1) i"""), {**p, "rules": dumps(RULES)})
    x(sa.text(f"""insert into users (id, email, role, status, created_at)
        select {_U(K_USER, 'w')}, 'c' || w || '-' || :seed || '@gen.salesarck.test', 'consumer', 'active',
               :epoch - interval '30 days'
        from generate_series(cast(0 as bigint), :W - 1) w"""), p)
    x(sa.text(f"""insert into users (id, email, role, status, created_at)
        values ({_U(K_ADMIN, '0')}, 'admin-' || :seed || '@gen.salesarck.test', 'admin', 'active', :epoch)"""), p)
    # the transactions, their ids and what they earn, computed once (points: the inlined twin of
    # salesarck_points, checked against it by the tests)
    x(sa.text(f"""create temp table _rp on commit drop as
        select i as t, {_U(K_RULE, 'i')} as rule_id, {_U(K_TENANT, 'i')} as tenant_id,
               cast(r.rule_config ->> 'conversionRate' as numeric) as rate,
               coalesce(cast(r.rule_config ->> 'minSpendMinorUnits' as numeric), 0) as min_spend,
               coalesce(cast(r.rule_config ->> 'maxPointsPerTransaction' as numeric), 2147483647) as max_points,
               coalesce(r.rule_config ->> 'roundingPolicy', 'floor') as policy
        from generate_series(cast(0 as bigint), :T - 1) i join reward_rules r on r.id = {_U(K_RULE, 'i')}"""), p)
    x(sa.text(f"""create temp table _g on commit drop as
        with base as (
            select n, n % :W as w, (n % :W) % :T as t, 1000 + (n * 7919) % 20000 as amount,
                   :epoch + make_interval(secs => n * :span) as at
            from generate_series(cast(0 as bigint), :N - 1) n
        ), pts as (
            select b.*, rp.rule_id, rp.tenant_id, {_pts('b.amount')} as pts,
                   case when b.n % 20 = 7 then b.amount / 2 end as refund,
                   {_pts('b.amount - b.amount / 2')} as pts_after_refund
            from base b join _rp rp on rp.t = b.t
        )
        select n, w, t, amount, at, pts, refund, rule_id, tenant_id,
               {_U(K_TXN, 'n')} as txn_id, {_U(K_WALLET, 'w')} as wallet_id, {_U(K_USER, 'w')} as user_id,
               case when refund is not null then greatest(pts - pts_after_refund, 0)
                    when n % 997 = 11 and n >= :W then pts else 0 end as rev,
               (n % 997 = 11 and n % 20 <> 7 and n >= :W) as voided
        from pts"""), p)
    n_rev = int(x(sa.text("select count(*) from _g where rev > 0")).scalar_one())
    n_refund = int(x(sa.text("select count(*) from _g where refund is not null")).scalar_one())
    n_txn = int(p["N"])
    # admin adjustments fill up to the ledger size asked for
    p["A"] = max(ledger_entries - n_txn - n_rev - int(p["R"]), 0)
    p["RW"] = min(int(p["W"]), max(n_txn, 1))  # redemptions only on wallets that earned
    wallet_sql = f"""insert into wallets (id, tenant_id, user_id, points_balance, status, created_at, updated_at)
        select {_U(K_WALLET, 'w')}, {_U(K_TENANT, 'w % :T')}, {_U(K_USER, 'w')}, coalesce(b.bal, 0), 'active',
               :epoch - interval '1 day', null
        from generate_series(cast(0 as bigint), :W - 1) w
        left join (select w as ww, sum(bal) as bal from (
                select w, sum(pts - rev) as bal from _g group by w
                union all select r % :RW, -sum(1 + r % 3) from generate_series(cast(0 as bigint), :R - 1) r group by r % :RW
                union all select a % :W, 10 * count(*) from generate_series(cast(0 as bigint), :A - 1) a group by a % :W
            ) s group by w) b on b.ww = w"""
    x(sa.text(wallet_sql), p)
    x(sa.text("""insert into transactions (id, tenant_id, user_id, provider, provider_transaction_id,
            amount_minor_units, currency, transaction_at, created_at)
        select txn_id, tenant_id, user_id, 'square', 'gen-' || :seed || '-' || n,
               amount, 'USD', at, at + interval '1 minute'
        from _g"""), p)
    n_anon = n_txn // 20
    x(sa.text(f"""insert into transactions (id, tenant_id, user_id, provider, provider_transaction_id,
            amount_minor_units, currency, transaction_at, created_at)
        select {_U(K_ANON, 'n')}, {_U(K_TENANT, 'n % :T')}, null, 'square', 'gen-anon-' || :seed || '-' || n,
               500 + n % 5000, 'USD', :epoch + make_interval(secs => n * 20 * :span),
               :epoch + make_interval(secs => n * 20 * :span) + interval '1 minute'
        from generate_series(cast(0 as bigint), :NA - 1) n"""), {**p, "NA": n_anon})
    x(sa.text(f"""insert into transaction_refunds (id, tenant_id, provider, provider_refund_id, transaction_id,
            amount_minor_units, status, is_completed, refunded_at, created_at)
        select {_U(K_REFUND, 'n')}, tenant_id, 'square', 'gen-ref-' || :seed || '-' || n,
               txn_id, refund, 'COMPLETED', true, at + interval '2 days', at + interval '2 days'
        from _g where refund is not null"""), p)
    x(sa.text("""insert into transaction_details (transaction_id, location_id, provider_status, provider_updated_at,
            is_voided, voided_at, arrival, first_seen_at, last_seen_at)
        select txn_id, 'LOC-' || t, 'CANCELED', at + interval '1 day', true, at + interval '1 day', 'file',
               at + interval '1 minute', at + interval '1 day'
        from _g where voided"""), p)
    x(sa.text(f"""insert into reward_events (id, wallet_id, transaction_id, rule_version_id, points_earned,
            points_redeemed, created_at)
        select {_U(K_EVENT, 'n')}, wallet_id, txn_id, rule_id, pts, 0,
               at + interval '1 minute'
        from _g
        union all
        select {_U(K_REV_EVENT, 'n')}, wallet_id, txn_id, rule_id, -rev, 0,
               at + interval '2 days'
        from _g where rev > 0
        union all
        select {_U(K_RED_EVENT, 'r')}, {_U(K_WALLET, 'r % :RW')}, cast(null as uuid), cast(null as uuid), 0, 1 + r % 3,
               :epoch + interval '{SPAN_DAYS + 5} days' + make_interval(secs => r * 0.01)
        from generate_series(cast(0 as bigint), :R - 1) r"""), p)
    x(sa.text(f"""insert into wallet_ledger (id, wallet_id, entry_type, points, description, source_transaction_id,
            created_by_admin, created_at)
        select {_U(K_CREDIT, 'n')}, wallet_id, 'credit', pts, 'accrual', txn_id, cast(null as uuid),
               at + interval '1 minute'
        from _g where pts > 0
        union all
        select {_U(K_REV_DEBIT, 'n')}, wallet_id, 'debit', rev,
               case when voided then 'void' else 'refund:gen-ref-' || :seed || '-' || n end, txn_id, null,
               at + interval '2 days'
        from _g where rev > 0
        union all
        select {_U(K_RED_DEBIT, 'r')}, {_U(K_WALLET, 'r % :RW')}, 'debit', 1 + r % 3, 'redemption', cast(null as uuid), cast(null as uuid),
               :epoch + interval '{SPAN_DAYS + 5} days' + make_interval(secs => r * 0.01)
        from generate_series(cast(0 as bigint), :R - 1) r
        union all
        select {_U(K_ADJ, 'a')}, {_U(K_WALLET, 'a % :W')}, 'credit', 10, 'goodwill', null, {_U(K_ADMIN, '0')},
               :epoch + interval '{SPAN_DAYS + 10} days' + make_interval(secs => a * 0.01)
        from generate_series(cast(0 as bigint), :A - 1) a"""), p)
    x(sa.text(f"""insert into admin_audit_logs (id, actor_user_id, action, target_entity_id, target_entity_type,
            before_state, after_state, reason, created_at)
        select {_U(K_AUDIT, 'a')}, {_U(K_ADMIN, '0')}, 'wallet.adjust', cast({_U(K_WALLET, 'a % :W')} as text),
               'wallet', null, jsonb_build_object('points', 10), 'generated goodwill adjustment',
               :epoch + interval '{SPAN_DAYS + 10} days' + make_interval(secs => a * 0.01)
        from generate_series(cast(0 as bigint), :A - 1) a"""), p)
    n_zero = int(x(sa.text("select count(*) from _g where pts = 0")).scalar_one())
    return {"tenants": int(p["T"]), "wallets": int(p["W"]), "transactions": n_txn + n_anon,
            "reward_events": n_txn + n_rev + int(p["R"]),
            "ledger_entries": n_txn - n_zero + n_rev + int(p["R"]) + int(p["A"]), "refunds": n_refund}


def _drift(conn: Connection, p: dict[str, Any], rate: float) -> int:
    result = conn.execute(sa.text(f"""update wallets set points_balance = points_balance + 1 + w % 7
        from generate_series(cast(0 as bigint), :W - 1) w
        where wallets.id = {_U(K_WALLET, 'w')} and (w * 2654435761) % 1000000 < :ppm"""),
                          {**p, "ppm": int(rate * 1_000_000)})
    return int(result.rowcount or 0)


# ------------------------------------------------------------------------------------------------
# planted faults: small, explicit, one (or a few) per check


class _Planter:
    def __init__(self, conn: Connection, seed: int) -> None:
        self.conn, self.seed, self.n = conn, seed, 0
        self.tenants = [gen_id(K_TENANT, seed, 0), gen_id(K_TENANT, seed, 1)]
        self.rules = [gen_id(K_RULE, seed, 0), gen_id(K_RULE, seed, 1)]
        self.admin = gen_id(K_ADMIN, seed, 0)
        self.base = EPOCH + timedelta(days=SPAN_DAYS + 20)

    def id(self) -> uuid.UUID:
        self.n += 1
        return gen_id(K_PLANT, self.seed, self.n)

    def at(self, minutes: int) -> datetime:
        return self.base + timedelta(minutes=minutes)

    def ins(self, table: str, **values: Any) -> None:
        cols = ", ".join(values)
        params = ", ".join(f"cast(:{k} as jsonb)" if isinstance(v, dict) else f":{k}" for k, v in values.items())
        bound = {k: dumps(v) if isinstance(v, dict) else v for k, v in values.items()}
        self.conn.execute(sa.text(f"insert into {table} ({cols}) values ({params})"), bound)

    def wallet(self, tenant: int = 0, balance: int = 0, status: str = "active") -> uuid.UUID:
        user, wallet = self.id(), self.id()
        self.ins("users", id=user, email=f"planted-{self.seed}-{self.n}@gen.salesarck.test", role="consumer",
                 status="active")
        self.ins("wallets", id=wallet, tenant_id=self.tenants[tenant], user_id=user, points_balance=balance,
                 status=status)
        return wallet

    def user_of(self, wallet: uuid.UUID) -> uuid.UUID:
        return self.conn.execute(sa.text("select user_id from wallets where id = :w"), {"w": wallet}).scalar_one()

    def txn(self, tenant: int, user: uuid.UUID | None, amount: int, minute: int) -> uuid.UUID:
        tid = self.id()
        self.ins("transactions", id=tid, tenant_id=self.tenants[tenant], user_id=user, provider="square",
                 provider_transaction_id=f"planted-{self.seed}-{self.n}", amount_minor_units=amount, currency="USD",
                 transaction_at=self.at(minute), created_at=self.at(minute))
        return tid

    def points(self, amount: int, tenant: int) -> int:
        return int(self.conn.execute(sa.text(
            "select salesarck_points(:a, 2, rule_config) from reward_rules where id = :r"),
            {"a": amount, "r": self.rules[tenant]}).scalar_one())

    def event(self, wallet: uuid.UUID, txn: uuid.UUID | None, earned: int, minute: int, *, rule: int | None = 0,
              redeemed: int = 0) -> uuid.UUID:
        eid = self.id()
        self.ins("reward_events", id=eid, wallet_id=wallet, transaction_id=txn,
                 rule_version_id=None if rule is None else self.rules[rule], points_earned=earned,
                 points_redeemed=redeemed, created_at=self.at(minute))
        return eid

    def entry(self, wallet: uuid.UUID, kind: str, points: int, minute: int, *, txn: uuid.UUID | None = None,
              description: str | None = "accrual", admin: bool = False) -> uuid.UUID:
        lid = self.id()
        self.ins("wallet_ledger", id=lid, wallet_id=wallet, entry_type=kind, points=points, description=description,
                 source_transaction_id=txn, created_by_admin=self.admin if admin else None,
                 created_at=self.at(minute))
        return lid

    def accrue(self, wallet: uuid.UUID, amount: int, minute: int, tenant: int = 0) -> tuple[uuid.UUID, int, uuid.UUID]:
        """A consistent accrual: transaction, event, credit. Returns (transaction, points, ledger id)."""
        tid = self.txn(tenant, self.user_of(wallet), amount, minute)
        pts = self.points(amount, tenant)
        self.event(wallet, tid, pts, minute)
        lid = self.entry(wallet, "credit", pts, minute, txn=tid)
        return tid, pts, lid

    def set_balance(self, wallet: uuid.UUID, value: int) -> None:
        self.conn.execute(sa.text("update wallets set points_balance = :v where id = :w"), {"v": value, "w": wallet})

    def audit(self, wallet: uuid.UUID, action: str, minute: int, after: dict[str, Any] | None = None) -> None:
        self.ins("admin_audit_logs", id=self.id(), actor_user_id=self.admin, action=action,
                 target_entity_id=str(wallet), target_entity_type="wallet", after_state=after or {},
                 reason="planted fault", created_at=self.at(minute))


def _plant(conn: Connection, seed: int, s: GenerateSummary) -> None:
    pl = _Planter(conn, seed)
    planted: dict[str, set[str]] = {}

    def mark(check: str, entity: uuid.UUID) -> None:
        planted.setdefault(check, set()).add(str(entity))

    # drift, one of each explanation: three rising credits, then a wrong snapshot
    for code in ("snapshot_as_of", "single_entry", "admin_set", "unexplained"):
        w = pl.wallet()
        earned = [pl.accrue(w, amount, minute)[1] for amount, minute in ((1500, 1), (2500, 2), (3500, 3))]
        total = sum(earned)
        value = {"snapshot_as_of": earned[0], "single_entry": total + earned[1], "admin_set": total + 777,
                 "unexplained": 2 * total + 1}[code]
        if code == "admin_set":
            pl.audit(w, "wallet.set_balance", 4, {"points_balance": value})
        pl.set_balance(w, value)
        s.planted_drift[str(w)] = code
        mark("snapshot_drift", w)
    # negative balance: earn, redeem, then the purchase is voided
    w = pl.wallet()
    tid, pts, _ = pl.accrue(w, 2000, 10)
    pl.event(w, None, 0, 11, rule=None, redeemed=pts)
    pl.entry(w, "debit", pts, 11, description="redemption")
    pl.event(w, tid, -pts, 12)
    pl.entry(w, "debit", pts, 12, txn=tid, description="void")
    pl.ins("transaction_details", transaction_id=tid, provider_status="CANCELED", is_voided=True, arrival="file")
    pl.set_balance(w, -pts)
    mark("negative_balance", w)
    # missing reward event: an identified purchase under a rule, never accrued
    w = pl.wallet()
    mark("missing_reward_event", pl.txn(0, pl.user_of(w), 4200, 20))
    # duplicate accrual: posted twice (the net then also breaks the rule)
    w = pl.wallet()
    tid, pts, _ = pl.accrue(w, 3000, 30)
    pl.event(w, tid, pts, 31)
    pl.entry(w, "credit", pts, 31, txn=tid)
    pl.set_balance(w, 2 * pts)
    mark("duplicate_accrual", tid)
    mark("rule_mismatch", tid)
    # rule mismatch: one point too many, consistently on both sides
    w = pl.wallet()
    tid = pl.txn(0, pl.user_of(w), 3100, 40)
    pts = pl.points(3100, 0) + 1
    pl.event(w, tid, pts, 40)
    pl.entry(w, "credit", pts, 40, txn=tid)
    pl.set_balance(w, pts)
    mark("rule_mismatch", tid)
    # reward/ledger mismatch: the credit is one short of the event
    w = pl.wallet()
    tid = pl.txn(0, pl.user_of(w), 3300, 50)
    pts = pl.points(3300, 0)
    pl.event(w, tid, pts, 50)
    pl.entry(w, "credit", pts - 1, 50, txn=tid)
    pl.set_balance(w, pts - 1)
    mark("reward_ledger_mismatch", tid)
    # cross-tenant: tenant 1's purchase credited to a tenant-0 wallet under tenant 1's rule
    w = pl.wallet(tenant=0)
    tid = pl.txn(1, pl.user_of(w), 2600, 60)
    pts = pl.points(2600, 1)
    eid = pl.event(w, tid, pts, 60, rule=1)
    lid = pl.entry(w, "credit", pts, 60, txn=tid)
    pl.set_balance(w, pts)
    mark("cross_tenant", eid)
    mark("cross_tenant", lid)
    # frozen wallet: a credit while frozen is flagged; a refund reversal and an audited adjustment are not
    w = pl.wallet()
    tid, pts, _ = pl.accrue(w, 4000, 70)
    pl.audit(w, "wallet.freeze", 71)
    tid2, pts2, lid = pl.accrue(w, 1000, 72)
    refund_amount = 2000
    target = pl.points(4000 - refund_amount, 0)
    pl.ins("transaction_refunds", id=pl.id(), tenant_id=pl.tenants[0], provider="square",
           provider_refund_id=f"planted-ref-{seed}", transaction_id=tid, amount_minor_units=refund_amount,
           status="COMPLETED", is_completed=True, refunded_at=pl.at(73))
    pl.event(w, tid, target - pts, 73)
    pl.entry(w, "debit", pts - target, 73, txn=tid, description=f"refund:planted-ref-{seed}")
    pl.audit(w, "wallet.adjust", 74, {"points": 5})
    pl.entry(w, "credit", 5, 74, description="goodwill", admin=True)
    pl.audit(w, "wallet.unfreeze", 75)
    pl.set_balance(w, target + pts2 + 5)
    conn.execute(sa.text("update wallets set status = 'active' where id = :w"), {"w": w})
    mark("frozen_wallet_activity", lid)
    s.planted = planted
