"""Sync & webhooks: connection health, Sync now with live progress, run history, worker, backlog, tie-out."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import streamlit as st

from salesarck import analytics
from salesarck.authz import Permission
from salesarck.timeutil import utcnow
from salesarck.webapp import ops
from salesarck.webapp.context import page_actor
from salesarck.webapp.errors import friendly
from salesarck.webapp.resources import query
from salesarck.webapp.ui import empty_state, fmt_time

actor = page_actor("sync")
st.title("Sync & webhooks")
st.caption("Times are UTC.")

conns = pd.DataFrame()
with friendly():
    conns = query(actor, analytics.connections_status, permission=Permission.VIEW_SYNC)
    if conns.empty:
        empty_state("No POS connections in your tenants yet. An admin adds them on the POS connections page.")
    else:
        soon = utcnow() + timedelta(days=3)
        view = conns.assign(token_expiring=conns["token_expires_at"].notna() & (conns["token_expires_at"] < soon))
        st.dataframe(view.drop(columns=["tenant_id", "connection_id", "created_at"]), hide_index=True, width="stretch",
                     column_config={"tenant": "Tenant", "pos_type": "Provider", "merchant_account_id": "Merchant",
                                    "status": "Status",
                                    "last_synced_at": st.column_config.DatetimeColumn("Last sync (UTC)"),
                                    "watermark_at": st.column_config.DatetimeColumn("Watermark (UTC)"),
                                    "token_expires_at": st.column_config.DatetimeColumn("Token expires (UTC)"),
                                    "token_expiring": st.column_config.CheckboxColumn("Expires within 3 days")})

if not conns.empty:
    st.subheader("Sync now")
    with friendly():
        labels = {str(r.connection_id): f"{r.tenant} · {r.pos_type} {r.merchant_account_id} ({r.status})"
                  for r in conns.itertuples()}
        pick = st.selectbox("Connection", list(labels), format_func=labels.get, key="sync_conn")
        row = conns[conns["connection_id"].astype(str) == pick].iloc[0]
        may_sync = actor.can(Permission.SYNC, row["tenant_id"])
        if not may_sync:
            st.caption("You can see this connection's health; syncing needs an operator or admin.")
        if st.button("Sync now", type="primary", icon=":material/sync:", disabled=not may_sync, key="sync_now"):
            bar = st.progress(0.0, text="Starting…")

            def progress(p: object) -> None:
                pages = int(getattr(p, "pages", 0))
                phase = str(getattr(p, "phase", ""))
                seen = int(getattr(p, "payments_seen", 0))
                frac = 1.0 if phase in {"done", "failed"} else min(0.95, pages / (pages + 4))
                bar.progress(frac, text=f"{phase}: {pages} pages, {seen:,} payments, {getattr(p, 'posted', 0):,} posted")

            result = ops.sync_now(actor, connection_id=row["connection_id"], progress=progress)
            bar.progress(1.0, text="Finished")
            ok = getattr(result, "ok", True)
            summary = (f"{getattr(result, 'payments_seen', 0):,} payments seen, {getattr(result, 'posted', 0):,} posted, "
                       f"{getattr(result, 'duplicates', 0):,} duplicates, {getattr(result, 'skipped', 0):,} skipped; "
                       f"{getattr(result, 'points_credited', 0):,} points credited, "
                       f"{getattr(result, 'points_debited', 0):,} debited")
            if ok:
                st.success(f"Sync finished: {summary}.", icon=":material/task_alt:")
            else:
                st.error(f"Sync failed: {getattr(result, 'error', 'unknown error')} ({summary}).")

        runs = ops.sync_runs(actor, connection_id=row["connection_id"], limit=20)
        st.markdown("**Recent runs**")
        if runs is None or runs.empty:
            empty_state("No sync runs yet for this connection. Press Sync now.")
        else:
            cols = [c for c in ("started_at", "finished_at", "status", "trigger", "actor", "pages", "payments_seen",
                                "posted", "duplicates", "skipped", "points_credited", "points_debited", "error")
                    if c in runs.columns]
            st.dataframe(runs[cols], hide_index=True, width="stretch")
        with st.expander("Connection events"):
            events = ops.connection_events(actor, connection_id=row["connection_id"])
            if events.empty:
                st.caption("No events recorded.")
            else:
                st.dataframe(events, hide_index=True, width="stretch")

st.subheader("Worker")
with friendly():
    beats = ops.worker_heartbeat()
    if beats is None or beats.empty:
        empty_state("No worker heartbeat recorded. Start the scheduled worker with `salesarck worker`.")
    else:
        latest = beats.iloc[0]
        alive = bool(latest.get("alive"))
        (st.success if alive else st.warning)(
            f"Worker {latest.get('worker_id')} on {latest.get('hostname')} is "
            f"{'alive' if alive else 'not beating'} (state {latest.get('state')}, last beat "
            f"{fmt_time(latest.get('beat_at'))}).", icon=":material/monitor_heart:")
        with st.expander("All heartbeats"):
            st.dataframe(beats, hide_index=True, width="stretch")

st.subheader("Webhooks")
with friendly():
    backlog = ops.webhook_backlog(actor)
    if backlog is None:
        simple = query(actor, analytics.webhook_backlog)
        backlog = {"pending": simple["webhook_backlog"], "oldest_pending_at": simple["webhook_backlog_oldest"]}
    c = st.columns(4)
    c[0].metric("Waiting to be processed", f"{int(backlog.get('pending', 0)):,}")
    c[1].metric("Retrying", f"{int(backlog.get('retrying', 0)):,}")
    c[2].metric("Dead letters", f"{int(backlog.get('dead_letters', 0)):,}")
    c[3].metric("Oldest waiting", fmt_time(backlog.get("oldest_pending_at")))
    if ops.webhook_processor() is None:
        st.caption("The webhook processor is not installed in this build.")
    elif actor.can(Permission.PROCESS_WEBHOOKS):
        if st.button("Process now", icon=":material/play_arrow:", key="wh_process"):
            with st.spinner("Processing webhook events…"):
                out = ops.process_webhooks(actor)
            st.success(f"Processed {out.get('processed', 0):,} of {out.get('claimed', 0):,} claimed events: "
                       f"{out.get('transactions_inserted', 0):,} new transactions, "
                       f"{out.get('failed', 0):,} failed, {out.get('dead_lettered', 0):,} dead-lettered.",
                       icon=":material/task_alt:")
        dead = ops.dead_letters(actor)
        st.markdown("**Dead letters**")
        if dead is None or dead.empty:
            st.caption("No dead letters.")
        else:
            st.dataframe(dead, hide_index=True, width="stretch")
            chosen = st.multiselect("Events to replay", list(dead["id"]), default=list(dead["id"])[:10],
                                    key="wh_replay_ids")
            if st.button("Replay", icon=":material/replay:", key="wh_replay"):
                since = dead["created_at"].min().to_pydatetime()
                out = ops.replay_webhooks(actor, event_ids=list(chosen), since=since)
                st.success(f"Replayed {out.get('selected', 0):,} events: {out.get('processed', 0):,} processed, "
                           f"{out.get('signatures_failed', 0):,} signatures failed.", icon=":material/task_alt:")
    else:
        st.caption("Processing webhooks needs an operator or admin.")

st.subheader("POS tie-out")
with friendly():
    tie = ops.module("salesarck.reconcile.tieout")
    if tie is None or conns.empty:
        st.caption("Tie-out compares the provider's payments with stored transactions for a window "
                   "(needs a connection and the reconciliation engine).")
    else:
        with st.form("tieout"):
            c = st.columns(3)
            t_conn = c[0].selectbox("Connection", list(labels), format_func=labels.get)
            t_from = c[1].date_input("From", value=utcnow().date() - timedelta(days=7))
            t_to = c[2].date_input("To (exclusive)", value=utcnow().date() + timedelta(days=1))
            go = st.form_submit_button("Tie out", icon=":material/fact_check:")
        if go:
            with st.spinner("Listing the provider's payments (read-only)…"):
                result = ops.tieout(actor, connection_id=t_conn, start=t_from.isoformat(), end=t_to.isoformat())
            (st.success if result.ties else st.warning)(
                "Stored transactions tie out with the provider." if result.ties
                else "Stored transactions do not tie out with the provider: see the differences.")
            st.json(result.summary, expanded=False)
            if not result.differences.empty:
                st.markdown("**Differences**")
                st.dataframe(result.differences, hide_index=True, width="stretch")
            st.markdown("**Per location and day** (the tenant's time zone)")
            st.dataframe(result.daily, hide_index=True, width="stretch")
