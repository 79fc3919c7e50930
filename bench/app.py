"""Page render budget at scale: time every page's reads on generated data (1M transactions / 10M ledger).

Creates its own database `salesarck_bench_app` on SALESARCK_BENCH_DATABASE_URL (default the local
PostgreSQL), fills it with `salesarck.reconcile.generate.generate`, then times each analytics read
an admin's page render makes, cold (the SQL) and warm (the app's st.cache_data hit). `--keep`
keeps the database for a second run with `--reuse`.

    .venv/bin/python bench/app.py --wallets 1000000 --ledger 10000000
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from benchdb import create_database, drop_database, server_url

from salesarck import analytics
from salesarck.authz import load_actor
from salesarck.db import migrate
from salesarck.db.engine import make_engine
from salesarck.timeutil import utcnow

DB = "salesarck_bench_app"


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    runs, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tenants", type=int, default=20)
    ap.add_argument("--wallets", type=int, default=1_000_000)
    ap.add_argument("--ledger", type=int, default=10_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--reuse", action="store_true", help="use the existing bench database as it is")
    ap.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = ap.parse_args()
    url = server_url().set(database=DB) if args.reuse else create_database(DB)
    engine = make_engine(url)
    try:
        if not args.reuse:
            migrate.upgrade(engine)
            from salesarck.reconcile.generate import generate

            t0 = time.perf_counter()
            summary = generate(engine, tenants=args.tenants, wallets=args.wallets, ledger_entries=args.ledger,
                               drift_rate=0.001, seed=1)
            print(f"generated in {time.perf_counter() - t0:.1f} s: {summary}")
            with engine.connect() as conn:
                conn.execute(sa.text("analyze"))
        with engine.connect() as conn:
            counts = conn.execute(sa.text(
                "select (select count(*) from transactions), (select count(*) from wallet_ledger),"
                " (select count(*) from wallets), (select email from users where role = 'admin' and status = 'active'"
                " and email is not null limit 1)")).one()
            print(f"data: {counts[0]:,} transactions, {counts[1]:,} ledger rows, {counts[2]:,} wallets")
            actor = load_actor(conn, counts[3])
            tenant = conn.execute(sa.text("select id from tenants order by name limit 1")).scalar_one()
            wallet = conn.execute(sa.text("select wallet_id from wallet_ledger where wallet_id in"
                                          " (select id from wallets limit 1000) group by wallet_id"
                                          " order by count(*) desc limit 1")).scalar_one()
            last = conn.execute(sa.text("select max(transaction_at) from transactions")).scalar() or utcnow()
            email = conn.execute(sa.text("select u.email from wallets w join users u on u.id = w.user_id"
                                         " where u.email is not null limit 1")).scalar_one()
        # the page's default window is the last 90 days; generated data ends at `last`
        end = datetime(last.year, last.month, last.day) + timedelta(days=1)
        start = end - timedelta(days=90)
        reads: dict[str, list[tuple[str, Callable[[sa.Connection], Any]]]] = {
            "Overview": [("overview_kpis", lambda c: analytics.overview_kpis(c, actor=actor)),
                         ("connections_status", lambda c: analytics.connections_status(c, actor=actor))],
            "Transactions (all tenants, warm rollup)": [
                ("transactions_from_daily", lambda c: analytics.transactions_from_daily(
                    analytics_cache["tx_all"], start=start, end=end, by="tenant")),
                ("transactions_page", lambda c: analytics.transactions_page(
                    c, actor=actor, start=start, end=end, total=1))],
            "Transactions (one tenant, hour, SQL)": [
                ("transactions_timeline", lambda c: analytics.transactions_timeline(
                    c, actor=actor, start=end - timedelta(days=7), end=end, tenant_id=tenant, by="provider",
                    freq="hour")),
                ("transactions_page", lambda c: analytics.transactions_page(
                    c, actor=actor, start=start, end=end, tenant_id=tenant))],
            "Transactions (direct SQL, no rollup)": [
                ("transactions_timeline", lambda c: analytics.transactions_timeline(
                    c, actor=actor, start=start, end=end, by="tenant"))],
            "Rollup build (background, cold)": [
                ("ledger_daily_flows all", lambda c: analytics.ledger_daily_flows(c, actor=actor)),
                ("reward_daily all", lambda c: analytics.reward_daily(c, actor=actor)),
                ("ledger_daily_flows 1 tenant", lambda c: analytics.ledger_daily_flows(c, actor=actor, tenant_id=tenant)),
                ("reward_daily 1 tenant", lambda c: analytics.reward_daily(c, actor=actor, tenant_id=tenant)),
                ("transaction_daily all", lambda c: analytics.transaction_daily(c, actor=actor))],
            "Rewards (all tenants, warm rollup)": [
                ("point_values", lambda c: analytics.point_values(c, actor=actor)),
                ("rule_versions", lambda c: analytics.rule_versions(c, actor=actor)),
                ("rewards_from_daily", lambda c: analytics.rewards_from_daily(
                    analytics_cache["daily_all"], start=start, end=end)),
                ("liability_from_flows", lambda c: analytics.liability_from_flows(
                    analytics_cache["flows_all"], analytics_cache["values_all"], start=start, end=end))],
            "Rewards (direct SQL, no rollup)": [
                ("rewards_timeline", lambda c: analytics.rewards_timeline(c, actor=actor, start=start, end=end)),
                ("liability_timeline", lambda c: analytics.liability_timeline(c, actor=actor, start=start, end=end))],
            "Wallet detail (busiest wallet)": [
                ("wallet_summary", lambda c: analytics.wallet_summary(c, actor=actor, wallet_id=wallet)),
                ("wallet_balance_series", lambda c: analytics.wallet_balance_series(c, actor=actor, wallet_id=wallet)),
                ("wallet_ledger_page", lambda c: analytics.wallet_ledger_page(c, actor=actor, wallet_id=wallet)),
                ("find_wallets (email)", lambda c: analytics.find_wallets(c, actor=actor, query=email))],
            "Audit": [("audit_timeline", lambda c: analytics.audit_timeline(c, actor=actor, start=start, end=end)),
                      ("audit_page", lambda c: analytics.audit_page(c, actor=actor, start=start, end=end))],
        }
        with engine.connect() as conn:
            analytics_cache = {"daily_all": analytics.reward_daily(conn, actor=actor),
                               "flows_all": analytics.ledger_daily_flows(conn, actor=actor),
                               "values_all": analytics.point_values(conn, actor=actor),
                               "tx_all": analytics.transaction_daily(conn, actor=actor)}
        print(f"\n{'page':36} {'read':28} {'median s':>9}")
        for page, items in reads.items():
            total = 0.0
            with engine.connect() as conn:
                for name, fn in items:
                    secs, _ = timed(lambda fn=fn: fn(conn), args.repeat)  # type: ignore[misc]
                    total += secs
                    print(f"{page:36} {name:28} {secs:9.3f}")
            print(f"{page:36} {'= total':28} {total:9.3f}")
    finally:
        engine.dispose()
        if not args.keep:
            drop_database(DB)


if __name__ == "__main__":
    main()
