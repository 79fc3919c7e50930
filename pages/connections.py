"""POS connections (admins): add one (tokens are encrypted at once and never shown again), disconnect."""

from __future__ import annotations

from datetime import datetime, time

import streamlit as st

from salesarck import analytics
from salesarck.authz import Permission
from salesarck.webapp import ops
from salesarck.webapp.context import page_actor
from salesarck.webapp.errors import friendly
from salesarck.webapp.resources import query
from salesarck.webapp.ui import empty_state, tenant_picker

actor = page_actor("connections")
st.title("POS connections")

with friendly():
    conns = query(actor, analytics.connections_status, permission=Permission.MANAGE_CONNECTIONS)
    if conns.empty:
        empty_state("No POS connections yet. Add one below with the merchant's OAuth tokens.")
    else:
        st.dataframe(conns.drop(columns=["tenant_id"]), hide_index=True, width="stretch",
                     column_config={c: st.column_config.DatetimeColumn(f"{c.replace('_', ' ')} (UTC)")
                                    for c in ("last_synced_at", "watermark_at", "token_expires_at", "created_at")})

st.subheader("Add a connection")
with friendly():
    tenant_id = tenant_picker(actor, Permission.MANAGE_CONNECTIONS, key="conn_tenant", allow_all=False)
    with st.form("add_connection", clear_on_submit=True):
        c = st.columns(2)
        provider = c[0].selectbox("Provider", ["square", "clover"])
        merchant = c[1].text_input("Merchant id", max_chars=128)
        access = st.text_input("Access token", type="password", help="Encrypted at once; never shown again.")
        refresh = st.text_input("Refresh token (Square; optional)", type="password")
        c = st.columns(2)
        has_expiry = c[0].checkbox("Token expires", value=True)
        expiry_day = c[1].date_input("Token expiry (UTC date)")
        submitted = st.form_submit_button("Add connection", type="primary", icon=":material/add_link:")
    if submitted:
        if tenant_id is None:
            st.error("Pick a tenant first.")
        else:
            info = ops.add_connection(actor, tenant_id=tenant_id, provider=provider, merchant_id=merchant,
                                      access_token=access, refresh_token=refresh or None,
                                      expires_at=datetime.combine(expiry_day, time()) if has_expiry else None)
            st.success(f"Connected {info.provider} merchant {info.merchant_id}. The tokens are stored encrypted.")

st.subheader("Disconnect")
with friendly():
    active = conns[conns["status"] != "disconnected"] if not conns.empty else conns
    if active.empty:
        st.caption("Nothing to disconnect.")
    else:
        labels = {cid: f"{t} · {p} {m} ({s})" for cid, t, p, m, s in
                  zip(active["connection_id"], active["tenant"], active["pos_type"], active["merchant_account_id"],
                      active["status"], strict=True)}
        with st.form("disconnect"):
            target = st.selectbox("Connection", list(labels), format_func=labels.get)
            reason = st.text_input("Reason", max_chars=2000)
            confirm = st.checkbox("I understand syncing stops and the stored tokens are wiped")
            go = st.form_submit_button("Disconnect", icon=":material/link_off:")
        if go:
            if not confirm or not reason.strip():
                st.error("Tick the confirmation and give a reason to disconnect.")
            else:
                ops.disconnect(actor, connection_id=target, reason=reason)
                st.success("Disconnected.")
                st.rerun()
