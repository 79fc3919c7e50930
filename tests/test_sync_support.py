"""Shared fixtures for the POS tests (import the `*_fixture` names to use `fake`, `fake_server`, `world`): a fake Square over HTTP, keys, a tenant with a connection.

Imported by test_sync*, test_square*, test_connections*; holds no tests of its own.
"""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from salesarck.authz import Actor, load_actor
from salesarck.config import Settings
from salesarck.crypto import KeyRing
from salesarck.pos.connections import ConnectionInfo, add_connection
from salesarck.pos.fake.server import ThreadServer
from salesarck.pos.fake.square import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, FakeSquare
from salesarck.pos.http import RetryPolicy
from salesarck.pos.square import SquareClient
from tests.factories import make_admin, make_member, make_rule, make_tenant, make_user


def key_spec(*kids: str) -> str:
    """Fresh random keys (never a fixed, real-looking key in the repo)."""
    return ",".join(f"{k}:{base64.b64encode(os.urandom(32)).decode()}" for k in (kids or ("k1",)))


def make_settings(base_url: str, keys: str, **kw: Any) -> Settings:
    values: dict[str, Any] = {"encryption_keys": keys, "square_base_url": base_url,
                              "square_client_id": DEFAULT_CLIENT_ID, "square_client_secret": DEFAULT_CLIENT_SECRET}
    values.update(kw)
    return Settings(**values)


def fast_client_factory(max_attempts: int = 5) -> Any:
    policy = RetryPolicy(max_attempts=max_attempts, base_delay=0.01, max_delay=0.05)
    return lambda url, token: SquareClient(url, token, policy=policy)


@dataclass
class World:
    engine: Engine
    fake: FakeSquare
    base_url: str
    keys: str
    settings: Settings
    tenant_id: uuid.UUID
    admin: Actor
    operator: Actor
    client_user: Actor
    connection: ConnectionInfo
    customer_users: int

    @property
    def keyring(self) -> KeyRing:
        return KeyRing.parse(self.keys)


@pytest.fixture(name="fake")
def fake_fixture() -> FakeSquare:
    return FakeSquare(seed=7, payments=150, days=20)


@pytest.fixture(name="fake_server")
def fake_server_fixture(fake: FakeSquare) -> Iterator[ThreadServer]:
    with ThreadServer(fake.app) as srv:
        yield srv


def build_world(engine: Engine, fake: FakeSquare, base_url: str, *, members_for_customers: int = 40) -> World:
    keys = key_spec("k1")
    settings = make_settings(base_url, keys)
    with engine.begin() as conn:
        tenant = make_tenant(conn, name="Fake Coffee")
        make_rule(conn, tenant["id"])
        admin = make_admin(conn)
        operator = make_member(conn, tenant["id"], role="pos_operator")
        client_user = make_member(conn, tenant["id"], role="client")
        # customers of the fake who are loyalty members: some by email, some by mobile only
        n = 0
        for i, cust in enumerate(list(fake.customers.values())[:members_for_customers]):
            if i % 2 == 0:
                make_user(conn, email=cust["email_address"])
            else:
                make_user(conn, email=None, mobile=cust["phone_number"])
            n += 1
        admin = load_actor(conn, admin.email or "")
    info = add_connection(engine, actor=admin, tenant_id=tenant["id"], provider="square",
                          merchant_id=fake.merchant_id, access_token=fake.access_token,
                          refresh_token=fake.refresh_token, keyring=KeyRing.parse(keys))
    return World(engine, fake, base_url, keys, settings, tenant["id"], admin, operator, client_user, info, n)


@pytest.fixture(name="world")
def world_fixture(engine: Engine, fake: FakeSquare, fake_server: ThreadServer) -> World:
    return build_world(engine, fake, fake_server.base_url)


def db_state(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """The business content of the database, without generated ids and times (for equality checks)."""
    queries = {
        "transactions": "select x.provider, x.provider_transaction_id, coalesce(u.email, u.mobile),"
                        " x.amount_minor_units, x.currency, x.customer_ref::text, x.line_items::text, x.transaction_at"
                        " from transactions x left join users u on u.id = x.user_id order by 2",
        "ledger": "select x.provider_transaction_id, l.entry_type, l.points, l.description from wallet_ledger l"
                  " left join transactions x on x.id = l.source_transaction_id order by 1, 2, 3, 4",
        "events": "select x.provider_transaction_id, e.points_earned, e.points_redeemed from reward_events e"
                  " left join transactions x on x.id = e.transaction_id order by 1, 2, 3",
        "wallets": "select coalesce(u.email, u.mobile), w.points_balance, w.status from wallets w"
                   " join users u on u.id = w.user_id order by 1",
        "snapshots": "select key, handler, result_snapshot::text from idempotency_keys order by 1",
        "refunds": "select provider_refund_id, amount_minor_units, status, is_completed from transaction_refunds"
                   " order by 1",
        "watermark": "select square_payments_watermark_at is not null, last_synced_at is not null, status"
                     " from pos_connections order by 1",
    }
    with engine.connect() as conn:
        return {name: [tuple(r) for r in conn.execute(sa.text(sql)).all()] for name, sql in queries.items()}


def count(engine: Engine, sql: str, params: dict[str, Any] | None = None) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(sql), params or {}).scalar_one())
