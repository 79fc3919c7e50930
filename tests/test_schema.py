"""The migrated schema is exactly the seed's, plus the guards; models and migrations agree."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError

from salesarck.db import migrate
from salesarck.db.all_models import metadata
from salesarck.db.engine import make_engine
from tests.factories import make_rule, make_tenant, make_transaction, make_user, make_wallet

CHECK_SCHEMA = Path(__file__).resolve().parents[2] / "shared" / "tools" / "check_schema.py"


def test_check_schema_tool_finds_no_shortfall(db_url: URL) -> None:
    if not CHECK_SCHEMA.exists():
        pytest.skip("../shared/tools/check_schema.py is not beside this checkout")
    dsn = db_url.set(drivername="postgresql").render_as_string(hide_password=False)
    out = subprocess.run([sys.executable, str(CHECK_SCHEMA), dsn], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 shortfalls" in out.stdout


def test_models_and_migrations_agree(engine: Engine) -> None:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
        diff = compare_metadata(ctx, metadata)
    assert diff == []


def test_walk_base_head_base(empty_db_url: URL) -> None:
    eng = make_engine(empty_db_url)
    try:
        assert migrate.upgrade(eng) == (None, migrate.head_revision())
        assert migrate.downgrade(eng, "base") is None
        tables = set(sa.inspect(eng).get_table_names())
        assert tables <= {"alembic_version"}
        assert migrate.upgrade(eng)[1] == migrate.head_revision()
    finally:
        eng.dispose()


def _refused(engine: Engine, sql: str, params: dict[str, object]) -> str:
    with pytest.raises(DBAPIError) as info, engine.begin() as conn:
        conn.execute(sa.text(sql), params)
    return str(info.value.orig)


def test_ledger_and_audit_are_append_only(engine: Engine) -> None:
    with engine.begin() as conn:
        wallet = make_wallet(conn)
        user = make_user(conn, role="admin")
        conn.execute(sa.text("insert into wallet_ledger (wallet_id, entry_type, points) values (:w, 'credit', 5)"),
                     {"w": wallet["id"]})
        conn.execute(sa.text("insert into admin_audit_logs (actor_user_id, action) values (:u, 'x.y')"),
                     {"u": user["id"]})
    for table in ("wallet_ledger", "admin_audit_logs"):
        assert "append-only" in _refused(engine, f"update {table} set created_at = now()", {})
        assert "append-only" in _refused(engine, f"delete from {table}", {})
        assert "append-only" in _refused(engine, f"truncate {table} cascade", {})
    with engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from wallet_ledger")).scalar() == 1
        assert conn.execute(sa.text("select count(*) from admin_audit_logs")).scalar() == 1


@pytest.mark.parametrize("points,entry_type", [(0, "credit"), (-5, "debit"), (5, "refund")])
def test_ledger_checks(engine: Engine, points: int, entry_type: str) -> None:
    with engine.begin() as conn:
        wallet = make_wallet(conn)
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(sa.text("insert into wallet_ledger (wallet_id, entry_type, points) values (:w, :t, :p)"),
                     {"w": wallet["id"], "t": entry_type, "p": points})


def test_one_active_rule_per_tenant(engine: Engine) -> None:
    with engine.begin() as conn:
        tenant = make_tenant(conn)
        make_rule(conn, tenant["id"], version=1)
        make_rule(conn, tenant["id"], version=2, is_active=False)
    with pytest.raises(IntegrityError), engine.begin() as conn:
        make_rule(conn, tenant["id"], version=3, is_active=True)
    with pytest.raises(IntegrityError), engine.begin() as conn:
        make_rule(conn, tenant["id"], version=2, is_active=False)


def test_duplicate_provider_transaction_refused(engine: Engine) -> None:
    with engine.begin() as conn:
        tenant = make_tenant(conn)
        make_transaction(conn, tenant["id"], provider_transaction_id="p-1")
        other = make_tenant(conn)
        make_transaction(conn, other["id"], provider_transaction_id="p-1")  # other tenant: fine
        make_transaction(conn, tenant["id"], provider="clover", provider_transaction_id="p-1")  # other provider
    with pytest.raises(IntegrityError), engine.begin() as conn:
        make_transaction(conn, tenant["id"], provider_transaction_id="p-1")


def test_defaults_and_utc(engine: Engine) -> None:
    with engine.begin() as conn:
        tenant_id = conn.execute(sa.text("insert into tenants (name) values ('T') returning id")).scalar_one()
        row = conn.execute(sa.text("select country, status, created_at, now() at time zone 'utc' as utc_now "
                                   "from tenants where id = :i"), {"i": tenant_id}).one()
    assert isinstance(tenant_id, uuid.UUID)
    assert (row.country, row.status) == ("US", "active")
    assert abs((row.utc_now - row.created_at).total_seconds()) < 60
