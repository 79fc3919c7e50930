"""Who is using the app: an OIDC identity (`st.login`, when `[auth]` is configured) or the local user.

The identity's email maps to `users`; the Actor built from it (with its tenant roles) is what every
package call receives. Users who may see nothing get a polite refusal instead of an Actor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import streamlit as st
from sqlalchemy.engine import Engine

from salesarck.authz import Actor, Permission, load_actor
from salesarck.config import current_settings
from salesarck.errors import PermissionDenied, ValidationError


@dataclass(frozen=True)
class Identity:
    """An authenticated email and how we know it."""

    email: str
    mode: Literal["oidc", "local"]


@dataclass(frozen=True)
class Access:
    """The outcome of resolving an identity: an Actor who may use the app, or why not."""

    actor: Actor | None
    refusal: str | None = None


def auth_configured() -> bool:
    """True when Streamlit's secrets hold an `[auth]` section (OIDC sign-in)."""
    try:
        return "auth" in st.secrets
    except Exception:  # noqa: BLE001  no secrets file at all means local mode
        return False


def current_identity() -> Identity | None:
    """The signed-in identity; None when sign-in is configured and nobody is signed in yet."""
    if auth_configured():
        if not st.user.get("is_logged_in"):
            return None
        email = st.user.get("email")
        return Identity(str(email or ""), "oidc")
    return Identity(current_settings().local_user, "local")


REFUSALS = {
    "unknown": "We could not find an account for {email}. Ask an administrator to add you.",
    "consumer": "SalesArck Recon is for staff of the businesses we serve; customer accounts cannot use it.",
    "pending_approval": "Your account ({email}) is waiting for an administrator's approval. "
                        "You will be able to sign in once it is approved.",
    "suspended": "Your account ({email}) is suspended. Contact an administrator if you think this is a mistake.",
    "no_tenant": "Your account ({email}) is not a member of any business yet. Ask an administrator to add you.",
}


ACTOR_TTL_SECONDS = 30  # a role change or suspension reaches open sessions within this


@st.cache_data(ttl=ACTOR_TTL_SECONDS, show_spinner=False, max_entries=1000)
def _load_actor(_engine: Engine, db: str, email: str) -> Actor:
    with _engine.connect() as conn:
        return load_actor(conn, email)


def resolve_access(engine: Engine, identity: Identity) -> Access:
    """Map an identity to an Actor who may use at least one page, or a polite refusal."""
    from salesarck.webapp.resources import db_key

    email = identity.email.strip()
    try:
        actor = _load_actor(engine, db_key(), email)
    except (PermissionDenied, ValidationError):
        return Access(None, REFUSALS["unknown"].format(email=email or "this sign-in"))
    if actor.status in {"pending_approval", "suspended"}:
        return Access(None, REFUSALS[actor.status].format(email=email))
    if not actor.is_active:
        return Access(None, REFUSALS["suspended"].format(email=email))
    if actor.role == "consumer":
        return Access(None, REFUSALS["consumer"])
    if not actor.is_admin and not any(actor.can(p) for p in _any_view()):
        return Access(None, REFUSALS["no_tenant"].format(email=email))
    return Access(actor)


def _any_view() -> tuple[Permission, ...]:
    return (Permission.VIEW_FINANCE, Permission.VIEW_TRANSACTIONS, Permission.VIEW_SYNC, Permission.VIEW_AUDIT)
