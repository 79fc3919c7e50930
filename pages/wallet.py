"""Wallet detail: the ledger's running balance against the snapshot, entries, events, sources, audit."""

from __future__ import annotations

import streamlit as st

from salesarck import analytics, charts
from salesarck.webapp import ops
from salesarck.webapp.context import page_actor
from salesarck.webapp.errors import friendly
from salesarck.webapp.resources import query
from salesarck.webapp.ui import empty_state, fmt_points, page_number, pager

actor = page_actor("wallet")
st.title("Wallet detail")

wallet_id = st.query_params.get("wallet") or st.session_state.get("wallet_id")
with st.container(border=True):
    cols = st.columns([3, 2])
    search = cols[0].text_input("Find a wallet", placeholder="customer email, mobile or wallet id", max_chars=200)
    with friendly():
        if search.strip():
            found = query(actor, analytics.find_wallets, query=search.strip())
            if found.empty:
                cols[0].caption("No wallet matches. Try part of the email.")
            else:
                labels = {w: f"{e or '(no email)'} · {t} · {b:,} pts" for w, e, t, b in
                          zip(found["wallet_id"], found["email"], found["tenant"], found["points_balance"], strict=True)}
                pick = cols[0].selectbox("Matches", list(labels), format_func=labels.get)
                if pick is not None and cols[0].button("Open wallet", type="primary"):
                    wallet_id = str(pick)
        drifted = ops.drifted_wallets(actor, limit=200)
        if drifted is not None and not drifted.empty:
            options = [str(w) for w in drifted["wallet_id"]]
            label = {str(r.wallet_id): f"{r.wallet_id} · drift {int(r.drift):+,}" for r in drifted.itertuples()}
            choice = cols[1].selectbox("Or a drifted wallet (last reconciliation)", [None, *options],
                                       format_func=lambda w: "—" if w is None else label[w])
            if choice:
                wallet_id = choice

if not wallet_id:
    empty_state("Search for a wallet by customer email, or pick a drifted wallet from the last reconciliation.")
    st.stop()

st.session_state["wallet_id"] = str(wallet_id)
st.query_params["wallet"] = str(wallet_id)

with friendly():
    w = query(actor, analytics.wallet_summary, wallet_id=str(wallet_id))
    tz = w["timezone"] or "UTC"
    st.subheader(f"{w['email'] or 'Customer without email'} · {w['tenant']}")
    st.caption(f"Wallet {w['id']} · status **{w['status']}** · times in {tz} (the tenant's zone)")
    c = st.columns(4)
    c[0].metric("Snapshot (points_balance)", fmt_points(w["points_balance"]))
    c[1].metric("Ledger balance", fmt_points(w["ledger_balance"]))
    c[2].metric("Drift (snapshot − ledger)", f"{w['drift']:+,}",
                delta="in balance" if w["drift"] == 0 else "drifted",
                delta_color="normal" if w["drift"] == 0 else "inverse")
    c[3].metric("Ledger entries", f"{int(w['entries']):,}")
    if w["drift"]:
        st.warning(f"The snapshot differs from the ledger by {w['drift']:+,} points. "
                   "Reconciliation explains why; an admin can repair it there.", icon=":material/warning:")

    series = query(actor, analytics.wallet_balance_series, wallet_id=str(wallet_id), tz=tz)
    st.plotly_chart(charts.wallet_balance_chart(series, snapshot=int(w["points_balance"]), tz=tz), width="stretch")

    tabs = st.tabs(["Ledger entries", "Reward events", "Source transactions", "Audit history"])
    with tabs[0]:
        n = page_number(key="wallet_ledger_page")
        page = query(actor, analytics.wallet_ledger_page, wallet_id=str(wallet_id), page=n, page_size=50)
        if page.total == 0:
            empty_state("No ledger entries for this wallet.")
        else:
            st.dataframe(page.frame, hide_index=True, width="stretch",
                         column_config={"created_at": st.column_config.DatetimeColumn("Time (UTC)")})
            pager(page, key="wallet_ledger_page")
    with tabs[1]:
        ev = ops.wallet_reward_events(actor, wallet_id=str(wallet_id))
        if ev.empty:
            empty_state("No reward events for this wallet.")
        else:
            st.dataframe(ev, hide_index=True, width="stretch",
                         column_config={"created_at": st.column_config.DatetimeColumn("Time (UTC)")})
    with tabs[2]:
        tx = query(actor, analytics.wallet_transactions, wallet_id=str(wallet_id))
        if tx.empty:
            empty_state("No source transactions: the entries are adjustments or redemptions without a purchase.")
        else:
            st.dataframe(tx, hide_index=True, width="stretch",
                         column_config={"transaction_at": st.column_config.DatetimeColumn("Time (UTC)"),
                                        "amount_minor_units": st.column_config.NumberColumn("Amount (minor units)")})
    with tabs[3]:
        audit = query(actor, analytics.wallet_audit, wallet_id=str(wallet_id))
        if audit.empty:
            empty_state("No admin actions on this wallet.")
        for row in audit.itertuples():
            with st.expander(f"{row.created_at:%Y-%m-%d %H:%M} UTC · {row.action} · {row.actor}"):
                st.write(f"Reason: {row.reason or '—'}")
                st.dataframe(analytics.audit_diff(row.before_state, row.after_state), hide_index=True,
                             width="stretch")
