"""Incremental runs equal full runs, including rows a long transaction commits after the checkpoint."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from salesarck.reconcile import reconcile
from salesarck.reconcile.generate import K_WALLET, gen_id, generate
from tests.factories import make_admin


def _same(a, b) -> None:  # type: ignore[no-untyped-def]
    pd.testing.assert_frame_equal(a.drift, b.drift)
    pd.testing.assert_frame_equal(a.findings, b.findings)
    assert (a.wallets_checked, a.ledger_entries) == (b.wallets_checked, b.ledger_entries)


def test_incremental_equals_full_with_a_late_committing_transaction(engine: Engine) -> None:
    generate(engine, tenants=2, wallets=40, ledger_entries=600, plant_faults=True, seed=7)
    with engine.begin() as conn:
        admin = make_admin(conn)
    first = reconcile(engine, actor=admin)
    assert first.recorded and not first.incremental
    wx, wy = gen_id(K_WALLET, 7, 3), gen_id(K_WALLET, 7, 4)
    # a long transaction writes a back-dated ledger row and stays open across the next run
    long_conn = engine.connect()
    long_tx = long_conn.begin()
    long_conn.execute(sa.text("insert into wallet_ledger (wallet_id, entry_type, points, description, created_at)"
                              " values (:w, 'credit', 7, null, :at)"), {"w": wx, "at": datetime(2020, 1, 1)})
    try:
        with engine.begin() as conn:  # a committed change meanwhile
            conn.execute(sa.text("update wallets set points_balance = points_balance + 5 where id = :w"), {"w": wy})
        inc1 = reconcile(engine, actor=admin, incremental=True)
        assert inc1.incremental
        _same(inc1, reconcile(engine))
        assert str(wy) in set(inc1.drift["wallet_id"])
        assert str(wx) not in set(inc1.drift["wallet_id"])
        long_tx.commit()
    finally:
        long_conn.close()
    inc2 = reconcile(engine, actor=admin, incremental=True)
    assert inc2.incremental
    full = reconcile(engine)
    _same(inc2, full)
    assert str(wx) in set(inc2.drift["wallet_id"])  # created_at is years before the checkpoint
    assert ("reward_ledger_mismatch", str(wx)) in set(zip(inc2.findings["check"], inc2.findings["entity_id"],
                                                          strict=True))


def test_incremental_without_checkpoint_or_after_rule_change_runs_full(engine: Engine) -> None:
    generate(engine, tenants=2, wallets=20, ledger_entries=200, seed=8)
    with engine.begin() as conn:
        admin = make_admin(conn)
    first = reconcile(engine, actor=admin, incremental=True)
    assert first.recorded and not first.incremental  # nothing to start from
    with engine.begin() as conn:
        conn.execute(sa.text("update reward_rules set effective_from = effective_from - interval '1 day'"))
    again = reconcile(engine, actor=admin, incremental=True)
    assert not again.incremental
    third = reconcile(engine, actor=admin, incremental=True)
    assert third.incremental
    _same(third, reconcile(engine))


def test_incremental_is_per_scope(engine: Engine) -> None:
    generate(engine, tenants=2, wallets=20, ledger_entries=200, seed=9)
    with engine.begin() as conn:
        admin = make_admin(conn)
    reconcile(engine, actor=admin, checks="snapshot_drift")
    other = reconcile(engine, actor=admin, incremental=True)  # different checks: no checkpoint
    assert not other.incremental
    with engine.begin() as conn:
        conn.execute(sa.text("update wallets set points_balance = points_balance + 1 where id = :w"),
                     {"w": gen_id(K_WALLET, 9, 0)})
    inc = reconcile(engine, actor=admin, checks="snapshot_drift", incremental=True)
    assert inc.incremental
    _same(inc, reconcile(engine, checks="snapshot_drift"))
    assert list(inc.drift["wallet_id"]) == [str(gen_id(K_WALLET, 9, 0))]
