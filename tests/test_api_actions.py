"""The notebook API over the package's engines: what-if simulation, reconciliation, and actions that
only a writable session with an actor may take (through the package's own audited functions)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

import salesarck
from salesarck.errors import PermissionDenied, SalesarckError, ValidationError
from salesarck.pos.records import PaymentRecord, RefundRecord
from salesarck.rewards.posting import post_payments
from tests import factories as f
from tests.conftest import run_sql
from tests.test_api import seed_two_tenants

RULE = {"conversionRate": 1, "minSpendMinorUnits": 100, "maxPointsPerTransaction": 40, "minBalanceToRedeem": 0,
        "maxRedemptionPercentage": 100, "roundingPolicy": "floor"}


def _payment(n: int, email: str | None, amount: int, at: datetime, refunds: tuple[RefundRecord, ...] = (),
             voided: bool = False) -> PaymentRecord:
    return PaymentRecord(
        provider="square", provider_payment_id=f"pay-{n}", status="COMPLETED", is_completed=True,
        is_voided=voided, amount_minor_units=amount, currency="USD", transaction_at=at, updated_at=at,
        location_id=f"LOC-{n % 2}", customer_ref={"email": email} if email else {}, refunds=refunds,
    )


@pytest.fixture
def posted(engine: Engine) -> dict[str, Any]:
    """Payments posted through the rewards engine under two rule versions: rounding, min spend, the
    cap, a refund, a void and anonymous customers all included."""
    t0 = datetime(2026, 3, 1, 10)
    with engine.begin() as conn:
        tenant = f.make_tenant(conn, name="Simulated")["id"]
        f.make_rule(conn, tenant, version=1, config=RULE, effective_from=datetime(2026, 1, 1), is_active=False)
        f.make_rule(conn, tenant, version=2, config={**RULE, "conversionRate": 1.5, "roundingPolicy": "round"},
                    effective_from=t0 + timedelta(days=10))
        emails = [f.make_user(conn, email=f"buyer{i}@example.test")["email"] for i in range(3)]
        records = []
        for n in range(30):
            email = emails[n % 3] if n % 5 else None
            refunds: tuple[RefundRecord, ...] = ()
            if n == 7:
                refunds = (RefundRecord("ref-7", "pay-7", 555, "COMPLETED", True, t0 + timedelta(days=8)),)
            records.append(_payment(n, email, 50 + 317 * n, t0 + timedelta(days=n, hours=n % 5), refunds,
                                    voided=(n == 12)))
        summary = post_payments(conn, tenant_id=tenant, records=records, arrival="poll")
        assert summary.inserted == 30 and not summary.skipped
    return {"tenant": tenant, "start": t0 - timedelta(days=1), "end": t0 + timedelta(days=40)}


@pytest.fixture
def env(test_env: URL) -> URL:
    return test_env


def test_simulate_rules_with_the_rule_in_force_reproduces_actual_earnings(env: URL, posted: dict[str, Any]) -> None:
    with salesarck.connect() as db:
        rules = db.rules(posted["tenant"]).sort_values("version")
        # split the window at the rule change: each half replayed under the version in force there
        change = rules["effective_from"].iloc[1]
        for (lo, hi), config in [((posted["start"], change), rules["rule_config"].iloc[0]),
                                 ((change, posted["end"]), rules["rule_config"].iloc[1])]:
            result = db.simulate_rules(posted["tenant"], config, start=lo, end=hi)
            tx = result.transactions
            assert len(tx) > 5
            assert (tx["simulated_points"] == tx["actual_points"]).all()
            assert result.totals["delta_points"] == 0
            assert result.totals["simulated_points"] == result.totals["actual_points"] > 0
        actual = db.reward_events(posted["tenant"])["points_earned"].sum()
        whole = db.simulate_rules(posted["tenant"], rules["rule_config"].iloc[1], start=posted["start"],
                                  end=posted["end"])
        assert whole.totals["actual_points"] == int(actual)


def test_transactions_carry_the_provider_details(env: URL, posted: dict[str, Any]) -> None:
    with salesarck.connect() as db:
        tx = db.transactions(posted["tenant"])
        assert len(tx) == 30
        assert set(tx["location_id"]) == {"LOC-0", "LOC-1"}
        assert list(tx["arrival"].cat.categories) == ["file", "poll", "webhook"] and set(tx["arrival"]) == {"poll"}
        assert tx["is_voided"].dtype == "boolean" and int(tx["is_voided"].sum()) == 1
        assert str(tx["first_seen_at"].dtype) == "datetime64[us, UTC]"


def test_simulate_rules_what_if_costs_more_points(env: URL, posted: dict[str, Any]) -> None:
    with salesarck.connect() as db:
        current = dict(db.rules(posted["tenant"]).sort_values("version")["rule_config"].iloc[-1])
        base = db.simulate_rules(posted["tenant"], current, start=posted["start"], end=posted["end"])
        richer = {**current, "conversionRate": Decimal(str(current["conversionRate"])) * 2,
                  "maxPointsPerTransaction": 10_000}
        what_if = db.simulate_rules(posted["tenant"], richer, start=posted["start"], end=posted["end"])
        assert what_if.totals["simulated_points"] > base.totals["simulated_points"]
        assert what_if.totals["actual_points"] == base.totals["actual_points"]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"config": {"conversionRate": -1}}, ValidationError),
        ({"config": {"conversionRate": "lots"}}, ValidationError),
        ({"config": {}}, ValidationError),
        ({"start": None}, ValidationError),
        ({"start": "2026-05-01", "end": "2026-04-01"}, ValidationError),
        ({"tenant": "x" * 5000}, ValidationError),
    ],
)
def test_simulate_rules_refuses_bad_input(env: URL, posted: dict[str, Any], kwargs: dict[str, Any],
                                          error: type[Exception]) -> None:
    args = {"tenant": posted["tenant"], "config": RULE, "start": posted["start"], "end": posted["end"], **kwargs}
    with salesarck.connect() as db, pytest.raises(error):
        db.simulate_rules(args.pop("tenant"), args.pop("config"), **args)


def test_simulate_rules_is_scoped(env: URL, engine: Engine, posted: dict[str, Any]) -> None:
    with engine.begin() as conn:
        other = f.make_tenant(conn)["id"]
        outsider = f.make_member(conn, other, "client", email="outsider@example.test")
    with salesarck.connect(actor=outsider) as db, pytest.raises(PermissionDenied):
        db.simulate_rules(posted["tenant"], RULE, start=posted["start"], end=posted["end"])


# --- reconciliation -----------------------------------------------------------------------------


def test_reconcile_returns_the_cli_report_without_recording_it(env: URL, engine: Engine,
                                                               data: dict[str, Any]) -> None:
    run_sql(engine, "update wallets set points_balance = points_balance + 7 where id = :w",
            {"w": data["a"]["wallets"][1]})
    with salesarck.connect(actor="admin@example.test") as db:
        report = db.reconcile()
        assert list(report.drift["drift_points"]) == [7]
        assert str(report.drift["wallet_id"].iloc[0]) == str(data["a"]["wallets"][1])
        assert "<h4>Reconciliation" in report._repr_html_()
        assert not report.recorded and report.run_id is None  # a read-only session records nothing
        duck = db.reconcile(backend="duckdb")
        assert list(duck.drift["drift_points"]) == [7]
        with pytest.raises(ValidationError):
            db.reconcile(backend="oracle")  # type: ignore[arg-type]
    assert run_sql(engine, "select count(*) from reconcile_runs")[0][0] == 0


def test_reconcile_is_scoped_to_the_actor(env: URL, engine: Engine, data: dict[str, Any]) -> None:
    run_sql(engine, "update wallets set points_balance = points_balance + 3 where id = any(:w)",
            {"w": [data["a"]["wallets"][0], data["b"]["wallets"][0]]})
    with salesarck.connect(actor="client-a@example.test") as db:
        report = db.reconcile()
        assert {str(w) for w in report.drift["wallet_id"]} == {str(data["a"]["wallets"][0])}
        with pytest.raises(PermissionDenied):
            db.reconcile(data["b"]["tenant"])


@pytest.fixture
def data(engine: Engine) -> dict[str, Any]:
    return seed_two_tenants(engine)


# --- actions ------------------------------------------------------------------------------------


def _ledger_count(engine: Engine) -> int:
    return int(run_sql(engine, "select count(*) from wallet_ledger")[0][0])


def test_actions_need_a_writable_session(env: URL, engine: Engine, data: dict[str, Any]) -> None:
    wallet = data["a"]["wallets"][0]
    before = _ledger_count(engine)
    with salesarck.connect(actor="admin@example.test") as db:
        with pytest.raises(PermissionDenied, match="readonly=False"):
            db.adjust_wallet(wallet, 10, reason="goodwill")
        with pytest.raises(PermissionDenied, match="readonly=False"):
            db.freeze_wallet(wallet, reason="fraud check")
    with salesarck.connect() as db, pytest.raises(PermissionDenied, match="actor"):
        db.adjust_wallet(wallet, 10, reason="goodwill")
    assert _ledger_count(engine) == before


def test_admin_actions_go_through_the_package_and_are_audited(env: URL, engine: Engine,
                                                              data: dict[str, Any]) -> None:
    wallet = data["a"]["wallets"][0]
    with salesarck.connect(actor="admin@example.test", readonly=False) as db:
        after = db.adjust_wallet(wallet, 45, reason="goodwill for a late order")
        assert after["points_balance"] == 55 + 45
        db.freeze_wallet(wallet, reason="fraud check")
        db.unfreeze_wallet(wallet, reason="cleared")
        rule = db.create_rule("Tenant A", {**RULE, "conversionRate": 3}, reason="triple points")
        assert rule.version == 2
        audit = db.audit(target=str(wallet))
        assert list(audit["action"])[-3:] == ["wallet.adjust", "wallet.freeze", "wallet.unfreeze"]
        report = db.reconcile(data["a"]["tenant"])
        assert report.drift.empty  # snapshot and ledger moved together
        assert report.recorded  # a writable session with an actor records its run
    assert run_sql(engine, "select count(*) from admin_audit_logs where action = 'rule.create'")[0][0] == 1


@pytest.mark.parametrize(
    "call",
    [
        lambda db, w: db.adjust_wallet(w, 0, reason="nothing"),
        lambda db, w: db.adjust_wallet(w, 10, reason=""),
        lambda db, w: db.adjust_wallet(w, 10, reason="x" * 10_000),
        lambda db, w: db.adjust_wallet(w, 2**40, reason="huge"),
        lambda db, w: db.adjust_wallet("not-a-wallet", 10, reason="typo"),
        lambda db, w: db.adjust_wallet(uuid.uuid4(), 10, reason="missing"),
        lambda db, w: db.adjust_wallet(w, -10_000, reason="overdraw"),
        lambda db, w: db.create_rule("Tenant A", {"conversionRate": "NaN"}, reason="bad"),
    ],
)
def test_bad_actions_are_refused_and_write_nothing(env: URL, engine: Engine, data: dict[str, Any],
                                                   call: Any) -> None:
    before = _ledger_count(engine), run_sql(engine, "select count(*) from admin_audit_logs")[0][0]
    with salesarck.connect(actor="admin@example.test", readonly=False) as db, pytest.raises(SalesarckError):
        call(db, data["a"]["wallets"][0])
    assert (_ledger_count(engine), run_sql(engine, "select count(*) from admin_audit_logs")[0][0]) == before


def test_a_client_may_not_act_even_when_writable(env: URL, engine: Engine, data: dict[str, Any]) -> None:
    before = _ledger_count(engine)
    with salesarck.connect(actor="client-a@example.test", readonly=False) as db, pytest.raises(PermissionDenied):
        db.adjust_wallet(data["a"]["wallets"][0], 10, reason="self-service")
    assert _ledger_count(engine) == before
    with engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from admin_audit_logs where action = 'wallet.adjust'")).scalar() == 0


# --- balances and the liability roll-forward ------------------------------------------------------


def test_balances_as_of_a_past_moment(env: URL, data: dict[str, Any]) -> None:
    with salesarck.connect() as db:
        now = db.balances()
        assert len(now) == 4 and set(now["balance_points"]) == {55}
        then = db.balances("2026-01-02T23:59:59Z")
        assert set(then["balance_points"]) == {30}
        assert str(now["last_entry_at"].dtype) == "datetime64[us, UTC]"
    with salesarck.connect(actor="client-a@example.test") as db:
        mine = db.balances()
        assert set(mine["tenant_id"]) == {str(data["a"]["tenant"])}
        with pytest.raises(PermissionDenied):
            db.balances(tenant=data["b"]["tenant"])
        with pytest.raises(ValidationError):
            db.balances("last tuesday")


def test_liability_rollforward_ties(env: URL, data: dict[str, Any]) -> None:
    with salesarck.connect() as db:
        roll = db.liability_rollforward("Tenant A", start="2026-01-01", end="2026-03-01")
        assert len(roll) == 2 and bool(roll["ties"].all())
        with pytest.raises(ValidationError):
            db.liability_rollforward("Tenant A", start="2026-03-01", end="2026-01-01")
        with pytest.raises(ValidationError):
            db.liability_rollforward("Tenant A", start=None, end="2026-01-01")
    with salesarck.connect(actor="client-a@example.test") as db, pytest.raises(PermissionDenied):
        db.liability_rollforward(data["b"]["tenant"], start="2026-01-01", end="2026-03-01")
