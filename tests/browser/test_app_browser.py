"""The app in a real browser: first load, navigation, every page without an error element, screenshots."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

from salesarck.webapp.registry import PAGES
from tests import app_seed
from tests.browser.conftest import AppServer, shot, start_app, stop_app

pytestmark = pytest.mark.browser

ERROR_SELECTORS = '[data-testid="stException"], [data-testid="stAlertContentError"]'


@pytest.fixture
def world(engine: Engine) -> app_seed.World:
    return app_seed.build(engine)


@pytest.fixture
def admin_app(world: app_seed.World, db_url: URL, tmp_path: Path) -> Iterator[AppServer]:
    server = start_app(db_url, tmp_path / "home", local_user=world.emails["admin"])
    yield server
    stop_app(server)


def wait_rendered(page: Any, timeout_s: float = 45) -> None:
    """Wait until the run finished: a title, no loading skeletons, and the page text stable for 1 s."""
    page.wait_for_selector('[data-testid="stMainBlockContainer"] h1', state="visible", timeout=timeout_s * 1000)
    deadline = time.monotonic() + timeout_s
    last, stable_since = None, time.monotonic()
    while time.monotonic() < deadline:
        busy = page.locator('[data-testid="stSkeleton"], [data-stale="true"]').count()
        text = page.inner_text("body")
        if text != last or busy:
            last, stable_since = text, time.monotonic()
        elif time.monotonic() - stable_since > 1.0:
            return
        page.wait_for_timeout(200)
    raise AssertionError("the page did not finish rendering")


def nav_labels(page: Any) -> list[str]:
    return [t.strip().split("\n")[-1].strip() for t in page.locator('[data-testid="stSidebar"] [data-testid="stPageLink"]').all_inner_texts()]


def test_first_load_shows_only_our_navigation(admin_app: AppServer, page: Any) -> None:
    page.goto(admin_app.url)
    wait_rendered(page)
    shot(page, "00-first-load")
    # the legacy auto-generated `pages/` navigation must not appear, not even on a fresh server
    assert page.locator('[data-testid="stSidebarNav"]').count() == 0
    assert nav_labels(page) == [p.title for p in PAGES]
    assert page.locator("h1").first.inner_text().strip() == "Overview"
    assert "Local mode" in page.inner_text("body")
    assert page.locator(ERROR_SELECTORS).count() == 0


def test_every_page_renders_without_an_error(admin_app: AppServer, page: Any) -> None:
    for i, spec in enumerate(PAGES, start=1):
        page.goto(f"{admin_app.url}/{spec.key}")
        wait_rendered(page)
        shot(page, f"{i:02d}-{spec.key}")
        assert page.locator('[data-testid="stSidebarNav"]').count() == 0, spec.key
        assert page.locator("h1").first.inner_text().strip() == spec.title, spec.key
        errors = page.locator(ERROR_SELECTORS)
        assert errors.count() == 0, (spec.key, errors.all_inner_texts())


def test_refused_user_sees_only_the_refusal(world: app_seed.World, db_url: URL, tmp_path: Path, page: Any) -> None:
    server = start_app(db_url, tmp_path / "home2", local_user=world.emails["suspended"])
    try:
        page.goto(server.url)
        wait_rendered(page)
        page.goto(f"{server.url}/overview")  # a crafted URL lands on the refusal too
        wait_rendered(page)
        shot(page, "90-refused")
        assert nav_labels(page) == []
        assert "suspended" in page.inner_text('[data-testid="stMainBlockContainer"]')
        assert page.locator('[data-testid="stMetric"]').count() == 0
    finally:
        stop_app(server)


def test_pos_operator_sees_sync_and_transactions(world: app_seed.World, db_url: URL, tmp_path: Path,
                                                 page: Any) -> None:
    server = start_app(db_url, tmp_path / "home3", local_user=world.emails["pos_operator"])
    try:
        page.goto(server.url)
        wait_rendered(page)
        shot(page, "91-pos-operator")
        assert nav_labels(page) == ["Transactions", "Sync & webhooks"]
        assert page.locator("h1").first.inner_text().strip() == "Transactions"
        assert page.locator(ERROR_SELECTORS).count() == 0
    finally:
        stop_app(server)


def test_sync_now_completes_with_its_progress_bar(engine: Engine, db_url: URL, tmp_path: Path, page: Any) -> None:
    from salesarck.pos.fake.server import ThreadServer
    from salesarck.pos.fake.square import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, FakeSquare
    from tests.test_sync_support import build_world

    fake = FakeSquare(seed=11, payments=120, days=15)
    with ThreadServer(fake.app) as srv:
        w = build_world(engine, fake, srv.base_url, members_for_customers=30)
        server = start_app(db_url, tmp_path / "home", local_user=w.operator.email or "", extra_env={
            "SALESARCK_ENCRYPTION_KEYS": w.keys, "SALESARCK_SQUARE_BASE_URL": srv.base_url,
            "SQUARE_CLIENT_ID": DEFAULT_CLIENT_ID, "SQUARE_CLIENT_SECRET": DEFAULT_CLIENT_SECRET})
        try:
            page.goto(f"{server.url}/sync")
            wait_rendered(page)
            page.get_by_role("button", name="Sync now").click()
            page.wait_for_selector('[data-testid="stProgress"]', state="visible", timeout=30_000)
            page.get_by_text("Sync finished").wait_for(timeout=90_000)
            wait_rendered(page)
            shot(page, "20-sync-now-finished")
            assert page.locator('[data-testid="stProgress"]').count() >= 1
            assert page.locator(ERROR_SELECTORS).count() == 0
        finally:
            stop_app(server)
    with engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from transactions")).scalar_one() > 0
        assert conn.execute(sa.text("select status from sync_runs")).scalar_one() == "succeeded"


def test_repair_with_a_reason_appears_in_the_audit_timeline(admin_app: AppServer, world: app_seed.World,
                                                            engine: Engine, page: Any) -> None:
    page.goto(f"{admin_app.url}/reconciliation")
    wait_rendered(page)
    page.get_by_role("button", name="Run reconciliation").click()
    page.get_by_text("1 drifted", exact=False).first.wait_for(timeout=60_000)
    wait_rendered(page)
    shot(page, "21-reconciliation-run")
    reason = "Snapshot missed a redemption; ticket FIN-77"
    page.get_by_label("Reason (required; recorded in the audit log)").fill(reason)
    page.get_by_role("button", name="Repair", exact=False).last.click()
    page.get_by_text("Repaired 1 wallet", exact=False).wait_for(timeout=60_000)
    shot(page, "22-repaired")
    with engine.connect() as conn:
        assert conn.execute(sa.text("select points_balance from wallets where id = :w"),
                            {"w": world.wallet_a}).scalar_one() == 120

    page.goto(f"{admin_app.url}/audit")
    wait_rendered(page)
    entry = page.locator('[data-testid="stExpander"] summary').filter(has_text="wallet.snapshot_repair").first
    entry.click()
    page.get_by_text(reason, exact=False).wait_for(timeout=30_000)
    shot(page, "23-audit-repair-entry")
    assert page.locator(ERROR_SELECTORS).count() == 0
