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


def _leave_legacy_pages_mode() -> None:
    """Hand a deep link on a fresh server's first load back to `app.py`.

    Streamlit decides per process, before `st.navigation` has ever run, whether a `pages/` folder
    means the legacy multipage mode; in that mode a first load of `/rewards` runs
    `pages/rewards.py` alone, without app.py's identity, navigation or banner. `st.navigation`
    clears the flag, so when a page sees it still set, app.py has not run: clear it and rerun.
    """
    try:
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:  # a future Streamlit without the legacy mode
        return
    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


def page_actor(page_key: str) -> Actor:
    """The actor for a page, or a polite stop when this actor may not open it."""
    _leave_legacy_pages_mode()
    spec = BY_KEY[page_key]
    actor = st.session_state.get(_ACTOR)
    if actor is None and _IDENTITY not in st.session_state:  # page run on its own, not via app.py
        actor = establish()[1].actor
    if not spec.allowed(actor):
        st.warning(f"You do not have access to {spec.title}.", icon=":material/lock:")
        st.stop()
    assert actor is not None
    return actor
