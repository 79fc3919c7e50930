"""Factories: valid rows with one call and overrides (`make_wallet(conn, points_balance=5)`)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from salesarck.authz import Actor, load_actor


def _insert(conn: Connection, table: str, values: dict[str, Any]) -> dict[str, Any]:
    cols = ", ".join(values)
    params = ", ".join(
        f"cast(:{k} as jsonb)" if isinstance(v, dict | list) else f":{k}" for k, v in values.items()
    )
    bound = {k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in values.items()}
    conn.execute(sa.text(f"insert into {table} ({cols}) values ({params})"), bound)
    return values


def make_user(conn: Connection, **kw: Any) -> dict[str, Any]:
    uid = kw.pop("id", uuid.uuid4())
    values = {"id": uid, "email": f"user-{uid.hex[:10]}@example.test", "role": "consumer", "status": "active"}
    values.update(kw)
    return _insert(conn, "users", values)


def make_admin(conn: Connection, **kw: Any) -> Actor:
    user = make_user(conn, role="admin", **kw)
    return load_actor(conn, user["email"])


def make_tenant(conn: Connection, **kw: Any) -> dict[str, Any]:
    values = {"id": uuid.uuid4(), "name": f"Tenant {uuid.uuid4().hex[:6]}", "country": "US"}
    values.update(kw)
    return _insert(conn, "tenants", values)


def make_member(conn: Connection, tenant_id: uuid.UUID, role: str = "client", **kw: Any) -> Actor:
    user = make_user(conn, role=kw.pop("user_role", role), **kw)
    _insert(conn, "tenant_users", {"id": uuid.uuid4(), "user_id": user["id"], "tenant_id": tenant_id, "role": role})
    return load_actor(conn, user["email"])


def make_wallet(conn: Connection, tenant_id: uuid.UUID | None = None, user_id: uuid.UUID | None = None,
                **kw: Any) -> dict[str, Any]:
    tenant_id = tenant_id or make_tenant(conn)["id"]
    user_id = user_id or make_user(conn)["id"]
    values = {"id": uuid.uuid4(), "tenant_id": tenant_id, "user_id": user_id, "points_balance": 0}
    values.update(kw)
    return _insert(conn, "wallets", values)


def make_rule(conn: Connection, tenant_id: uuid.UUID, version: int = 1, config: dict[str, Any] | None = None,
              effective_from: datetime = datetime(2020, 1, 1), is_active: bool = True) -> dict[str, Any]:
    cfg = config or {"conversionRate": 1, "minSpendMinorUnits": 0, "minBalanceToRedeem": 0,
                     "maxRedemptionPercentage": 100, "roundingPolicy": "floor"}
    return _insert(conn, "reward_rules", {"id": uuid.uuid4(), "tenant_id": tenant_id, "version": version,
                                          "is_active": is_active, "rule_config": cfg,
                                          "effective_from": effective_from})


def make_transaction(conn: Connection, tenant_id: uuid.UUID, **kw: Any) -> dict[str, Any]:
    values = {"id": uuid.uuid4(), "tenant_id": tenant_id, "provider": "square",
              "provider_transaction_id": f"pay-{uuid.uuid4().hex[:12]}", "amount_minor_units": 1000,
              "currency": "USD", "transaction_at": datetime(2026, 1, 1, 12)}
    values.update(kw)
    return _insert(conn, "transactions", values)
