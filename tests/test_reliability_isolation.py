"""Tenant isolation: a `client` or `pos_operator` of tenant A gets nothing of tenant B from any package
function an app page calls (salesarck.analytics, salesarck.frames, salesarck.webapp.ops and the domain
functions behind them), whatever the arguments: B's tenant, wallet, connection and run ids passed
explicitly, malformed ids, and no filter at all. Each call is refused (PermissionDenied, NotFound,
ValidationError) or answers without a trace of B (ids, names, emails, merchant ids)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa
import streamlit as st
from sqlalchemy.engine import Engine

from salesarck import analytics, frames
from salesarck.authz import Actor, load_actor
from salesarck.errors import SalesarckError
from salesarck.pos import connections, sync_runs
from salesarck.pos.webhooks import processor
from salesarck.reconcile import reconcile
from salesarck.reconcile import runs as recon_runs
from salesarck.reconcile.liability import liability_rollforward
from salesarck.timeutil import utcnow
from salesarck.webapp import ops
from tests import app_seed


@pytest.fixture
def world(test_env: object, engine: Engine) -> Iterator[app_seed.World]:
    w = app_seed.build(engine)
    with engine.begin() as conn:
        # B drifts too, so a recorded reconciliation run holds B rows an A user must not see
        conn.execute(sa.text("update wallets set points_balance = 55 where id = :w"), {"w": w.wallet_b})
        conn.execute(sa.text("insert into pos_webhook_events_raw (id, tenant_id, provider, event_type, raw_payload,"
                             " processed) values (:i, :t, 'square', 'payment.updated', '{\"b\": 1}', false)"),
                     {"i": uuid.uuid4(), "t": w.tenant_b})
    with engine.connect() as conn:
        admin = load_actor(conn, w.emails["admin"])
    w.extra["run"] = reconcile(engine, actor=admin).run_id
    st.cache_data.clear()
    st.cache_resource.clear()
    yield w
    st.cache_data.clear()
    st.cache_resource.clear()


def _b_marks(engine: Engine, w: app_seed.World) -> set[str]:
    """Every identifier of tenant B that could leak: ids, names, emails, merchant ids."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "select id::text from transactions where tenant_id = :t union all "
            "select id::text from wallet_ledger where wallet_id = :w union all "
            "select id::text from reward_events where wallet_id = :w union all "
            "select id::text from reward_rules where tenant_id = :t union all "
            "select id::text from pos_webhook_events_raw where tenant_id = :t"),
            {"t": w.tenant_b, "w": w.wallet_b}).scalars().all()
    return {str(w.tenant_b), str(w.wallet_b), str(w.connection_b), "Blue Bakery", "bob@example.test", "MERCH-B",
            w.emails["client_b"], *rows}


B_STATE = ("select (select points_balance from wallets where id = :w), "
           "(select status from pos_connections where id = :c), "
           "(select count(*) from pos_webhook_events_raw where tenant_id = :t and not processed), "
           "(select count(*) from wallet_ledger where wallet_id = :w)")


def _text(value: Any) -> str:
    if isinstance(value, pd.DataFrame):
        return value.to_csv()
    if isinstance(value, tuple | list):
        return "|".join(_text(v) for v in value)
    if isinstance(value, dict):
        return "|".join(f"{k}={_text(v)}" for k, v in value.items())
    if hasattr(value, "frame"):
        return _text(value.frame)
    return json.dumps(value, default=str) if not isinstance(value, str) else value


