"""A small, known world for the app's tests: two tenants, every role, a drifted wallet, activity.

Built with tests/factories.py; the numbers are fixed so tests can assert exact totals.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from salesarck.timeutil import utcnow
from tests import factories as f


@dataclass
class World:
    tenant_a: uuid.UUID
    tenant_b: uuid.UUID
    emails: dict[str, str]
    wallet_a: uuid.UUID  # tenant A, drifted: snapshot 130, ledger 120
    wallet_b: uuid.UUID  # tenant B, in balance
    connection_a: uuid.UUID
    connection_b: uuid.UUID
    extra: dict[str, Any] = field(default_factory=dict)


def build(engine: Engine) -> World:
    """Insert the world and return its ids. Times are relative to now so default windows include them."""
    now = utcnow().replace(microsecond=0)
    day = timedelta(days=1)
    with engine.begin() as conn:
        ta = f.make_tenant(conn, name="Acme Coffee", onboarding_profile={"timezone": "America/New_York"})["id"]
        tb = f.make_tenant(conn, name="Blue Bakery")["id"]
        emails = {
            "admin": "admin@test.salesarck",
            "client": "client@test.salesarck",
            "pos_operator": "operator@test.salesarck",
            "consumer": "consumer@test.salesarck",
            "pending_approval": "pending@test.salesarck",
            "suspended": "suspended@test.salesarck",
            "client_b": "client-b@test.salesarck",
            "unknown": "nobody@test.salesarck",
        }
        admin = f.make_admin(conn, email=emails["admin"])
        f.make_member(conn, ta, "client", email=emails["client"])
        f.make_member(conn, ta, "pos_operator", email=emails["pos_operator"])
        f.make_member(conn, tb, "client", email=emails["client_b"])
        f.make_user(conn, email=emails["consumer"], role="consumer")
        f.make_user(conn, email=emails["pending_approval"], role="admin", status="pending_approval")
        f.make_member(conn, ta, "client", email=emails["suspended"], status="suspended")

        ca = f.make_user(conn, email="carol@example.test")["id"]
        cb = f.make_user(conn, email="bob@example.test")["id"]
        rule_a = f.make_rule(conn, ta, 1, effective_from=now - 60 * day)["id"]
        rule_b = f.make_rule(conn, tb, 1, effective_from=now - 60 * day)["id"]
        wa = f.make_wallet(conn, ta, ca, points_balance=130)["id"]
        wb = f.make_wallet(conn, tb, cb, points_balance=40)["id"]

        def tx(tenant: uuid.UUID, user: uuid.UUID, amount: int, at: datetime, provider: str = "square") -> uuid.UUID:
            return f.make_transaction(conn, tenant, user_id=user, amount_minor_units=amount, transaction_at=at,
                                      provider=provider)["id"]

        def ledger(wallet: uuid.UUID, kind: str, points: int, at: datetime, source: uuid.UUID | None = None,
                   description: str | None = None, admin_id: uuid.UUID | None = None) -> None:
            f._insert(conn, "wallet_ledger", {"id": uuid.uuid4(), "wallet_id": wallet, "entry_type": kind,
                                              "points": points, "source_transaction_id": source,
                                              "description": description, "created_by_admin": admin_id,
                                              "created_at": at})

        def event(wallet: uuid.UUID, source: uuid.UUID | None, rule: uuid.UUID | None, earned: int, redeemed: int,
                  at: datetime) -> None:
            f._insert(conn, "reward_events", {"id": uuid.uuid4(), "wallet_id": wallet, "transaction_id": source,
                                              "rule_version_id": rule, "points_earned": earned,
                                              "points_redeemed": redeemed, "created_at": at})

        # tenant A: 100 + 50 earned, 30 redeemed -> ledger 120; snapshot says 130 (drift +10)
        t1 = tx(ta, ca, 10000, now - 10 * day)
        t2 = tx(ta, ca, 5000, now - 5 * day, provider="clover")
        ledger(wa, "credit", 100, now - 10 * day, t1)
        event(wa, t1, rule_a, 100, 0, now - 10 * day)
        ledger(wa, "credit", 50, now - 5 * day, t2)
        event(wa, t2, rule_a, 50, 0, now - 5 * day)
        ledger(wa, "debit", 30, now - 2 * day, t2, "redemption")
        event(wa, t2, None, 0, 30, now - 2 * day)
        # tenant B: 40 earned, consistent
        t3 = tx(tb, cb, 4000, now - 3 * day)
        ledger(wb, "credit", 40, now - 3 * day, t3)
        event(wb, t3, rule_b, 40, 0, now - 3 * day)
        # anonymous transaction in tenant B
        f.make_transaction(conn, tb, amount_minor_units=999, transaction_at=now - 1 * day)

        conns = []
        for tenant, merchant in ((ta, "MERCH-A"), (tb, "MERCH-B")):
            cid = uuid.uuid4()
            f._insert(conn, "pos_connections", {"id": cid, "tenant_id": tenant, "pos_type": "square",
                                                "access_token_enc": "v1:test:not-a-real-ciphertext",
                                                "refresh_token_enc": "", "merchant_account_id": merchant,
                                                "status": "active", "last_synced_at": now - day,
                                                "token_expires_at": now + 20 * day})
            conns.append(cid)
        f._insert(conn, "pos_webhook_events_raw", {"id": uuid.uuid4(), "tenant_id": ta, "provider": "square",
                                                   "event_type": "payment.updated", "raw_payload": {"x": 1},
                                                   "processed": False})
        for target, action, tenant_note in ((wa, "wallet.freeze", None), (wb, "wallet.adjust", None)):
            f._insert(conn, "admin_audit_logs", {
                "id": uuid.uuid4(), "actor_user_id": admin.user_id, "action": action,
                "target_entity_type": "wallet", "target_entity_id": str(target),
                "before_state": {"status": "active", "points_balance": 1},
                "after_state": {"status": "frozen" if action == "wallet.freeze" else "active", "points_balance": 2},
                "reason": f"test {action} {tenant_note or ''}".strip(), "created_at": now - day})
        conn.execute(sa.text("select 1"))
    return World(ta, tb, emails, wa, wb, conns[0], conns[1],
                 extra={"admin_id": admin.user_id, "now": now})
