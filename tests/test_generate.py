"""The generator: consistent by the rewards representation, counts as reported, refuses bad input."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from salesarck.errors import ValidationError
from salesarck.reconcile.generate import K_WALLET, gen_id, generate


def test_counts_match_the_database_and_every_entry_is_explained(engine: Engine) -> None:
    s = generate(engine, tenants=3, wallets=30, ledger_entries=700, drift_rate=0.2, seed=51)
    with engine.connect() as conn:
        q = lambda sql: conn.execute(sa.text(sql)).scalar_one()  # noqa: E731
        assert q("select count(*) from wallet_ledger") == s.ledger_entries
        assert q("select count(*) from wallets") == s.wallets == 30
        assert q("select count(*) from transactions") == s.transactions
        assert q("select count(*) from reward_events") == s.reward_events
        assert q("select count(*) from transaction_refunds") == s.refunds > 0
        # every ledger row is a transaction's, a redemption or an admin's (with its audit row)
        assert q("select count(*) from wallet_ledger where source_transaction_id is null and created_by_admin is null"
                 " and description <> 'redemption'") == 0
        assert q("select count(*) from wallet_ledger where created_by_admin is not null") == q(
            "select count(*) from admin_audit_logs where action = 'wallet.adjust'")
        assert q("select count(*) from wallet_ledger where points <= 0") == 0
        drifted = q("select count(*) from wallets w where points_balance <> (select coalesce(sum(case when"
                    " entry_type = 'credit' then points else -points end), 0) from wallet_ledger where wallet_id = w.id)")
    assert drifted == s.drifted_wallets > 0
    assert s.seconds > 0


@pytest.mark.parametrize("kwargs", [
    {"tenants": 0}, {"tenants": 2, "wallets": 1}, {"wallets": -5}, {"ledger_entries": 10**12},
    {"drift_rate": 1.5}, {"drift_rate": float("nan")}, {"seed": 70000}, {"tenants": "3"}, {"wallets": True},
    {"plant_faults": True, "tenants": 1},
])
def test_bad_arguments_are_refused_and_write_nothing(engine: Engine, kwargs: dict) -> None:
    args = {"tenants": 2, "wallets": 4, "ledger_entries": 10, **kwargs}
    with pytest.raises(ValidationError):
        generate(engine, **args)
    with engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from tenants")).scalar() == 0


def test_same_seed_twice_is_refused_other_seed_adds(engine: Engine) -> None:
    generate(engine, tenants=1, wallets=3, ledger_entries=20, seed=52)
    with pytest.raises(ValidationError, match="seed"):
        generate(engine, tenants=1, wallets=3, ledger_entries=20, seed=52)
    generate(engine, tenants=1, wallets=3, ledger_entries=20, seed=53)
    with engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from wallets")).scalar() == 6
        assert conn.execute(sa.text("select 1 from wallets where id = :w"), {"w": gen_id(K_WALLET, 53, 2)}).scalar()
