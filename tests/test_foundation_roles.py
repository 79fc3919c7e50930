"""The least-privilege runtime role cannot rewrite history, nor switch the guards off."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from salesarck.db.engine import make_engine
from tests.factories import make_user, make_wallet

ROLE = "salesarck_runtime"


def test_runtime_role_may_insert_but_not_rewrite_ledger_or_audit(db_url: URL) -> None:
    owner = make_engine(db_url)
    runtime = make_engine(db_url, role=ROLE)
    try:
        with runtime.begin() as conn:
            assert conn.execute(sa.text("select current_user")).scalar() == ROLE
            wallet = make_wallet(conn)
            admin = make_user(conn, role="admin")
            conn.execute(sa.text("insert into wallet_ledger (wallet_id, entry_type, points) values (:w,'credit',3)"),
                         {"w": wallet["id"]})
            conn.execute(sa.text("insert into admin_audit_logs (actor_user_id, action) values (:u, 'x')"),
                         {"u": admin["id"]})
            conn.execute(sa.text("update wallets set points_balance = 3 where id = :w"), {"w": wallet["id"]})
        for sql in (
            "update wallet_ledger set points = 9",
            "delete from wallet_ledger",
            "truncate wallet_ledger",
            "update admin_audit_logs set reason = 'x'",
            "delete from admin_audit_logs",
            "truncate admin_audit_logs",
            "alter table wallet_ledger disable trigger wallet_ledger_refuse_update_delete",
            "alter table admin_audit_logs disable trigger all",
            "drop trigger wallet_ledger_refuse_update_delete on wallet_ledger",
            "set session_replication_role = replica",
        ):
            with pytest.raises(DBAPIError, match="permission denied|must be owner|append-only"), runtime.begin() as c:
                c.execute(sa.text(sql))
        with owner.connect() as conn:
            assert conn.execute(sa.text("select count(*) from wallet_ledger")).scalar() == 1
            owns = conn.execute(sa.text("select count(*) from pg_tables where tableowner = :r"), {"r": ROLE}).scalar()
            assert owns == 0
    finally:
        runtime.dispose()
        owner.dispose()
