"""Rewards timeline: earned vs redeemed vs reversed, liability over time, rule versions, roll-forward."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from salesarck import analytics, charts
from salesarck.authz import Permission
from salesarck.webapp import ops
from salesarck.webapp.context import page_actor
from salesarck.webapp.errors import friendly
from salesarck.webapp.resources import memo, query
from salesarck.webapp.rollups import rollup
from salesarck.webapp.ui import empty_state, tenant_picker, window_picker

actor = page_actor("rewards")
st.title("Rewards timeline")

with friendly():
    with st.container(border=True):
        tenant_id = tenant_picker(actor, Permission.VIEW_FINANCE, key="rw_tenant")
        start, end, freq = window_picker(key="rw", freqs=analytics.ROLLUP_FREQS, default_days=365, default_freq="week")
    tz = query(actor, analytics.display_timezone, tenant_id=tenant_id)
    rules = query(actor, analytics.rule_versions, tenant_id=tenant_id)
    daily, as_of = rollup(actor, analytics.reward_daily, tenant_id=tenant_id, tz=tz)
    view = ("rewards", tenant_id, tz, as_of, start, end, freq)
    df = memo(actor, view, lambda: analytics.rewards_from_daily(daily, start=start, end=end, freq=freq))
    st.caption(f"Days are {tz} days. Rewards and liability as of {as_of:%H:%M} UTC (refreshed every few minutes).")
    if df.empty:
        empty_state("No reward activity in this window. Widen the dates, or post transactions by syncing.")
    else:
        c = st.columns(3)
        c[0].metric("Earned", f"{int(df['earned'].sum()):,} pts")
        c[1].metric("Redeemed", f"{int(df['redeemed'].sum()):,} pts")
        c[2].metric("Reversed (refunds, voids)", f"{int(df['reversed'].sum()):,} pts")
    changes = rules.assign(effective_local=pd.to_datetime(rules["effective_from"])) if not rules.empty else rules
    marks = tuple(changes[["rule_id", "effective_local"]].itertuples(index=False)) if not rules.empty else ()
    st.plotly_chart(memo(actor, (*view, "chart", marks),
                         lambda: charts.rewards_chart(df, tz=tz, rule_changes=changes, freq=freq)), width="stretch")
    st.plotly_chart(memo(actor, (*view, "by_rule"), lambda: charts.rewards_by_rule_chart(df, tz=tz, freq=freq)),
                    width="stretch")

st.subheader("Liability over time")
with friendly():
    flows, flows_as_of = rollup(actor, analytics.ledger_daily_flows, tenant_id=tenant_id, tz=tz)
    values = query(actor, analytics.point_values, tenant_id=tenant_id)
    lia_view = ("liability", tenant_id, tz, flows_as_of, start, end, freq, tuple(values.itertuples(index=False)))
    lia = memo(actor, lia_view, lambda: analytics.liability_from_flows(flows, values, start=start, end=end, freq=freq))
    unit = st.radio("Unit", ["points", "money"], horizontal=True, key="rw_unit")
    st.plotly_chart(memo(actor, (*lia_view, unit),
                         lambda: charts.liability_chart(lia, tz=tz, money=unit == "money", freq=freq)),
                    width="stretch")
    st.caption("Money = points × the tenant's `pointValueMinorUnits` (active rule; default 1 minor unit).")

st.subheader("Rule versions")
with friendly():
    if rules.empty:
        empty_state("No reward rules yet. An admin can create one on the Reward rules page.")
    else:
        st.dataframe(rules.drop(columns=["rule_id", "tenant_id"]), hide_index=True, width="stretch",
                     column_config={"effective_from": st.column_config.DatetimeColumn("Effective from (UTC)"),
                                    "created_at": st.column_config.DatetimeColumn("Created (UTC)")})

st.subheader("Monthly liability roll-forward")
with friendly():
    if tenant_id is None:
        empty_state("Pick one tenant above to see the roll-forward finance signs (it is per tenant and currency).")
    else:
        roll = ops.liability_rollforward(actor, tenant_id=tenant_id, start=start, end=end)
        if roll is None:
            empty_state("The roll-forward needs the reconciliation engine, which is not installed in this build.")
        elif roll.empty:
            empty_state("No ledger activity in this window.")
        else:
            st.dataframe(roll, hide_index=True, width="stretch")
            st.download_button("Download CSV", roll.to_csv(index=False).encode(), file_name="liability_rollforward.csv",
                               mime="text/csv")
