"""Reconciliation: run it with live progress, read drift and findings, trend, compare, export, repair."""

from __future__ import annotations

import io

import pandas as pd
import streamlit as st

from salesarck import charts
from salesarck.authz import Permission
from salesarck.webapp import ops
from salesarck.webapp.context import page_actor
from salesarck.webapp.errors import friendly
from salesarck.webapp.ui import empty_state, tenant_picker

actor = page_actor("reconciliation")
st.title("Reconciliation")
st.caption("Every wallet's snapshot recomputed from the ledger, and every inconsistency the checks find.")

checks_mod = ops.module("salesarck.reconcile.checks")
ALL_CHECKS: list[str] = list(getattr(checks_mod, "ALL_CHECKS", ()))

if actor.can(Permission.RUN_RECONCILIATION):
    with st.container(border=True), friendly():
        st.markdown("**Run a reconciliation**")
        c = st.columns([2, 1, 3])
        with c[0]:
            run_tenant = tenant_picker(actor, Permission.RUN_RECONCILIATION, key="rc_scope",
                                       allow_all=actor.is_admin, label="Scope")
        backend = c[1].selectbox("Engine", ["postgres", "duckdb"], key="rc_backend")
        chosen = c[2].multiselect("Checks (empty = all)", ALL_CHECKS, key="rc_checks")
        if st.button("Run reconciliation", type="primary", icon=":material/play_arrow:", key="rc_run"):
            bar = st.progress(0.0, text="Starting…")

            def progress(step: str, done: int, total: int) -> None:
                bar.progress(min(1.0, done / total) if total else 0.0, text=f"{step} ({done}/{total})")

            report = ops.run_reconciliation(actor, tenant_id=run_tenant, backend=backend, checks=chosen,
                                            progress=progress)
            bar.progress(1.0, text="Done")
            st.session_state["rc_selected_run"] = getattr(report, "run_id", None)
            summary = getattr(report, "summary", {}) or {}
            st.success(f"Checked {summary.get('wallets_checked', report.wallets_checked):,} wallets: "
                       f"{len(report.drift):,} drifted, {len(report.findings):,} other findings.",
                       icon=":material/task_alt:")

with friendly():
    runs = ops.list_recon_runs(actor, limit=200)
    if runs is None:
        empty_state("The reconciliation engine is not installed in this build.")
        st.stop()
    if runs.empty:
        empty_state("No reconciliation has been recorded yet. Run one above to see drift and findings here.")
        st.stop()

    trend = runs.assign(drifted_wallets=runs["drift_count"],
                        findings=runs["error_count"] + runs["warning_count"] - runs["drift_count"])
    st.plotly_chart(charts.drift_trend_chart(trend.sort_values("started_at"), tz="UTC"), width="stretch")

    labels = {str(r.run_id): f"{r.started_at:%Y-%m-%d %H:%M:%S} UTC · {r.backend} · {r.drift_count} drifted · {r.actor}"
              for r in runs.itertuples()}
    ids = list(labels)
    selected = st.session_state.get("rc_selected_run")
    run_id = st.selectbox("Run", ids, index=ids.index(str(selected)) if str(selected) in ids else 0,
                          format_func=labels.get, key="rc_run_pick")
    result = ops.run_results(actor, run_id)
    assert result is not None
    drift, findings = result

