"""Plotly figures for the app and the notebooks: one look, one set of colours, units and zones stated.

Each function takes a DataFrame from `salesarck.analytics` (already aggregated in SQL) and returns
a `plotly.graph_objects.Figure`. Time axes name their zone; money is drawn in major units of its
currency (display only: the data stays in integer minor units). Series longer than
`WEBGL_THRESHOLD` points use WebGL traces so the browser stays smooth.
"""

from __future__ import annotations

from decimal import Decimal

import pandas as pd
import plotly.graph_objects as go

WEBGL_THRESHOLD = 2000

# One palette everywhere: credit is green, debit red, drift orange (colour-blind friendly pairs).
COLORS: dict[str, str] = {
    "credit": "#1b9e77",
    "earned": "#1b9e77",
    "debit": "#d95f02",
    "redeemed": "#d95f02",
    "reversed": "#7570b3",
    "drift": "#e7298a",
    "snapshot": "#e7298a",
    "balance": "#1f78b4",
    "liability": "#1f78b4",
    "money": "#66a61e",
    "neutral": "#666666",
}
SEQUENCE = ["#1f78b4", "#33a02c", "#ff7f00", "#6a3d9a", "#b15928", "#a6cee3", "#b2df8a", "#fb9a99"]


def _layout(fig: go.Figure, title: str, x_title: str, y_title: str) -> go.Figure:
    fig.update_layout(
        title={"text": title, "x": 0.0, "xanchor": "left"},
        xaxis_title=x_title,
        yaxis_title=y_title,
        template="plotly_white",
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "right", "x": 1},
        margin={"l": 60, "r": 20, "t": 70, "b": 50},
        hovermode="x unified",
        height=380,
    )
    return fig


def time_axis(tz: str) -> str:
    return f"Time ({tz})"


def _scatter(n: int) -> type[go.Scatter] | type[go.Scattergl]:
    return go.Scattergl if n > WEBGL_THRESHOLD else go.Scatter


def major_units(minor: pd.Series, exponent: int) -> pd.Series:
    """Minor units -> major units for display (exact Decimal division, then float for plotting)."""
    scale = Decimal(10) ** exponent
    return pd.Series([float(Decimal(int(v)) / scale) for v in minor], index=minor.index, dtype="float64")


def currency_exponent(code: str) -> int:
    """ISO 4217 minor-unit exponent; the rewards engine's table when present, else 2."""
    try:
        from salesarck.rewards.currency import currency_exponent as rewards_exponent

        return int(rewards_exponent(code))
    except Exception:  # noqa: BLE001  display only: an unknown code must not break a chart
        return 2


def empty_figure(title: str, message: str) -> go.Figure:
    """A titled, blank chart that says what to do (used when a query returns no rows)."""
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                       font={"size": 14, "color": COLORS["neutral"]})
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(title={"text": title, "x": 0.0}, template="plotly_white", height=300)
    return fig


def transactions_chart(df: pd.DataFrame, *, tz: str, metric: str = "transactions", freq: str = "day") -> go.Figure:
    """Transactions per bucket, stacked by group: counts, or amounts in major units per currency."""
    if metric not in {"transactions", "amount"}:
        raise ValueError("metric must be 'transactions' or 'amount'")
    title = f"Transactions per {freq}" if metric == "transactions" else f"Transaction amount per {freq}"
    if df.empty:
        return empty_figure(title, "No transactions in this window. Widen the dates or sync a connection.")
    fig = go.Figure()
    currencies = sorted(df["currency"].unique())
    y_title = "Transactions (count)"
    if metric == "amount":
        y_title = f"Amount ({', '.join(currencies)})"
    for i, (group, part) in enumerate(df.groupby(["group", "currency"] if metric == "amount" else ["group"], sort=True)):
        key = group if isinstance(group, tuple) else (group,)
        if metric == "amount":
            y = major_units(part["amount_minor_units"], currency_exponent(str(key[1])))
            name = f"{key[0]} ({key[1]})" if len(currencies) > 1 else str(key[0])
        else:
            part = part.groupby("bucket", as_index=False)["transactions"].sum()
            y = part["transactions"]
            name = str(key[0])
        fig.add_trace(go.Bar(x=part["bucket"], y=y, name=name, marker_color=SEQUENCE[i % len(SEQUENCE)]))
    fig.update_layout(barmode="stack")
    return _layout(fig, title, time_axis(tz), y_title)


