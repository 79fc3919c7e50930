"""Hostile input across entry points not covered by the domain suites' own fuzzing: rule configs, the
app's filter values (salesarck.analytics / salesarck.frames), the CLI's arguments and `ingest` files.

Every case must end in a result or a clear `salesarck.errors` error (CLI: `error: ...` and a non-zero
exit): never another exception or a traceback; refused mutations write nothing and the books stay
balanced (each wallet's snapshot equals its ledger sum)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import URL, Engine

from salesarck import analytics, frames
from salesarck.authz import Actor
from salesarck.cli.base import main
from salesarck.errors import SalesarckError
from salesarck.rewards.rules import RuleConfig
from tests.factories import make_admin, make_member, make_rule, make_tenant, make_user, make_wallet

NASTY = [
    "", " ", "'", "' or 1=1 --", "'; drop table wallets; --", '"', "\\", "%", "_", "%_%", "\x00", "a\x00b",
    "\u202e", "😀" * 50, "é", "\ufffd", "NaN", "nan", "Infinity", "-Infinity", "inf", "1e309",
    "-1", "0", "-0", "2147483647", "2147483648", "-2147483649", "9223372036854775808", "9" * 400, "1.5", "0x10",
    "1_000", "null", "None", "true", "[]", "{}", "[" * 3000, "{\"a\":" * 2000, "x" * 100_000, "../../etc/passwd",
    "2026-13-45", "2026-02-30T25:61:00Z", "0001-01-01", "9999-12-31T23:59:59Z", "-infinity", "infinity",
    "00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff", "{{7*7}}", "${jndi:ldap://x}",
]
nasty_text = st.one_of(st.sampled_from(NASTY), st.text(max_size=60))
nasty_number = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["1", "0.5", "1e400", "NaN", "Infinity", "-1", True, None, [], {}]),
)
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                            HealthCheck.too_slow])


def _deep(n: int) -> Any:
    value: Any = 1
    for _ in range(n):
        value = {"a": value}
    return value


# --- rule configs ----------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["conversionRate", "minSpendMinorUnits", "maxPointsPerTransaction",
                                        "minBalanceToRedeem", "maxRedemptionPercentage", "roundingPolicy",
                                        "pointValueMinorUnits", "x", ""]), nasty_number, max_size=6))
def test_rule_config_parse_is_valid_or_a_clear_error(raw: dict[str, Any]) -> None:
    try:
        cfg = RuleConfig.parse(raw)
    except SalesarckError as exc:
        assert str(exc) and "Traceback" not in str(exc)
        return
    # a parsed config is finite, integral where it must be, and round-trips through JSON
    for value in vars(cfg).values():
        if isinstance(value, float):
            raise AssertionError(f"float in a parsed rule config: {cfg!r}")
        if hasattr(value, "is_finite"):
            assert value.is_finite()
    json.dumps(cfg.to_json(), allow_nan=False)  # storable as JSONB (no NaN/Infinity)


@pytest.mark.parametrize("raw", [None, "conversionRate=1", b"{}", [], 1, math.nan, _deep(3000),
                                 {"conversionRate": _deep(500)}, {"conversionRate": "1" * 10_000}])
def test_rule_config_hostile_shapes(raw: Any) -> None:
    with pytest.raises(SalesarckError):
        RuleConfig.parse(raw)


# --- app filter values -------------------------------------------------------------------------------


@pytest.fixture
def small_world(engine: Engine) -> dict[str, Any]:
    with engine.begin() as conn:
        t = make_tenant(conn, name="Hostile Tenant")["id"]
        other = make_tenant(conn, name="Other Tenant")["id"]
        make_rule(conn, t)
        user = make_user(conn, email="carol@example.test")
        wallet = make_wallet(conn, t, user["id"])["id"]
        client = make_member(conn, t, "client")
        admin = make_admin(conn)
    return {"tenant": t, "other": other, "wallet": wallet, "client": client, "admin": admin, "email": user["email"]}


def _call_or_clear_error(fn: Any) -> Any:
    try:
        return fn()
    except SalesarckError as exc:
        assert str(exc) and len(str(exc)) < 2000
        return None


@SETTINGS
@given(text=nasty_text, number=nasty_number, who=st.sampled_from(["client", "admin"]))
def test_app_filters_answer_or_refuse_clearly(engine: Engine, small_world: dict[str, Any], text: str, number: Any,
                                              who: str) -> None:
    a: Actor = small_world[who]
    with engine.connect() as conn:
        calls = [
            lambda: analytics.find_wallets(conn, actor=a, query=text),
            lambda: analytics.transactions_page(conn, actor=a, tenant_id=text, provider=text),
            lambda: analytics.transactions_page(conn, actor=a, page=number, page_size=number),
            lambda: analytics.transactions_timeline(conn, actor=a, tenant_id=text, freq=text),
            lambda: analytics.transactions_timeline(conn, actor=a, tz=text),
            lambda: analytics.audit_page(conn, actor=a, actor_email=text, action=text, target=text, page=number),
            lambda: analytics.wallet_summary(conn, actor=a, wallet_id=text),
            lambda: analytics.wallet_ledger_page(conn, actor=a, wallet_id=small_world["wallet"], page=number),
            lambda: frames.transactions(conn, actor=a, tenant=text, provider=text, start=text, end=text),
            lambda: frames.ledger(conn, actor=a, wallet=text, start=number, end=text),
            lambda: frames.wallets(conn, actor=a, status=text, user=text, limit=number),
        ]
        for call in calls:
            _call_or_clear_error(call)
            conn.rollback()  # each call starts clean: a failed statement must not poison the next one


# --- CLI arguments and ingest files ---------------------------------------------------------------


def _run(capsys: pytest.CaptureFixture[str], args: list[str]) -> tuple[int, str, str]:
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out = capsys.readouterr()
    return code, out.out, out.err


def _books_balanced(engine: Engine) -> None:
    with engine.connect() as conn:
        bad = conn.execute(sa.text(
            "select w.id from wallets w left join (select wallet_id, sum(case when entry_type = 'credit' then points "
            "else -points end) as s from wallet_ledger group by wallet_id) l on l.wallet_id = w.id "
            "where w.points_balance <> coalesce(l.s, 0)")).all()
    assert bad == []


CLI_SHAPES: list[tuple[str, ...]] = [
    ("rules", "set", "--tenant", "{t}", "--config", "{x}", "--reason", "{x}"),
    ("rules", "set", "--tenant", "{x}", "--config", '{{"conversionRate": "{x}"}}', "--reason", "r"),
    ("rules", "set", "--tenant", "{t}", "--config", '{{"conversionRate": 1}}', "--effective-from", "{x}",
     "--reason", "r"),
    ("rules", "list", "--tenant", "{x}"),
    ("rules", "simulate", "--tenant", "{t}", "--config", "{x}", "--start", "{x}", "--end", "{x}"),
    ("wallet", "adjust", "--wallet", "{w}", "--points", "{x}", "--reason", "{x}"),
    ("wallet", "adjust", "--wallet", "{x}", "--points", "5", "--reason", "r"),
    ("wallet", "redeem", "--wallet", "{w}", "--points", "{x}", "--purchase", "{x}", "--key", "{x}"),
    ("wallet", "freeze", "--wallet", "{x}", "--reason", "{x}"),
    ("users", "suspend", "--user", "{x}", "--reason", "{x}"),
    ("connections", "list", "--tenant", "{x}"),
    ("connections", "disconnect", "{x}", "--reason", "r"),
    ("connections", "events", "{x}", "--limit", "{x}"),
    ("sync-runs", "--connection", "{x}", "--limit", "{x}"),
    ("webhooks", "list", "--state", "{x}", "--limit", "{x}"),
    ("webhooks", "retry", "{x}"),
    ("worker", "options", "--connection", "{x}", "--interval", "{x}"),
    ("reconcile", "approve", "{x}", "--reason", "{x}"),
    ("reconcile", "compare", "{x}", "{x}"),
    ("reconcile", "repair", "--wallet", "{x}", "--reason", "{x}"),
    ("balances", "--as-of", "{x}", "--tenant", "{x}"),
    ("liability", "--tenant", "{t}", "--from", "{x}", "--to", "{x}"),
    ("--format", "{x}", "rules", "list", "--tenant", "{t}"),
    ("{x}",),
]


@pytest.fixture
def cli_world(test_env: URL, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    with engine.begin() as conn:
        t = make_tenant(conn)["id"]
        make_rule(conn, t)
        w = make_wallet(conn, t)["id"]
        admin = make_admin(conn)
    monkeypatch.setenv("SALESARCK_LOCAL_USER", admin.email or "")
    return {"t": str(t), "w": str(w)}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(shape=st.sampled_from(CLI_SHAPES), x=nasty_text.filter(lambda s: "\x00" not in s))
def test_cli_arguments_never_traceback(engine: Engine, cli_world: dict[str, Any], capsys: pytest.CaptureFixture[str],
                                       shape: tuple[str, ...], x: str) -> None:
    args = [part.format(t=cli_world["t"], w=cli_world["w"], x=x.replace("{", "{{").replace("}", "}}"))
            .replace("{{", "{").replace("}}", "}") if "{x}" in part else part.format(**cli_world) for part in shape]
    code, out, err = _run(capsys, args)
    assert "Traceback" not in out + err
    if code != 0:
        assert err.strip(), args  # a refusal says why
        assert len(err.strip().splitlines()) <= 40  # a message, not a dump
    _books_balanced(engine)


INGEST_BODIES: list[bytes] = [
    b"", b"\xff\xfe\x00garbage", b"\x00" * 1000, "[]".encode("utf-16"), b"[" * 100_000, b'{"a":' * 50_000,
    b"not json at all", b'{"payments": "x"}', b'[{"id": null}]', b'[{"id": "p1", "amount_money": {"amount": 1e400}}]',
    b'[{"id": "p1", "status": "COMPLETED", "amount_money": {"amount": NaN, "currency": "USD"}}]',
    b'[{"id": "p1", "status": "COMPLETED", "amount_money": {"amount": 99999999999999999999, "currency": "USD"}}]',
    b'[{"id": "p1", "status": "COMPLETED", "amount_money": {"amount": -500, "currency": "USD"}}]',
    b'[{"id": "p1", "status": "COMPLETED", "amount_money": {"amount": 500, "currency": "\xc3\x28"}}]',
    b'{"elements": [{"id": "c1", "amount": "12", "result": "SUCCESS", "createdTime": "x"}]}',
    b'{"elements": [{"id": "c1", "amount": 2147483648000, "result": "SUCCESS", "createdTime": 1700000000000}]}',
    json.dumps([{"id": "p" * 10_000, "status": "COMPLETED"}]).encode(),
]


@pytest.mark.parametrize("provider", ["square", "clover"])
def test_ingest_hostile_files_write_nothing_or_store_intact(engine: Engine, cli_world: dict[str, Any],
                                                            capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                            provider: str) -> None:
    for i, body in enumerate(INGEST_BODIES):
        path = tmp_path / f"in{i}.json"
        path.write_bytes(body)
        code, out, err = _run(capsys, ["ingest", str(path), "--tenant", cli_world["t"], "--provider", provider])
        assert "Traceback" not in out + err, body[:80]
        if code != 0:
            assert err.startswith("error:"), (body[:80], err[:300])
        with engine.connect() as conn:
            # whatever was accepted is stored intact: integer amounts within int32, no negative sale
            bad = conn.execute(sa.text("select count(*) from transactions where amount_minor_units < 0 "
                                       "or amount_minor_units > 2147483647")).scalar_one()
        assert bad == 0
    _books_balanced(engine)
    missing = tmp_path / "missing.json"
    code, _, err = _run(capsys, ["ingest", str(missing), "--tenant", cli_world["t"], "--provider", provider])
    assert code != 0 and err.startswith("error:") or "does not exist" in err


def test_bad_actor_and_unknown_tenant_are_clear(cli_world: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["--actor", "' or 1=1 --", "rules", "list", "--tenant", cli_world["t"]],
                 ["--actor", "x" * 10_000, "rules", "list", "--tenant", cli_world["t"]],
                 ["rules", "list", "--tenant", "not-a-uuid"]):
        code, out, err = _run(capsys, args)
        assert code != 0 and "Traceback" not in out + err and err.strip(), (args[:3], err[:200])
