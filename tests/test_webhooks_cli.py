"""`salesarck webhooks ...` and `salesarck worker ...`: real database, fake providers, clear errors."""

from __future__ import annotations

import json
from datetime import timedelta

import click
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

from salesarck.cli import (
    commands,  # noqa: F401  registers every command
    main,
)
from salesarck.cli.base import cli
from salesarck.timeutil import utcnow
from tests.factories import make_tenant, make_user
from tests.webhook_support import NOTIFICATION_URL, SIGNATURE_KEY, Env, provider_env


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = 0
    try:
        main(list(args))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def _env(monkeypatch: pytest.MonkeyPatch, env: Env) -> None:
    s = env.settings
    assert s.encryption_keys is not None
    for name, value in {
        "SALESARCK_ENCRYPTION_KEYS": s.encryption_keys.get_secret_value(), "SALESARCK_SQUARE_BASE_URL": s.square_base_url,
        "SALESARCK_CLOVER_BASE_URL": s.clover_base_url, "SQUARE_WEBHOOK_SIGNATURE_KEY": SIGNATURE_KEY,
        "SQUARE_WEBHOOK_NOTIFICATION_URL": NOTIFICATION_URL, "SALESARCK_LOCAL_USER": env.admin.email or "",
    }.items():
        monkeypatch.setenv(name, value)


def test_every_webhook_and_worker_command_has_help() -> None:
    for group_name in ("webhooks", "worker"):
        group = cli.commands[group_name]
        assert group.help
        assert isinstance(group, click.Group)
        for name, cmd in group.commands.items():
            assert cmd.help, name
            for p in cmd.params:
                if isinstance(p, click.Option):
                    assert p.help, f"{group_name} {name} {p.name}"


def test_process_status_list_replay_purge(engine: Engine, test_env: URL, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    with provider_env(engine) as env:
        _env(monkeypatch, env)
        for pid in env.square.payment_ids(status="COMPLETED")[:3]:
            env.square.emit_webhook(env.receiver_url + "/webhooks/square", signature_key=SIGNATURE_KEY,
                                    event_type="payment.updated", object_id=pid, notification_url=NOTIFICATION_URL)
        code, out, err = run(capsys, "--format", "json", "webhooks", "status")
        assert code == 0, err
        assert json.loads(out)["pending"] == 3
        code, out, err = run(capsys, "--format", "json", "webhooks", "process", "--limit", "2")
        assert code == 0, err
        assert json.loads(out)["processed"] == 2
        code, out, err = run(capsys, "--format", "json", "webhooks", "process")
        assert json.loads(out)["processed"] == 1
        code, out, err = run(capsys, "--format", "json", "webhooks", "list", "--state", "processed")
        assert code == 0 and len(json.loads(out)) == 3
        code, out, err = run(capsys, "--format", "json", "webhooks", "replay", "--since", "2000-01-01")
        assert code == 0, err
        body = json.loads(out)
        assert (body["selected"], body["signatures_verified"], body["processed"]) == (3, 3, 3)
        with engine.begin() as conn:
            t = make_tenant(conn)["id"]
            conn.execute(sa.text("insert into idempotency_keys (key, tenant_id, handler, expires_at) values"
                                 " ('square:M:old', :t, 'square_webhook', :old), ('square:M:new', :t, 'square_webhook', :new)"),
                         {"t": t, "old": utcnow() - timedelta(days=1), "new": utcnow() + timedelta(days=1)})
        code, out, err = run(capsys, "--format", "json", "webhooks", "purge-keys")
        assert code == 0 and json.loads(out) == {"deleted": 1}
        with engine.connect() as conn:
            keys = conn.execute(sa.text("select key from idempotency_keys where key like 'square:M:%'")).scalars().all()
        assert keys == ["square:M:new"]
        code, out, err = run(capsys, "--format", "json", "worker", "--once")
        assert code == 0, err
        assert json.loads(out)["polls"] == 2 and json.loads(out)["poll_failures"] == 0
        code, out, err = run(capsys, "--format", "json", "worker", "status")
        assert code == 0 and json.loads(out)[0]["state"] == "stopped"
        code, out, err = run(capsys, "--format", "json", "worker", "schedule")
        assert code == 0 and {r["last_status"] for r in json.loads(out)} == {"ok"}
        code, out, err = run(capsys, "--format", "json", "worker", "options", "--connection",
                             str(env.clover_connection), "--interval", "60", "--clover-region", "eu")
        assert code == 0 and json.loads(out)["clover_region"] == "eu"


@pytest.mark.parametrize("args,fragment", [
    (["webhooks", "replay", "--since", "yesterday"], "not an RFC 3339"),
    (["webhooks", "replay", "--since", "2026-01-01T00:00:00"], "no UTC offset"),
    (["webhooks", "retry", "not-a-uuid"], "is not a UUID"),
    (["webhooks", "retry", "00000000-0000-0000-0000-000000000000"], "no webhook event"),
    (["webhooks", "process", "--limit", "0"], "0"),
    (["worker", "options", "--connection", "x" * 500, "--interval", "60"], "is not a UUID"),
    (["worker", "options", "--connection", "00000000-0000-0000-0000-000000000000"], "nothing to change"),
    (["worker", "options", "--connection", "00000000-0000-0000-0000-000000000000", "--interval", "4"], "4"),
])
def test_bad_input_is_one_clear_line(test_env: URL, engine: Engine, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch, args: list[str], fragment: str) -> None:
    with engine.begin() as conn:
        admin = make_user(conn, role="admin")
    monkeypatch.setenv("SALESARCK_LOCAL_USER", admin["email"])
    code, out, err = run(capsys, *args)
    assert code != 0
    assert fragment in err and "Traceback" not in err
    with engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from admin_audit_logs")).scalar_one() == 0


def test_people_without_permission_are_refused(test_env: URL, engine: Engine, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    with engine.begin() as conn:
        consumer = make_user(conn, role="consumer")
    monkeypatch.setenv("SALESARCK_LOCAL_USER", consumer["email"])
    for args in (["webhooks", "process"], ["webhooks", "replay", "--since", "2026-01-01"], ["webhooks", "purge-keys"]):
        code, out, err = run(capsys, *args)
        assert code != 0 and "may not" in err, (args, err)
