"""POS connections: add/list/disconnect, encryption at rest, one tenant per merchant, key rotation,
atomic token refresh, and the `salesarck connections ...` / `salesarck sync` / `fakepos` CLI."""

from __future__ import annotations

import io
import json
import threading
import uuid
from pathlib import Path
from typing import Any

import click
import pytest
import sqlalchemy as sa
from pydantic import SecretStr
from sqlalchemy.engine import URL, Engine

from salesarck.cli import commands  # noqa: F401  registers every command
from salesarck.cli.base import cli, main
from salesarck.crypto import KeyRing, TokenCryptoError
from salesarck.errors import Conflict, NotFound, PermissionDenied, ValidationError
from salesarck.pos import connections as svc
from salesarck.pos.fake.square import FakeSquare
from tests.factories import make_admin, make_member, make_tenant
from tests.test_sync_support import (  # noqa: F401  (fixtures)
    World,
    count,
    fake_fixture,
    fake_server_fixture,
    key_spec,
    world_fixture,
)

TOKEN = "EAAAfake-access-token-for-tests"


@pytest.fixture
def setup(engine: Engine) -> dict[str, Any]:
    with engine.begin() as conn:
        t1, t2 = make_tenant(conn), make_tenant(conn)
        admin = make_admin(conn)
        op1 = make_member(conn, t1["id"], role="pos_operator")
        client1 = make_member(conn, t1["id"], role="client")
    return {"t1": t1["id"], "t2": t2["id"], "admin": admin, "op1": op1, "client1": client1,
            "ring": KeyRing.parse(key_spec("k1"))}


def _add(engine: Engine, s: dict[str, Any], **kw: Any) -> svc.ConnectionInfo:
    args: dict[str, Any] = {"actor": s["admin"], "tenant_id": s["t1"], "provider": "square", "merchant_id": "MLX1",
                            "access_token": TOKEN, "refresh_token": "refresh-tok", "keyring": s["ring"]}
    args.update(kw)
    return svc.add_connection(engine, **args)


def test_add_stores_only_ciphertext_and_lists_no_tokens(engine: Engine, setup: dict[str, Any]) -> None:
    info = _add(engine, setup)
    with engine.connect() as conn:
        row = conn.execute(sa.text("select * from pos_connections")).mappings().one()
        tokens = svc.load_tokens(conn, info.id, setup["ring"])
        events = conn.execute(sa.text("select event, to_status, actor_user_id from pos_connection_events")).all()
        audit = conn.execute(sa.text("select action, after_state::text from admin_audit_logs")).all()
    assert row["access_token_enc"].startswith("sa1:k1:") and TOKEN not in row["access_token_enc"]
    assert row["refresh_token_enc"].startswith("sa1:k1:")
    assert tokens.access_token.get_secret_value() == TOKEN and tokens.refresh_token is not None
    assert TOKEN not in repr(tokens) and TOKEN not in repr(info)
    assert events == [("connected", "active", setup["admin"].user_id)]
    assert audit[0][0] == "pos_connection.connect" and TOKEN not in audit[0][1] and "refresh-tok" not in audit[0][1]
    listed = svc.list_connections(engine, actor=setup["op1"])
    assert [c.id for c in listed] == [info.id] and listed[0].has_refresh_token
    assert TOKEN not in json.dumps(listed[0].as_row(), default=str)


def test_clover_without_refresh_token_is_stored_empty(engine: Engine, setup: dict[str, Any]) -> None:
    info = _add(engine, setup, provider="clover", refresh_token=None)
    with engine.connect() as conn:
        assert conn.execute(sa.text("select refresh_token_enc from pos_connections")).scalar_one() == ""
        assert svc.load_tokens(conn, info.id, setup["ring"]).refresh_token is None


def test_one_merchant_belongs_to_one_tenant(engine: Engine, setup: dict[str, Any]) -> None:
    _add(engine, setup)
    with pytest.raises(Conflict, match="another tenant"):
        _add(engine, setup, tenant_id=setup["t2"])
    with pytest.raises(Conflict, match="already connected"):
        _add(engine, setup)
    _add(engine, setup, provider="clover")  # the same id at another provider is another merchant
    with engine.begin() as conn, pytest.raises(sa.exc.IntegrityError):  # the database itself refuses
        conn.execute(sa.text("insert into pos_connections (tenant_id, pos_type, access_token_enc, refresh_token_enc,"
                             " merchant_account_id, status) values (:t, 'square', 'x', '', 'MLX1', 'active')"),
                     {"t": setup["t2"]})
    assert count(engine, "select count(*) from pos_connections") == 2


