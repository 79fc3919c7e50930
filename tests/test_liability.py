"""Liability roll-forward ties on clean data and flags a planted break; balances as of a moment."""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from salesarck.errors import NotFound, PermissionDenied, ValidationError
from salesarck.reconcile.balances import balances_as_of
from salesarck.reconcile.generate import K_TENANT, K_WALLET, gen_id, generate
from salesarck.reconcile.liability import liability_rollforward
from tests.factories import make_member


def test_rollforward_ties_on_clean_data_and_matches_the_ledger(engine: Engine) -> None:
    generate(engine, tenants=2, wallets=20, ledger_entries=400, seed=21)
    tenant = gen_id(K_TENANT, 21, 0)
    df = liability_rollforward(engine, tenant_id=tenant, start="2024-12-01", end="2026-12-01")
    assert len(df) == 24 and df["ties"].all()
    assert (df["opening_points"].iloc[1:].to_numpy() == df["closing_points"].iloc[:-1].to_numpy()).all()
    with engine.connect() as conn:
        total = conn.execute(sa.text(
            "select sum(case when entry_type = 'credit' then points else -points end) from wallet_ledger l"
            " join wallets w on w.id = l.wallet_id where w.tenant_id = :t"), {"t": tenant}).scalar_one()
    assert df["closing_points"].iloc[-1] == total
    assert df["earned_points"].sum() > 0 and df["redeemed_points"].sum() > 0 and df["adjustment_points"].sum() > 0
    assert (df["closing_money_minor_units"] == df["closing_points"]).all()  # pointValueMinorUnits 1


def test_rollforward_flags_a_period_that_does_not_tie(engine: Engine) -> None:
    generate(engine, tenants=1, wallets=5, ledger_entries=100, seed=22)
    with engine.begin() as conn:  # an entry with no transaction, redemption or admin behind it
        conn.execute(sa.text("insert into wallet_ledger (wallet_id, entry_type, points, created_at)"
                             " values (:w, 'credit', 50, '2025-03-10')"), {"w": gen_id(K_WALLET, 22, 0)})
    df = liability_rollforward(engine, tenant_id=gen_id(K_TENANT, 22, 0), start="2025-01-01", end="2025-06-01")
    broken = df[~df["ties"]]
    assert list(broken["period_start"]) == [datetime(2025, 3, 1)]
    assert int(broken["difference_points"].iloc[0]) == 50


@pytest.mark.parametrize("kwargs,error", [
    ({"tenant_id": "zzz", "start": "2025-01-01", "end": "2025-02-01"}, ValidationError),
    ({"tenant_id": None, "start": "2025-01-01", "end": "2025-02-01"}, ValidationError),
    ({"tenant_id": str(uuid.uuid4()), "start": "2025-01-01", "end": "2025-02-01"}, NotFound),
    ({"start": "2025-02-01", "end": "2025-01-01"}, ValidationError),
    ({"start": "2025-01-01T00:00:00", "end": "2025-02-01"}, ValidationError),
    ({"start": "x" * 5000, "end": "2025-02-01"}, ValidationError),
    ({"start": "1900-01-01", "end": "2200-01-01", "period": "day"}, ValidationError),
    ({"start": "2025-01-01", "end": "2025-02-01", "period": "fortnight"}, ValidationError),
])
def test_rollforward_hostile_input(engine: Engine, kwargs: dict, error: type) -> None:
    generate(engine, tenants=1, wallets=2, ledger_entries=10, seed=23)
    kwargs = {"tenant_id": gen_id(K_TENANT, 23, 0), **kwargs}
    with pytest.raises(error):
        liability_rollforward(engine, **kwargs)


def test_balances_as_of(engine: Engine) -> None:
    generate(engine, tenants=2, wallets=10, ledger_entries=200, seed=24)
    before = balances_as_of(engine, as_of="2025-01-01")
    assert len(before) == 10 and (before["balance_points"] == 0).all()
    now = balances_as_of(engine, as_of="2030-01-01T00:00:00Z")
    with engine.connect() as conn:
        snap = dict(conn.execute(sa.text("select cast(id as text), points_balance from wallets")).all())
    assert dict(zip(now["wallet_id"], now["balance_points"], strict=True)) == snap
    mid = balances_as_of(engine, as_of="2025-09-01", tenant_id=gen_id(K_TENANT, 24, 1))
    assert set(mid["tenant_id"]) == {str(gen_id(K_TENANT, 24, 1))} and 0 < mid["balance_points"].sum()
    with pytest.raises(ValidationError):
        balances_as_of(engine, as_of="yesterday")
    with engine.begin() as conn:
        outsider = make_member(conn, gen_id(K_TENANT, 24, 0), "pos_operator")
    with pytest.raises(PermissionDenied):
        balances_as_of(engine, as_of="2025-09-01", actor=outsider)
