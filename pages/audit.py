"""Audit timeline: admin actions over time, filtered by actor, action and target, each with a diff."""

from __future__ import annotations

import streamlit as st

from salesarck import analytics, charts
from salesarck.webapp.context import page_actor
from salesarck.webapp.errors import friendly
from salesarck.webapp.resources import query
from salesarck.webapp.ui import empty_state, page_number, pager, window_picker

actor = page_actor("audit")
st.title("Audit timeline")
st.caption("Every admin action, append-only. Times are UTC.")

with friendly():
    with st.container(border=True):
        c = st.columns(3)
        who = c[0].text_input("Actor email contains", max_chars=200, key="au_actor")
        actions = query(actor, analytics.audit_actions)
        action = c[1].selectbox("Action", [None, *actions], format_func=lambda a: "All" if a is None else a,
                                key="au_action")
        target = c[2].text_input("Target id or type", max_chars=200, key="au_target")
        start, end, freq = window_picker(key="au", default_days=365)
    filters = {"actor_email": who.strip() or None, "action": action, "target": target.strip() or None}
    df = query(actor, analytics.audit_timeline, freq=freq, start=start, end=end, tz="UTC", **filters)
    st.plotly_chart(charts.audit_chart(df, tz="UTC", freq=freq), width="stretch")

    n = page_number(key="au_page")
    page = query(actor, analytics.audit_page, start=start, end=end, page=n, page_size=25, **filters)
    if not page.total:
        empty_state("No admin actions match. Clear the filters or widen the dates.")
    for row in page.frame.itertuples():
        title = (f"{row.created_at:%Y-%m-%d %H:%M:%S} · **{row.action}** · {row.actor or '?'} · "
                 f"{row.target_entity_type or ''} {row.target_entity_id or ''}")
        with st.expander(title):
            st.write(f"**Reason:** {row.reason or '—'}")
            diff = analytics.audit_diff(row.before_state, row.after_state)
            if diff.empty:
                st.caption("No state change recorded.")
            else:
                st.dataframe(diff, hide_index=True, width="stretch")
    if page.total:
        pager(page, key="au_page")
