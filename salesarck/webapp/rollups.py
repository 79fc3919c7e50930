"""Warm daily rollups for the heaviest reads (ledger and reward events over their whole history).

At 10M ledger rows one pass over the ledger takes seconds, too slow for a page render. The app
keeps one daily rollup per time zone for all tenants (days x tenants: small) in process memory,
computed at start-up for UTC and every tenant's zone and refreshed in a background thread every
few minutes; each request takes only the rows of its actor's tenants (`restrict_to_scope`, the
same scope rules as the SQL reads) and derives any window and bucket size in pandas. Pages say
how fresh the numbers are.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd
import streamlit as st
from sqlalchemy.engine import Engine

from salesarck import analytics
from salesarck.authz import Actor, Permission
from salesarck.errors import ValidationError
from salesarck.timeutil import utcnow
from salesarck.webapp.resources import _engine, actor_from_key, db_key

log = logging.getLogger("salesarck.app.rollups")

REFRESH_SECONDS = 300  # a rollup is recomputed in the background this often
MAX_AGE_SECONDS = 900  # older than this (nobody used it for a while): recompute before showing
IDLE_FORGET_SECONDS = 3600  # unused this long: stop refreshing it
ROLLUPS: dict[str, Callable[..., pd.DataFrame]] = {
    "ledger_daily_flows": analytics.ledger_daily_flows,
    "reward_daily": analytics.reward_daily,
    "transaction_daily": analytics.transaction_daily,
}
PERMISSION = {"transaction_daily": Permission.VIEW_TRANSACTIONS}  # others: VIEW_FINANCE
Key = tuple[str, str]  # (rollup name, time zone)
ALL_TENANTS = ("admin", "active", ())  # the reader scope rollups are computed with


@dataclass
class _Entry:
    frame: pd.DataFrame
    computed_at: datetime
    last_used: float


class RollupStore:
    """Per-database store of warm rollups with one background refresher thread."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._entries: dict[Key, _Entry] = {}
        self._lock = threading.Lock()
        self._computing: dict[Key, threading.Lock] = {}  # one computation per key at a time
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="salesarck-rollups", daemon=True)
        self._thread.start()

    def _compute(self, key: Key) -> _Entry:
        """Compute (or wait for the computation already running for) this key, and store it."""
        with self._lock:
            gate = self._computing.setdefault(key, threading.Lock())
            before = self._entries.get(key)
        with gate:
            with self._lock:
                current = self._entries.get(key)
            if current is not None and current is not before:  # someone finished it while we waited
                return current
            name, tz = key
            with self.engine.connect() as conn:
                frame = ROLLUPS[name](conn, actor=actor_from_key(ALL_TENANTS), tz=tz)
            entry = _Entry(frame, utcnow(), time.monotonic())
            with self._lock:
                self._entries[key] = entry
            return entry

    def get(self, actor: Actor, name: str, *, tenant_id: Any = None, tz: str = "UTC") -> tuple[pd.DataFrame, datetime]:
        """This actor's rows of the rollup for `tz`, computing it now only when missing or too old."""
        permission = PERMISSION.get(name, Permission.VIEW_FINANCE)
        analytics.tenant_filter(actor, permission, tenant_id)  # refuse before any work
        key: Key = (name, analytics.check_timezone(tz))
        with self._lock:
            entry = self._entries.get(key)
        if entry is None or (utcnow() - entry.computed_at).total_seconds() > MAX_AGE_SECONDS:
            entry = self._compute(key)
        entry.last_used = time.monotonic()
        frame = analytics.restrict_to_scope(entry.frame, actor=actor, tenant_id=tenant_id, permission=permission)
        return frame, entry.computed_at

    def prewarm(self, keys: list[Key]) -> None:
        for key in keys:
            if self._stop.is_set():
                return
            with self._lock:
                if key in self._entries:
                    continue
            try:
                self._compute(key)
            except Exception:  # noqa: BLE001  a warm-up failure must not stop the app
                log.warning("could not pre-compute rollup %s", key[0], exc_info=True)

    def _zones(self) -> list[str]:
        with self.engine.connect() as conn:
            zones = set(analytics.tenants(conn, actor=actor_from_key(ALL_TENANTS))["timezone"])
        ok = []
        for z in sorted(zones - {"UTC"}):
            try:
                ok.append(analytics.check_timezone(z))
            except ValidationError:
                continue
        return ["UTC", *ok]

    def _loop(self) -> None:
        try:
            zones = self._zones()
        except Exception:  # noqa: BLE001
            log.warning("could not list tenant time zones for the rollup warm-up", exc_info=True)
            zones = ["UTC"]
        self.prewarm([(name, z) for z in zones for name in ROLLUPS])
        while not self._stop.wait(30):
            now = time.monotonic()
            with self._lock:
                items = list(self._entries.items())
            for key, entry in items:
                if now - entry.last_used > IDLE_FORGET_SECONDS and key[1] != "UTC":
                    with self._lock:
                        self._entries.pop(key, None)
                elif (utcnow() - entry.computed_at).total_seconds() > REFRESH_SECONDS:
                    try:
                        self._compute(key).last_used = entry.last_used
                    except Exception:  # noqa: BLE001  keep serving the last good rollup
                        log.warning("could not refresh rollup %s", key[0], exc_info=True)

    def close(self) -> None:
        self._stop.set()


@st.cache_resource(show_spinner=False, on_release=lambda store: store.close())
def _store(key: str) -> RollupStore:
    return RollupStore(_engine(key))


def rollup(actor: Actor, fn: Callable[..., pd.DataFrame], *, tenant_id: Any = None,
           tz: str = "UTC") -> tuple[pd.DataFrame, datetime]:
    """The actor's rows of a warm daily rollup (`ledger_daily_flows` / `reward_daily`) and its time."""
    if ROLLUPS.get(fn.__name__) is not fn:
        raise ValueError(f"{fn.__name__} is not a rollup")
    return _store(db_key()).get(actor, fn.__name__, tenant_id=tenant_id, tz=tz)


def start() -> None:
    """Start the refresher (and the admin pre-warm) for the configured database."""
    _store(db_key())
