"""reconcile(): scope and permissions, read-only runs, report exports, the points twin, hostile input."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import duckdb
import pandas as pd
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from salesarck.errors import PermissionDenied, ValidationError
from salesarck.reconcile import reconcile
from salesarck.reconcile.checks import DUCKDB, POSTGRES, Dialect
from salesarck.reconcile.engine_duckdb import POINTS_MACRO
from salesarck.reconcile.generate import K_TENANT, gen_id, generate
from salesarck.reconcile.runs import compare_runs, list_runs
from tests.factories import make_admin, make_member


def test_member_sees_only_its_tenant_and_runs_are_recorded(engine: Engine) -> None:
    generate(engine, tenants=2, wallets=20, ledger_entries=300, plant_faults=True, seed=41)
    t0, t1 = gen_id(K_TENANT, 41, 0), gen_id(K_TENANT, 41, 1)
    with engine.begin() as conn:
        client = make_member(conn, t1, "client")
        operator = make_member(conn, t0, "pos_operator")
        admin = make_admin(conn)
    mine = reconcile(engine, actor=client)
    assert set(mine.findings["tenant_id"]) <= {str(t1)} and mine.drift.empty and mine.recorded
    with pytest.raises(PermissionDenied):
        reconcile(engine, actor=client, tenant_id=t0)
    with pytest.raises(PermissionDenied):
        reconcile(engine, actor=operator)
    everything = reconcile(engine, actor=admin)
    assert len(everything.drift) == 4
    runs = list_runs(engine, actor=client, limit=10)
    assert len(runs) == 1 and runs.iloc[0]["tenant_id"] == t1  # its one tenant; the admin's all-tenant run is not shown
    assert len(list_runs(engine, actor=admin, limit=10)) == 2
    diff = compare_runs(engine, mine.run_id, everything.run_id)
    assert (diff["drift"]["status"] == "new").sum() == 4
    with pytest.raises(ValidationError):
        list_runs(engine, actor=admin, limit=0)


def test_read_only_connection_returns_a_report_without_recording(engine: Engine) -> None:
    generate(engine, tenants=1, wallets=5, ledger_entries=50, seed=42)
    with engine.begin() as conn:
        admin = make_admin(conn)
    with engine.connect() as conn:
        conn.execute(sa.text("set transaction read only"))
        report = reconcile(conn, actor=admin)
        conn.rollback()
    assert report.run_id is None and not report.recorded and report.clean
    with engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from reconcile_runs")).scalar() == 0


def test_report_exports(engine: Engine, tmp_path: Path) -> None:
    generate(engine, tenants=2, wallets=10, ledger_entries=100, plant_faults=True, seed=43)
    report = reconcile(engine)
    data = json.loads(report.to_json(tmp_path / "r.json"))
    assert set(data) >= {"run_id", "wallets_checked", "ledger_entries", "drift", "findings"}
    assert set(data["findings"][0]) == {"check", "severity", "entity_type", "entity_id", "tenant_id", "detail"}
    drift_csv, findings_csv = report.to_csv(tmp_path / "out")
    assert len(pd.read_csv(drift_csv)) == 4 and len(pd.read_csv(findings_csv)) == len(report.findings)
    drift_pq, _ = report.to_parquet(tmp_path / "out.parquet")
    assert len(pd.read_parquet(drift_pq)) == 4
    page = report._repr_html_()
    assert "<table" in page and "Drift" in page and "<script" not in page
    assert report.summary["by_check"]["snapshot_drift"] == 4 and report.exit_code == 1


@pytest.mark.parametrize("kwargs", [
    {"backend": "sqlite"}, {"checks": "drop table wallets"}, {"checks": []}, {"checks": ["x"] * 100},
    {"tenant_id": "1; select pg_sleep(10)"}, {"tenant_id": "0" * 10_000},
])
def test_hostile_arguments_are_refused(engine: Engine, kwargs: dict) -> None:
    with pytest.raises(ValidationError):
        reconcile(engine, **kwargs)


def test_detail_text_cannot_break_out(engine: Engine) -> None:
    generate(engine, tenants=1, wallets=3, ledger_entries=30, seed=44)
    with engine.begin() as conn:
        wid = conn.execute(sa.text("select id from wallets limit 1")).scalar_one()
        conn.execute(sa.text("insert into wallet_ledger (wallet_id, entry_type, points, description) values"
                             " (:w, 'credit', 1, '<script>alert(1)</script>'' or 1=1 --')"), {"w": wid})
    report = reconcile(engine)
    assert "<script>" not in report._repr_html_()
    assert report.drift.iloc[0]["explanation_code"] in {"single_entry", "snapshot_as_of"}


_configs = st.fixed_dictionaries({
    "conversionRate": st.decimals(min_value=Decimal("0.01"), max_value=Decimal("50"), places=2),
    "roundingPolicy": st.sampled_from(["floor", "round", "ceil"]),
    "minSpendMinorUnits": st.integers(0, 5000),
}, optional={"maxPointsPerTransaction": st.integers(0, 100_000)})


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(amount=st.integers(-10, 2**31 - 1), exponent=st.sampled_from([0, 2, 3]), cfg=_configs)
def test_inlined_points_equal_the_sql_function(engine: Engine, amount: int, exponent: int, cfg: dict) -> None:
    cfg_json = json.dumps({k: (str(v) if isinstance(v, Decimal) else v) for k, v in cfg.items()}).replace(
        f'"{cfg["conversionRate"]}"', str(cfg["conversionRate"]))

    def expr(d: Dialect) -> str:
        return (f"select {d.points(str(amount))} from (select 1 as idx, 'X' as code, "
                f"{d.rule_params(f'cast({chr(39)}{cfg_json}{chr(39)} as json)' if d is DUCKDB else f'cast({chr(39)}{cfg_json}{chr(39)} as jsonb)')}) rp, "
                f"(select 'X' as code, {d.currency_scale(str(exponent))}) cm")

    with engine.connect() as conn:
        want = conn.execute(sa.text("select salesarck_points(:a, :e, cast(:c as jsonb))"),
                            {"a": amount, "e": exponent, "c": cfg_json}).scalar()
        pg = conn.execute(sa.text(expr(POSTGRES))).scalar()
    con = duckdb.connect()
    con.execute(POINTS_MACRO)
    duck = con.execute(expr(DUCKDB)).fetchone()[0]  # type: ignore[index]
    macro = con.execute(f"select salesarck_points({amount}, {exponent}, '{cfg_json}')").fetchone()[0]  # type: ignore[index]
    assert pg == want == duck == macro