def _calls(engine: Engine, w: app_seed.World, a: Actor) -> list[tuple[str, Callable[[Any], Any]]]:
    """(name, call(conn)) for every read an app page makes, aimed at tenant B where it takes an id."""
    tb, wb, cb, run = w.tenant_b, w.wallet_b, w.connection_b, w.extra["run"]
    now = utcnow()
    lo, hi = now - timedelta(days=90), now + timedelta(days=1)
    out: list[tuple[str, Callable[[Any], Any]]] = []
    for tenant in (None, tb, str(tb), f" {tb} ".upper()):
        out += [
            (f"transactions_timeline {tenant}", lambda c, t=tenant: analytics.transactions_timeline(
                c, actor=a, tenant_id=t, by="tenant")),
            (f"transactions_page {tenant}", lambda c, t=tenant: analytics.transactions_page(c, actor=a, tenant_id=t)),
            (f"transaction_daily {tenant}", lambda c, t=tenant: analytics.transaction_daily(c, actor=a, tenant_id=t)),
            (f"rewards_timeline {tenant}", lambda c, t=tenant: analytics.rewards_timeline(c, actor=a, tenant_id=t)),
            (f"reward_daily {tenant}", lambda c, t=tenant: analytics.reward_daily(c, actor=a, tenant_id=t)),
            (f"liability_timeline {tenant}", lambda c, t=tenant: analytics.liability_timeline(c, actor=a, tenant_id=t)),
            (f"ledger_daily_flows {tenant}", lambda c, t=tenant: analytics.ledger_daily_flows(c, actor=a, tenant_id=t)),
            (f"rule_versions {tenant}", lambda c, t=tenant: analytics.rule_versions(c, actor=a, tenant_id=t)),
            (f"point_values {tenant}", lambda c, t=tenant: analytics.point_values(c, actor=a, tenant_id=t)),
            (f"display_timezone {tenant}", lambda c, t=tenant: analytics.display_timezone(c, actor=a, tenant_id=t)),
            (f"frames.wallets {tenant}", lambda c, t=tenant: frames.wallets(c, actor=a, tenant=t)),
            (f"frames.transactions {tenant}", lambda c, t=tenant: frames.transactions(c, actor=a, tenant=t)),
            (f"frames.ledger {tenant}", lambda c, t=tenant: frames.ledger(c, actor=a, tenant=t)),
            (f"frames.reward_events {tenant}", lambda c, t=tenant: frames.reward_events(c, actor=a, tenant=t)),
            (f"frames.rules {tenant}", lambda c, t=tenant: frames.rules(c, actor=a, tenant=t)),
            (f"sync_runs {tenant}", lambda c, t=tenant: sync_runs.list_runs(engine, actor=a, tenant_id=t)),
            (f"list_connections {tenant}", lambda c, t=tenant: connections.list_connections(
                engine, actor=a, tenant_id=t)),
        ]
    for wallet in (wb, str(wb), str(wb).upper()):
        out += [
            (f"wallet_summary {wallet}", lambda c, x=wallet: analytics.wallet_summary(c, actor=a, wallet_id=x)),
            (f"wallet_balance_series {wallet}", lambda c, x=wallet: analytics.wallet_balance_series(
                c, actor=a, wallet_id=x)),
            (f"wallet_ledger_page {wallet}", lambda c, x=wallet: analytics.wallet_ledger_page(c, actor=a, wallet_id=x)),
            (f"wallet_reward_events {wallet}", lambda c, x=wallet: analytics.wallet_reward_events(
                c, actor=a, wallet_id=x)),
            (f"wallet_transactions {wallet}", lambda c, x=wallet: analytics.wallet_transactions(
                c, actor=a, wallet_id=x)),
            (f"wallet_audit {wallet}", lambda c, x=wallet: analytics.wallet_audit(c, actor=a, wallet_id=x)),
            (f"frames.ledger wallet {wallet}", lambda c, x=wallet: frames.ledger(c, actor=a, wallet=x)),
            (f"frames.reward_events wallet {wallet}", lambda c, x=wallet: frames.reward_events(c, actor=a, wallet=x)),
            (f"ops.wallet_reward_events {wallet}", lambda c, x=wallet: ops.wallet_reward_events(a, wallet_id=x)),
        ]
    for query in ("bob", "example.test", "%", "' or 1=1 --", str(wb), "Blue Bakery", "_"):
        out.append((f"find_wallets {query!r}", lambda c, q=query: analytics.find_wallets(c, actor=a, query=q)))
    out += [
        ("tenants", lambda c: analytics.tenants(c, actor=a)),
        ("frames.tenants", lambda c: frames.tenants(c, actor=a)),
        ("frames.audit", lambda c: frames.audit(c, actor=a)),
        ("overview_kpis", lambda c: analytics.overview_kpis(c, actor=a)),
        ("webhook_backlog", lambda c: analytics.webhook_backlog(c, actor=a)),
        ("connections_status", lambda c: analytics.connections_status(c, actor=a)),
        ("audit_timeline", lambda c: analytics.audit_timeline(c, actor=a)),
        ("audit_page", lambda c: analytics.audit_page(c, actor=a)),
        ("audit_page target B", lambda c: analytics.audit_page(c, actor=a, target=str(wb))),
        ("audit_actions", lambda c: analytics.audit_actions(c, actor=a)),
        ("ops.list_recon_runs", lambda c: ops.list_recon_runs(a)),
        ("ops.last_reconciliation", lambda c: ops.last_reconciliation(a)),
        ("ops.run_results", lambda c: ops.run_results(a, run)),
        ("ops.drifted_wallets", lambda c: ops.drifted_wallets(a)),
        ("ops.compare_runs", lambda c: ops.compare_runs(a, run, run)),
        ("runs.compare_runs", lambda c: recon_runs.compare_runs(engine, run, run, actor=a)),
        ("ops.liability_rollforward", lambda c: ops.liability_rollforward(a, tenant_id=tb, start=lo, end=hi)),
        ("liability_rollforward", lambda c: liability_rollforward(engine, tenant_id=tb, start=lo, end=hi, actor=a)),
        ("ops.connection_events", lambda c: ops.connection_events(a, connection_id=cb)),
        ("ops.sync_runs", lambda c: ops.sync_runs(a, connection_id=cb)),
        ("sync_runs.list_runs conn", lambda c: sync_runs.list_runs(engine, actor=a, connection_id=cb)),
        ("ops.webhook_backlog", lambda c: ops.webhook_backlog(a)),
        ("ops.dead_letters", lambda c: ops.dead_letters(a)),
        ("processor.list_events pending", lambda c: processor.list_events(engine, actor=a, state="pending")),
        ("ops.tieout", lambda c: ops.tieout(a, connection_id=cb, start=lo, end=hi)),
        ("ops.simulate", lambda c: ops.simulate(a, tenant_id=tb, config={"conversionRate": "1"}, start=lo, end=hi)),
        ("ops.sync_now", lambda c: ops.sync_now(a, connection_id=cb, progress=None)),
        ("ops.disconnect", lambda c: ops.disconnect(a, connection_id=cb, reason="x")),
        ("ops.process_webhooks", lambda c: ops.process_webhooks(a)),
        ("ops.replay_webhooks", lambda c: ops.replay_webhooks(a, event_ids=[uuid.uuid4()], since=lo)),
        ("ops.repair", lambda c: ops.repair(a, wallet_ids=[wb], reason="x")),
    ]
    return out


