"""The CLI: exit codes 0/1/2, JSON shape, CSV/Parquet files, runs and compare, hostile options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL

from salesarck.cli import main
from salesarck.db.engine import make_engine
from salesarck.reconcile.generate import K_TENANT, gen_id
from tests.factories import make_user


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = 0
    try:
        main(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def cli_db(test_env: URL) -> URL:
    eng = make_engine(test_env)
    with eng.begin() as conn:
        make_user(conn, email="admin@demo.salesarck.test", role="admin")
    eng.dispose()
    return test_env


def test_reconcile_json_exit_codes_and_runs(cli_db: URL, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = _run(["demo", "generate", "--tenants", "2", "--wallets", "20", "--ledger-entries", "300",
                         "--seed", "31"], capsys)
    assert code == 0 and "ledger_entries" in out
    code, out, _ = _run(["reconcile", "--format", "json"], capsys)
    data = json.loads(out)
    assert code == 0 and data["drift"] == [] and data["findings"] == [] and data["wallets_checked"] == 20
    run_a = data["run_id"]
    eng = make_engine(cli_db)
    with eng.begin() as conn:
        conn.execute(sa.text("update wallets set points_balance = points_balance + 3 where id in"
                             " (select id from wallets order by id limit 2)"))
    eng.dispose()
    code, out, _ = _run(["--format", "json", "reconcile"], capsys)
    data = json.loads(out)
    assert code == 1 and len(data["drift"]) == 2
    assert set(data["drift"][0]) == {"wallet_id", "tenant_id", "user_id", "snapshot_points", "ledger_points",
                                     "drift_points", "explanation_code", "explanation"}
    assert all(d["drift_points"] == 3 for d in data["drift"])
    code, out, _ = _run(["--format", "json", "reconcile", "runs"], capsys)
    assert code == 0 and len(json.loads(out)) == 2
    code, out, _ = _run(["--format", "json", "reconcile", "compare", run_a, data["run_id"]], capsys)
    assert code == 0 and out.count('"new"') == 2
    code, out, _ = _run(["reconcile", "--format", "csv", "--output", str(tmp_path / "rep")], capsys)
    assert code == 1
    assert (tmp_path / "rep_drift.csv").read_text().count("\n") == 3
    assert (tmp_path / "rep_findings.csv").exists()
    code, out, _ = _run(["reconcile", "--output", str(tmp_path / "rep.parquet")], capsys)
    assert code == 1 and (tmp_path / "rep_drift.parquet").exists() and "Drift" in out
    code, out, _ = _run(["export", "parquet", str(tmp_path / "exp")], capsys)
    assert code == 0 and (tmp_path / "exp" / "wallet_ledger.parquet").exists()
    code, out, _ = _run(["reconcile", "--backend", "duckdb", "--parquet", str(tmp_path / "exp"), "--format", "json"],
                        capsys)
    assert code == 1 and len(json.loads(out)["drift"]) == 2


def test_balances_liability_repair_commands(cli_db: URL, capsys: pytest.CaptureFixture[str]) -> None:
    _run(["demo", "generate", "--tenants", "1", "--wallets", "5", "--ledger-entries", "80", "--seed", "32"], capsys)
    tenant = str(gen_id(K_TENANT, 32, 0))
    code, out, _ = _run(["--format", "json", "balances", "--as-of", "2030-01-01", "--tenant", tenant], capsys)
    assert code == 0 and len(json.loads(out)) == 5
    code, out, _ = _run(["--format", "json", "liability", "--tenant", tenant, "--from", "2025-01-01",
                         "--to", "2026-01-01"], capsys)
    assert code == 0 and all(r["ties"] for r in json.loads(out))
    eng = make_engine(cli_db)
    with eng.begin() as conn:
        wid = conn.execute(sa.text("update wallets set points_balance = points_balance + 1 where id in"
                                   " (select id from wallets order by id limit 1) returning id")).scalar_one()
    eng.dispose()
    code, out, _ = _run(["--format", "json", "reconcile", "repair", "--wallet", str(wid), "--reason", "cli"], capsys)
    assert code == 0 and json.loads(out)["wallets_repaired"] == 1
    code, _, _ = _run(["reconcile"], capsys)
    assert code == 0


@pytest.mark.parametrize("argv,needle", [
    (["reconcile", "--checks", "snapshot_drift,nope"], "unknown check"),
    (["reconcile", "--tenant", "not-a-uuid"], "not a tenant id"),
    (["reconcile", "--tenant", "x" * 100_000], "not a tenant id"),
    (["reconcile", "--parquet", "/nonexistent/dir", "--backend", "duckdb"], "no Parquet export"),
    (["reconcile", "--parquet", "/tmp"], "needs --backend duckdb"),
    (["reconcile", "repair", "--reason", "x"], "--wallet"),
    (["reconcile", "repair", "--all", "--reason", "x"], "--all needs --tenant"),
    (["reconcile", "repair", "--wallet", "abc", "--reason", "x"], "not a wallet id"),
    (["reconcile", "repair", "--wallet", "00000000-0000-0000-0000-000000000001", "--reason", " "], "reason"),
    (["balances", "--as-of", "2025-13-45"], "not a valid date"),
    (["liability", "--tenant", "00000000-0000-0000-0000-000000000001", "--from", "2025-01-01", "--to", "2025-02-01"],
     "no tenant"),
    (["reconcile", "approve", "nope"], "not a request id"),
    (["export", "parquet", "/tmp/x", "--table", "users; drop"], "unknown table"),
])
def test_cli_errors_are_one_line_and_exit_2(cli_db: URL, capsys: pytest.CaptureFixture[str], argv: list[str],
                                           needle: str) -> None:
    code, out, err = _run(argv, capsys)
    assert code == 2
    assert err.startswith("error: ") and needle in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_every_command_and_option_has_help() -> None:
    import click

    from salesarck.cli import commands  # noqa: F401
    from salesarck.cli.base import cli

    def walk(cmd: click.Command, path: str) -> None:
        assert cmd.help, f"{path} has no help"
        for p in cmd.params:
            if isinstance(p, click.Option):
                assert p.help, f"{path} {p.opts} has no help"
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                walk(sub, f"{path} {name}")

    for name in ("reconcile", "balances", "liability", "export"):
        walk(cli.commands[name], name)
    walk(cli.commands["demo"].commands["generate"], "demo generate")  # type: ignore[attr-defined]