def rewards_chart(df: pd.DataFrame, *, tz: str, rule_changes: pd.DataFrame | None = None,
                  freq: str = "day") -> go.Figure:
    """Points earned vs redeemed vs reversed per bucket, with a marker where a rule version took effect."""
    title = f"Points earned, redeemed and reversed per {freq}"
    if df.empty:
        return empty_figure(title, "No reward activity in this window. Widen the dates or post transactions.")
    totals = df.groupby("bucket", as_index=False)[["earned", "redeemed", "reversed"]].sum()
    fig = go.Figure()
    fig.add_trace(go.Bar(x=totals["bucket"], y=totals["earned"], name="Earned", marker_color=COLORS["earned"]))
    fig.add_trace(go.Bar(x=totals["bucket"], y=-totals["redeemed"], name="Redeemed", marker_color=COLORS["redeemed"]))
    fig.add_trace(go.Bar(x=totals["bucket"], y=-totals["reversed"], name="Reversed (refunds, voids)",
                         marker_color=COLORS["reversed"]))
    fig.update_layout(barmode="relative")
    _mark_rule_changes(fig, rule_changes, totals["bucket"].min(), totals["bucket"].max())
    return _layout(fig, title, time_axis(tz), "Points (redeemed and reversed below zero)")


def rewards_by_rule_chart(df: pd.DataFrame, *, tz: str, freq: str = "day") -> go.Figure:
    """Points earned per bucket, one line per rule version."""
    title = f"Points earned per {freq} by rule version"
    if df.empty:
        return empty_figure(title, "No reward activity in this window.")
    fig = go.Figure()
    data = df.assign(version=df["rule_version"].astype("string").fillna("none (frozen wallet)"))
    for i, (version, part) in enumerate(data.groupby("version", sort=True)):
        part = part.groupby("bucket", as_index=False)["earned"].sum()
        fig.add_trace(_scatter(len(part))(x=part["bucket"], y=part["earned"], name=f"v{version}" if version[0].isdigit() else version,
                                          mode="lines+markers", line={"color": SEQUENCE[i % len(SEQUENCE)]}))
    return _layout(fig, title, time_axis(tz), "Points earned")


def _mark_rule_changes(fig: go.Figure, changes: pd.DataFrame | None, lo: object, hi: object) -> None:
    if changes is None or changes.empty:
        return
    for row in changes.itertuples(index=False):
        at = getattr(row, "effective_local", None) or row.effective_from
        if lo is not None and hi is not None and not (pd.Timestamp(lo) <= pd.Timestamp(at) <= pd.Timestamp(hi)):
            continue
        fig.add_vline(x=pd.Timestamp(at).to_pydatetime(), line_dash="dot", line_color=COLORS["neutral"])
        fig.add_annotation(x=pd.Timestamp(at).to_pydatetime(), y=1, yref="paper", showarrow=False,
                           text=f"{getattr(row, 'tenant', '')} rule v{row.version}".strip(),
                           font={"size": 10}, xanchor="left", yanchor="bottom")


def liability_chart(df: pd.DataFrame, *, tz: str, money: bool = False, freq: str = "day") -> go.Figure:
    """Points outstanding (or their money value) at the end of each bucket, summed over tenants."""
    title = "Liability over time" + (" (money)" if money else " (points)")
    if df.empty:
        return empty_figure(title, "No ledger entries yet. Post transactions or load the demo data.")
    fig = go.Figure()
    if money:
        for i, (currency, part) in enumerate(df.groupby("currency", sort=True)):
            total = part.groupby("bucket", as_index=False)["liability_minor_units"].sum()
            y = major_units(total["liability_minor_units"], currency_exponent(str(currency)))
            fig.add_trace(_scatter(len(total))(x=total["bucket"], y=y, name=str(currency), mode="lines",
                                               line={"color": COLORS["money"] if i == 0 else SEQUENCE[i % len(SEQUENCE)]}))
        y_title = f"Liability ({', '.join(sorted(map(str, df['currency'].unique())))})"
    else:
        total = df.groupby("bucket", as_index=False)["liability_points"].sum()
        fig.add_trace(_scatter(len(total))(x=total["bucket"], y=total["liability_points"], name="Points outstanding",
                                           mode="lines", line={"color": COLORS["liability"]}))
        y_title = "Points outstanding"
    return _layout(fig, title, f"End of {freq} ({tz})", y_title)


