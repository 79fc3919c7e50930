"""Load: the webhook receiver under N concurrent senders for a fixed time, on loopback; stops by itself.

    .venv/bin/python bench/load_webhooks.py [--senders 200] [--seconds 60] [--receiver-workers 1]

Reuses bench/webhooks.py's setup (a throwaway database `salesarck_bench_webhooks`, dropped at the end,
on SALESARCK_BENCH_DATABASE_URL; a fake Square server; `salesarck webhooks serve` as its own process).
Every request is a distinct signed Square `payment.updated` event (its own event id). Reports accepted
events/s, p50/p95/p99/max latency of accepted requests, status counts, transport errors, and whether
every accepted (200) event is stored (`lost` must be 0). Traffic goes to 127.0.0.1 only.
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
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

import webhooks as base  # noqa: E402  (bench/webhooks.py)
from benchdb import drop_database  # noqa: E402

from salesarck.pos.fake.server import ThreadServer, free_port, wait_for_port  # noqa: E402
from salesarck.pos.fake.square import FakeSquare, sign_webhook  # noqa: E402


async def _post(conn: list[Any], host: str, port: int, request: bytes) -> int:
    """One request on a kept-alive HTTP/1.1 connection (`conn` holds reader and writer, or is empty).

    A plain asyncio client, not httpx: on a 2-core machine httpx's per-request cost made the senders,
    not the receiver, the bottleneck (80% CPU for the senders against 43% for the receiver)."""
    if not conn:
        conn.extend(await asyncio.open_connection(host, port))
    reader, writer = conn
    writer.write(request)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = next((int(line.split(b":", 1)[1]) for line in head.lower().split(b"\r\n")
                   if line.startswith(b"content-length:")), 0)
    await reader.readexactly(length)
    if b"connection: close" in head.lower():
        writer.close()
        conn.clear()
    return status


async def load(url: str, fake: FakeSquare, senders: int, seconds: float) -> dict[str, object]:
    templates = [fake.webhook_event("payment.updated", pid) for pid in fake.payment_ids()[:200]]
    codes: dict[str, int] = {}
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    host, port = url.removeprefix("http://").split(":")

    async def sender(k: int) -> None:
        i = 0
        conn: list[Any] = []
        while time.perf_counter() < deadline:
            ev = {**templates[(k * 7919 + i) % len(templates)], "event_id": str(uuid.uuid4())}
            body = json.dumps(ev, separators=(",", ":")).encode()
            request = (f"POST /webhooks/square HTTP/1.1\r\nhost: {host}:{port}\r\n"
                       "content-type: application/json\r\n"
                       f"x-square-hmacsha256-signature: {sign_webhook(base.KEY, base.NOTIFICATION_URL, body)}\r\n"
                       f"content-length: {len(body)}\r\n\r\n").encode() + body
            t0 = time.perf_counter()
            try:
                status = await asyncio.wait_for(_post(conn, host, int(port), request), 30)
                key = str(status)
                if status == 200:
                    latencies.append(time.perf_counter() - t0)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError) as exc:
                key = type(exc).__name__
                if conn:
                    conn[1].close()
                    conn.clear()
            codes[key] = codes.get(key, 0) + 1
            i += 1
        if conn:
            conn[1].close()

    started = time.perf_counter()
    await asyncio.gather(*(sender(k) for k in range(senders)))
    elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 1) if latencies else 0.0

    return {"elapsed_s": round(elapsed, 1), "accepted": len(latencies),
            "accepted_per_s": round(len(latencies) / elapsed, 1), "codes": codes,
            "p50_ms": pct(0.50), "p95_ms": pct(0.95), "p99_ms": pct(0.99), "max_ms": pct(1.0)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--senders", type=int, default=200, help="concurrent HTTP senders")
    ap.add_argument("--seconds", type=float, default=60.0, help="how long to send")
    ap.add_argument("--receiver-workers", type=int, default=1, help="uvicorn worker processes of the receiver")
    args = ap.parse_args()
    if not 1 <= args.senders <= 1000 or not 1 <= args.seconds <= 600:
        ap.error("senders must be 1-1000 and seconds 1-600")
    fake = FakeSquare(seed=11, payments=500, days=20)
    results: dict[str, object] = {"senders": args.senders, "seconds": args.seconds,
                                  "receiver_workers": args.receiver_workers, "cpus": os.cpu_count()}
    with ThreadServer(fake.app) as sq:
        engine, _, db_url = base.setup(fake, sq.base_url)
        port = free_port()
        env = {**os.environ, "DATABASE_URL": db_url, "SQUARE_WEBHOOK_SIGNATURE_KEY": base.KEY,
               "SQUARE_WEBHOOK_NOTIFICATION_URL": base.NOTIFICATION_URL, "SALESARCK_LOG_LEVEL": "WARNING",
               "SALESARCK_HOME": str(ROOT / ".salesarck" / "bench-home")}
        proc = subprocess.Popen([sys.executable, "-c", "import sys; from salesarck.cli import main; main(sys.argv[1:])",
                                 "webhooks", "serve", "--host", "127.0.0.1", "--port", str(port),
                                 "--workers", str(args.receiver_workers)],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_port(port, proc=proc, timeout=120)
            results.update(asyncio.run(load(f"http://127.0.0.1:{port}", fake, args.senders, args.seconds)))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        stored = base.count(engine, "select count(*) from pos_webhook_events_raw")
        results["stored"] = stored
        results["lost"] = max(0, int(str(results["accepted"])) - stored)
        results["load_average_1m"] = os.getloadavg()[0]
    engine.dispose()
    drop_database(base.DB_NAME)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
