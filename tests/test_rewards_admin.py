"""Redemptions and admin actions: refusals change nothing, audit rows, idempotency, row locks."""

from __future__ import annotations

import threading
import uuid
from datetime import datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from salesarck.errors import Conflict, NotFound, PermissionDenied, ValidationError
from salesarck.rewards.admin import adjust_wallet, approve_user, freeze_wallet, suspend_user, unfreeze_wallet
from salesarck.rewards.redemption import redeem
from tests.factories import make_admin, make_member, make_rule, make_tenant, make_user, make_wallet
from tests.test_rewards_posting import check_invariants

RULE = {"conversionRate": 1, "minBalanceToRedeem": 100, "maxRedemptionPercentage": 50, "roundingPolicy": "floor",
        "pointValueMinorUnits": 10}


@pytest.fixture
def w(engine: Engine) -> dict[str, Any]:
    with engine.begin() as conn:
        tenant = make_tenant(conn)["id"]
        make_rule(conn, tenant, 1, config=RULE, effective_from=datetime(2020, 1, 1))
        admin = make_admin(conn)
        wallet = make_wallet(conn, tenant_id=tenant)["id"]
        adjust_wallet(conn, actor=admin, wallet_id=wallet, points=500, reason="opening balance")
        client = make_member(conn, tenant, "client")
        operator = make_member(conn, tenant, "pos_operator")
    return {"tenant": tenant, "admin": admin, "wallet": wallet, "client": client, "operator": operator}


def state(engine: Engine, wallet: uuid.UUID) -> tuple[int, str, int, int, int]:
    with engine.connect() as conn:
        check_invariants(conn)
        bal, status = conn.execute(sa.text("select points_balance, status from wallets where id = :w"),
                                   {"w": wallet}).one()
        counts = conn.execute(sa.text("select (select count(*) from wallet_ledger), (select count(*) from reward_events),"
                                      " (select count(*) from admin_audit_logs)")).one()
    return bal, status, counts[0], counts[1], counts[2]


def test_redeem_writes_event_ledger_snapshot_and_is_idempotent(engine: Engine, w: dict[str, Any]) -> None:
    with engine.begin() as conn:
        r = redeem(conn, wallet_id=w["wallet"], points=100, purchase_amount_minor_units=2000, actor=w["admin"],
                   idempotency_key="order-1")
    assert (r.points, r.balance_after, r.value_minor_units, r.replayed) == (100, 400, 1000, False)
    with engine.begin() as conn:
        again = redeem(conn, wallet_id=w["wallet"], points=100, purchase_amount_minor_units=2000, actor=w["admin"],
                       idempotency_key="order-1")
    assert again.replayed and again.reward_event_id == r.reward_event_id
    with pytest.raises(Conflict, match="different redemption"), engine.begin() as conn:
        redeem(conn, wallet_id=w["wallet"], points=5, purchase_amount_minor_units=2000, actor=w["admin"],
               idempotency_key="order-1")
    assert state(engine, w["wallet"])[:4] == (400, "active", 2, 1)
    with engine.connect() as conn:
        ev = conn.execute(sa.text("select points_earned, points_redeemed from reward_events")).one()
        led = conn.execute(sa.text("select entry_type, points, description from wallet_ledger "
                                   "where description = 'redemption'")).one()
    assert tuple(ev) == (0, 100) and tuple(led) == ("debit", 100, "redemption")


@pytest.mark.parametrize(("points", "purchase", "match"), [
    (401, 100_000, "balance is"),          # more than the balance (after 100 to stay above min)
    (101, 2000, "more than 50"),           # 1010 > 50% of 2000
    (0, 2000, "points must be"),
    (-5, 2000, "points must be"),
    (2**40, 2000, "points must be"),
    (10, -1, "purchase amount"),
])
def test_redeem_refusals_change_nothing(engine: Engine, w: dict[str, Any], points: int, purchase: int,
                                        match: str) -> None:
    if points == 401:
        with engine.begin() as conn:
            adjust_wallet(conn, actor=w["admin"], wallet_id=w["wallet"], points=-100, reason="trim")
    before = state(engine, w["wallet"])
    with pytest.raises((Conflict, ValidationError), match=match), engine.begin() as conn:
        redeem(conn, wallet_id=w["wallet"], points=points, purchase_amount_minor_units=purchase, actor=w["admin"],
               idempotency_key="k")
    assert state(engine, w["wallet"]) == before


