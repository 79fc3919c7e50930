"""The app as the least-privilege runtime role (issue 9): with SALESARCK_RUNTIME_ROLE set, every page renders
and every action (reconcile + repair, rules, connections, Sync now, process webhooks) works, while the role
can rewrite neither the ledger nor the audit log (tests/test_foundation_roles.py proves the refusals).

The page and action tests are the app's own, collected here a second time under the role."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from salesarck.webapp import resources
from tests.test_app_actions import (  # noqa: F401  (fixtures and tests re-collected under the role)
    square,
    test_add_connection_encrypts_tokens_and_never_shows_them,
    test_process_webhooks_now,
    test_reconcile_then_repair_with_reason_shows_in_audit,
    test_rules_form_validates_previews_and_saves,
    test_sync_now_on_a_clover_connection,
    test_sync_now_runs_with_progress_and_summary,
)
from tests.test_app_pages import (  # noqa: F401
    _like_a_running_server,
    test_every_page_for_every_role,
    world,
)

ROLE = "salesarck_runtime"


@pytest.fixture(autouse=True)
def _as_runtime_role(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SALESARCK_RUNTIME_ROLE", ROLE)


@pytest.mark.usefixtures("world")
def test_the_app_engine_connects_as_the_runtime_role() -> None:
    engine = resources.get_engine()
    with engine.connect() as conn:
        user, owns = conn.execute(sa.text(
            "select current_user, (select count(*) from pg_tables where tableowner = current_user)")).one()
    assert (user, owns) == (ROLE, 0)
    with pytest.raises(sa.exc.DBAPIError, match="permission denied"), engine.begin() as conn:
        conn.execute(sa.text("delete from wallet_ledger"))
