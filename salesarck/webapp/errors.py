"""Errors as friendly messages: a user's mistake gets its sentence, a bug gets a reference, never a traceback."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st

from salesarck.errors import DatabaseUnavailable, NotFound, PermissionDenied, SalesarckError, ValidationError

log = logging.getLogger("salesarck.app")


def show_error(exc: BaseException) -> None:
    """Render one error the way a user should see it."""
    if isinstance(exc, PermissionDenied):
        st.warning(f"Not allowed: {exc}", icon=":material/lock:")
    elif isinstance(exc, ValidationError):
        st.error(f"Please check your input: {exc}", icon=":material/edit:")
    elif isinstance(exc, NotFound):
        st.info(f"Not found: {exc}", icon=":material/search_off:")
    elif isinstance(exc, DatabaseUnavailable):
        st.error(f"The database is unavailable: {exc}. Start it (`salesarck db upgrade`) and reload.",
                 icon=":material/cloud_off:")
    elif isinstance(exc, SalesarckError):
        st.error(str(exc), icon=":material/error:")
    else:
        ref = uuid.uuid4().hex[:8]
        log.exception("unexpected error in the app (ref %s)", ref)
        st.error(f"Something went wrong on our side (reference {ref}). The details are in the server log; "
                 "please try again or tell the team.", icon=":material/bug_report:")


@contextmanager
def friendly() -> Iterator[None]:
    """Run a block of a page; anything it raises is shown as a message and the page goes on."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001  the one place the app turns errors into messages
        show_error(exc)  # st.rerun/st.stop raise BaseException subclasses and pass through untouched