def test_redeem_refused_below_min_balance_frozen_and_for_outsiders(engine: Engine, w: dict[str, Any]) -> None:
    with engine.begin() as conn:
        low = make_wallet(conn, tenant_id=w["tenant"])["id"]
        adjust_wallet(conn, actor=w["admin"], wallet_id=low, points=99, reason="x")
    with pytest.raises(Conflict, match="below the minimum"), engine.begin() as conn:
        redeem(conn, wallet_id=low, points=10, purchase_amount_minor_units=10_000, actor=w["admin"], idempotency_key="a")
    with engine.begin() as conn:
        freeze_wallet(conn, actor=w["admin"], wallet_id=w["wallet"], reason="investigation")
    with pytest.raises(Conflict, match="frozen"), engine.begin() as conn:
        redeem(conn, wallet_id=w["wallet"], points=10, purchase_amount_minor_units=10_000, actor=w["admin"],
               idempotency_key="b")
    for outsider in (w["client"], w["operator"]):
        with pytest.raises(PermissionDenied), engine.begin() as conn:
            redeem(conn, wallet_id=w["wallet"], points=10, purchase_amount_minor_units=10_000, actor=outsider,
                   idempotency_key="c")
    for key in ("", "x" * 500, "a\x00b"):
        with pytest.raises(ValidationError), engine.begin() as conn:
            redeem(conn, wallet_id=w["wallet"], points=1, purchase_amount_minor_units=1, actor=w["admin"],
                   idempotency_key=key)
    with pytest.raises(NotFound), engine.begin() as conn:
        redeem(conn, wallet_id=uuid.uuid4(), points=1, purchase_amount_minor_units=1, actor=w["admin"],
               idempotency_key="z")


