"""Benchmark: `ingest` of N Square payments vs a raw COPY (ceiling) and a naive ORM baseline.

    .venv/bin/python bench/ingest.py [--n 200000] [--naive-sample 5000]

Creates (and finally drops) the database `salesarck_bench_ingest` on the server named by
SALESARCK_BENCH_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/postgres), migrates
it, generates N payments (60% of customers known, 5% refunded), and reports payments/second:
- ingest: `salesarck.rewards.ingest.ingest_file` end to end (read + map + post + commit);
- copy: a raw COPY of the same rows into an empty copy of `transactions` (with its indexes);
- naive: one payment per database transaction through the ORM, on a sample.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchdb import create_database, drop_database  # noqa: E402

from salesarck.authz import load_actor  # noqa: E402
from salesarck.db import migrate  # noqa: E402
from salesarck.db.engine import make_engine  # noqa: E402
from salesarck.db.models import RewardEvent, RewardRule, Transaction, User, Wallet, WalletLedger  # noqa: E402
from salesarck.pos.mapping import load_payment_file, map_square_payment  # noqa: E402
from salesarck.rewards.ingest import ingest_file  # noqa: E402
from salesarck.rewards.rules import RuleConfig, points_for  # noqa: E402

DB_NAME = "salesarck_bench_ingest"
RULE = {"conversionRate": 1, "minSpendMinorUnits": 0, "maxPointsPerTransaction": 500, "minBalanceToRedeem": 0,
        "maxRedemptionPercentage": 100, "roundingPolicy": "floor"}


def generate(n: int, known_emails: list[str], seed: int = 7, prefix: str = "pay") -> list[dict[str, object]]:
    """N Square Payment objects: 60% from known customers, 5% with a completed refund."""
    rnd = random.Random(seed)
    start = datetime(2026, 3, 1)
    out: list[dict[str, object]] = []
    for i in range(n):
        amount = rnd.randint(100, 50_000)
        created = start + timedelta(seconds=i * 7)
        p: dict[str, object] = {
            "id": f"{prefix}-{i:08d}", "status": "COMPLETED",
            "created_at": created.isoformat() + "Z", "updated_at": (created + timedelta(seconds=3)).isoformat() + "Z",
            "amount_money": {"amount": amount, "currency": "USD"},
            "tip_money": {"amount": rnd.randint(0, 500), "currency": "USD"},
            "location_id": "LBENCH", "order_id": f"ord-{i}", "source_type": "CARD",
        }
        if rnd.random() < 0.6:
            p["buyer_email_address"] = rnd.choice(known_emails)
        elif rnd.random() < 0.5:
            p["buyer_email_address"] = f"walkin-{i}@example.net"
        if rnd.random() < 0.05:
            p["refunded_money"] = {"amount": rnd.randint(1, amount), "currency": "USD"}
            p["refund_ids"] = [f"ref-{prefix}-{i}"]
        out.append(p)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200_000, help="payments to ingest (default 200000)")
    ap.add_argument("--naive-sample", type=int, default=5_000, help="payments for the naive baseline (default 5000)")
    ap.add_argument("--customers", type=int, default=20_000, help="known customers (default 20000)")
    args = ap.parse_args()
    if args.n < 1 or args.naive_sample < 1 or args.customers < 1:
        ap.error("--n, --naive-sample and --customers must be positive")

    engine = make_engine(create_database(DB_NAME))
    try:
        results = run(engine, args.n, args.naive_sample, args.customers)
    finally:
        engine.dispose()
        drop_database(DB_NAME)
    print(json.dumps(results, indent=2))


def run(engine: sa.Engine, n: int, sample: int, customers: int) -> dict[str, object]:
    migrate.upgrade(engine)
    with engine.begin() as conn:
        admin_id = uuid.uuid4()
        conn.execute(sa.text("insert into users (id, email, role, status) values (:i, 'bench-admin@example.test', "
                             "'admin', 'active')"), {"i": admin_id})
        tenant = conn.execute(sa.text("insert into tenants (name) values ('Bench') returning id")).scalar_one()
        naive_tenant = conn.execute(sa.text("insert into tenants (name) values ('Naive') returning id")).scalar_one()
        for t in (tenant, naive_tenant):
            conn.execute(sa.text("insert into reward_rules (tenant_id, version, is_active, rule_config, effective_from)"
                                 " values (:t, 1, true, cast(:c as jsonb), '2020-01-01')"),
                         {"t": t, "c": json.dumps(RULE)})
        emails = [f"customer-{i}@example.com" for i in range(customers)]
        conn.execute(sa.text("insert into users (id, email, role, status) "
                             "select gen_random_uuid(), 'customer-' || g || '@example.com', 'consumer', 'active' "
                             "from generate_series(0, :n - 1) g"), {"n": customers})
        actor = load_actor(conn, "bench-admin@example.test")
        conn.execute(sa.text("analyze"))

    payments = generate(n, emails)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "payments.json"
        path.write_text(json.dumps({"payments": payments}))
        size_mb = path.stat().st_size / 1e6

        # (1) ingest end to end: read + parse + map + post + commit
        t0 = time.perf_counter()
        with engine.begin() as conn:
            summary = ingest_file(conn, actor=actor, tenant_id=tenant, path=path, provider="square")
        ingest_s = time.perf_counter() - t0
        records, _ = load_payment_file(path, "square")

    # (2) raw COPY of the same rows into an empty copy of transactions (indexes included)
    rows = [(uuid.uuid4(), tenant, r.provider, r.provider_payment_id, r.amount_minor_units, r.currency,
             json.dumps(r.customer_ref), r.transaction_at) for r in records]
    with engine.begin() as conn:
        conn.execute(sa.text("create table bench_tx_copy (like transactions including all)"))
        raw = conn.connection.driver_connection
        assert raw is not None
        t0 = time.perf_counter()
        with raw.cursor() as cur, cur.copy("copy bench_tx_copy (id, tenant_id, provider, provider_transaction_id, "
                                           "amount_minor_units, currency, customer_ref, transaction_at) from stdin") as cp:
            for row in rows:
                cp.write_row(row)
    copy_s = time.perf_counter() - t0

    # (3) naive: one payment per database transaction through the ORM
    naive_payments = generate(sample, emails, seed=11, prefix="naive")
    t0 = time.perf_counter()
    for obj in naive_payments:
        naive_post(engine, naive_tenant, map_square_payment(obj))
    naive_s = time.perf_counter() - t0

    with engine.connect() as conn:
        drift = conn.execute(sa.text(
            "select count(*) from wallets w where w.tenant_id = :t and points_balance <> coalesce((select sum(case "
            "entry_type when 'credit' then points else -points end) from wallet_ledger l where l.wallet_id = w.id), 0)"),
            {"t": tenant}).scalar()
    ingest_rate, copy_rate, naive_rate = n / ingest_s, n / copy_s, sample / naive_s
    return {
        "payments": n, "file_mb": round(size_mb, 1), "summary": {k: v for k, v in summary.as_dict().items()
                                                                 if k != "skipped_reasons"},
        "wallets_with_drift": drift,
        "ingest_seconds": round(ingest_s, 2), "ingest_payments_per_s": round(ingest_rate),
        "copy_seconds": round(copy_s, 2), "copy_rows_per_s": round(copy_rate),
        "naive_sample": sample, "naive_seconds": round(naive_s, 2), "naive_payments_per_s": round(naive_rate),
        "ingest_vs_copy": round(ingest_rate / copy_rate, 3), "ingest_vs_naive": round(ingest_rate / naive_rate, 1),
        "targets": {"ingest_vs_copy_at_least": 0.10, "ingest_vs_naive_at_least": 20},
    }


def naive_post(engine: sa.Engine, tenant_id: uuid.UUID, rec: object) -> None:
    """The obvious per-payment ORM loop: the baseline the set-based path must beat."""
    from salesarck.pos.records import PaymentRecord

    assert isinstance(rec, PaymentRecord)
    with Session(engine) as s, s.begin():
        if s.scalar(sa.select(Transaction.id).where(Transaction.tenant_id == tenant_id,
                                                    Transaction.provider == rec.provider,
                                                    Transaction.provider_transaction_id == rec.provider_payment_id)):
            return
        email = rec.customer_ref.get("email")
        user = s.scalar(sa.select(User).where(sa.func.lower(User.email) == email)) if email else None
        tx = Transaction(tenant_id=tenant_id, user_id=user.id if user else None, provider=rec.provider,
                         provider_transaction_id=rec.provider_payment_id, amount_minor_units=rec.amount_minor_units,
                         currency=rec.currency, customer_ref=rec.customer_ref, transaction_at=rec.transaction_at)
        s.add(tx)
        s.flush()
        if user is None:
            return
        wallet = s.scalar(sa.select(Wallet).where(Wallet.tenant_id == tenant_id, Wallet.user_id == user.id)
                          .with_for_update())
        if wallet is None:
            wallet = Wallet(tenant_id=tenant_id, user_id=user.id, points_balance=0, status="active")
            s.add(wallet)
            s.flush()
        rule = s.scalar(sa.select(RewardRule).where(RewardRule.tenant_id == tenant_id,
                                                    RewardRule.effective_from <= rec.transaction_at)
                        .order_by(RewardRule.effective_from.desc(), RewardRule.version.desc()).limit(1))
        if rule is None:
            return
        cfg = RuleConfig.parse(rule.rule_config)
        points = points_for(rec.amount_minor_units, rec.currency, cfg)
        s.add(RewardEvent(wallet_id=wallet.id, transaction_id=tx.id, rule_version_id=rule.id, points_earned=points))
        delta = points
        if points > 0:
            s.add(WalletLedger(wallet_id=wallet.id, entry_type="credit", points=points, description="accrual",
                               source_transaction_id=tx.id))
        refunded = sum(r.amount_minor_units for r in rec.refunds if r.is_completed)
        if refunded:
            target = points_for(max(rec.amount_minor_units - refunded, 0), rec.currency, cfg)
            if points > target:
                s.add(RewardEvent(wallet_id=wallet.id, transaction_id=tx.id, rule_version_id=rule.id,
                                  points_earned=target - points))
                s.add(WalletLedger(wallet_id=wallet.id, entry_type="debit", points=points - target,
                                   description=f"refund:{rec.refunds[0].provider_refund_id}",
                                   source_transaction_id=tx.id))
                delta = target
        if delta:
            wallet.points_balance = Wallet.points_balance + delta


if __name__ == "__main__":
    main()
