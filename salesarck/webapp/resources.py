"""The app's one database engine (`st.cache_resource`) and cached, actor-scoped analytics reads."""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

import streamlit as st
from sqlalchemy.engine import Engine

from salesarck import analytics
from salesarck.authz import Actor
from salesarck.config import current_settings

DATA_TTL_SECONDS = 60  # numbers on screen are at most a minute old; actions clear the cache at once


def db_key() -> str:
    """A stable, secret-free key for the configured database (cache keys never hold a password)."""
    settings = current_settings()
    url = settings.runtime_url
    raw = url.render_as_string(hide_password=False) if url is not None else f"embedded:{settings.home}"
    raw += f"|role={settings.runtime_role or ''}"  # another role is another engine
    return hashlib.sha256(raw.encode()).hexdigest()[:24]


@st.cache_resource(show_spinner="Connecting to the database…")
def _engine(key: str) -> Engine:
    from salesarck.db.session import open_engine

    return open_engine(current_settings())


def get_engine() -> Engine:
    """The engine for the configured database, built once per process and shared by every session."""
    return _engine(db_key())


def actor_key(actor: Actor) -> tuple[Any, ...]:
    """Everything that decides what an actor may read (role, status, tenant roles), hashable.

    Reads depend on scope, not on who asks, so users with the same scope share cached results;
    different scopes never do.
    """
    roles = tuple(sorted((str(t), r) for t, r in actor.tenant_roles.items()))
    return (actor.role, actor.status, roles)


READER_ID = uuid.UUID(int=0)


def actor_from_key(key: tuple[Any, ...]) -> Actor:
    """A stand-in Actor with exactly the scope of `key` (reads only; never used for actions)."""
    role, status, roles = key
    return Actor(READER_ID, None, role, status, {uuid.UUID(t): r for t, r in roles})


@st.cache_data(ttl=DATA_TTL_SECONDS, show_spinner=False, max_entries=512)
def _cached(key: str, who: tuple[Any, ...], fn_name: str, params: tuple[tuple[str, Any], ...]) -> Any:
    fn: Callable[..., Any] = getattr(analytics, fn_name)
    with _engine(key).connect() as conn:
        return fn(conn, actor=actor_from_key(who), **dict(params))


def query(actor: Actor, fn: Callable[..., Any], **params: Any) -> Any:
    """Call an `analytics` read for `actor`, cached for a minute per database, actor and arguments."""
    if getattr(analytics, fn.__name__, None) is not fn:
        raise ValueError(f"{fn.__name__} is not a salesarck.analytics function")
    return _cached(db_key(), actor_key(actor), fn.__name__, tuple(sorted(params.items())))


T = TypeVar("T")
MEMO_ENTRIES = 256
_memo: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
_memo_lock = threading.Lock()


def memo(actor: Actor, key: tuple[Any, ...], compute: Callable[[], T]) -> T:
    """Frames and figures derived from warm rollups, shared by every session of this process.

    Reshaping a rollup and building its plotly figure is most of a page run's CPU, and every session's
    script shares one interpreter; with 20 sessions on the same filters this is done once. `key` must
    name all the result depends on (the rollup's `as_of`, the filters); the database and the actor's
    scope are added here. Callers must not mutate what they get back."""
    full = (db_key(), actor_key(actor), *key)
    with _memo_lock:
        if full in _memo:
            _memo.move_to_end(full)
            return _memo[full]  # type: ignore[no-any-return]
    value = compute()
    with _memo_lock:
        _memo[full] = value
        while len(_memo) > MEMO_ENTRIES:
            _memo.popitem(last=False)
    return value


def invalidate() -> None:
    """Forget cached reads after an action changed data, so the next render shows it."""
    _cached.clear()
    with _memo_lock:
        _memo.clear()
