"""Rules: validation, exact points (rounding, exponents, caps, min spend), the SQL twin, versions."""

from __future__ import annotations

import threading
import uuid
from datetime import datetime
from decimal import Decimal

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from salesarck.errors import PermissionDenied, ValidationError
from salesarck.rewards.currency import country_currency, currency_exponent, exponent_table
from salesarck.rewards.rules import RuleConfig, create_rule, list_rules, points_for, rule_in_force
from tests.factories import make_admin, make_member, make_rule, make_tenant


def cfg(**kw: object) -> RuleConfig:
    return RuleConfig.parse({"conversionRate": 1, **kw})


def test_currency_exponents() -> None:
    assert (currency_exponent("USD"), currency_exponent("jpy"), currency_exponent("KWD")) == (2, 0, 3)
    assert currency_exponent("CLF") == 4
    for bad in ("XAU", "ZZZ", "", "US", "x" * 100):
        with pytest.raises(ValidationError):
            currency_exponent(bad)
    assert country_currency("GB") == "GBP" and country_currency("JP") == "JPY"
    assert country_currency("ZZ") == "USD" and country_currency(None) == "USD" and country_currency("KW") == "KWD"


@pytest.mark.parametrize(("amount", "currency", "config", "expected"), [
    (1999, "USD", {}, 19),                                         # floor of 19.99
    (1999, "USD", {"roundingPolicy": "round"}, 20),
    (1950, "USD", {"roundingPolicy": "round"}, 20),                # half up
    (1949, "USD", {"roundingPolicy": "round"}, 19),
    (1901, "USD", {"roundingPolicy": "ceil"}, 20),
    (1900, "USD", {"roundingPolicy": "ceil"}, 19),
    (1999, "JPY", {}, 1999),                                       # exponent 0
    (1999, "KWD", {}, 1),                                          # exponent 3: 1.999 -> 1
    (1999, "KWD", {"roundingPolicy": "ceil"}, 2),
    (1000, "USD", {"conversionRate": 1.5}, 15),
    (333, "USD", {"conversionRate": 0.1, "roundingPolicy": "round"}, 0),   # 0.333
    (350, "USD", {"conversionRate": 0.1, "roundingPolicy": "round"}, 0),   # 0.35 -> 0
    (500, "USD", {"conversionRate": 0.1, "roundingPolicy": "round"}, 1),   # 0.5 -> 1 (half up, exact)
    (10_00, "USD", {"minSpendMinorUnits": 1001}, 0),               # below min spend
    (10_01, "USD", {"minSpendMinorUnits": 1001}, 10),              # at min spend
    (100_000_00, "USD", {"maxPointsPerTransaction": 500}, 500),    # capped
    (100_000_00, "USD", {"maxPointsPerTransaction": 0}, 0),
    (0, "USD", {"roundingPolicy": "ceil"}, 0),
    (2_147_483_647, "JPY", {"conversionRate": 1000}, 2_147_483_647),  # clamped to the integer column
    (110, "USD", {"conversionRate": 3}, 3),                        # 3.3 exactly, no float drift
    (1_000_000_001, "USD", {"conversionRate": 0.07, "roundingPolicy": "ceil"}, 700001),
])
def test_points_exact(amount: int, currency: str, config: dict[str, object], expected: int) -> None:
    assert points_for(amount, currency, cfg(**config)) == expected


def test_float_would_be_wrong_but_decimal_is_exact() -> None:
    # 0.29 * 100 = 28.999999999999996 in binary floating point
    assert points_for(29, "USD", cfg(conversionRate=100)) == 29
    assert points_for(1015, "USD", cfg(conversionRate=Decimal("0.1"), roundingPolicy="round")) == 1


