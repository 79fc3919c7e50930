"""Every check finds its planted faults and nothing on clean data; explanations; both backends agree."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from sqlalchemy.engine import Engine

from salesarck.db.arrow import export_parquet
from salesarck.reconcile import reconcile
from salesarck.reconcile.checks import ALL_CHECKS
from salesarck.reconcile.generate import generate


def _by_check(report) -> dict[str, set[str]]:  # type: ignore[no-untyped-def]
    out: dict[str, set[str]] = {}
    for r in report.findings.itertuples():
        out.setdefault(r.check, set()).add(r.entity_id)
    if not report.drift.empty:
        out["snapshot_drift"] = set(report.drift["wallet_id"])
    return out


def test_clean_generated_data_has_no_findings(engine: Engine) -> None:
    summary = generate(engine, tenants=3, wallets=60, ledger_entries=1500, seed=1)
    assert summary.ledger_entries >= 1400
    report = reconcile(engine)
    assert report.findings.empty, report.findings.to_string()
    assert report.drift.empty
    assert report.wallets_checked == 60
    assert report.ledger_entries == summary.ledger_entries
    assert report.exit_code == 0


def test_every_check_finds_its_planted_fault(engine: Engine) -> None:
    summary = generate(engine, tenants=2, wallets=40, ledger_entries=800, plant_faults=True, seed=2)
    report = reconcile(engine)
    found = _by_check(report)
    assert set(summary.planted) == set(ALL_CHECKS)
    assert found == summary.planted
    codes = dict(zip(report.drift["wallet_id"], report.drift["explanation_code"], strict=True))
    assert codes == summary.planted_drift
    assert (report.drift["drift_points"] == report.drift["snapshot_points"] - report.drift["ledger_points"]).all()
    assert report.exit_code == 1


def test_backends_agree_on_planted_data(engine: Engine, tmp_path: Path) -> None:
    generate(engine, tenants=3, wallets=50, ledger_entries=1000, plant_faults=True, drift_rate=0.1, seed=3)
    pg = reconcile(engine)
    duck = reconcile(engine, backend="duckdb")
    export_parquet(engine, tmp_path / "export")
    parquet = reconcile(tmp_path / "export", backend="duckdb")
    for other in (duck, parquet):
        pd.testing.assert_frame_equal(pg.drift, other.drift)
        pd.testing.assert_frame_equal(pg.findings, other.findings)
        assert (pg.wallets_checked, pg.ledger_entries) == (other.wallets_checked, other.ledger_entries)
    assert len(pg.drift) > 5


def test_tenant_scope_and_check_subset(engine: Engine) -> None:
    summary = generate(engine, tenants=2, wallets=30, ledger_entries=500, plant_faults=True, seed=4)
    from salesarck.reconcile.generate import K_TENANT, gen_id

    t1 = gen_id(K_TENANT, 4, 1)
    only = reconcile(engine, tenant_id=str(t1))
    assert set(only.findings["tenant_id"]) <= {str(t1)}
    assert only.drift.empty  # all planted drift is in tenant 0
    drift_only = reconcile(engine, checks="snapshot_drift")
    assert drift_only.findings.empty
    assert set(drift_only.drift["wallet_id"]) == summary.planted["snapshot_drift"]
