"""Placeholder until the domain lands."""

from __future__ import annotations

import streamlit as st

from salesarck.webapp.context import page_actor

actor = page_actor("reconciliation")
st.title("reconciliation")
