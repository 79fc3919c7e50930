"""A short, bounded smoke version of bench/load_webhooks.py: 40 concurrent senders for 3 s against the
receiver over loopback HTTP; every accepted (200) event is stored exactly once, nothing else is
answered but 200, and the receiver stays healthy."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from salesarck.pos.fake.square import sign_webhook
from tests.webhook_support import NOTIFICATION_URL, SIGNATURE_KEY, Env, provider_env

SENDERS = 40
SECONDS = 3.0


@pytest.fixture
def env(engine: Engine) -> Iterator[Env]:
    with provider_env(engine, square_payments=30, clover_payments=2) as e:
        yield e


def test_receiver_load_smoke_loses_nothing(engine: Engine, env: Env) -> None:
    templates = [env.square.webhook_event("payment.updated", pid) for pid in env.square.payment_ids()[:30]]
    accepted: list[str] = []
    other: dict[str, int] = {}

    async def run() -> None:
        deadline = time.perf_counter() + SECONDS

        async def sender(client: httpx.AsyncClient, k: int) -> None:
            i = 0
            while time.perf_counter() < deadline:
                ev = {**templates[(k + i) % len(templates)], "event_id": str(uuid.uuid4())}
                body = json.dumps(ev).encode()
                r = await client.post("/webhooks/square", content=body, headers={
                    "content-type": "application/json",
                    "x-square-hmacsha256-signature": sign_webhook(SIGNATURE_KEY, NOTIFICATION_URL, body)})
                if r.status_code == 200:
                    accepted.append(ev["event_id"])
                else:
                    other[str(r.status_code)] = other.get(str(r.status_code), 0) + 1
                i += 1

        limits = httpx.Limits(max_connections=SENDERS)
        async with httpx.AsyncClient(base_url=env.receiver_url, timeout=30, limits=limits) as client:
            await asyncio.gather(*(sender(client, k) for k in range(SENDERS)))

    # its own thread: an earlier test (Playwright's sync API) may leave an event loop running in this one
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, run()).result()
    assert other == {}
    assert len(accepted) >= SENDERS  # the load really ran
    with engine.connect() as conn:
        stored = conn.execute(sa.text("select count(*) from pos_webhook_events_raw")).scalar_one()
    assert stored == len(accepted)  # every accepted event stored once (distinct event ids)
    assert httpx.get(env.receiver_url + "/healthz", timeout=10).status_code == 200
