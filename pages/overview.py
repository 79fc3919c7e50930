"""Overview: the numbers finance and operators check first, each linking to its page."""

from __future__ import annotations

import streamlit as st

from salesarck import analytics
from salesarck.authz import Permission
from salesarck.webapp import ops
from salesarck.webapp.context import page_actor
from salesarck.webapp.errors import friendly
from salesarck.webapp.registry import BY_KEY
from salesarck.webapp.resources import query
from salesarck.webapp.ui import empty_state, fmt_points, fmt_time

actor = page_actor("overview")
st.title("Overview")
st.caption("Live numbers for the businesses you can see; cached for up to a minute.")


def link(key: str, label: str) -> None:
    spec = BY_KEY[key]
    if spec.allowed(actor):
        st.page_link(spec.path, label=label, icon=spec.icon)


with friendly():
    kpis = query(actor, analytics.overview_kpis)
    recon = ops.last_reconciliation(actor)
    c = st.columns(4)
    c[0].metric("Tenants", f"{kpis['tenants']:,}")
    c[1].metric("Wallets", f"{kpis['wallets']:,}", help=f"{kpis['frozen_wallets']:,} frozen")
    c[2].metric("Points outstanding (liability)", fmt_points(kpis["points_outstanding"]),
                help="Sum of wallet snapshots; the Rewards timeline shows it from the ledger over time.")
    drifted = recon.get("drifted_wallets") if recon else None
    c[3].metric("Drifted wallets", "—" if drifted is None else f"{drifted:,}",
                help="From the last reconciliation run.")
    with c[0]:
        link("audit", "Audit timeline")
    with c[1]:
        link("wallet", "Find a wallet")
    with c[2]:
        link("rewards", "Liability over time")
    with c[3]:
        link("reconciliation", "Reconciliation")

    c = st.columns(4)
    c[0].metric("Last reconciliation", fmt_time(recon.get("started_at")) if recon else "never")
    c[1].metric("Findings in last run", "—" if not recon else f"{recon.get('findings', 0):,}")
    c[2].metric("Webhook backlog", f"{kpis['webhook_backlog']:,}",
                help="Received webhook events not processed yet"
                + (f"; oldest {fmt_time(kpis['webhook_backlog_oldest'])}" if kpis["webhook_backlog_oldest"] else ""))
    with c[2]:
        link("sync", "Sync & webhooks")
    with c[0]:
        link("reconciliation", "Run a reconciliation")

st.subheader("POS connections")
with friendly():
    conns = query(actor, analytics.connections_status, permission=Permission.VIEW_FINANCE)
    if conns.empty:
        empty_state("No POS connections yet. An admin can add one on the POS connections page.")
    else:
        runs = ops.sync_runs(actor, limit=200)
        if runs is not None and not runs.empty:
            latest = runs.sort_values("started_at").groupby("connection_id").tail(1)
            conns = conns.merge(latest[["connection_id", "status"]].rename(columns={"status": "last_run"}),
                                on="connection_id", how="left")
        else:
            conns = conns.assign(last_run=None)
        st.dataframe(
            conns[["tenant", "pos_type", "merchant_account_id", "status", "last_synced_at", "last_run",
                   "token_expires_at"]],
            hide_index=True, width="stretch",
            column_config={"last_synced_at": st.column_config.DatetimeColumn("Last sync (UTC)"),
                           "token_expires_at": st.column_config.DatetimeColumn("Token expires (UTC)"),
                           "pos_type": "Provider", "merchant_account_id": "Merchant", "tenant": "Tenant",
                           "status": "Connection", "last_run": "Last sync run"})
        link("sync", "Sync now or see run history")
