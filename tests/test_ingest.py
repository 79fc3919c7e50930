"""`salesarck ingest` and the rewards CLI end to end, on a real database."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import click
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL

from salesarck.cli import commands  # noqa: F401  registers every command
from salesarck.cli.base import cli, main
from salesarck.db.engine import make_engine
from tests.factories import make_admin, make_member, make_rule, make_tenant, make_user, make_wallet


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def sq(pid: str, amount: int, email: str | None = None, **kw: Any) -> dict[str, Any]:
    obj = {"id": pid, "status": "COMPLETED", "created_at": "2026-05-01T10:00:00Z", "updated_at": "2026-05-01T10:00:00Z",
           "amount_money": {"amount": amount, "currency": "USD"}, "location_id": "L"}
    if email:
        obj["buyer_email_address"] = email
    obj.update(kw)
    return obj


@pytest.fixture
def setup(test_env: URL, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    eng = make_engine(test_env)
    with eng.begin() as conn:
        admin = make_admin(conn)
        tenant = make_tenant(conn)["id"]
        make_rule(conn, tenant, 1, config={"conversionRate": 1}, effective_from=datetime(2026, 1, 1))
        make_user(conn, email="ann@example.test")
        operator = make_member(conn, tenant, "pos_operator")
        client = make_member(conn, tenant, "client")
    monkeypatch.setenv("SALESARCK_LOCAL_USER", admin.email or "")
    return {"engine": eng, "tenant": str(tenant), "admin": admin, "operator": operator, "client": client}


def test_ingest_square_file_then_replay(setup: dict[str, Any], tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "payments.json"
    f.write_text(json.dumps({"payments": [
        sq("p1", 1234, "ANN@example.test"), sq("p2", 800),
        sq("p3", 5000, "ann@example.test", refunded_money={"amount": 1000, "currency": "USD"}, refund_ids=["r1"]),
        sq("bad", -5), sq("p4", 100, status="FAILED")]}))
    code, out, err = run(capsys, "--format", "json", "--actor", setup["operator"].email, "ingest", str(f),
                         "--tenant", setup["tenant"], "--provider", "square")
    assert code == 0, err
    summary = json.loads(out)
    assert (summary["read"], summary["inserted"], summary["skipped"], summary["not_completed"]) == (5, 3, 1, 1)
    assert (summary["points_credited"], summary["points_debited"], summary["refunds_applied"]) == (12 + 50, 10, 1)
    assert "negative" in summary["skipped_reasons"][0]
    code, out, _ = run(capsys, "ingest", str(f), "--tenant", setup["tenant"], "--provider", "square")
    assert code == 0 and "duplicates: 3" in out and "points_credited: 0" in out and "skipped bad" in out
    with setup["engine"].connect() as conn:
        assert conn.execute(sa.text("select sum(points_balance) from wallets")).scalar() == 52


@pytest.mark.parametrize("content", ["", "{oops", '{"elements": []}', "[1, 2"])
def test_ingest_unreadable_file_exits_nonzero_and_writes_nothing(setup: dict[str, Any], tmp_path: Path, content: str,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "bad.json"
    f.write_text(content)
    code, _, err = run(capsys, "ingest", str(f), "--tenant", setup["tenant"], "--provider", "square")
    assert code != 0 and err.startswith("error:") and "Traceback" not in err
    with setup["engine"].connect() as conn:
        assert conn.execute(sa.text("select count(*) from transactions")).scalar() == 0


def test_ingest_clover_uses_tenant_country_currency(setup: dict[str, Any], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    with setup["engine"].begin() as conn:
        tenant = make_tenant(conn, country="JP")["id"]
        make_rule(conn, tenant, 1, config={"conversionRate": 0.01}, effective_from=datetime(2020, 1, 1))
    f = tmp_path / "clover.json"
    f.write_text(json.dumps({"elements": [{
        "id": "C1", "amount": 1500, "result": "SUCCESS", "createdTime": 1_746_093_600_000,
        "order": {"customers": {"elements": [{"emailAddresses": {"elements": [{"emailAddress": "ann@example.test"}]}}]}}}]}))
    code, out, err = run(capsys, "--format", "json", "ingest", str(f), "--tenant", str(tenant), "--provider", "clover")
    assert code == 0, err
    assert json.loads(out)["points_credited"] == 15   # 1500 JPY (exponent 0) x 0.01
    with setup["engine"].connect() as conn:
        assert conn.execute(sa.text("select currency from transactions where tenant_id = :t"), {"t": tenant}).scalar() == "JPY"


def test_ingest_refused_for_client_and_bad_tenant(setup: dict[str, Any], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "p.json"
    f.write_text(json.dumps([sq("p1", 100)]))
    code, _, err = run(capsys, "--actor", setup["client"].email, "ingest", str(f), "--tenant", setup["tenant"],
                       "--provider", "square")
    assert code != 0 and "may not sync" in err
    code, _, err = run(capsys, "ingest", str(f), "--tenant", "not-a-uuid", "--provider", "square")
    assert code != 0 and "UUID" in err
    code, _, err = run(capsys, "ingest", str(tmp_path / "missing.json"), "--tenant", setup["tenant"],
                       "--provider", "square")
    assert code != 0 and "cannot read" in err


def test_rules_and_wallet_commands(setup: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    t = setup["tenant"]
    code, out, err = run(capsys, "rules", "set", "--tenant", t, "--config",
                         '{"conversionRate": 2.5, "roundingPolicy": "round", "bonus": 1}',
                         "--effective-from", "2026-06-01T00:00:00Z", "--reason", "summer")
    assert code == 0, err
    assert "version: 2" in out and "unknown keys kept: bonus" in err
    code, out, _ = run(capsys, "--format", "json", "rules", "list", "--tenant", t)
    listed = json.loads(out)
    assert [r["version"] for r in listed] == [2, 1] and listed[0]["active"] is True
    code, _, err = run(capsys, "rules", "set", "--tenant", t, "--config", '{"conversionRate": -1}')
    assert code != 0 and "conversionRate" in err
    code, _, err = run(capsys, "rules", "set", "--tenant", t, "--config", "[1]")
    assert code != 0 and "JSON object" in err
    with setup["engine"].begin() as conn:
        wallet = make_wallet(conn, tenant_id=setup["tenant"], points_balance=0)
    w = str(wallet["id"])
    code, out, err = run(capsys, "--format", "json", "wallet", "adjust", "--wallet", w, "--points", "40",
                         "--reason", "goodwill")
    assert code == 0, err
    assert json.loads(out)["points_balance"] == 40
    code, _, err = run(capsys, "wallet", "adjust", "--wallet", w, "--points", "-41", "--reason", "oops")
    assert code != 0 and "balance is 40" in err
    code, _, err = run(capsys, "wallet", "adjust", "--wallet", w, "--points", "5", "--reason", " ")
    assert code != 0 and "reason is required" in err
    assert run(capsys, "wallet", "freeze", "--wallet", w, "--reason", "fraud")[0] == 0
    code, _, err = run(capsys, "wallet", "freeze", "--wallet", w, "--reason", "fraud")
    assert code != 0 and "already frozen" in err
    assert run(capsys, "wallet", "unfreeze", "--wallet", w, "--reason", "cleared")[0] == 0
    code, _, err = run(capsys, "--actor", setup["client"].email, "wallet", "adjust", "--wallet", w, "--points", "1",
                       "--reason", "x")
    assert code != 0 and "may not" in err
    with setup["engine"].connect() as conn:
        actions = conn.execute(sa.text("select action from admin_audit_logs order by created_at")).scalars().all()
    assert actions == ["rule.create", "wallet.adjust", "wallet.freeze", "wallet.unfreeze"]


def test_users_commands(setup: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    with setup["engine"].begin() as conn:
        make_user(conn, email="pending@example.test", status="pending_approval")
    code, out, err = run(capsys, "users", "approve", "--user", "pending@example.test", "--reason", "verified")
    assert code == 0 and "status: active" in out, err
    code, _, err = run(capsys, "users", "approve", "--user", "pending@example.test", "--reason", "again")
    assert code != 0 and "is active" in err
    code, out, _ = run(capsys, "users", "suspend", "--user", "pending@example.test", "--reason", "abuse")
    assert code == 0 and "suspended" in out
    code, _, err = run(capsys, "users", "suspend", "--user", setup["admin"].email, "--reason", "self")
    assert code != 0 and "own status" in err


def test_every_rewards_command_has_help() -> None:
    for name in ("rules", "wallet", "users", "ingest"):
        cmd = cli.commands[name]
        assert cmd.help
        subs = cmd.commands.values() if isinstance(cmd, click.Group) else [cmd]
        for sub in subs:
            assert sub.help, sub.name
            for param in sub.params:
                if isinstance(param, click.Option):
                    assert param.help, f"{sub.name} {param.name}"
