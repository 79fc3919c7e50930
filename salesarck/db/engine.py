"""Engines built from settings: the seed's pool limits, pooler-safe, with clear connection errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from salesarck.config import Settings, load_settings, redact_url
from salesarck.errors import DatabaseUnavailable

MAX_CONNECTIONS = 10  # the seed's pg.Pool max
IDLE_RECYCLE_SECONDS = 20  # the seed's idle timeout: connections older than this are replaced
CONNECT_TIMEOUT_SECONDS = 15  # the seed's connection timeout


def resolve_url(settings: Settings, *, for_migrations: bool = False) -> URL:
    """The URL in use: DATABASE_URL (or DIRECT_DATABASE_URL for migrations), else the embedded server."""
    url = settings.migration_url if for_migrations else settings.runtime_url
    if url is not None:
        return url
    from salesarck.db.embedded import embedded_url

    return embedded_url(settings.home)


def make_engine(url: URL, *, pooler: bool = False, echo: bool = False, role: str | None = None) -> Engine:
    """An engine with the seed's client settings. `pooler` disables server-side prepared statements;
    `role` runs every session as that (least-privilege) role."""
    connect_args: dict[str, object] = {
        "connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "application_name": "salesarck",
    }
    if pooler:
        # transaction poolers (PgBouncer, Supavisor) cannot keep prepared statements or startup
        # options across transactions; such servers run in UTC already (Supabase does)
        connect_args["prepare_threshold"] = None
    else:
        # `now()` defaults must store UTC in `timestamp without time zone` columns
        connect_args["options"] = "-c TimeZone=UTC" + (f" -c role={role}" if role else "")
    return sa.create_engine(
        url,
        pool_size=MAX_CONNECTIONS,
        max_overflow=0,
        pool_recycle=IDLE_RECYCLE_SECONDS,
        pool_pre_ping=True,
        pool_timeout=CONNECT_TIMEOUT_SECONDS,
        connect_args=connect_args,
        echo=echo,
    )


def engine_from_settings(settings: Settings | None = None, *, for_migrations: bool = False) -> Engine:
    """Build the engine the CLI, app and notebooks use; checks it can connect."""
    settings = settings or load_settings()
    url = resolve_url(settings, for_migrations=for_migrations)
    role = None if for_migrations else settings.runtime_role
    engine = make_engine(url, pooler=settings.uses_pooler(url), role=role)
    check_connection(engine)
    return engine


def check_connection(engine: Engine) -> None:
    """Connect once, turning driver errors into one clear sentence (no password in it)."""
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
    except (OperationalError, DBAPIError) as exc:
        raise DatabaseUnavailable(describe_connect_error(exc, engine.url)) from None


def describe_connect_error(exc: BaseException, url: URL) -> str:
    """Name the likely cause: bad credentials, missing database, or an unreachable server."""
    detail = str(getattr(exc, "orig", exc)).strip().splitlines()
    first = detail[0] if detail else type(exc).__name__
    where = redact_url(url)
    low = first.lower()
    if "authentication" in low or ("role" in low and "does not exist" in low):
        return f"the database refused the credentials for {where}"
    if "does not exist" in low and "database" in low:
        return f"the database named in {where} does not exist"
    if "timeout" in low or "timed out" in low:
        return f"the database at {where} did not answer within {CONNECT_TIMEOUT_SECONDS} s"
    return f"cannot reach the database at {where}: {first}"


@contextmanager
def begin(engine: Engine) -> Iterator[Connection]:
    """One database transaction: commit on success, roll back on any error."""
    with engine.begin() as conn:
        yield conn
