"""Benchmark: accepted webhook events/s at the receiver, and processed events/s.

    .venv/bin/python bench/webhooks.py [--events 5000] [--concurrency 32] [--payments 2000] [--receiver-workers 1]

Creates (and finally drops) the database `salesarck_bench_webhooks` on the server named by
SALESARCK_BENCH_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/postgres) and migrates it.
Then:
- receiver: `salesarck webhooks serve` runs as its own process (uvicorn); this process sends
  `--events` signed Square `payment.updated` notifications (distinct event ids over the fake Square
  server's payments) from `--concurrency` concurrent HTTP/1.1 clients and times them until every
  one is answered 200 and stored;
- duplicates: the same again with one event id re-sent (stored once), for the dedup path;
- processor: `process_pending` over the stored backlog, with the sync's enrichment against the fake
  Square server over HTTP (orders, customers, refunds), and once more without enrichment (events
  carrying the full payment: posting only) on a second copy of the backlog.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import sqlalchemy as sa
from pydantic import SecretStr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchdb import create_database, drop_database  # noqa: E402

from salesarck.authz import load_actor  # noqa: E402
from salesarck.config import Settings  # noqa: E402
from salesarck.crypto import KeyRing, generate_key_spec  # noqa: E402
from salesarck.db import migrate  # noqa: E402
from salesarck.db.engine import make_engine  # noqa: E402
from salesarck.pos import connections  # noqa: E402
from salesarck.pos.fake.server import ThreadServer, free_port, wait_for_port  # noqa: E402
from salesarck.pos.fake.square import FakeSquare, sign_webhook  # noqa: E402
from salesarck.pos.webhooks import processor  # noqa: E402

DB_NAME = "salesarck_bench_webhooks"
KEY = "bench-signature-key-" + uuid.uuid4().hex
NOTIFICATION_URL = "https://hooks.example.test/webhooks/square"
RULE = {"conversionRate": 1, "minSpendMinorUnits": 0, "minBalanceToRedeem": 0, "maxRedemptionPercentage": 100,
        "roundingPolicy": "floor"}


def setup(fake: FakeSquare, square_url: str) -> tuple[sa.Engine, Settings, str]:
    url = create_database(DB_NAME)
    engine = make_engine(url)
    migrate.upgrade(engine)
    settings = Settings(encryption_keys=generate_key_spec(), square_base_url=square_url,
                        square_webhook_signature_key=KEY, square_webhook_notification_url=NOTIFICATION_URL,
                        square_client_id=fake.client_id, square_client_secret=fake.client_secret)
    admin_id, tenant_id = uuid.uuid4(), uuid.uuid4()
    with engine.begin() as conn:
        conn.execute(sa.text("insert into users (id, email, role, status) values (:i, 'bench-admin@example.test',"
                             " 'admin', 'active')"), {"i": admin_id})
        conn.execute(sa.text("insert into tenants (id, name) values (:i, 'Bench')"), {"i": tenant_id})
        conn.execute(sa.text("insert into reward_rules (tenant_id, version, rule_config, effective_from)"
                             " values (:t, 1, cast(:c as jsonb), '2020-01-01')"), {"t": tenant_id, "c": json.dumps(RULE)})
        conn.execute(sa.text("insert into users (id, email, role, status) select gen_random_uuid(), e, 'consumer',"
                             " 'active' from unnest(cast(:e as text[])) as e"),
                     {"e": sorted({c["email_address"] for c in fake.customers.values()})})
        admin = load_actor(conn, "bench-admin@example.test")
    connections.add_connection(engine, actor=admin, tenant_id=tenant_id, provider="square",
                               merchant_id=fake.merchant_id, access_token=SecretStr(fake.access_token),
                               refresh_token=SecretStr(fake.refresh_token), keyring=KeyRing.from_settings(settings))
    return engine, settings, url.render_as_string(hide_password=False)


def bodies(fake: FakeSquare, n: int) -> list[bytes]:
    pids = fake.payment_ids()
    out = []
    for i in range(n):
        ev = fake.webhook_event("payment.updated", pids[i % len(pids)])
        out.append(json.dumps(ev, separators=(",", ":")).encode())
    return out


async def send_all(base_url: str, payloads: list[bytes], concurrency: int) -> tuple[float, dict[int, int]]:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for b in payloads:
        queue.put_nowait(b)
    codes: dict[int, int] = {}

    async def sender(client: httpx.AsyncClient) -> None:
        while True:
            try:
                body = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            r = await client.post("/webhooks/square", content=body, headers={
                "content-type": "application/json",
                "x-square-hmacsha256-signature": sign_webhook(KEY, NOTIFICATION_URL, body)})
            codes[r.status_code] = codes.get(r.status_code, 0) + 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(sender(client) for _ in range(concurrency)))
        return time.perf_counter() - started, codes


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its reaped children (Linux /proc), or 0 if unreadable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return sum(int(f) for f in fields[11:15]) / ticks  # utime, stime, cutime, cstime


def count(engine: sa.Engine, sql: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(sql)).scalar_one())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=5000, help="distinct events to send")
    ap.add_argument("--concurrency", type=int, default=32, help="concurrent HTTP clients")
    ap.add_argument("--payments", type=int, default=2000, help="payments in the fake Square server")
    ap.add_argument("--receiver-workers", type=int, default=1, help="uvicorn worker processes of the receiver")
    ap.add_argument("--keep", action="store_true", help="keep the benchmark database")
    args = ap.parse_args()
    fake = FakeSquare(seed=11, payments=args.payments, days=20)
    results: dict[str, object] = {"events": args.events, "concurrency": args.concurrency,
                                  "receiver_workers": args.receiver_workers, "cpus": os.cpu_count()}
    with ThreadServer(fake.app) as sq:
        engine, settings, db_url = setup(fake, sq.base_url)
        port = free_port()
        env = {**os.environ, "DATABASE_URL": db_url, "SQUARE_WEBHOOK_SIGNATURE_KEY": KEY,
               "SQUARE_WEBHOOK_NOTIFICATION_URL": NOTIFICATION_URL, "SALESARCK_LOG_LEVEL": "WARNING",
               "SALESARCK_HOME": str(ROOT / ".salesarck" / "bench-home")}
        proc = subprocess.Popen([sys.executable, "-c", "import sys; from salesarck.cli import main; main(sys.argv[1:])",
                                 "webhooks", "serve", "--port", str(port), "--workers", str(args.receiver_workers)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_port(port, proc=proc, timeout=120)
            base = f"http://127.0.0.1:{port}"
            payloads = bodies(fake, args.events)
            asyncio.run(send_all(base, payloads[:50], 8))  # warm-up (not counted)
            with engine.begin() as conn:
                conn.execute(sa.text("delete from pos_webhook_events_raw"))
                conn.execute(sa.text("delete from pos_webhook_event_keys"))
            cpu0 = cpu_seconds(proc.pid)
            elapsed, codes = asyncio.run(send_all(base, payloads, args.concurrency))
            cpu1 = cpu_seconds(proc.pid)
            stored = count(engine, "select count(*) from pos_webhook_events_raw")
            results["receiver_accepted_per_s"] = round(args.events / elapsed, 1)
            results["receiver_codes"] = codes
            if args.receiver_workers == 1 and cpu1 > cpu0:
                # load-independent: what one accepted event costs the receiver process in CPU
                results["receiver_cpu_ms_per_event"] = round((cpu1 - cpu0) * 1000 / args.events, 2)
            results["load_average_1m"] = os.getloadavg()[0]
            results["stored"] = stored
            dup_elapsed, dup_codes = asyncio.run(send_all(base, [payloads[0]] * args.events, args.concurrency))
            results["receiver_duplicates_per_s"] = round(args.events / dup_elapsed, 1)
            results["stored_after_duplicates"] = count(engine, "select count(*) from pos_webhook_events_raw")
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        # keep a copy of the backlog for the posting-only run
        with engine.begin() as conn:
            conn.execute(sa.text("create table bench_backlog as select * from pos_webhook_events_raw"))
        started = time.perf_counter()
        res = processor.process_now(engine, actor=None, settings=settings, batch_size=500)
        took = time.perf_counter() - started
        results["processed_enriched_per_s"] = round(res.processed / took, 1)
        results["processed_enriched"] = res.as_dict()
        results["fake_square_requests"] = fake.stats["requests"]
        # posting only: the same backlog again, unprocessed, into fresh transactions
        with engine.begin() as conn:
            conn.execute(sa.text("delete from pos_webhook_event_attempts"))
            conn.execute(sa.text("update pos_webhook_events_raw set processed = false"))
        started = time.perf_counter()
        res2 = processor.process_pending(engine, fetcher=None, batch_size=500)
        took2 = time.perf_counter() - started
        results["processed_posting_only_per_s"] = round(res2.processed / took2, 1)
        results["transactions"] = count(engine, "select count(*) from transactions")
        results["completed_payments_in_fake"] = len({p for p in fake.payment_ids(status="COMPLETED")})
    engine.dispose()
    if not args.keep:
        drop_database(DB_NAME)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
