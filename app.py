"""SalesArck Recon: the Streamlit app (`streamlit run app.py`). Pages are thin: the package decides.

This script runs first on every rerun: it resolves who is acting, offers only the pages the
permission matrix allows, and refuses everyone else politely with nothing else on screen.
"""

from __future__ import annotations

import streamlit as st

from salesarck.webapp import rollups
from salesarck.webapp.context import establish
from salesarck.webapp.errors import show_error
from salesarck.webapp.registry import visible_pages

st.set_page_config(page_title="SalesArck Recon", page_icon=":material/balance:", layout="wide")


def _sign_in() -> None:
    st.title("SalesArck Recon")
    st.write("Reconciliation, rewards and POS sync for the SalesArck loyalty platform.")
    st.button("Sign in", type="primary", on_click=st.login, icon=":material/login:")


def _refused(message: str) -> None:
    def page() -> None:
        st.title("SalesArck Recon")
        st.warning(message, icon=":material/lock:")
        if st.user.get("is_logged_in"):
            st.button("Sign out", on_click=st.logout)

    return page  # type: ignore[return-value]


try:
    identity, access = establish()
except Exception as exc:  # noqa: BLE001  e.g. the database is down: say so, show nothing else
    st.title("SalesArck Recon")
    show_error(exc)
    st.navigation([st.Page(lambda: None, title="Unavailable", url_path="unavailable")], position="hidden")
    st.stop()

if identity is None:
    st.navigation([st.Page(_sign_in, title="Sign in", url_path="sign-in")], position="hidden").run()
    st.stop()

if access.actor is None:
    st.navigation([st.Page(_refused(access.refusal or "You do not have access."), title="No access",  # type: ignore[arg-type]
                           url_path="no-access")], position="hidden").run()
    st.stop()

actor = access.actor
rollups.start()  # warm the heavy daily rollups in the background (once per process)
specs = visible_pages(actor)
pages = {spec.key: st.Page(spec.path, title=spec.title, icon=spec.icon, url_path=spec.key,
                           default=(i == 0)) for i, spec in enumerate(specs)}
# Our own sidebar navigation (st.navigation's is hidden, and so is the legacy `pages/` one).
current = st.navigation(list(pages.values()), position="hidden")

with st.sidebar:
    st.markdown("### :material/balance: SalesArck Recon")
    section = None
    for spec in specs:
        if spec.section != section:
            section = spec.section
            st.caption(section.upper())
        st.page_link(pages[spec.key], label=spec.title, icon=spec.icon)
    st.divider()
    role = "admin" if actor.is_admin else ", ".join(sorted(set(actor.tenant_roles.values())))
    st.caption(f"Signed in as **{actor.email}** · {role}")
    if identity.mode == "oidc":
        st.button("Sign out", on_click=st.logout, icon=":material/logout:")

if identity.mode == "local":
    st.info(f"Local mode: acting as **{actor.email}** (SALESARCK_LOCAL_USER). "
            "Configure `[auth]` in Streamlit's secrets to require sign-in.", icon=":material/person:")

current.run()