@pytest.mark.parametrize("role", ["client", "pos_operator"])
def test_tenant_a_user_gets_nothing_of_tenant_b(engine: Engine, world: app_seed.World, role: str) -> None:
    with engine.connect() as conn:
        a = load_actor(conn, world.emails[role])
    marks = _b_marks(engine, world)
    started = utcnow()
    with engine.connect() as conn:  # the leak detector sees B when B is visible (admin)
        admin = load_actor(conn, world.emails["admin"])
        assert str(world.wallet_b) in _text(frames.wallets(conn, actor=admin))
    with engine.connect() as conn:
        before = conn.execute(sa.text(B_STATE), {"w": world.wallet_b, "c": world.connection_b, "t": world.tenant_b}).one()
    leaks: list[str] = []
    answered = refused = 0
    for name, call in _calls(engine, world, a):
        with engine.connect() as conn:
            try:
                result = call(conn)
            except SalesarckError:
                refused += 1
                continue
        answered += 1
        text = _text(result)
        leaks += [f"{name}: {m}" for m in marks if m in text]
    assert leaks == []
    assert answered > 10 and refused > 10  # both paths exercised, not one blanket refusal
    with engine.connect() as conn:
        after = conn.execute(sa.text(B_STATE), {"w": world.wallet_b, "c": world.connection_b, "t": world.tenant_b}).one()
        audit_rows = conn.execute(sa.text("select * from admin_audit_logs where created_at > :at"),
                                  {"at": started}).all()
    assert tuple(after) == tuple(before)  # nothing of B was changed by the refused actions
    assert [m for m in marks if m in _text([str(r) for r in audit_rows])] == []  # nor audited as acted on
