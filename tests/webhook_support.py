"""Shared setup for the webhook, Clover and worker tests: fake providers on real HTTP, encrypted
connections pointing at them, settings with webhook secrets, and a database-state fingerprint."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from pydantic import SecretStr
from sqlalchemy.engine import Engine

from salesarck.authz import Actor
from salesarck.config import Settings
from salesarck.crypto import KeyRing, generate_key_spec
from salesarck.pos import connections
from salesarck.pos.fake.clover import FakeClover
from salesarck.pos.fake.server import ThreadServer
from salesarck.pos.fake.square import FakeSquare
from salesarck.pos.webhooks import processor
from salesarck.pos.webhooks.fetch import ProviderFetcher
from salesarck.pos.webhooks.receiver import create_app
from tests.factories import make_admin, make_rule, make_tenant, make_user

SIGNATURE_KEY = "test-key-" + uuid.uuid4().hex
CLOVER_AUTH = "test-clover-auth-" + uuid.uuid4().hex
NOTIFICATION_URL = "https://hooks.example.test/webhooks/square"


@dataclass
class Env:
    engine: Engine
    settings: Settings
    admin: Actor
    square: FakeSquare
    clover: FakeClover
    square_url: str
    clover_url: str
    receiver_url: str
    square_tenant: uuid.UUID
    clover_tenant: uuid.UUID
    square_connection: uuid.UUID
    clover_connection: uuid.UUID


def _customers(engine: Engine, square: FakeSquare, clover: FakeClover) -> None:
    """Users for every fake customer email, so posted payments earn points."""
    emails = {c["email_address"] for c in square.customers.values()}
    for c in clover.customers:
        for e in c["emailAddresses"]["elements"]:
            emails.add(e["emailAddress"])
    with engine.begin() as conn:
        for email in sorted(emails):
            make_user(conn, email=email)


@contextmanager
def provider_env(engine: Engine, *, square_payments: int = 20, clover_payments: int = 20,
                 receiver: bool = True) -> Iterator[Env]:
    square = FakeSquare(seed=7, payments=square_payments, days=5)
    clover = FakeClover(seed=7, payments=clover_payments, days=5)
    with ThreadServer(square.app) as sq, ThreadServer(clover.app) as cl:
        settings = Settings(
            encryption_keys=generate_key_spec(), square_base_url=sq.base_url, clover_base_url=cl.base_url,
            square_client_id=square.client_id, square_client_secret=square.client_secret,
            clover_client_id=clover.client_id, square_webhook_signature_key=SIGNATURE_KEY,
            square_webhook_notification_url=NOTIFICATION_URL, clover_webhook_auth_code=CLOVER_AUTH,
        )
        keyring = KeyRing.from_settings(settings)
        with engine.begin() as conn:
            admin = make_admin(conn)
            st = make_tenant(conn)["id"]
            ct = make_tenant(conn)["id"]
            make_rule(conn, st)
            make_rule(conn, ct)
        _customers(engine, square, clover)
        sc = connections.add_connection(engine, actor=admin, tenant_id=st, provider="square",
                                        merchant_id=square.merchant_id, access_token=SecretStr(square.access_token),
                                        refresh_token=SecretStr(square.refresh_token), keyring=keyring)
        cc = connections.add_connection(engine, actor=admin, tenant_id=ct, provider="clover",
                                        merchant_id=clover.merchant_id,
                                        access_token=SecretStr(clover.access_token_for(clover.merchant_id)),
                                        refresh_token=SecretStr(clover.refresh_token_for(clover.merchant_id)),
                                        keyring=keyring)
        env = Env(engine, settings, admin, square, clover, sq.base_url, cl.base_url, "", st, ct, sc.id, cc.id)
        if receiver:
            with ThreadServer(create_app(engine, settings, merchant_cache_seconds=0)) as rv:
                env.receiver_url = rv.base_url
                yield env
        else:
            yield env


def state(engine: Engine) -> dict[str, Any]:
    """What finance sees, independent of row ids and arrival: transactions, points per payment, balances."""
    with engine.connect() as conn:
        txns = sorted(tuple(r) for r in conn.execute(sa.text(
            "select x.provider, x.provider_transaction_id, x.amount_minor_units, x.currency, u.email,"
            " x.customer_ref::text, x.line_items::text, x.transaction_at"
            " from transactions x left join users u on u.id = x.user_id")).all())
        points = sorted(tuple(r) for r in conn.execute(sa.text(
            "select x.provider_transaction_id, coalesce(sum(e.points_earned), 0), count(e.id)"
            " from transactions x left join reward_events e on e.transaction_id = x.id group by 1")).all())
        ledger = conn.execute(sa.text(
            "select coalesce(sum(case entry_type when 'credit' then points else -points end), 0),"
            " count(*) from wallet_ledger")).one()
        balances = sorted(tuple(r) for r in conn.execute(sa.text(
            "select u.email, w.points_balance from wallets w join users u on u.id = w.user_id")).all())
    return {"transactions": txns, "points": points, "ledger": tuple(ledger), "balances": balances}


def process_in_parallel(engine: Engine, settings: Settings, *, workers: int,
                        batch_size: int) -> list[processor.BatchResult]:
    """`workers` processors on one backlog, each with its own fetcher, released together by a barrier."""
    start = threading.Barrier(workers)

    def run(_: int) -> processor.BatchResult:
        with ProviderFetcher(engine, settings) as fetcher:
            start.wait()
            return processor.process_pending(engine, batch_size=batch_size, fetcher=fetcher)

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(run, range(workers)))
