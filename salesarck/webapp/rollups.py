"""Warm daily rollups for the heaviest reads (ledger and reward events over their whole history).

At 10M ledger rows one pass over the ledger takes seconds, too slow for a page render. The app
keeps each scope's daily rollup (days x tenants: small) in process memory, refreshes it in a
background thread every few minutes while someone uses it, and derives any window and bucket
size from it in pandas. The admin (all tenants, UTC) rollups are computed at start-up. Pages say
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
from salesarck.authz import Actor
from salesarck.timeutil import utcnow
from salesarck.webapp.resources import _engine, actor_from_key, actor_key, db_key

log = logging.getLogger("salesarck.app.rollups")

REFRESH_SECONDS = 300  # a used rollup is recomputed in the background this often
MAX_AGE_SECONDS = 900  # older than this (nobody used it for a while): recompute before showing
IDLE_FORGET_SECONDS = 3600  # unused this long: stop refreshing it
ROLLUPS: dict[str, Callable[..., pd.DataFrame]] = {
    "ledger_daily_flows": analytics.ledger_daily_flows,
    "reward_daily": analytics.reward_daily,
}
Key = tuple[str, tuple[Any, ...], tuple[tuple[str, Any], ...]]


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
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="salesarck-rollups", daemon=True)
        self._thread.start()

    def _compute(self, key: Key) -> _Entry:
        name, who, params = key
        with self.engine.connect() as conn:
            frame = ROLLUPS[name](conn, actor=actor_from_key(who), **dict(params))
        return _Entry(frame, utcnow(), time.monotonic())

    def get(self, actor: Actor, name: str, **params: Any) -> tuple[pd.DataFrame, datetime]:
        """The rollup for this actor's scope, computing it now only when missing or too old."""
        key: Key = (name, actor_key(actor), tuple(sorted(params.items())))
        with self._lock:
            entry = self._entries.get(key)
        if entry is None or (utcnow() - entry.computed_at).total_seconds() > MAX_AGE_SECONDS:
            entry = self._compute(key)
            with self._lock:
                self._entries[key] = entry
        entry.last_used = time.monotonic()
        return entry.frame, entry.computed_at

    def prewarm(self, keys: list[Key]) -> None:
        for key in keys:
            if self._stop.is_set():
                return
            try:
                entry = self._compute(key)
            except Exception:  # noqa: BLE001  a warm-up failure must not stop the app
                log.warning("could not pre-compute rollup %s", key[0], exc_info=True)
                continue
            with self._lock:
                self._entries.setdefault(key, entry)

    def _loop(self) -> None:
        admin = ("admin", "active", ())
        self.prewarm([(name, admin, (("tz", "UTC"),)) for name in ROLLUPS])
        while not self._stop.wait(30):
            now = time.monotonic()
            with self._lock:
                items = list(self._entries.items())
            for key, entry in items:
                if now - entry.last_used > IDLE_FORGET_SECONDS:
                    with self._lock:
                        self._entries.pop(key, None)
                elif (utcnow() - entry.computed_at).total_seconds() > REFRESH_SECONDS:
                    try:
                        fresh = self._compute(key)
                    except Exception:  # noqa: BLE001  keep serving the last good rollup
                        log.warning("could not refresh rollup %s", key[0], exc_info=True)
                        continue
                    fresh.last_used = entry.last_used
                    with self._lock:
                        self._entries[key] = fresh

    def close(self) -> None:
        self._stop.set()


@st.cache_resource(show_spinner=False, on_release=lambda store: store.close())
def _store(key: str) -> RollupStore:
    return RollupStore(_engine(key))


def rollup(actor: Actor, fn: Callable[..., pd.DataFrame], **params: Any) -> tuple[pd.DataFrame, datetime]:
    """A warm daily rollup (`analytics.ledger_daily_flows` or `analytics.reward_daily`) and its age."""
    if ROLLUPS.get(fn.__name__) is not fn:
        raise ValueError(f"{fn.__name__} is not a rollup")
    return _store(db_key()).get(actor, fn.__name__, **params)


def start() -> None:
    """Start the refresher (and the admin pre-warm) for the configured database."""
    _store(db_key())