def test_disconnect_wipes_tokens_and_reconnect_restores(engine: Engine, setup: dict[str, Any]) -> None:
    info = _add(engine, setup)
    with pytest.raises(PermissionDenied):
        svc.disconnect_connection(engine, actor=setup["op1"], connection_id=info.id)
    out = svc.disconnect_connection(engine, actor=setup["admin"], connection_id=info.id, reason="merchant left")
    assert out.status == "disconnected"
    with engine.connect() as conn:
        row = conn.execute(sa.text("select access_token_enc, refresh_token_enc from pos_connections")).one()
        with pytest.raises(TokenCryptoError, match=str(info.id)):
            svc.load_tokens(conn, info.id, setup["ring"])
    assert tuple(row) == ("", "")
    with pytest.raises(Conflict, match="already disconnected"):
        svc.disconnect_connection(engine, actor=setup["admin"], connection_id=info.id)
    again = _add(engine, setup, access_token="EAAAnew")
    assert again.id == info.id and again.status == "active"
    with engine.connect() as conn:
        assert svc.load_tokens(conn, info.id, setup["ring"]).access_token.get_secret_value() == "EAAAnew"
        events = conn.execute(sa.text("select event, from_status, to_status, reason from pos_connection_events"
                                      " order by created_at, event")).all()
        audited = conn.execute(sa.text("select action from admin_audit_logs order by created_at")).scalars().all()
    assert ("status_changed", "active", "disconnected", "merchant left") in [tuple(e) for e in events]
    assert "pos_connection.status" in audited


@pytest.mark.parametrize("override,error", [
    ({"provider": "toast"}, ValidationError),
    ({"merchant_id": "has space"}, ValidationError),
    ({"merchant_id": ""}, ValidationError),
    ({"merchant_id": "m" * 200}, ValidationError),
    ({"access_token": ""}, ValidationError),
    ({"access_token": "x" * 10_000}, ValidationError),
    ({"access_token": "bad\ntoken"}, ValidationError),
    ({"refresh_token": "spa ce"}, ValidationError),
    ({"tenant_id": uuid.uuid4()}, NotFound),
])
def test_hostile_input_writes_nothing(engine: Engine, setup: dict[str, Any], override: dict[str, Any],
                                      error: type[Exception]) -> None:
    with pytest.raises(error) as info:
        _add(engine, setup, **override)
    for key, value in override.items():
        if key.endswith("token") and len(value) > 3:
            assert value not in str(info.value)  # tokens never echoed
    assert count(engine, "select count(*) from pos_connections") == 0
    assert count(engine, "select count(*) from pos_connection_events") == 0


def test_permissions(engine: Engine, setup: dict[str, Any]) -> None:
    with pytest.raises(PermissionDenied):
        _add(engine, setup, actor=setup["op1"])
    with pytest.raises(PermissionDenied):
        _add(engine, setup, actor=setup["client1"])
    info = _add(engine, setup)
    with engine.begin() as conn:
        outsider = make_member(conn, setup["t2"], role="client")
    assert svc.list_connections(engine, actor=outsider) == []
    with pytest.raises(NotFound):
        svc.connection_events(engine, actor=outsider, connection_id=info.id)
    with pytest.raises(PermissionDenied):
        svc.rotate_keys(engine, actor=setup["op1"], keyring=setup["ring"])


def test_rotate_keys_reencrypts_everything_in_one_go(engine: Engine, setup: dict[str, Any]) -> None:
    old_spec = key_spec("old")
    old = KeyRing.parse(old_spec)
    a = _add(engine, setup, keyring=old)
    b = _add(engine, setup, keyring=old, merchant_id="MLX2", provider="clover", refresh_token=None)
    both = KeyRing.parse(key_spec("new") + "," + old_spec)
    assert svc.rotate_keys(engine, actor=setup["admin"], keyring=both) == {"connections": 2, "re_encrypted": 2}
    new_only = KeyRing.parse(key_spec("zz"))  # a ring without the key 'new'
    with engine.connect() as conn:
        encs = conn.execute(sa.text("select access_token_enc, refresh_token_enc from pos_connections")).all()
        assert all(e[0].startswith("sa1:new:") for e in encs)
        assert svc.load_tokens(conn, a.id, both).access_token.get_secret_value() == TOKEN
        assert svc.load_tokens(conn, b.id, both).refresh_token is None
        with pytest.raises(TokenCryptoError, match="'new'"):
            svc.load_tokens(conn, a.id, new_only)
    assert svc.rotate_keys(engine, actor=setup["admin"], keyring=both)["re_encrypted"] == 0