@pytest.mark.parametrize(("raw", "field"), [
    ({}, "conversionRate"),
    ({"conversionRate": 0}, "conversionRate"),
    ({"conversionRate": -1}, "conversionRate"),
    ({"conversionRate": "1"}, "conversionRate"),
    ({"conversionRate": True}, "conversionRate"),
    ({"conversionRate": float("nan")}, "conversionRate"),
    ({"conversionRate": 10**9}, "conversionRate"),
    ({"conversionRate": 1, "minSpendMinorUnits": -1}, "minSpendMinorUnits"),
    ({"conversionRate": 1, "minSpendMinorUnits": 1.5}, "minSpendMinorUnits"),
    ({"conversionRate": 1, "maxPointsPerTransaction": -5}, "maxPointsPerTransaction"),
    ({"conversionRate": 1, "maxPointsPerTransaction": 2**40}, "maxPointsPerTransaction"),
    ({"conversionRate": 1, "minBalanceToRedeem": "x"}, "minBalanceToRedeem"),
    ({"conversionRate": 1, "maxRedemptionPercentage": 101}, "maxRedemptionPercentage"),
    ({"conversionRate": 1, "maxRedemptionPercentage": -1}, "maxRedemptionPercentage"),
    ({"conversionRate": 1, "roundingPolicy": "banker"}, "roundingPolicy"),
    ({"conversionRate": 1, "pointValueMinorUnits": 0}, "pointValueMinorUnits"),
])
def test_invalid_config_names_the_field(raw: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        RuleConfig.parse(raw)


def test_config_unknown_keys_kept_and_reported() -> None:
    parsed = RuleConfig.parse('{"conversionRate": 2.5, "tierBoost": {"gold": 2}, "zeta": 1}')
    assert parsed.unknown_keys == ["tierBoost", "zeta"]
    assert parsed.conversion_rate == Decimal("2.5")
    out = parsed.to_json()
    assert out["tierBoost"] == {"gold": 2} and out["conversionRate"] == 2.5
    assert RuleConfig.parse(out) == parsed
    for hostile in ("[1,2]", "not json", "{" * 100_000, '{"conversionRate": 1, "x": "' + "y" * 30_000 + '"}'):
        with pytest.raises(ValidationError):
            RuleConfig.parse(hostile)


rates = st.decimals(min_value=Decimal("0.0001"), max_value=Decimal(1000), places=4, allow_nan=False)
configs = st.builds(
    lambda rate, policy, min_spend, cap: RuleConfig.parse({
        "conversionRate": rate, "roundingPolicy": policy, "minSpendMinorUnits": min_spend,
        **({} if cap is None else {"maxPointsPerTransaction": cap})}),
    rates, st.sampled_from(["floor", "round", "ceil"]), st.integers(0, 10_000),
    st.none() | st.integers(0, 1_000_000))
amounts = st.integers(0, 2_147_483_647) | st.integers(0, 100_000)
currencies = st.sampled_from(["USD", "JPY", "KWD", "CLF", "EUR", "BHD"])


def test_sql_twin_equals_python(engine: Engine) -> None:
    """Property: `salesarck_points` (SQL) == `points_for` (Python) on stored configs."""
    import json

    with engine.connect() as conn:
        @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
        @given(amount=amounts, currency=currencies, config=configs)
        def check(amount: int, currency: str, config: RuleConfig) -> None:
            stored = json.dumps(config.to_json())
            got = conn.execute(sa.text("select salesarck_points(:a, e.exponent, cast(:c as jsonb)) "
                                       "from currency_minor_units e where e.code = :cur"),
                               {"a": amount, "c": stored, "cur": currency}).scalar_one()
            assert got == points_for(amount, currency, RuleConfig.parse(stored))
            assert got == points_for(amount, currency, config)

        check()
        table = dict(conn.execute(sa.text("select code, exponent from currency_minor_units")).all())
    assert table == exponent_table()


def test_rule_in_force_picks_latest_effective_ties_to_higher_version(engine: Engine) -> None:
    with engine.begin() as conn:
        tenant = make_tenant(conn)["id"]
        r1 = make_rule(conn, tenant, 1, effective_from=datetime(2026, 1, 1), is_active=False)
        r2 = make_rule(conn, tenant, 2, effective_from=datetime(2026, 3, 1), is_active=False)
        r3 = make_rule(conn, tenant, 3, effective_from=datetime(2026, 3, 1), is_active=False)
        r4 = make_rule(conn, tenant, 4, effective_from=datetime(2026, 2, 1), is_active=True)  # back-dated
        assert rule_in_force(conn, tenant, datetime(2025, 12, 31, 23, 59)) is None
        assert rule_in_force(conn, tenant, datetime(2026, 1, 1)).id == r1["id"]  # type: ignore[union-attr]
        assert rule_in_force(conn, tenant, datetime(2026, 2, 15)).id == r4["id"]  # type: ignore[union-attr]
        assert rule_in_force(conn, tenant, datetime(2026, 3, 1)).id == r3["id"]  # type: ignore[union-attr]
        assert r2["id"] != r3["id"]
        sql = conn.execute(sa.text("select salesarck_rule_in_force(:t, :at)"),
                           {"t": tenant, "at": datetime(2026, 3, 2)}).scalar()
        assert sql == r3["id"]


def test_create_rule_versions_audit_and_permissions(engine: Engine) -> None:
    with engine.begin() as conn:
        tenant = make_tenant(conn)["id"]
        admin = make_admin(conn)
        client = make_member(conn, tenant, "client")
    with engine.begin() as conn:
        v1 = create_rule(conn, actor=admin, tenant_id=tenant, config={"conversionRate": 1, "odd": True},
                         effective_from=None, reason="launch")
        v2 = create_rule(conn, actor=admin, tenant_id=tenant, config={"conversionRate": 2},
                         effective_from=datetime(2030, 1, 1), reason=None)
    assert (v1.version, v2.version, v2.is_active) == (1, 2, True)
    with pytest.raises(PermissionDenied), engine.begin() as conn:
        create_rule(conn, actor=client, tenant_id=tenant, config={"conversionRate": 9}, effective_from=None, reason="x")
    with pytest.raises(ValidationError), engine.begin() as conn:
        create_rule(conn, actor=admin, tenant_id=tenant, config={"conversionRate": "9"}, effective_from=None, reason="x")
    with engine.connect() as conn:
        versions = list_rules(conn, tenant)
        assert [(v.version, v.is_active) for v in versions] == [(2, True), (1, False)]
        assert versions[1].raw_config["odd"] is True
        audits = conn.execute(sa.text("select action, before_state, after_state, reason from admin_audit_logs "
                                      "order by created_at")).all()
    assert [a.action for a in audits] == ["rule.create", "rule.create"]
    assert audits[0].before_state is None and audits[1].before_state["version"] == 1
    assert audits[1].after_state["version"] == 2 and audits[0].reason == "launch"


def test_concurrent_rule_creation_gets_distinct_versions(engine: Engine) -> None:
    with engine.begin() as conn:
        tenant = make_tenant(conn)["id"]
        admin = make_admin(conn)
    errors: list[BaseException] = []

    def create(i: int) -> None:
        try:
            with engine.begin() as conn:
                create_rule(conn, actor=admin, tenant_id=tenant, config={"conversionRate": i + 1},
                            effective_from=None, reason=f"r{i}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    with engine.connect() as conn:
        rows = conn.execute(sa.text("select version, is_active from reward_rules where tenant_id = :t order by version"),
                            {"t": tenant}).all()
    assert [r.version for r in rows] == [1, 2, 3, 4, 5, 6]
    assert sum(1 for r in rows if r.is_active) == 1 and rows[-1].is_active


def test_create_rule_unknown_tenant(engine: Engine) -> None:
    with engine.begin() as conn:
        admin = make_admin(conn)
    from salesarck.errors import NotFound

    with pytest.raises(NotFound), engine.begin() as conn:
        create_rule(conn, actor=admin, tenant_id=uuid.uuid4(), config={"conversionRate": 1}, effective_from=None,
                    reason="x")