st.subheader("Results")
with friendly():
    c = st.columns(3)
    tenants = sorted({str(t) for t in pd.concat([drift["tenant_id"], findings["tenant_id"]]).dropna()})
    f_tenant = c[0].selectbox("Tenant", [None, *tenants], format_func=lambda t: "All" if t is None else t,
                              key="rc_f_tenant")
    f_check = c[1].multiselect("Check", ["snapshot_drift", *sorted(set(findings["check"]))], key="rc_f_check")
    f_sev = c[2].multiselect("Severity", ["error", "warning"], key="rc_f_sev")
    d = drift if f_tenant is None else drift[drift["tenant_id"] == f_tenant]
    f = findings if f_tenant is None else findings[findings["tenant_id"] == f_tenant]
    if f_check:
        d = d if "snapshot_drift" in f_check else d.iloc[0:0]
        f = f[f["check"].isin(f_check)]
    if f_sev:
        d = d if "error" in f_sev else d.iloc[0:0]
        f = f[f["severity"].isin(f_sev)]
    m = st.columns(3)
    m[0].metric("Drifted wallets", f"{len(d):,}")
    m[1].metric("Net drift (points)", f"{int(d['drift_points'].sum()) if len(d) else 0:+,}")
    m[2].metric("Other findings", f"{len(f):,}")

    tabs = st.tabs(["Drift", "Findings", "Compare runs", "Export"])
    with tabs[0]:
        if d.empty:
            empty_state("No drift for these filters: every snapshot equals its ledger balance.")
        else:
            st.plotly_chart(charts.drift_histogram(d), width="stretch")
            st.dataframe(d[["wallet_id", "tenant_id", "snapshot_points", "ledger_points", "drift_points",
                            "explanation_code", "explanation"]], hide_index=True, width="stretch",
                         column_config={"explanation": st.column_config.TextColumn("Why", width="large")})
            st.caption("Open a wallet on the Wallet detail page to see its running balance against the snapshot.")
    with tabs[1]:
        if f.empty:
            empty_state("No findings for these filters.")
        else:
            st.dataframe(f, hide_index=True, width="stretch")
    with tabs[2]:
        if len(ids) < 2:
            empty_state("Compare needs two recorded runs. Run another reconciliation.")
        else:
            cc = st.columns(2)
            a = cc[0].selectbox("Older run (A)", ids, index=1, format_func=labels.get, key="rc_cmp_a")
            b = cc[1].selectbox("Newer run (B)", ids, index=0, format_func=labels.get, key="rc_cmp_b")
            diff = ops.compare_runs(actor, a, b) or {}
            for name, frame in diff.items():
                st.markdown(f"**{name.replace('_', ' ').capitalize()}** ({len(frame):,})")
                if len(frame):
                    st.dataframe(frame, hide_index=True, width="stretch")
    with tabs[3]:
        cc = st.columns(4)
        cc[0].download_button("Drift CSV", d.to_csv(index=False).encode(), file_name=f"drift_{run_id}.csv",
                              mime="text/csv")
        cc[1].download_button("Findings CSV", f.to_csv(index=False).encode(), file_name=f"findings_{run_id}.csv",
                              mime="text/csv")
        for col, frame, name in ((cc[2], d, "drift"), (cc[3], f, "findings")):
            buf = io.BytesIO()
            frame.astype({c: "string" for c in frame.columns if frame[c].dtype == object}).to_parquet(buf, index=False)
            col.download_button(f"{name.capitalize()} Parquet", buf.getvalue(), file_name=f"{name}_{run_id}.parquet",
                                mime="application/octet-stream")

if actor.can(Permission.REPAIR):
    st.subheader("Repair")
    with friendly():
        policy = ops.approval_required()
        if policy is None:
            empty_state("Repair is not installed in this build.")
            st.stop()
        st.caption("Repair sets a drifted wallet's snapshot to its ledger balance, under a row lock, with one "
                   "audit row per wallet. " + ("Approval is ON: a repair files a request that a different admin "
                                               "approves." if policy else "Approval is OFF: repairs apply at once."))
        if d.empty:
            st.caption("Nothing to repair in the selected run and filters.")
        else:
            with st.form("repair"):
                wallets = st.multiselect("Wallets to repair", list(d["wallet_id"]), default=list(d["wallet_id"])[:1])
                reason = st.text_area("Reason (required; recorded in the audit log)", max_chars=2000)
                go = st.form_submit_button("Request repair" if policy else "Repair", type="primary",
                                           icon=":material/build:")
            if go:
                if not reason.strip():
                    st.error("A reason is required to repair.")
                elif not wallets:
                    st.error("Pick at least one wallet.")
                else:
                    out = ops.repair(actor, wallet_ids=list(wallets), reason=reason)
                    if out.status == "pending":
                        st.success(f"Repair requested ({out.request_id}); another admin must approve it.",
                                   icon=":material/pending_actions:")
                    else:
                        st.success(f"Repaired {len(out.wallets):,} wallet(s). The audit timeline shows each change.",
                                   icon=":material/task_alt:")

    with friendly():
        pending = ops.repair_requests(actor, status="pending")
        if pending is not None and not pending.empty:
            st.markdown("**Pending repair requests**")
            st.dataframe(pending, hide_index=True, width="stretch")
            if actor.can(Permission.APPROVE_REPAIR):
                with st.form("decide"):
                    rid = st.selectbox("Request", list(pending["request_id"].astype(str)))
                    why = st.text_input("Decision reason", max_chars=2000)
                    c = st.columns(2)
                    approve = c[0].form_submit_button("Approve and apply", type="primary")
                    reject = c[1].form_submit_button("Reject")
                if approve or reject:
                    if reject and not why.strip():
                        st.error("A reason is required to reject.")
                    else:
                        ops.decide_repair(actor, request_id=rid, approve=bool(approve), reason=why or "approved")
                        st.success("Approved and applied." if approve else "Rejected.")

    with friendly(), st.expander("Approval policy"):
        with st.form("policy"):
            want = st.toggle("Require a second admin's approval for repairs", value=bool(policy))
            why = st.text_input("Reason for the change", max_chars=2000)
            save = st.form_submit_button("Save policy")
        if save:
            ops.set_approval_policy(actor, required=want, reason=why)
            st.success("Policy saved.")