def test_rotation_with_an_undecryptable_token_changes_nothing(engine: Engine, setup: dict[str, Any]) -> None:
    old_spec = key_spec("old")
    a = _add(engine, setup, keyring=KeyRing.parse(old_spec))
    _add(engine, setup, keyring=KeyRing.parse(old_spec), merchant_id="MLX2")
    with engine.begin() as conn:  # a token written by the existing system in its own format
        conn.execute(sa.text("update pos_connections set access_token_enc = 'iv:tag:ciphertext' where id = :i"),
                     {"i": a.id})
        before = conn.execute(sa.text("select id, access_token_enc from pos_connections order by id")).all()
    with pytest.raises(TokenCryptoError, match=f"connection {a.id}.*another system"):
        svc.rotate_keys(engine, actor=setup["admin"], keyring=KeyRing.parse(key_spec("new") + "," + old_spec))
    with engine.connect() as conn:
        assert conn.execute(sa.text("select id, access_token_enc from pos_connections order by id")).all() == before


def test_concurrent_refreshes_spend_a_single_use_refresh_token_once(engine: Engine, setup: dict[str, Any]) -> None:
    info = _add(engine, setup)
    calls: list[str] = []
    lock = threading.Lock()

    def refresher(refresh: SecretStr) -> svc.RefreshedTokens:
        with lock:
            calls.append(refresh.get_secret_value())
            n = len(calls)
        threading.Event().wait(0.2)  # the provider is slow: the other thread queues on the row lock
        return svc.RefreshedTokens(SecretStr(f"access-{n}"), SecretStr(f"refresh-{n}"), None)

    results: list[svc.ConnectionTokens] = []
    threads = [threading.Thread(target=lambda: results.append(svc.refresh_connection_tokens(
        engine, info.id, keyring=setup["ring"], used_access_token=SecretStr(TOKEN), refresher=refresher)))
        for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert calls == ["refresh-tok"]
    assert [r.access_token.get_secret_value() for r in results] == ["access-1", "access-1"]
    with engine.connect() as conn:
        stored = svc.load_tokens(conn, info.id, setup["ring"])
    assert stored.refresh_token is not None and stored.refresh_token.get_secret_value() == "refresh-1"


# --- CLI ----------------------------------------------------------------------------------------

def _cli(args: list[str], capsys: pytest.CaptureFixture[str], stdin: str | None = None,
         monkeypatch: pytest.MonkeyPatch | None = None) -> tuple[int, str, str]:
    if stdin is not None and monkeypatch is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = 0
    try:
        main(args)
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def cli_env(test_env: URL, engine: Engine, monkeypatch: pytest.MonkeyPatch, setup: dict[str, Any]) -> dict[str, Any]:
    keys = key_spec("k1")
    monkeypatch.setenv("SALESARCK_ENCRYPTION_KEYS", keys)
    monkeypatch.setenv("SALESARCK_LOCAL_USER", setup["admin"].email)
    return {**setup, "keys": keys}


def test_cli_add_list_disconnect(cli_env: dict[str, Any], engine: Engine, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    tok = tmp_path / "access.txt"
    tok.write_text(TOKEN + "\n")
    code, out, err = _cli(["--format", "json", "connections", "add", "--tenant", str(cli_env["t1"]), "--provider",
                           "square", "--merchant-id", "MLCLI", "--access-token-file", str(tok),
                           "--refresh-token-file", "-", "--expires-at", "2030-01-01T00:00:00Z"],
                          capsys, stdin="refresh-from-stdin\n", monkeypatch=monkeypatch)
    assert code == 0, err
    added = json.loads(out)
    assert added["status"] == "active" and added["refresh_token"] == "yes" and TOKEN not in out
    code, out, err = _cli(["--format", "csv", "connections", "list"], capsys)
    assert code == 0 and "MLCLI" in out and TOKEN not in out and "refresh-from-stdin" not in out
    code, out, err = _cli(["connections", "events", added["id"]], capsys)
    assert code == 0 and "connected" in out
    code, out, err = _cli(["connections", "rotate-keys"], capsys)
    assert code == 0 and "re_encrypted: 0" in out
    code, out, err = _cli(["connections", "disconnect", added["id"], "--reason", "closing"], capsys)
    assert code == 0 and "disconnected" in out
    with engine.connect() as conn:
        assert conn.execute(sa.text("select token_expires_at::text from pos_connections")).scalar_one() == \
            "2030-01-01 00:00:00"


@pytest.mark.parametrize("args,message", [
    (["--tenant", "not-a-uuid"], "not a UUID"),
    (["--access-token-file", "/no/such/file"], "cannot read"),
    (["--access-token-file", "EMPTY"], "empty"),
    (["--access-token-file", "HUGE"], "larger than"),
    (["--access-token-file", "BINARY"], "not UTF-8"),
    (["--access-token-file", "-", "--refresh-token-file", "-"], "only one"),
    (["--expires-at", "tomorrow"], "RFC 3339"),
    (["--merchant-id", "bad id;drop"], "merchant id"),
])
def test_cli_add_hostile_input_is_one_line_and_writes_nothing(
        cli_env: dict[str, Any], engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        args: list[str], message: str) -> None:
    files = {"EMPTY": b"   \n", "HUGE": b"x" * 70_000, "BINARY": b"\xff\xfe\x00tok", "GOOD": TOKEN.encode()}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    base = {"--tenant": str(cli_env["t1"]), "--provider": "square", "--merchant-id": "MLX",
            "--access-token-file": str(tmp_path / "GOOD")}
    given = dict(zip(args[::2], args[1::2], strict=True))
    merged = {**base, **{k: (str(tmp_path / v) if v in files else v) for k, v in given.items()}}
    argv = ["connections", "add"] + [x for kv in merged.items() for x in kv]
    code, out, err = _cli(argv, capsys)
    assert code != 0 and message in err and err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err and TOKEN not in err
    assert count(engine, "select count(*) from pos_connections") == 0


def test_cli_missing_keys_is_a_clear_error(cli_env: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SALESARCK_ENCRYPTION_KEYS", "")
    tok = tmp_path / "t"
    tok.write_text(TOKEN)
    code, out, err = _cli(["connections", "add", "--tenant", str(cli_env["t1"]), "--provider", "square",
                           "--merchant-id", "M", "--access-token-file", str(tok)], capsys)
    assert code == 2 and "SALESARCK_ENCRYPTION_KEYS is not set" in err


def test_cli_sync_with_summary_and_exit_codes(world: World, test_env: URL, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    w = world
    for name, value in {"SALESARCK_ENCRYPTION_KEYS": w.keys, "SALESARCK_SQUARE_BASE_URL": w.base_url,
                        "SALESARCK_LOCAL_USER": w.operator.email or ""}.items():
        monkeypatch.setenv(name, value)
    code, out, err = _cli(["--format", "json", "sync", "--connection", str(w.connection.id), "--progress"], capsys)
    assert code == 0, err
    (row,) = json.loads(out)
    assert row["status"] == "succeeded" and row["posted"] > 0 and "payments" in err  # the progress bar
    code, out, err = _cli(["--format", "json", "sync", "--tenant", str(w.tenant_id)], capsys)
    assert code == 0 and json.loads(out)[0]["posted"] == 0
    code, out, err = _cli(["sync-runs", "--connection", str(w.connection.id)], capsys)
    assert code == 0 and out.count("succeeded") == 2
    w.fake.revoke_token()
    code, out, err = _cli(["--format", "json", "sync", "--all"], capsys)
    assert code == 1 and "failed" in err and json.loads(out)[0]["status"] == "failed"
    code, out, err = _cli(["sync", "--all"], capsys)
    assert code == 2 and "no active connection" in err
    code, out, err = _cli(["sync"], capsys)
    assert code == 2 and "exactly one" in err


def test_every_pos_command_and_option_has_help() -> None:
    names = ["connections", "sync", "sync-runs", "fakepos"]
    for name in names:
        cmd = cli.commands[name]
        assert cmd.help, name
        subs = cmd.commands.values() if isinstance(cmd, click.Group) else [cmd]
        for sub in subs:
            assert sub.help, sub.name
            for param in sub.params:
                if isinstance(param, click.Option):
                    assert param.help, f"{sub.name} {param.name}"


def test_fakepos_serve_process_and_registry(tmp_path: Path) -> None:
    import httpx

    from salesarck.pos.fake import FAKE_PROVIDERS, build_fake
    from salesarck.pos.fake.server import ProcessServer

    assert "square" in FAKE_PROVIDERS
    with pytest.raises(ValidationError, match="no fake server"):
        build_fake("toast")
    assert isinstance(build_fake("square", seed=2, payments=3), FakeSquare)
    with ProcessServer(["fakepos", "serve", "square", "--seed", "5", "--payments", "30",
                        "--access-token", "demo-token"]) as srv:
        resp = httpx.get(f"{srv.base_url}/v2/locations", headers={"Authorization": "Bearer demo-token"})
        assert resp.status_code == 200 and len(resp.json()["locations"]) == 3
        denied = httpx.get(f"{srv.base_url}/v2/locations", headers={"Authorization": "Bearer other"})
        assert denied.status_code == 401 and denied.json()["errors"][0]["code"] == "UNAUTHORIZED"