def test_concurrent_redemptions_never_overspend(engine: Engine, w: dict[str, Any]) -> None:
    ok: list[int] = []
    refused: list[str] = []

    def spend(i: int) -> None:
        try:
            with engine.begin() as conn:
                redeem(conn, wallet_id=w["wallet"], points=150, purchase_amount_minor_units=10_000, actor=w["admin"],
                       idempotency_key=f"k{i}")
            ok.append(i)
        except Conflict as exc:
            refused.append(str(exc))

    threads = [threading.Thread(target=spend, args=(i,)) for i in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    # 500 -> 350 -> 200 -> 50 (then below min balance / more than balance)
    assert len(ok) == 3 and len(refused) == 3
    assert state(engine, w["wallet"])[0] == 50


def test_adjust_freeze_unfreeze_audit(engine: Engine, w: dict[str, Any]) -> None:
    with engine.begin() as conn:
        after = adjust_wallet(conn, actor=w["admin"], wallet_id=w["wallet"], points=-200, reason="correction")
        frozen = freeze_wallet(conn, actor=w["admin"], wallet_id=w["wallet"], reason="fraud")
        thawed = unfreeze_wallet(conn, actor=w["admin"], wallet_id=w["wallet"], reason="cleared")
    assert (after["points_balance"], frozen["status"], thawed["status"]) == (300, "frozen", "active")
    with engine.connect() as conn:
        rows = conn.execute(sa.text("select action, before_state, after_state, reason, actor_user_id "
                                    "from admin_audit_logs order by created_at, action")).all()
        ledger = conn.execute(sa.text("select entry_type, points, created_by_admin from wallet_ledger "
                                      "order by created_at")).all()
    assert [r.action for r in rows] == ["wallet.adjust", "wallet.adjust", "wallet.freeze", "wallet.unfreeze"]
    assert rows[1].before_state["points_balance"] == 500 and rows[1].after_state["points_balance"] == 300
    assert rows[2].after_state["status"] == "frozen" and rows[1].reason == "correction"
    assert all(r.actor_user_id == w["admin"].user_id for r in rows)
    assert [(r.entry_type, r.points) for r in ledger] == [("credit", 500), ("debit", 200)]
    assert all(r.created_by_admin == w["admin"].user_id for r in ledger)


@pytest.mark.parametrize("call", ["adjust", "freeze", "unfreeze"])
def test_wallet_actions_refused_change_nothing(engine: Engine, w: dict[str, Any], call: str) -> None:
    before = state(engine, w["wallet"])
    fns = {"adjust": lambda c, a, r: adjust_wallet(c, actor=a, wallet_id=w["wallet"], points=5, reason=r),
           "freeze": lambda c, a, r: freeze_wallet(c, actor=a, wallet_id=w["wallet"], reason=r),
           "unfreeze": lambda c, a, r: unfreeze_wallet(c, actor=a, wallet_id=w["wallet"], reason=r)}
    with engine.begin() as conn:
        suspended_admin = make_admin(conn, status="suspended")
    for actor, reason, exc in [(w["client"], "x", PermissionDenied), (w["operator"], "x", PermissionDenied),
                               (suspended_admin, "x", PermissionDenied), (w["admin"], "", ValidationError),
                               (w["admin"], "  ", ValidationError), (w["admin"], "r" * 5000, ValidationError)]:
        with pytest.raises((exc, Conflict)), engine.begin() as conn:
            fns[call](conn, actor, reason)
    assert state(engine, w["wallet"]) == before
    for bad_points in (0, 2**31, True):
        with pytest.raises(ValidationError), engine.begin() as conn:
            adjust_wallet(conn, actor=w["admin"], wallet_id=w["wallet"], points=bad_points, reason="x")  # type: ignore[arg-type]
    with pytest.raises(Conflict), engine.begin() as conn:
        adjust_wallet(conn, actor=w["admin"], wallet_id=w["wallet"], points=2**31 - 1, reason="overflow")
    with pytest.raises(ValidationError), engine.begin() as conn:
        freeze_wallet(conn, actor=w["admin"], wallet_id="'; drop table wallets; --", reason="x")  # type: ignore[arg-type]
    assert state(engine, w["wallet"]) == before


def test_stale_admin_snapshot_is_refused(engine: Engine, w: dict[str, Any]) -> None:
    with engine.begin() as conn:
        other = make_admin(conn)
        suspend_user(conn, actor=w["admin"], user_id=other.user_id, reason="left the company")
    with pytest.raises(PermissionDenied), engine.begin() as conn:
        adjust_wallet(conn, actor=other, wallet_id=w["wallet"], points=5, reason="x")


def test_approve_and_suspend_users(engine: Engine, w: dict[str, Any]) -> None:
    with engine.begin() as conn:
        pending = make_user(conn, status="pending_approval")
        approved = approve_user(conn, actor=w["admin"], user_id=pending["id"], reason="KYC ok")
        suspended = suspend_user(conn, actor=w["admin"], user_id=pending["email"], reason="chargebacks")
    assert (approved["status"], suspended["status"]) == ("active", "suspended")
    with engine.connect() as conn:
        rows = conn.execute(sa.text("select action, before_state ->> 'status' as b, after_state ->> 'status' as a "
                                    "from admin_audit_logs where target_entity_type = 'user' order by created_at")).all()
    assert [tuple(r) for r in rows] == [("user.approve", "pending_approval", "active"),
                                        ("user.suspend", "active", "suspended")]
    with pytest.raises(PermissionDenied), engine.begin() as conn:
        approve_user(conn, actor=w["client"], user_id=pending["id"], reason="x")
    with pytest.raises(Conflict), engine.begin() as conn:
        suspend_user(conn, actor=w["admin"], user_id=pending["id"], reason="again")
    with pytest.raises(Conflict), engine.begin() as conn:
        suspend_user(conn, actor=w["admin"], user_id=w["admin"].user_id, reason="me")
    with pytest.raises(NotFound), engine.begin() as conn:
        approve_user(conn, actor=w["admin"], user_id=uuid.uuid4(), reason="x")
