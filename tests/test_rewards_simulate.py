"""What-if simulation: reproduces actual earnings under the rule in force; exact hypothetical values."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy.engine import Engine

from salesarck.errors import ValidationError
from salesarck.rewards.admin import freeze_wallet
from salesarck.rewards.posting import post_payments
from salesarck.rewards.simulate import COLUMNS, simulate_rules
from tests.factories import make_admin, make_rule, make_tenant, make_user
from tests.test_rewards_posting import pay, refund

V1 = {"conversionRate": 1.5, "roundingPolicy": "round", "maxPointsPerTransaction": 120, "pointValueMinorUnits": 2}
V2 = {"conversionRate": 0.3, "roundingPolicy": "ceil", "minSpendMinorUnits": 500}


def test_simulation_reproduces_actual_and_prices_a_hypothesis(engine: Engine) -> None:
    with engine.begin() as conn:
        tenant = make_tenant(conn)["id"]
        make_rule(conn, tenant, 1, config=V1, effective_from=datetime(2026, 1, 1), is_active=False)
        make_rule(conn, tenant, 2, config=V2, effective_from=datetime(2026, 4, 1), is_active=True)
        emails = [make_user(conn)["email"] for _ in range(3)]
        admin = make_admin(conn)
    recs = []
    for i in range(40):
        at = datetime(2026, 2, 1) + timedelta(days=i * 3)          # spans both rule versions
        pid = f"s{i}"
        refunds = (refund(f"r{i}", pid, 333 + i),) if i % 5 == 0 else ()
        recs.append(pay(pid, 1000 + 137 * i, email=emails[i % 3] if i % 4 else None, at=at, refunds=refunds,
                        currency="JPY" if i == 7 else "USD"))
    with engine.begin() as conn:
        post_payments(conn, tenant_id=tenant, records=recs[:20], arrival="poll")
        wid = conn.execute(__import__("sqlalchemy").text("select id from wallets order by id limit 1")).scalar_one()
        freeze_wallet(conn, actor=admin, wallet_id=wid, reason="frozen for a while")
        post_payments(conn, tenant_id=tenant, records=recs[20:], arrival="poll")
        post_payments(conn, tenant_id=tenant, records=[pay("s3", 1000 + 137 * 3, status="CANCELED",
                                                           at=recs[3].transaction_at,
                                                           updated=datetime(2026, 6, 1))], arrival="webhook")
    with engine.connect() as conn:
        for cfg, start, end in ((V1, "2026-01-01", "2026-04-01"), (V2, "2026-04-01", "2026-12-31")):
            result = simulate_rules(conn, tenant_id=tenant, config=cfg, start=start, end=end)
            frame = result.transactions
            assert list(frame.columns) == COLUMNS and len(frame) > 5
            assert (frame["actual_points"] == frame["simulated_points"]).all(), frame
            assert result.totals["delta_points"] == 0
            assert result.totals["actual_value_minor_units"] == result.totals["simulated_value_minor_units"]
        whole = simulate_rules(conn, tenant_id=tenant, config={"conversionRate": 2, "pointValueMinorUnits": 3},
                               start="2026-01-01", end="2027-01-01")
    f = whole.transactions
    assert len(f) == 40
    row = f[f["amount_minor_units"] == 1000 + 137 * 10].iloc[0]      # refunded, known customer, round/ceil rules
    assert row["refunded_minor_units"] == 343
    expected = (1000 + 137 * 10 - 343) * 2 // 100
    assert row["simulated_points"] in (expected, 0)                    # 0 when its wallet was frozen at accrual
    assert (f.loc[f["user_id"].isna(), "simulated_points"] == 0).all()
    assert (f.loc[f["voided"], "simulated_points"] == 0).all()
    assert whole.totals["simulated_value_minor_units"] == 3 * whole.totals["simulated_points"]
    assert whole.totals["actual_points"] == int(f["actual_points"].sum()) > 0


def test_simulation_input_errors(engine: Engine) -> None:
    with engine.begin() as conn:
        tenant = make_tenant(conn)["id"]
    with engine.connect() as conn:
        empty = simulate_rules(conn, tenant_id=tenant, config={"conversionRate": 1}, start="2026-01-01",
                               end="2026-02-01")
        assert empty.totals["transactions"] == 0 and empty.totals["simulated_points"] == 0
        for kw in ({"config": {"conversionRate": 0}}, {"start": "2026-02-01", "end": "2026-01-01"},
                   {"start": "garbage"}, {"tenant_id": "nope"}):
            args = {"tenant_id": tenant, "config": {"conversionRate": 1}, "start": "2026-01-01", "end": "2026-02-01",
                    **kw}
            with pytest.raises(ValidationError):
                simulate_rules(conn, **args)  # type: ignore[arg-type]
