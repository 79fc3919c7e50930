"""Test harness: a real PostgreSQL, one migrated template per run, a fresh clone per test.

`SALESARCK_TEST_DATABASE_URL` names a server to use (any database on it; we create our own);
without it an embedded PostgreSQL is started under `.pytest-pg/` (the fresh-machine path).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from hypothesis import settings as hypothesis_settings
from sqlalchemy.engine import URL, Engine

from salesarck.config import normalize_database_url
from salesarck.db import migrate
from salesarck.db.engine import make_engine

# CI replays the same examples every run (a red CI must be reproducible); locally hypothesis explores
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")

ROOT = Path(__file__).resolve().parents[1]
RUN_TAG = uuid.uuid4().hex[:8]


def _server_url() -> URL:
    raw = os.environ.get("SALESARCK_TEST_DATABASE_URL")
    if raw:
        return normalize_database_url(raw)
    from salesarck.db.embedded import embedded_url

    return embedded_url(ROOT / ".pytest-pg", stop_on_exit=False)


def _admin(url: URL) -> psycopg.Connection:
    return psycopg.connect(url.set(drivername="postgresql", database="postgres").render_as_string(False),
                           autocommit=True)


@pytest.fixture(scope="session")
def pg_server() -> URL:
    """URL of the PostgreSQL server the suite runs against."""
    return _server_url()


class Databases:
    """Creates throwaway databases on the test server, cloned from the migrated template."""

    def __init__(self, server: URL) -> None:
        self.server = server
        self.template = f"sa_tpl_{RUN_TAG}"
        self.created: list[str] = []
        self._n = 0

    def url(self, name: str) -> URL:
        return self.server.set(database=name)

    def create_empty(self) -> URL:
        name = self._name()
        with _admin(self.server) as c:
            c.execute(f'create database "{name}"')
        return self.url(name)

    def clone(self) -> URL:
        name = self._name()
        with _admin(self.server) as c:
            c.execute(f'create database "{name}" template "{self.template}"')
        return self.url(name)

    def _name(self) -> str:
        self._n += 1
        name = f"sa_t_{RUN_TAG}_{self._n}"
        self.created.append(name)
        return name

    def drop_all(self) -> None:
        with _admin(self.server) as c:
            for name in [*self.created, self.template]:
                c.execute(f'drop database if exists "{name}" with (force)')


@pytest.fixture(scope="session")
def databases(pg_server: URL) -> Iterator[Databases]:
    dbs = Databases(pg_server)
    with _admin(pg_server) as c:
        # leftovers of killed runs older than a day would otherwise pile up
        c.execute(f'create database "{dbs.template}"')
    tpl_engine = make_engine(dbs.url(dbs.template))
    migrate.upgrade(tpl_engine)
    tpl_engine.dispose()
    yield dbs
    dbs.drop_all()


@pytest.fixture
def db_url(databases: Databases) -> URL:
    """A fresh, migrated database of its own for this test."""
    return databases.clone()


@pytest.fixture
def engine(db_url: URL) -> Iterator[Engine]:
    """Engine on a fresh, migrated database; concurrent connections see each other's commits."""
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def empty_db_url(databases: Databases) -> URL:
    """A fresh database with no schema at all."""
    return databases.create_empty()


@pytest.fixture
def test_env(monkeypatch: pytest.MonkeyPatch, db_url: URL, tmp_path: Path) -> URL:
    """Point DATABASE_URL (and SALESARCK_HOME) at this test's database, for CLI and API tests."""
    monkeypatch.setenv("DATABASE_URL", db_url.render_as_string(hide_password=False))
    monkeypatch.setenv("SALESARCK_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DIRECT_DATABASE_URL", raising=False)
    return db_url


def run_sql(engine: Engine, sql: str, params: dict[str, object] | None = None) -> list[sa.Row]:
    with engine.begin() as conn:
        result = conn.execute(sa.text(sql), params or {})
        return list(result) if result.returns_rows else []
