"""Small shared widgets and formatting for the pages: pickers, pagers, numbers, money, empty states."""

from __future__ import annotations

import uuid
from datetime import date, datetime, time, timedelta
from decimal import Decimal

import streamlit as st

from salesarck import analytics
from salesarck.analytics import Page
from salesarck.authz import Actor, Permission
from salesarck.charts import currency_exponent
from salesarck.timeutil import utcnow
from salesarck.webapp.resources import query


def fmt_points(value: int | None) -> str:
    return "—" if value is None else f"{int(value):,} pts"


def fmt_money(minor: int | None, currency: str = "USD") -> str:
    """Integer minor units as `12,345.67 USD` (exact: Decimal, never float)."""
    if minor is None:
        return "—"
    exp = currency_exponent(currency)
    amount = Decimal(int(minor)).scaleb(-exp)
    return f"{amount:,.{exp}f} {currency}"


def fmt_time(value: datetime | None, tz: str = "UTC") -> str:
    if value is None:
        return "never"
    return f"{value:%Y-%m-%d %H:%M} {tz}"


def tenant_picker(actor: Actor, permission: Permission, *, key: str, allow_all: bool = True,
                  label: str = "Tenant") -> uuid.UUID | None:
    """A tenant select box limited to the actor's scope; None means all of them."""
    tenants = query(actor, analytics.tenants, permission=permission)
    options: list[uuid.UUID | None] = ([None] if allow_all else []) + list(tenants["tenant_id"])
    names = dict(zip(tenants["tenant_id"], tenants["name"], strict=True))
    if not options:
        return None
    return st.selectbox(label, options, key=key,
                        format_func=lambda t: "All tenants" if t is None else str(names.get(t, t)))


def window_picker(*, key: str, default_days: int = 90, with_freq: bool = True,
                  freqs: tuple[str, ...] = analytics.FREQS, default_freq: str = "day") -> tuple[datetime, datetime, str]:
    """From/to dates (midnights of the zone the page states, end inclusive) and a bucket size."""
    today = utcnow().date()
    cols = st.columns(3 if with_freq else 2)
    start_day = cols[0].date_input("From", value=today - timedelta(days=default_days), key=f"{key}_from",
                                   max_value=today + timedelta(days=1))
    end_day = cols[1].date_input("To (inclusive)", value=today, key=f"{key}_to",
                                 max_value=today + timedelta(days=366))
    freq = "day"
    if with_freq:
        freq = cols[2].selectbox("Bucket", freqs, index=freqs.index(default_freq), key=f"{key}_freq")
    start = datetime.combine(start_day if isinstance(start_day, date) else today, time())
    end = datetime.combine(end_day if isinstance(end_day, date) else today, time()) + timedelta(days=1)
    return start, end, freq


def page_number(*, key: str, total_pages: int | None = None) -> int:
    """The page the user is on (1-based), kept in session state."""
    current = int(st.session_state.get(key, 1))
    if total_pages is not None:
        current = max(1, min(current, total_pages))
    return current


def pager(page: Page, *, key: str) -> None:
    """Previous / next controls and 'rows a-b of n' under a paged table."""
    first = (page.page - 1) * page.page_size + 1 if page.total else 0
    last = min(page.total, page.page * page.page_size)
    cols = st.columns([1, 1, 4])
    if cols[0].button("‹ Previous", key=f"{key}_prev", disabled=page.page <= 1):
        st.session_state[key] = page.page - 1
        st.rerun()
    if cols[1].button("Next ›", key=f"{key}_next", disabled=page.page >= page.pages):
        st.session_state[key] = page.page + 1
        st.rerun()
    cols[2].caption(f"Rows {first:,}–{last:,} of {page.total:,} · page {page.page} of {page.pages}")


def empty_state(message: str) -> None:
    st.info(message, icon=":material/info:")
