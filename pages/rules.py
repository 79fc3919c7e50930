"""Reward rules (admins): every version per tenant, and a new-version form that validates and previews."""

from __future__ import annotations

from datetime import datetime, time, timedelta

import pandas as pd
import streamlit as st

from salesarck import analytics
from salesarck.authz import Permission
from salesarck.timeutil import utcnow
from salesarck.webapp import ops
from salesarck.webapp.context import page_actor
from salesarck.webapp.errors import friendly
from salesarck.webapp.resources import query
from salesarck.webapp.ui import empty_state, fmt_money, tenant_picker

actor = page_actor("rules")
st.title("Reward rules")
st.caption("Each change is a new version; the old one stays for history and for pricing late payments.")

with friendly():
    tenant_id = tenant_picker(actor, Permission.MANAGE_RULES, key="rules_tenant", allow_all=False)
    if tenant_id is None:
        empty_state("No tenants yet. Create a tenant first.")
        st.stop()
    rules = query(actor, analytics.rule_versions, tenant_id=tenant_id)
    if rules.empty:
        empty_state("This tenant has no reward rule yet: its purchases earn nothing until you create one below.")
    else:
        st.dataframe(rules[["version", "is_active", "effective_from", "created_at", "rule_config"]], hide_index=True,
                     width="stretch",
                     column_config={"effective_from": st.column_config.DatetimeColumn("Effective from (UTC)"),
                                    "created_at": st.column_config.DatetimeColumn("Created (UTC)"),
                                    "is_active": st.column_config.CheckboxColumn("Active")})
    current = rules[rules["is_active"] == True].iloc[0]["rule_config"] if not rules.empty and rules["is_active"].any() else {}  # noqa: E712
    currency = str(query(actor, analytics.point_values, tenant_id=tenant_id).iloc[0]["currency"])

st.subheader("New version")
with friendly(), st.form("rule_form"):
    c = st.columns(3)
    rate = c[0].text_input("Points per 1 unit of currency (conversionRate)", value=str(current.get("conversionRate", 1)))
    min_spend = c[1].number_input("Minimum spend (minor units)", min_value=0, max_value=2**31 - 1, step=100,
                                  value=int(current.get("minSpendMinorUnits", 0)))
    cap = c[2].number_input("Max points per transaction (0 = no cap)", min_value=0, max_value=2**31 - 1,
                            value=int(current.get("maxPointsPerTransaction", 0) or 0))
    c = st.columns(4)
    min_bal = c[0].number_input("Minimum balance to redeem (points)", min_value=0, max_value=2**31 - 1,
                                value=int(current.get("minBalanceToRedeem", 0)))
    pct = c[1].text_input("Max redemption (% of purchase)", value=str(current.get("maxRedemptionPercentage", 100)))
    rounding = c[2].selectbox("Rounding", ["floor", "round", "ceil"],
                              index=["floor", "round", "ceil"].index(current.get("roundingPolicy", "floor"))
                              if current.get("roundingPolicy", "floor") in ("floor", "round", "ceil") else 0)
    point_value = c[3].number_input("Point value (minor units)", min_value=1, max_value=2**31 - 1,
                                    value=int(current.get("pointValueMinorUnits", 1)))
    c = st.columns(2)
    eff_day = c[0].date_input("Effective from (UTC date)", value=utcnow().date())
    reason = c[1].text_input("Reason (recorded in the audit log)", max_chars=2000)
    preview = st.form_submit_button("Preview", icon=":material/visibility:")
    save = st.form_submit_button("Save new version", type="primary", icon=":material/save:")

if preview or save:
    with friendly():
        cfg = ops.rule_config_from_form(conversion_rate=rate, min_spend_minor_units=int(min_spend),
                                        max_points=int(cap) or None, min_balance_to_redeem=int(min_bal),
                                        max_redemption_percentage=pct, rounding_policy=rounding,
                                        point_value_minor_units=int(point_value))
        samples = ops.rule_preview(cfg, currency=currency, amounts_minor=[500, 2500, 10000])
        lines = [f"a {fmt_money(a, currency)} purchase earns **{p:,} points**" for a, p in samples]
        st.success("Valid. Under this rule " + "; ".join(lines) + ".", icon=":material/check_circle:")
        sim = ops.simulate(actor, tenant_id=tenant_id, config=cfg, start=utcnow() - timedelta(days=30), end=utcnow())
        if sim is not None and sim.totals:
            st.markdown("**Last 30 days under this rule** (what was earned vs what this version would give)")
            st.dataframe(pd.DataFrame([sim.totals]), hide_index=True, width="stretch")
        effective = datetime.combine(eff_day, time())
        if save:
            if not reason.strip():
                st.error("Please give a reason: it is recorded in the audit log.")
            else:
                created = ops.create_rule(actor, tenant_id=tenant_id, config=cfg, effective_from=effective,
                                          reason=reason)
                st.success(f"Saved version {created.version}; it is now the tenant's active rule.")
