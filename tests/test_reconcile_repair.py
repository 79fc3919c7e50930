"""Repairs: snapshot to ledger under lock, audited; approval policy with a second admin; hostile input."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from salesarck.errors import Conflict, NotFound, PermissionDenied, ValidationError
from salesarck.reconcile import reconcile
from salesarck.reconcile.generate import K_TENANT, K_WALLET, gen_id, generate
from salesarck.reconcile.repair import (
    approve_repair,
    reject_repair,
    repair_missing_accruals,
    repair_wallets,
    request_repair,
    set_approval_policy,
)
from tests.factories import make_admin, make_member


def _audit(engine: Engine, action: str) -> list[sa.Row]:
    with engine.connect() as conn:
        return list(conn.execute(sa.text("select * from admin_audit_logs where action = :a order by created_at"),
                                 {"a": action}))


def _drift_wallet(engine: Engine, seed: int, n: int, delta: int) -> uuid.UUID:
    wid = gen_id(K_WALLET, seed, n)
    with engine.begin() as conn:
        conn.execute(sa.text("update wallets set points_balance = points_balance + :d where id = :w"),
                     {"d": delta, "w": wid})
    return wid


def test_repair_one_wallet_sets_snapshot_to_ledger_with_audit(engine: Engine) -> None:
    generate(engine, tenants=2, wallets=20, ledger_entries=200, seed=11)
    wid = _drift_wallet(engine, 11, 2, 9)
    with engine.begin() as conn:
        admin = make_admin(conn)
    out = repair_wallets(engine, actor=admin, wallet_ids=[str(wid)], reason="ticket 42")
    assert out.status == "applied" and len(out.wallets) == 1
    assert out.wallets[0]["before"] - out.wallets[0]["after"] == 9
    assert reconcile(engine).drift.empty
    rows = _audit(engine, "wallet.snapshot_repair")
    assert len(rows) == 1 and rows[0].target_entity_id == str(wid) and rows[0].reason == "ticket 42"
    assert rows[0].before_state["points_balance"] == rows[0].after_state["points_balance"] + 9
    # nothing left to repair: no new audit rows
    assert repair_wallets(engine, actor=admin, wallet_ids=[wid], reason="again").wallets == []
    assert len(_audit(engine, "wallet.snapshot_repair")) == 1


def test_repair_all_of_a_tenant_only_touches_that_tenant(engine: Engine) -> None:
    generate(engine, tenants=2, wallets=20, ledger_entries=200, seed=12)
    a, b, other = _drift_wallet(engine, 12, 0, 3), _drift_wallet(engine, 12, 2, -4), _drift_wallet(engine, 12, 1, 5)
    with engine.begin() as conn:
        admin = make_admin(conn)
    out = repair_wallets(engine, actor=admin, tenant_id=gen_id(K_TENANT, 12, 0), reason="month end")
    assert {w["wallet_id"] for w in out.wallets} == {str(a), str(b)}
    assert list(reconcile(engine).drift["wallet_id"]) == [str(other)]


def test_repair_refuses_when_the_ledger_moved(engine: Engine) -> None:
    generate(engine, tenants=1, wallets=5, ledger_entries=50, seed=13)
    wid = _drift_wallet(engine, 13, 1, 2)
    with engine.begin() as conn:
        admin = make_admin(conn)
    seen = reconcile(engine).drift.set_index("wallet_id")["ledger_points"].to_dict()
    seen = {k: v - 1 for k, v in seen.items()}  # what a stale report would have said
    with pytest.raises(Conflict, match="moved"):
        repair_wallets(engine, actor=admin, wallet_ids=[wid], reason="stale", expected=seen)
    assert len(reconcile(engine).drift) == 1
    assert _audit(engine, "wallet.snapshot_repair") == []


@pytest.mark.parametrize("kwargs,error", [
    ({"wallet_ids": ["not-a-uuid"], "reason": "x"}, ValidationError),
    ({"wallet_ids": ["x" * 10_000], "reason": "x"}, ValidationError),
    ({"wallet_ids": [str(uuid.uuid4())], "reason": "x"}, NotFound),
    ({"wallet_ids": [str(uuid.uuid4())], "reason": ""}, ValidationError),
    ({"wallet_ids": [str(uuid.uuid4())], "reason": "r" * 5000}, ValidationError),
    ({"wallet_ids": [str(uuid.uuid4())], "tenant_id": str(uuid.uuid4()), "reason": "x"}, ValidationError),
    ({"reason": "x"}, ValidationError),
    ({"tenant_id": "'; drop table wallets; --", "reason": "x"}, ValidationError),
])
def test_repair_hostile_input_is_refused_and_writes_nothing(engine: Engine, kwargs: dict, error: type) -> None:
    with engine.begin() as conn:
        admin = make_admin(conn)
    with pytest.raises(error):
        repair_wallets(engine, actor=admin, **kwargs)
    assert _audit(engine, "wallet.snapshot_repair") == []


def test_non_admin_may_not_repair(engine: Engine) -> None:
    generate(engine, tenants=1, wallets=5, ledger_entries=50, seed=14)
    wid = _drift_wallet(engine, 14, 0, 1)
    with engine.begin() as conn:
        client = make_member(conn, gen_id(K_TENANT, 14, 0), "client")
    with pytest.raises(PermissionDenied):
        repair_wallets(engine, actor=client, wallet_ids=[wid], reason="x")
    assert len(reconcile(engine).drift) == 1


def test_approval_policy_needs_a_second_admin(engine: Engine) -> None:
    generate(engine, tenants=1, wallets=5, ledger_entries=50, seed=15)
    wid = _drift_wallet(engine, 15, 0, 6)
    with engine.begin() as conn:
        first, second = make_admin(conn), make_admin(conn)
        client = make_member(conn, gen_id(K_TENANT, 15, 0), "client")
    with pytest.raises(PermissionDenied):
        set_approval_policy(engine, actor=client, required=True, reason="no")
    set_approval_policy(engine, actor=first, required=True, reason="SOX")
    assert _audit(engine, "reconcile.approval_policy")[0].after_state == {"required": True}
    pending = repair_wallets(engine, actor=first, wallet_ids=[wid], reason="fix")
    assert pending.status == "pending" and pending.request_id
    assert len(reconcile(engine).drift) == 1  # nothing applied yet
    with pytest.raises(PermissionDenied, match="different admin"):
        approve_repair(engine, actor=first, request_id=pending.request_id)
    done = approve_repair(engine, actor=second, request_id=pending.request_id, reason="checked")
    assert done.status == "applied" and len(done.wallets) == 1
    assert reconcile(engine).drift.empty
    with pytest.raises(Conflict, match="already applied"):
        approve_repair(engine, actor=second, request_id=pending.request_id)
    # a rejected request applies nothing
    wid2 = _drift_wallet(engine, 15, 1, 2)
    req = request_repair(engine, actor=first, wallet_ids=[wid2], reason="fix 2")
    assert reject_repair(engine, actor=second, request_id=req.request_id, reason="wrong wallet").status == "rejected"
    assert list(reconcile(engine).drift["wallet_id"]) == [str(wid2)]
    actions = [r.action for r in _audit(engine, "repair.request")] + [r.action for r in _audit(engine, "repair.approve")]
    assert actions == ["repair.request", "repair.request", "repair.approve"]
    assert len(_audit(engine, "repair.reject")) == 1
    with pytest.raises(ValidationError):
        approve_repair(engine, actor=second, request_id="nope")


def test_missing_accrual_is_repaired_through_the_rewards_engine(engine: Engine) -> None:
    summary = generate(engine, tenants=2, wallets=10, ledger_entries=100, plant_faults=True, seed=16)
    with engine.begin() as conn:
        admin = make_admin(conn)
    missing = summary.planted["missing_reward_event"]
    out = repair_missing_accruals(engine, actor=admin, tenant_id=gen_id(K_TENANT, 16, 0), reason="missed webhook")
    assert {a["transaction_id"] for a in out.accruals} == missing
    assert all(a["points"] > 0 for a in out.accruals)
    report = reconcile(engine)
    assert "missing_reward_event" not in set(report.findings["check"])
    assert set(report.drift["wallet_id"]) == summary.planted["snapshot_drift"]  # accrual moved its snapshot too
    assert len(_audit(engine, "transaction.accrual_repair")) == len(missing)
