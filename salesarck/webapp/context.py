"""Per-run app context: who is acting, set by `app.py` before the page runs, checked by every page."""

from __future__ import annotations

import streamlit as st

from salesarck.authz import Actor
from salesarck.webapp.identity import Access, Identity, current_identity, resolve_access
from salesarck.webapp.registry import BY_KEY
from salesarck.webapp.resources import get_engine

_ACTOR = "_salesarck_actor"
_IDENTITY = "_salesarck_identity"


def establish() -> tuple[Identity | None, Access]:
    """Resolve this run's identity and actor (fresh every run, so a suspension takes effect at once)."""
    identity = current_identity()
    if identity is None:
        access = Access(None, None)
    else:
        access = resolve_access(get_engine(), identity)
    st.session_state[_ACTOR] = access.actor
    st.session_state[_IDENTITY] = identity
    return identity, access


def page_actor(page_key: str) -> Actor:
    """The actor for a page, or a polite stop when this actor may not open it."""
    spec = BY_KEY[page_key]
    actor = st.session_state.get(_ACTOR)
    if actor is None and _IDENTITY not in st.session_state:  # page run on its own, not via app.py
        actor = establish()[1].actor
    if not spec.allowed(actor):
        st.warning(f"You do not have access to {spec.title}.", icon=":material/lock:")
        st.stop()
    assert actor is not None
    return actor