def wallet_balance_chart(series: pd.DataFrame, *, snapshot: int, tz: str) -> go.Figure:
    """The wallet's running ledger balance, with the snapshot (`points_balance`) drawn against it."""
    title = "Ledger running balance vs snapshot"
    if series.empty:
        fig = empty_figure(title, f"No ledger entries. The snapshot says {snapshot} points.")
        return fig
    fig = go.Figure()
    trace = _scatter(len(series))
    fig.add_trace(trace(x=series["at"], y=series["balance"], name="Ledger balance", mode="lines+markers",
                        line={"color": COLORS["balance"], "shape": "hv"}, marker={"size": 5}))
    credits = series[series["points"] > 0]
    debits = series[series["points"] < 0]
    if len(series) <= WEBGL_THRESHOLD:
        fig.add_trace(go.Scatter(x=credits["at"], y=credits["balance"], mode="markers", name="Credit",
                                 marker={"color": COLORS["credit"], "size": 8, "symbol": "triangle-up"}))
        fig.add_trace(go.Scatter(x=debits["at"], y=debits["balance"], mode="markers", name="Debit",
                                 marker={"color": COLORS["debit"], "size": 8, "symbol": "triangle-down"}))
    fig.add_hline(y=snapshot, line_dash="dash", line_color=COLORS["snapshot"],
                  annotation_text=f"snapshot {snapshot}", annotation_position="top left")
    return _layout(fig, title, time_axis(tz), "Points")


def audit_chart(df: pd.DataFrame, *, tz: str, freq: str = "day") -> go.Figure:
    """Admin actions per bucket, stacked by action."""
    title = f"Admin actions per {freq}"
    if df.empty:
        return empty_figure(title, "No admin actions match. Clear the filters or widen the dates.")
    fig = go.Figure()
    for i, (action, part) in enumerate(df.groupby("action", sort=True)):
        fig.add_trace(go.Bar(x=part["bucket"], y=part["actions"], name=str(action),
                             marker_color=SEQUENCE[i % len(SEQUENCE)]))
    fig.update_layout(barmode="stack")
    return _layout(fig, title, time_axis(tz), "Actions (count)")


def drift_trend_chart(runs: pd.DataFrame, *, tz: str = "UTC") -> go.Figure:
    """Drifted wallets and findings per reconciliation run (columns: started_at, drifted_wallets, findings)."""
    title = "Reconciliation trend"
    if runs.empty:
        return empty_figure(title, "No recorded runs yet. Run a reconciliation to start the trend.")
    fig = go.Figure()
    if len(runs) == 1:  # one run: a point, not a millisecond-wide axis
        at = pd.Timestamp(runs["started_at"].iloc[0])
        fig.update_xaxes(range=[at - pd.Timedelta(days=1), at + pd.Timedelta(days=1)])
    fig.add_trace(go.Scatter(x=runs["started_at"], y=runs["drifted_wallets"], name="Drifted wallets",
                             mode="lines+markers", line={"color": COLORS["drift"]}))
    if "findings" in runs:
        fig.add_trace(go.Scatter(x=runs["started_at"], y=runs["findings"], name="Findings",
                                 mode="lines+markers", line={"color": COLORS["neutral"], "dash": "dot"}))
    return _layout(fig, title, time_axis(tz), "Wallets / findings (count)")


def drift_histogram(drift: pd.DataFrame) -> go.Figure:
    """Distribution of drift over drifted wallets: the report's `drift` frame (`drift_points` = snapshot - ledger)."""
    title = "Drift per wallet (snapshot - ledger)"
    if drift.empty or "drift_points" not in drift:
        return empty_figure(title, "No drift: every snapshot equals its ledger balance.")
    fig = go.Figure(go.Histogram(x=drift["drift_points"], marker_color=COLORS["drift"], nbinsx=50))
    return _layout(fig, title, "Drift (points)", "Wallets (count)")
