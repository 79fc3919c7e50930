"""SalesArck Recon: the Streamlit app (`streamlit run app.py`). Pages are thin: the package decides."""

from __future__ import annotations

import streamlit as st

from salesarck.db import migrate
from salesarck.db.session import open_engine


@st.cache_resource
def _engine():  # type: ignore[no-untyped-def]
    return open_engine()


st.set_page_config(page_title="SalesArck Recon", layout="wide")
st.title("SalesArck Recon")
engine = _engine()
st.metric("Schema revision", migrate.current_revision(engine) or "none")
