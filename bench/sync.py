"""Benchmark: a Square sync of N payments (default 100,000) from the fake Square server.

Reports payments/s of
  1. the fake server's raw HTTP paging alone (ListPayments, every location, no database), and
  2. the full sync (paging + orders/customers/refunds look-ups + posting + snapshots), and
  3. a re-sync of the same window (every payment already applied: the cheap snapshot path),
with the sync's time split into HTTP and posting, so one can tell which limits.

The fake runs as its own process (`salesarck fakepos serve square`), like a remote API.
The database: a fresh one created on the server named by SALESARCK_TEST_DATABASE_URL (or
DATABASE_URL), dropped afterwards unless --keep.

    .venv/bin/python bench/sync.py [--payments 100000] [--members 2000] [--keep]
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402
from benchdb import create_database, drop_database  # noqa: E402

from salesarck.authz import load_actor  # noqa: E402
from salesarck.config import Settings, normalize_database_url  # noqa: E402
from salesarck.crypto import KeyRing  # noqa: E402
from salesarck.db import migrate  # noqa: E402
from salesarck.db.engine import make_engine  # noqa: E402
from salesarck.pos import sync as sync_mod  # noqa: E402
from salesarck.pos.connections import add_connection  # noqa: E402
from salesarck.pos.fake.server import ProcessServer  # noqa: E402
from salesarck.pos.fake.square import DEFAULT_ACCESS_TOKEN, FakeSquare  # noqa: E402
from salesarck.pos.http import JsonHttp  # noqa: E402
from salesarck.pos.square import SquareClient  # noqa: E402


class Timer:
    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0


def timed(fn, timer: Timer):  # type: ignore[no-untyped-def]
    def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            timer.seconds += time.perf_counter() - start
            timer.calls += 1
    return wrapper


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--payments", type=int, default=100_000)
    ap.add_argument("--members", type=int, default=2000, help="fake customers who are loyalty members")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="keep the benchmark database")
    args = ap.parse_args()

    raw = os.environ.get("SALESARCK_TEST_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if not raw:
        sys.exit("set SALESARCK_TEST_DATABASE_URL (or DATABASE_URL) to a PostgreSQL server")
    server = normalize_database_url(raw)
    name = f"sa_bench_{uuid.uuid4().hex[:8]}"
    engine = make_engine(create_database(name, server))
    try:
        migrate.upgrade(engine)
        # the same deterministic data as the server process builds, for the member list
        t0 = time.perf_counter()
        twin = FakeSquare(seed=args.seed, payments=args.payments)
        gen_s = time.perf_counter() - t0
        with ProcessServer(["fakepos", "serve", "square", "--seed", str(args.seed), "--payments",
                            str(args.payments)]) as srv:
            print(f"fake Square: {args.payments} payments, {len(twin.locations)} locations, "
                  f"{len(twin.customers)} customers, {len(twin.refunds)} refunds (generated in {gen_s:.1f} s)")
            begin = datetime.now(UTC) - timedelta(days=60)
            # 1. raw HTTP paging
            client = SquareClient(srv.base_url, DEFAULT_ACCESS_TOKEN)
            t0 = time.perf_counter()
            n = pages = 0
            for loc in client.list_locations():
                for page in client.iter_payment_pages(location_id=loc["id"], updated_at_begin_time=begin):
                    n += len(page.payments)
                    pages += 1
            raw_s = time.perf_counter() - t0
            client.close()
            print(f"raw paging:  {n} payments, {pages} pages in {raw_s:.1f} s = {n / raw_s:,.0f} payments/s "
                  f"({pages / raw_s:,.0f} pages/s)")

            # 2. the sync
            keys = "bench:" + base64.b64encode(os.urandom(32)).decode()
            settings = Settings(encryption_keys=keys, square_base_url=srv.base_url,  # type: ignore[call-arg]
                                sync_initial_days=60)
            with engine.begin() as conn:
                tenant_id = conn.execute(sa.text("insert into tenants (name) values ('Bench') returning id")).scalar()
                conn.execute(sa.text(
                    "insert into reward_rules (tenant_id, version, is_active, rule_config, effective_from)"
                    " values (:t, 1, true, cast(:c as jsonb), '2020-01-01')"),
                    {"t": tenant_id, "c": '{"conversionRate": 1, "minSpendMinorUnits": 0, "roundingPolicy": "floor"}'})
                admin_id = uuid.uuid4()
                conn.execute(sa.text("insert into users (id, email, role, status) values (:i, 'bench@x.test',"
                                     " 'admin', 'active')"), {"i": admin_id})
                members = list(twin.customers.values())[:args.members]
                conn.execute(sa.text(
                    "insert into users (id, email, role, status) select gen_random_uuid(), e, 'consumer', 'active'"
                    " from unnest(cast(:e as text[])) e"), {"e": [m["email_address"] for m in members]})
                admin = load_actor(conn, "bench@x.test")
            info = add_connection(engine, actor=admin, tenant_id=tenant_id, provider="square",
                                  merchant_id=twin.merchant_id, access_token=DEFAULT_ACCESS_TOKEN,
                                  keyring=KeyRing.parse(keys))
            http_t, post_t = Timer(), Timer()
            JsonHttp.request = timed(JsonHttp.request, http_t)  # type: ignore[method-assign]
            sync_mod.post_payments = timed(sync_mod.post_payments, post_t)
            t0 = time.perf_counter()
            result = sync_mod.sync_connection(engine, info.id, actor=None, settings=settings)
            sync_s = time.perf_counter() - t0
            assert result.ok, result.error
            print(f"full sync:   {result.payments_seen} payments in {sync_s:.1f} s = "
                  f"{result.payments_seen / sync_s:,.0f} payments/s; posted {result.posted}, skipped "
                  f"{result.skipped}, points +{result.points_credited}/-{result.points_debited}")
            print(f"             fetch thread: HTTP {http_t.seconds:.1f} s in {http_t.calls} requests "
                  f"({http_t.calls - pages - 1} look-ups of orders/customers/refunds); posting thread: "
                  f"post_payments {post_t.seconds:.1f} s in {post_t.calls} batches (the two overlap)")
            http_t.seconds = post_t.seconds = 0.0
            http_t.calls = post_t.calls = 0
            t0 = time.perf_counter()
            again = sync_mod.sync_connection(engine, info.id, actor=None, settings=settings,
                                             since=datetime.now(UTC).replace(tzinfo=None) - timedelta(days=60))
            re_s = time.perf_counter() - t0
            assert again.ok and again.posted == 0, again
            print(f"re-sync:     {again.payments_seen} payments in {re_s:.1f} s = "
                  f"{again.payments_seen / re_s:,.0f} payments/s (all duplicates); HTTP {http_t.seconds:.1f} s "
                  f"in {http_t.calls} requests")
    finally:
        engine.dispose()
        if not args.keep:
            drop_database(name, server)
        else:
            print(f"kept database {name}")


if __name__ == "__main__":
    main()
