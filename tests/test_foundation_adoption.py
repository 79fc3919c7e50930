"""Adopting a database the existing Drizzle system created: recognise 0000/0001/0002, stamp, upgrade."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL

from salesarck.db import migrate
from salesarck.db.engine import make_engine
from salesarck.errors import SchemaError

DRIZZLE = Path(__file__).parent / "fixtures" / "drizzle"
FILES = ["0000_puzzling_proudstar.sql", "0001_lovely_patch.sql", "0002_tired_cannonball.sql"]


def _drizzle(url: URL, upto: int, extra_sql: str = "") -> None:
    """Apply Drizzle's migrations 0..upto the way drizzle-kit does, journal included."""
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("create schema if not exists drizzle")
        c.execute("create table drizzle.__drizzle_migrations (id serial primary key, hash text not null,"
                  " created_at bigint)")
        for i, name in enumerate(FILES[: upto + 1]):
            for stmt in (DRIZZLE / name).read_text().split("--> statement-breakpoint"):
                if stmt.strip():
                    c.execute(stmt)  # type: ignore[call-overload]
            c.execute("insert into drizzle.__drizzle_migrations (hash, created_at) values (%s, %s)",
                      (f"hash{i}", 1700000000000 + i))
        if extra_sql:
            c.execute(extra_sql)  # type: ignore[call-overload]


@pytest.mark.parametrize("level", [0, 1, 2])
def test_adopts_each_seed_level_and_keeps_data(empty_db_url: URL, level: int) -> None:
    _drizzle(empty_db_url, level,
             "insert into tenants (id, name) values ('00000000-0000-0000-0000-000000000001', 'Existing Cafe')")
    eng = make_engine(empty_db_url)
    try:
        adopted, now = migrate.upgrade(eng)
        assert adopted == f"000{level}"
        assert now == migrate.head_revision()
        with eng.connect() as conn:
            assert conn.execute(sa.text("select name from tenants")).scalar_one() == "Existing Cafe"
            cols = {c["name"] for c in sa.inspect(conn).get_columns("pos_connections")}
            assert "square_payments_watermark_at" in cols
        # the guards of 0003 now hold on the adopted database
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), eng.begin() as conn:
            conn.execute(sa.text("truncate admin_audit_logs"))
        # a second upgrade is a no-op
        assert migrate.upgrade(eng) == (None, migrate.head_revision())
    finally:
        eng.dispose()


@pytest.mark.parametrize(
    "extra,message",
    [
        ("alter table tenants add column pos_provider_preference text", "partial"),
        ("drop table idempotency_keys", "seed tables missing: idempotency_keys"),
        ("alter table wallets add column loyalty_tier text", "unknown columns ['loyalty_tier']"),
        ("alter table users drop column mobile", "lacks columns ['mobile']"),
    ],
)
def test_refuses_unrecognisable_schema_and_changes_nothing(empty_db_url: URL, extra: str, message: str) -> None:
    _drizzle(empty_db_url, 0, extra)
    eng = make_engine(empty_db_url)
    try:
        with pytest.raises(SchemaError, match="unrecognised schema") as info:
            migrate.upgrade(eng)
        assert message in str(info.value)
        assert not sa.inspect(eng).has_table("alembic_version")
    finally:
        eng.dispose()


def test_journal_without_tables_is_refused(empty_db_url: URL) -> None:
    dsn = empty_db_url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("create schema drizzle")
        c.execute("create table drizzle.__drizzle_migrations (id serial primary key, hash text)")
    eng = make_engine(empty_db_url)
    try:
        with pytest.raises(SchemaError, match="journal"):
            migrate.upgrade(eng)
    finally:
        eng.dispose()
