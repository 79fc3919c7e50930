"""AppTest: the app's actions end to end on a real database: reconcile + repair -> audit, rules form,
connections (tokens never shown), Sync now against the fake Square server, webhook processing, and
hostile input answered with a friendly message that writes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import streamlit as st
from sqlalchemy.engine import Engine
from streamlit.testing.v1 import AppTest

from salesarck.pos.fake.server import ThreadServer
from salesarck.pos.fake.square import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, FakeSquare
from tests import app_seed
from tests.test_app_pages import _like_a_running_server  # noqa: F401  (autouse fixture)
from tests.test_sync_support import build_world, key_spec

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
TIMEOUT = 90


@pytest.fixture
def world(test_env: object, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[app_seed.World]:
    w = app_seed.build(engine)
    monkeypatch.chdir(ROOT)
    yield w
    st.cache_data.clear()
    st.cache_resource.clear()


def open_page(monkeypatch: pytest.MonkeyPatch, email: str, page: str) -> AppTest:
    monkeypatch.setenv("SALESARCK_LOCAL_USER", email)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    at.switch_page(page)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def widget(elements: Any, label_start: str) -> Any:
    found = [e for e in elements if str(e.label).startswith(label_start)]
    assert found, (label_start, [e.label for e in elements])
    return found[0]


def button(at: AppTest, label: str) -> Any:
    return widget(at.button, label)


def all_text(at: AppTest) -> str:
    parts: list[str] = []
    for kind in ("markdown", "success", "info", "warning", "error", "caption", "title", "subheader", "json"):
        parts += [str(getattr(e, "value", "")) for e in at.get(kind)]
    parts += [str(getattr(df, "value", "")) for df in at.dataframe]
    return "\n".join(parts)


def scalar(engine: Engine, sql: str, **params: Any) -> Any:
    with engine.connect() as conn:
        return conn.execute(sa.text(sql), params).scalar()


def test_reconcile_then_repair_with_reason_shows_in_audit(world: app_seed.World, engine: Engine,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_page(monkeypatch, world.emails["admin"], "pages/reconciliation.py")
    assert any("No reconciliation has been recorded yet" in i.value for i in at.info)
    button(at, "Run reconciliation").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("1 drifted" in s.value for s in at.success), [s.value for s in at.success]
    assert {m.label: m.value for m in at.metric}["Drifted wallets"] == "1"

    # a repair without a reason is refused and changes nothing
    button(at, "Repair").click().run()
    assert any("reason is required" in e.value for e in at.error)
    assert scalar(engine, "select points_balance from wallets where id = :w", w=world.wallet_a) == 130

    widget(at.text_area, "Reason").input("Snapshot missed the 30-point redemption; ticket FIN-42")
    button(at, "Repair").click().run()
    assert not at.exception
    assert any("Repaired 1 wallet" in s.value for s in at.success), [e.value for e in at.error]
    assert scalar(engine, "select points_balance from wallets where id = :w", w=world.wallet_a) == 120

    audit = open_page(monkeypatch, world.emails["admin"], "pages/audit.py")
    titles = [e.label for e in audit.expander]
    assert any("wallet.snapshot_repair" in t and str(world.wallet_a) in t for t in titles), titles


def test_client_runs_reconciliation_but_cannot_repair(world: app_seed.World, engine: Engine,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_page(monkeypatch, world.emails["client"], "pages/reconciliation.py")
    button(at, "Run reconciliation").click().run()
    assert not at.exception and not at.error
    assert any("1 drifted" in s.value for s in at.success)
    assert "Repair" not in [s.value for s in at.subheader]
    assert not [b for b in at.button if b.label in ("Repair", "Request repair")]
    # the run is scoped: the client's run saw only tenant A's one wallet
    assert scalar(engine, "select wallets_checked from reconcile_runs order by started_at desc limit 1") == 1


def test_rules_form_validates_previews_and_saves(world: app_seed.World, engine: Engine,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_page(monkeypatch, world.emails["admin"], "pages/rules.py")
    widget(at.text_input, "Points per 1 unit").input("abc")
    button(at, "Preview").click().run()
    assert not at.exception
    assert any("Please check your input" in e.value for e in at.error)

    widget(at.text_input, "Points per 1 unit").input("1")
    button(at, "Preview").click().run()
    assert any("a 25.00 USD purchase earns **25 points**" in s.value for s in at.success), \
        [s.value for s in at.success] + [e.value for e in at.error]

    button(at, "Save new version").click().run()
    assert any("give a reason" in e.value for e in at.error)
    assert scalar(engine, "select max(version) from reward_rules where tenant_id = :t", t=world.tenant_a) == 1

    widget(at.text_input, "Points per 1 unit").input("2")
    widget(at.text_input, "Reason").input("Double points for the holidays")
    button(at, "Save new version").click().run()
    assert not at.exception
    assert any("Saved version 2" in s.value for s in at.success), [e.value for e in at.error]
    assert scalar(engine, "select rule_config->>'conversionRate' from reward_rules where tenant_id = :t and is_active",
                  t=world.tenant_a) == "2"
    assert scalar(engine, "select count(*) from admin_audit_logs where action = 'rule.create'") == 1


def test_add_connection_encrypts_tokens_and_never_shows_them(world: app_seed.World, engine: Engine,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SALESARCK_ENCRYPTION_KEYS", key_spec("k1"))
    token = "EAAAtest-access-token-0123456789"
    at = open_page(monkeypatch, world.emails["admin"], "pages/connections.py")
    widget(at.text_input, "Merchant id").input("MERCH-NEW")
    widget(at.text_input, "Access token").input(token)
    button(at, "Add connection").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("Connected square merchant MERCH-NEW" in s.value for s in at.success)
    assert token not in all_text(at)
    assert all(t.proto.type == t.proto.PASSWORD for t in at.text_input if "token" in t.label.lower())
    stored = scalar(engine, "select access_token_enc from pos_connections where merchant_account_id = 'MERCH-NEW'")
    assert stored and token not in stored

    # disconnect needs the confirmation and a reason
    button(at, "Disconnect").click().run()
    assert any("confirmation and give a reason" in e.value for e in at.error)


def test_hostile_input_gets_a_friendly_message(world: app_seed.World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SALESARCK_LOCAL_USER", world.emails["admin"])
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params["wallet"] = "'; drop table wallets; --"
    at.run()
    at.switch_page("pages/wallet.py")
    at.run()
    assert not at.exception
    assert any("Please check your input" in e.value for e in at.error)

    at = open_page(monkeypatch, world.emails["admin"], "pages/transactions.py")
    widget(at.date_input, "From").set_value(widget(at.date_input, "To").value).run()
    at.selectbox(key="tx_freq").set_value("hour").run()
    assert not at.exception
    at = open_page(monkeypatch, world.emails["admin"], "pages/audit.py")
    widget(at.text_input, "Actor email contains").input("%_\\' or 1=1 --").run()
    assert not at.exception and not at.error
    assert not at.expander  # nothing matches the literal text


@pytest.fixture
def square(engine: Engine, test_env: object, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    fake = FakeSquare(seed=7, payments=60, days=10)
    with ThreadServer(fake.app) as srv:
        w = build_world(engine, fake, srv.base_url, members_for_customers=20)
        for name, value in (("SALESARCK_ENCRYPTION_KEYS", w.keys), ("SALESARCK_SQUARE_BASE_URL", srv.base_url),
                            ("SQUARE_CLIENT_ID", DEFAULT_CLIENT_ID), ("SQUARE_CLIENT_SECRET", DEFAULT_CLIENT_SECRET)):
            monkeypatch.setenv(name, value)
        monkeypatch.chdir(ROOT)
        yield w
    st.cache_data.clear()
    st.cache_resource.clear()


def test_sync_now_runs_with_progress_and_summary(square: Any, engine: Engine,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_page(monkeypatch, square.operator.email, "pages/sync.py")
    assert not at.error
    button(at, "Sync now").click().run()
    assert not at.exception
    assert any("Sync finished" in s.value for s in at.success), [e.value for e in at.error]
    assert at.get("progress"), "the live progress bar is drawn"
    assert scalar(engine, "select count(*) from transactions") > 0
    assert scalar(engine, "select status from sync_runs order by started_at desc limit 1") == "succeeded"

    overview = open_page(monkeypatch, square.admin.email, "pages/overview.py")
    assert not overview.error, [e.value for e in overview.error]
    assert list(overview.dataframe[0].value["last_run"]) == ["succeeded"]

    client = open_page(monkeypatch, square.client_user.email, "pages/sync.py")
    assert button(client, "Sync now").disabled
    assert not [b for b in client.button if b.label == "Process now"]


def test_process_webhooks_now(world: app_seed.World, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_page(monkeypatch, world.emails["pos_operator"], "pages/sync.py")
    assert {m.label: m.value for m in at.metric}["Waiting to be processed"] == "1"
    button(at, "Process now").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("claimed events" in s.value for s in at.success)


def test_sync_now_on_a_clover_connection(engine: Engine, test_env: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """The button dispatches through the provider registry: a Clover connection syncs the same way."""
    from salesarck.crypto import KeyRing
    from salesarck.pos.connections import add_connection
    from salesarck.pos.fake.clover import DEFAULT_ACCESS_TOKEN, FakeClover
    from tests.factories import make_admin, make_rule, make_tenant

    fake = FakeClover(seed=3, payments=40, access_token=DEFAULT_ACCESS_TOKEN)
    keys = key_spec("k1")
    with ThreadServer(fake.app) as srv:
        with engine.begin() as conn:
            tenant = make_tenant(conn, name="Clover Cafe")
            make_rule(conn, tenant["id"])
            admin = make_admin(conn)
        add_connection(engine, actor=admin, tenant_id=tenant["id"], provider="clover",
                       merchant_id=getattr(fake, "merchant_id", "CLOVERM1"), access_token=DEFAULT_ACCESS_TOKEN,
                       keyring=KeyRing.parse(keys))
        monkeypatch.setenv("SALESARCK_ENCRYPTION_KEYS", keys)
        monkeypatch.setenv("SALESARCK_CLOVER_BASE_URL", srv.base_url)
        monkeypatch.chdir(ROOT)
        try:
            at = open_page(monkeypatch, admin.email or "", "pages/sync.py")
            button(at, "Sync now").click().run()
            assert not at.exception
            assert any("Sync finished" in s.value for s in at.success), [e.value for e in at.error]
            assert scalar(engine, "select provider from sync_runs") == "clover"
        finally:
            st.cache_data.clear()
            st.cache_resource.clear()
