"""The benches' throwaway databases, on SALESARCK_BENCH_DATABASE_URL (default: the local PostgreSQL service)."""

from __future__ import annotations

import os

import psycopg
from sqlalchemy.engine import URL

from salesarck.config import normalize_database_url

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


def server_url() -> URL:
    return normalize_database_url(os.environ.get("SALESARCK_BENCH_DATABASE_URL", DEFAULT_SERVER))


def _admin(server: URL) -> psycopg.Connection:
    dsn = server.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    return psycopg.connect(dsn, autocommit=True)


def create_database(name: str, server: URL | None = None) -> URL:
    """A new, empty database `name` (a leftover of an earlier run is dropped first); its URL."""
    server = server or server_url()
    with _admin(server) as c:
        c.execute(f'drop database if exists "{name}" with (force)')
        c.execute(f'create database "{name}"')
    return server.set(database=name)


def drop_database(name: str, server: URL | None = None) -> None:
    with _admin(server or server_url()) as c:
        c.execute(f'drop database if exists "{name}" with (force)')
