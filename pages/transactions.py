"""Transactions timeline: counts and amounts over time by tenant, provider or location, with drill-down."""

from __future__ import annotations

import streamlit as st

from salesarck import analytics, charts
from salesarck.authz import Permission
from salesarck.webapp.context import page_actor
from salesarck.webapp.errors import friendly
from salesarck.webapp.resources import memo, query
from salesarck.webapp.rollups import rollup
from salesarck.webapp.ui import empty_state, fmt_money, page_number, pager, tenant_picker, window_picker

actor = page_actor("transactions")
st.title("Transactions")

with friendly():
    with st.container(border=True):
        c = st.columns([2, 1, 1])
        with c[0]:
            tenant_id = tenant_picker(actor, Permission.VIEW_TRANSACTIONS, key="tx_tenant")
        by = c[1].selectbox("Group by", ["tenant", "provider", "location", "none"], key="tx_by")
        metric = c[2].radio("Show", ["transactions", "amount"], horizontal=True, key="tx_metric",
                            format_func=lambda m: "Count" if m == "transactions" else "Amount")
        start, end, freq = window_picker(key="tx", default_days=365, default_freq="week")
    tz = query(actor, analytics.display_timezone, tenant_id=tenant_id, permission=Permission.VIEW_TRANSACTIONS)
    if freq in analytics.ROLLUP_FREQS and by != "location":  # from the warm daily rollup
        daily, as_of = rollup(actor, analytics.transaction_daily, tenant_id=tenant_id, tz=tz)
        view: tuple[object, ...] | None = ("transactions", tenant_id, tz, as_of, start, end, freq, by)
        df = memo(actor, view, lambda: analytics.transactions_from_daily(daily, start=start, end=end, freq=freq,
                                                                          by=by))
        st.caption(f"As of {as_of:%H:%M} UTC (refreshed every few minutes).")
    else:
        view = None
        df = query(actor, analytics.transactions_timeline, freq=freq, start=start, end=end, tenant_id=tenant_id,
                   by=by, tz=tz)
    if df.empty:
        empty_state("No transactions in this window. Widen the dates, or sync a POS connection on the Sync page.")
    else:
        totals = df.groupby("currency")[["transactions", "amount_minor_units"]].sum()
        cols = st.columns(len(totals) + 1)
        cols[0].metric("Transactions", f"{int(totals['transactions'].sum()):,}")
        for i, (cur, row) in enumerate(totals.iterrows(), start=1):
            cols[i].metric(f"Amount ({cur})", fmt_money(int(row["amount_minor_units"]), str(cur)))
        def chart() -> object:
            return charts.transactions_chart(df, tz=tz, metric=metric, freq=freq)

        st.plotly_chart(memo(actor, (*view, metric), chart) if view else chart(), width="stretch")
        st.caption(f"Buckets are {freq}s in {tz}; amounts are in each currency's major units.")

    st.subheader("Drill down")
    providers = [None, *sorted(df["group"].unique())] if by == "provider" and not df.empty else [None]
    provider = st.selectbox("Provider", providers, format_func=lambda p: "All" if p is None else p, key="tx_provider")
    n = page_number(key="tx_page")
    # the timeline's sum is the page's total when both use the same UTC window (else count it)
    known = int(df["transactions"].sum()) if provider is None and tz == "UTC" else None
    page = query(actor, analytics.transactions_page, start=start, end=end, tenant_id=tenant_id, provider=provider,
                 page=n, page_size=50, total=known)
    if page.total:
        st.dataframe(page.frame.drop(columns=["tenant_id"]), hide_index=True, width="stretch",
                     column_config={"transaction_at": st.column_config.DatetimeColumn("Time (UTC)"),
                                    "amount_minor_units": st.column_config.NumberColumn("Amount (minor units)")})
        pager(page, key="tx_page")
    else:
        empty_state("No transactions to list for these filters.")
