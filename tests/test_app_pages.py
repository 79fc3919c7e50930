"""AppTest: every page for every role, the refusals, local and OIDC sign-in, and tenant scoping."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import streamlit as st
from sqlalchemy.engine import Engine
from streamlit.testing.v1 import AppTest

from salesarck.webapp.registry import PAGES
from tests import app_seed

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
TIMEOUT = 60


@pytest.fixture(autouse=True)
def _like_a_running_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """AppTest re-detects the legacy `pages/` mode on every run; a server does it once, and our
    first `st.navigation` call turns it off for good (the first-load case is proven in the browser)."""
    from streamlit.runtime.pages_manager import PagesManager

    original = PagesManager.__init__

    def init(self: PagesManager, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)  # type: ignore[arg-type]
        PagesManager.uses_pages_directory = False

    monkeypatch.setattr(PagesManager, "__init__", init)


@pytest.fixture
def world(test_env: object, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[app_seed.World]:
    w = app_seed.build(engine)
    monkeypatch.chdir(ROOT)
    yield w
    st.cache_data.clear()
    st.cache_resource.clear()


def run_as(monkeypatch: pytest.MonkeyPatch, email: str, page: str | None = None) -> AppTest:
    monkeypatch.setenv("SALESARCK_LOCAL_USER", email)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    if page is not None:
        at.switch_page(page)
        at.run()
    return at


def sidebar_links(at: AppTest) -> list[str]:
    return [el.proto.label for el in at.sidebar.get("page_link")]


def texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [w.value for w in at.warning] + [i.value for i in at.info]
    parts += [t.value for t in at.title] + [s.value for s in at.subheader] + [c.value for c in at.caption]
    return "\n".join(str(p) for p in parts)


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


EXPECTED = {
    "admin": [p.title for p in PAGES],
    "client": ["Overview", "Reconciliation", "Wallet detail", "Rewards timeline", "Transactions", "Sync & webhooks",
               "Audit timeline"],
    "pos_operator": ["Transactions", "Sync & webhooks"],
}


@pytest.mark.parametrize("role", ["admin", "client", "pos_operator"])
def test_navigation_matches_the_permission_matrix(world: app_seed.World, monkeypatch: pytest.MonkeyPatch,
                                                  role: str) -> None:
    at = run_as(monkeypatch, world.emails[role])
    assert_clean(at)
    assert sidebar_links(at) == EXPECTED[role]
    assert "Local mode" in texts(at)
    assert world.emails[role] in texts(at)


@pytest.mark.parametrize("role", ["consumer", "unknown", "pending_approval", "suspended"])
def test_refused_users_see_a_polite_refusal_and_nothing_else(world: app_seed.World,
                                                             monkeypatch: pytest.MonkeyPatch, role: str) -> None:
    at = run_as(monkeypatch, world.emails[role])
    assert not at.exception
    assert sidebar_links(at) == []
    assert len(at.warning) == 1
    message = at.warning[0].value
    assert {"consumer": "customer accounts", "unknown": "could not find an account",
            "pending_approval": "waiting for an administrator", "suspended": "suspended"}[role] in message
    assert not at.metric and not at.dataframe and not at.get("plotly_chart")
    # no page is registered for them, and a page script run on its own refuses them as well
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page("pages/overview.py")
    direct = AppTest.from_file(str(ROOT / "pages/overview.py"), default_timeout=TIMEOUT)
    direct.run()
    assert not direct.exception and not direct.metric
    assert [w.value for w in direct.warning] == ["You do not have access to Overview."]


PAGE_MARKERS = {
    "overview": "Overview", "reconciliation": "Reconciliation", "wallet": "Wallet detail",
    "rewards": "Rewards timeline", "transactions": "Transactions", "sync": "Sync & webhooks",
    "audit": "Audit timeline", "connections": "POS connections", "rules": "Reward rules",
}


@pytest.mark.parametrize("spec", PAGES, ids=[p.key for p in PAGES])
@pytest.mark.parametrize("role", ["admin", "client", "pos_operator"])
def test_every_page_for_every_role(world: app_seed.World, monkeypatch: pytest.MonkeyPatch, role: str,
                                   spec: object) -> None:
    page = spec  # type: ignore[assignment]
    if page.title in EXPECTED[role]:  # type: ignore[attr-defined]
        at = run_as(monkeypatch, world.emails[role], page.path)  # type: ignore[attr-defined]
        assert_clean(at)
        assert [t.value for t in at.title] == [PAGE_MARKERS[page.key]]  # type: ignore[attr-defined]
        assert sidebar_links(at) == EXPECTED[role]
    else:
        at = run_as(monkeypatch, world.emails[role])
        with pytest.raises(ValueError, match="Could not find a navigation page"):
            at.switch_page(page.path)  # type: ignore[attr-defined]
        # the page script itself refuses a crafted request from this role
        direct = AppTest.from_file(str(ROOT / page.path), default_timeout=TIMEOUT)  # type: ignore[attr-defined]
        direct.run()
        assert not direct.exception and not direct.metric and not direct.dataframe
        assert [w.value for w in direct.warning] == [f"You do not have access to {page.title}."]  # type: ignore[attr-defined]


def test_overview_numbers_are_scoped(world: app_seed.World, monkeypatch: pytest.MonkeyPatch) -> None:
    admin = run_as(monkeypatch, world.emails["admin"])
    metrics = {m.label: m.value for m in admin.metric}
    assert metrics["Tenants"] == "2"
    assert metrics["Wallets"] == "2"
    assert metrics["Points outstanding (liability)"] == "170 pts"
    assert metrics["Webhook backlog"] == "1"
    client = run_as(monkeypatch, world.emails["client"])
    metrics = {m.label: m.value for m in client.metric}
    assert metrics["Tenants"] == "1"
    assert metrics["Points outstanding (liability)"] == "130 pts"
    client_b = run_as(monkeypatch, world.emails["client_b"])
    metrics = {m.label: m.value for m in client_b.metric}
    assert metrics["Points outstanding (liability)"] == "40 pts"
    assert metrics["Webhook backlog"] == "0"


def test_transactions_tenant_picker_offers_only_own_tenants(world: app_seed.World,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    at = run_as(monkeypatch, world.emails["pos_operator"], "pages/transactions.py")
    assert_clean(at)
    picker = at.selectbox(key="tx_tenant")
    assert [str(o) for o in picker.options] == ["All tenants", "Acme Coffee"]
    assert {m.label: m.value for m in at.metric}["Transactions"] == "2"


def test_wallet_page_shows_drift_and_history(world: app_seed.World, monkeypatch: pytest.MonkeyPatch) -> None:
    at = run_as(monkeypatch, world.emails["client"], "pages/wallet.py")
    assert_clean(at)
    assert any("Search for a wallet" in i.value for i in at.info)
    at.text_input[0].input("carol").run()
    assert [b.label for b in at.button] == ["Open wallet"]
    at.button[0].click().run()
    assert_clean(at)
    assert sidebar_links(at) == EXPECTED["client"]  # the page ran inside app.py's navigation
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Snapshot (points_balance)"] == "130 pts"
    assert metrics["Ledger balance"] == "120 pts"
    assert metrics["Drift (snapshot − ledger)"] == "+10"
    assert at.get("plotly_chart")


def test_wallet_of_another_tenant_is_not_found(world: app_seed.World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SALESARCK_LOCAL_USER", world.emails["client"])
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params["wallet"] = str(world.wallet_b)
    at.run()
    at.switch_page("pages/wallet.py")
    at.run()
    assert not at.exception
    assert not at.metric
    assert any("no wallet" in i.value for i in at.info)


def test_oidc_mode_requires_sign_in_then_maps_email(world: app_seed.World, monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = {"auth": {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x" * 32,
                        "client_id": "id", "client_secret": "s",
                        "server_metadata_url": "https://idp.example/.well-known/openid-configuration"}}
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.secrets = secrets
    at.user = {"is_logged_in": False}
    at.run()
    assert not at.exception
    assert [b.label for b in at.button] == ["Sign in"]
    assert not at.metric

    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.secrets = secrets
    at.user = {"is_logged_in": True, "email": world.emails["client"]}
    at.run()
    assert_clean(at)
    assert "Local mode" not in texts(at)
    assert sidebar_links(at) == EXPECTED["client"]

    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.secrets = secrets
    at.user = {"is_logged_in": True, "email": world.emails["consumer"]}
    at.run()
    assert sidebar_links(at) == [] and len(at.warning) == 1


def test_rewards_page_numbers_are_scoped(world: app_seed.World, monkeypatch: pytest.MonkeyPatch) -> None:
    admin = run_as(monkeypatch, world.emails["admin"], "pages/rewards.py")
    assert_clean(admin)
    assert {m.label: m.value for m in admin.metric}["Earned"] == "190 pts"
    client = run_as(monkeypatch, world.emails["client"], "pages/rewards.py")
    assert_clean(client)
    metrics = {m.label: m.value for m in client.metric}
    assert (metrics["Earned"], metrics["Redeemed"]) == ("150 pts", "30 pts")
    assert len(client.get("plotly_chart")) == 3
