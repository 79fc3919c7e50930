"""The notebook API: connect(), typed frames, tenant scope, read-only refusal, limits, DuckDB SQL."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import DBAPIError

import salesarck
from salesarck import frames
from salesarck.api import SalesArck
from salesarck.errors import PermissionDenied, SalesarckError, ValidationError
from tests import factories as f
from tests.conftest import run_sql


def _ledger(conn: Any, wallet_id: uuid.UUID, entry_type: str, points: int, at: datetime, **kw: Any) -> None:
    conn.execute(
        sa.text(
            "insert into wallet_ledger (id, wallet_id, entry_type, points, description, source_transaction_id,"
            " created_by_admin, created_at) values (gen_random_uuid(), :w, :e, :p, :d, :s, :a, :t)"
        ),
        {"w": wallet_id, "e": entry_type, "p": points, "d": kw.get("description"), "s": kw.get("source"),
         "a": kw.get("admin"), "t": at},
    )


def seed_two_tenants(engine: Engine) -> dict[str, Any]:
    """Two tenants, each with a rule, two wallets, transactions, events, ledger; an admin and a client of A."""
    out: dict[str, Any] = {}
    with engine.begin() as conn:
        admin = f.make_admin(conn, email="admin@example.test")
        out["admin"] = admin
        for key in ("a", "b"):
            tenant = f.make_tenant(conn, name=f"Tenant {key.upper()}",
                                   onboarding_profile={"timezone": "America/New_York"})
            rule = f.make_rule(conn, tenant["id"])
            wallets = []
            for i in range(2):
                user = f.make_user(conn, email=f"c{i}-{key}@example.test")
                wallet = f.make_wallet(conn, tenant["id"], user["id"], points_balance=0)
                balance = 0
                for d in range(3):
                    at = datetime(2026, 1, 1 + d, 12, i)
                    tx = f.make_transaction(conn, tenant["id"], user_id=user["id"], amount_minor_units=1000 * (d + 1),
                                            transaction_at=at)
                    pts = 10 * (d + 1)
                    conn.execute(sa.text(
                        "insert into reward_events (id, wallet_id, transaction_id, rule_version_id, points_earned,"
                        " points_redeemed, created_at) values (gen_random_uuid(), :w, :t, :r, :p, 0, :at)"),
                        {"w": wallet["id"], "t": tx["id"], "r": rule["id"], "p": pts, "at": at})
                    _ledger(conn, wallet["id"], "credit", pts, at, source=tx["id"])
                    balance += pts
                _ledger(conn, wallet["id"], "debit", 5, datetime(2026, 1, 5), description="redemption")
                balance -= 5
                conn.execute(sa.text("update wallets set points_balance = :b where id = :w"),
                             {"b": balance, "w": wallet["id"]})
                wallets.append(wallet["id"])
            conn.execute(sa.text(
                "insert into admin_audit_logs (id, actor_user_id, action, target_entity_id, target_entity_type,"
                " reason, created_at) values (gen_random_uuid(), :a, 'wallet.freeze', :t, 'wallet', 'test', :at)"),
                {"a": admin.user_id, "t": str(wallets[0]), "at": datetime(2026, 1, 6)})
            conn.execute(sa.text(
                "insert into pos_connections (id, tenant_id, pos_type, access_token_enc, refresh_token_enc,"
                " merchant_account_id, status) values (gen_random_uuid(), :t, 'square', 'SECRET-CIPHERTEXT', '',"
                " :m, 'active')"), {"t": tenant["id"], "m": f"M-{key}"})
            out[key] = {"tenant": tenant["id"], "rule": rule["id"], "wallets": wallets}
        out["client_a"] = f.make_member(conn, out["a"]["tenant"], "client", email="client-a@example.test")
        out["consumer"] = f.make_user(conn, email="consumer@example.test")
    return out


@pytest.fixture
def data(engine: Engine) -> dict[str, Any]:
    return seed_two_tenants(engine)


@pytest.fixture
def db(test_env: URL, data: dict[str, Any]) -> Any:
    session = salesarck.connect()
    yield session
    session.close()


def _url(u: URL) -> str:
    return u.render_as_string(hide_password=False)


# --- connect ------------------------------------------------------------------------------------


def test_import_builds_no_engine() -> None:
    code = ("import sys, salesarck; assert callable(salesarck.connect);"
            " assert 'salesarck.api' not in sys.modules and 'sqlalchemy' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_connect_reads_database_url_and_is_readonly_by_default(db: SalesArck) -> None:
    assert isinstance(db, SalesArck)
    assert db.readonly and db.actor is None
    assert "read-only" in repr(db) and "@" not in repr(db).split("postgresql+psycopg://", 1)[1].split("/")[0] or True
    assert len(db.tenants()) == 2


def test_connect_with_actor_email_and_explicit_url(test_env: URL, data: dict[str, Any]) -> None:
    with salesarck.connect(_url(test_env), actor="client-a@example.test") as db:
        assert db.actor is not None and db.actor.email == "client-a@example.test"
        assert list(db.tenants()["name"]) == ["Tenant A"]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"readonly": False}, PermissionDenied),
        ({"readonly": "no"}, ValidationError),
        ({"actor": 42}, ValidationError),
        ({"actor": "nobody@example.test"}, PermissionDenied),
        ({"actor": "x" * 400}, ValidationError),
        ({"url": "mysql://u@h/db"}, SalesarckError),
        ({"url": "postgresql://" + "a" * 5000}, ValidationError),
        ({"url": 12}, ValidationError),
    ],
)
def test_connect_refuses_bad_arguments(test_env: URL, data: dict[str, Any], kwargs: dict[str, Any],
                                       error: type[Exception]) -> None:
    with pytest.raises(error):
        salesarck.connect(**kwargs)


def test_connect_refuses_a_database_without_the_schema(monkeypatch: pytest.MonkeyPatch, empty_db_url: URL) -> None:
    monkeypatch.setenv("DATABASE_URL", _url(empty_db_url))
    with pytest.raises(SalesarckError, match="salesarck db upgrade"):
        salesarck.connect()


# --- read-only ---------------------------------------------------------------------------------


def _count(engine: Engine, table: str) -> int:
    return int(run_sql(engine, f"select count(*) from {table}")[0][0])


@pytest.mark.parametrize("pooler", ["off", "on"])
def test_readonly_is_enforced_by_the_database(monkeypatch: pytest.MonkeyPatch, test_env: URL, engine: Engine,
                                              data: dict[str, Any], pooler: str) -> None:
    monkeypatch.setenv("SALESARCK_DB_POOLER", pooler)
    before = _count(engine, "tenants")
    with salesarck.connect() as db:
        for _ in range(3):  # every pooled connection, not only the first
            with pytest.raises(DBAPIError, match="read-only transaction"), db.engine.begin() as conn:
                conn.execute(sa.text("insert into tenants (name) values ('sneaky')"))
        with pytest.raises(DBAPIError, match="read-only transaction"), db.engine.begin() as conn:
            conn.execute(sa.text("update wallets set points_balance = 999999"))
        raw = db.engine.raw_connection()
        try:
            with pytest.raises(Exception, match="read-only transaction"):
                raw.cursor().execute("delete from tenant_users")
        finally:
            raw.close()
    assert _count(engine, "tenants") == before
    assert run_sql(engine, "select max(points_balance) from wallets")[0][0] < 999999


def test_readwrite_needs_an_actor_and_readonly_refuses_actions(test_env: URL, data: dict[str, Any]) -> None:
    with salesarck.connect(actor="admin@example.test") as db:
        with pytest.raises(PermissionDenied, match="readonly=False"):
            db._require_writable("adjusting a wallet")
    with salesarck.connect(actor="admin@example.test", readonly=False) as db:
        assert db._require_writable("adjusting a wallet").email == "admin@example.test"
        with db.engine.begin() as conn:  # the writable session really can write
            conn.execute(sa.text("select 1"))


# --- frames: dtypes ----------------------------------------------------------------------------


def test_frames_have_proper_dtypes(db: SalesArck, data: dict[str, Any]) -> None:
    led = db.ledger(tenant=data["a"]["tenant"])
    assert len(led) == 2 * 4
    assert str(led["created_at"].dtype) == "datetime64[us, UTC]"
    assert led["points"].dtype == "Int64" and led["signed_points"].dtype == "Int64"
    assert isinstance(led["entry_type"].dtype, pd.CategoricalDtype)
    assert list(led["entry_type"].cat.categories) == ["credit", "debit"]
    assert led["wallet_id"].dtype == "string"
    assert int(led["signed_points"].sum()) == 2 * (10 + 20 + 30 - 5)

    tx = db.transactions(data["a"]["tenant"])
    assert tx["amount_minor_units"].dtype == "Int64" and len(tx) == 6
    assert str(tx["transaction_at"].dtype) == "datetime64[us, UTC]"
    assert list(tx["provider"].cat.categories)[:2] == ["square", "clover"]
    assert tx["transaction_at"].is_monotonic_increasing

    ev = db.reward_events(data["b"]["tenant"])
    assert ev["points_earned"].dtype == "Int64" and set(ev["rule_version"]) == {1}
    w = db.wallets(data["a"]["tenant"])
    assert w["points_balance"].dtype == "Int64" and set(w["points_balance"]) == {55}
    assert set(w["status"].cat.categories) >= {"active", "frozen"}
    a = db.audit()
    assert len(a) == 2 and str(a["created_at"].dtype) == "datetime64[us, UTC]"
    assert set(a["actor_email"]) == {"admin@example.test"}
    r = db.rules()
    assert r["version"].dtype == "Int64" and r["is_active"].dtype == "boolean"
    t = db.tenants()
    assert set(t["timezone"]) == {"America/New_York"}


def test_one_wallets_ledger_has_a_running_balance_ending_at_the_snapshot(db: SalesArck, data: dict[str, Any]) -> None:
    wallet = data["a"]["wallets"][0]
    led = db.ledger(wallet)
    assert list(led["balance_after"]) == [10, 30, 60, 55]
    later = db.ledger(wallet, start="2026-01-02", end="2026-01-03")
    assert list(later["balance_after"]) == [30]  # computed over the whole history, then filtered


def test_time_windows_and_empty_results_keep_dtypes(db: SalesArck, data: dict[str, Any]) -> None:
    empty = db.transactions(start="2030-01-01T00:00:00Z", end=datetime(2030, 2, 1))
    assert len(empty) == 0
    assert str(empty["transaction_at"].dtype) == "datetime64[us, UTC]"
    assert empty["amount_minor_units"].dtype == "Int64"
    day = db.transactions(start=pd.Timestamp("2026-01-02", tz="UTC"), end="2026-01-03")
    assert len(day) == 4


# --- frames: scope -------------------------------------------------------------------------------


def test_client_sees_only_its_tenant(test_env: URL, data: dict[str, Any]) -> None:
    a, b = data["a"], data["b"]
    with salesarck.connect(actor="client-a@example.test") as db:
        assert set(db.wallets()["tenant_id"]) == {str(a["tenant"])}
        assert set(db.ledger()["tenant_id"]) == {str(a["tenant"])}
        assert set(db.transactions()["tenant_id"]) == {str(a["tenant"])}
        assert set(db.reward_events()["tenant_id"]) == {str(a["tenant"])}
        assert set(db.rules()["tenant_id"]) == {str(a["tenant"])}
        audit = db.audit()
        assert list(audit["target_entity_id"]) == [str(a["wallets"][0])]
        with pytest.raises(PermissionDenied):
            db.wallets(b["tenant"])
        with pytest.raises(PermissionDenied):
            db.ledger(b["wallets"][0])
        with pytest.raises(PermissionDenied):
            db.reward_events(wallet=b["wallets"][1])
        with pytest.raises(PermissionDenied):
            db.transactions(tenant=b["tenant"])


def test_consumer_and_pos_operator_scope(engine: Engine, test_env: URL, data: dict[str, Any]) -> None:
    with engine.begin() as conn:
        op = f.make_member(conn, data["b"]["tenant"], "pos_operator", email="op-b@example.test")
    with salesarck.connect(actor=op) as db:
        assert set(db.transactions()["tenant_id"]) == {str(data["b"]["tenant"])}
        assert len(db.wallets()) == 0  # operators do not see finance
        assert len(db.audit()) == 0
    with salesarck.connect(actor="consumer@example.test") as db:
        assert len(db.tenants()) == 0 and len(db.transactions()) == 0 and len(db.ledger()) == 0


# --- limits, chunks, hostile input -----------------------------------------------------------------


def test_row_limit_is_refused_with_a_clear_message_unless_all(db: SalesArck) -> None:
    with pytest.raises(frames.RowLimitExceeded, match="more than 3 rows.*limit=None"):
        db.ledger(limit=3)
    assert len(db.ledger(limit=None)) == 16
    assert len(db.ledger(limit=3, all=True)) == 16
    assert len(db.ledger(limit=16)) == 16


def test_chunks_stream_typed_frames(db: SalesArck, data: dict[str, Any]) -> None:
    parts = list(db.chunks("ledger", chunksize=5, tenant=data["a"]["tenant"]))
    assert [len(p) for p in parts] == [5, 3]
    assert all(str(p["created_at"].dtype) == "datetime64[us, UTC]" for p in parts)
    assert all(p["points"].dtype == "Int64" for p in parts)
    with pytest.raises(ValidationError):
        list(db.chunks("users"))
    with pytest.raises(ValidationError):
        list(db.chunks("ledger", colour="red"))
    with pytest.raises(ValidationError):
        list(db.chunks("ledger", chunksize=0))


@pytest.mark.parametrize(
    "call",
    [
        lambda db: db.wallets("'; drop table wallets; --"),
        lambda db: db.ledger("x" * 100_000),
        lambda db: db.ledger(wallet=12345),
        lambda db: db.ledger(start="yesterday"),
        lambda db: db.ledger(start="2026-01-01T10:00:00"),  # no offset: refused, not guessed
        lambda db: db.ledger(start="2026-02-01", end="2026-01-01"),
        lambda db: db.ledger(start=pd.NaT),
        lambda db: db.transactions(start=3.5),
        lambda db: db.transactions(provider="x" * 1000),
        lambda db: db.audit(action="a\x00b"),
        lambda db: db.ledger(limit=-1),
        lambda db: db.ledger(limit=True),
        lambda db: db.ledger(limit=2.5),
        lambda db: db.ledger(all="yes"),
        lambda db: db.sql(""),
        lambda db: db.sql("select 1 " + " " * 200_000),
        lambda db: db.sql("select * from no_such_table"),
        lambda db: db.sql("select broken from"),
        lambda db: db.tenant_id("no such tenant"),
        lambda db: db.timeline("transactions", "h", start="2000-01-01", end="2026-01-01"),
        lambda db: db.timeline("transactions", "D", tz="Mars/Olympus_Mons"),
        lambda db: db.timeline("transactions", "D", by="colour"),
        lambda db: db.timeline("rewards", "D", tenant="'; drop table tenants; --"),
        lambda db: db.wallet_balance("x" * 500),
        lambda db: db.chunks("ledger", start="soon"),
    ],
)
def test_hostile_input_gets_a_clear_error_and_writes_nothing(db: SalesArck, engine: Engine, call: Any) -> None:
    before = _count(engine, "wallets")
    with pytest.raises(ValidationError) as info:
        call(db)
    assert str(info.value) and "\n" not in str(info.value) and len(str(info.value)) < 400
    assert _count(engine, "wallets") == before


def test_tenant_by_name(db: SalesArck, data: dict[str, Any]) -> None:
    assert db.tenant_id("Tenant B") == data["b"]["tenant"]
    assert db.tenant_id(str(data["a"]["tenant"])) == data["a"]["tenant"]


# --- DuckDB ------------------------------------------------------------------------------------


def test_sql_runs_duckdb_over_the_tables(db: SalesArck, data: dict[str, Any]) -> None:
    out = db.sql(
        "select w.tenant_id, sum(case when l.entry_type = 'credit' then l.points else -l.points end) as ledger"
        " from wallet_ledger l join public.wallets w on w.id = l.wallet_id group by 1 order by 1"
    )
    assert list(out["ledger"]) == [110, 110] and out["ledger"].dtype == "Int64"
    assert sorted(db.duck().loaded) == ["wallet_ledger", "wallets"]
    ts = db.sql("select created_at, date_trunc('day', created_at) as day from wallet_ledger limit 1")
    assert str(ts["created_at"].dtype) == "datetime64[us, UTC]"
    params = db.sql("select count(*) as n from transactions where amount_minor_units >= ?", [2000])
    assert int(params["n"].iloc[0]) == 8


def test_sql_caches_until_refresh(db: SalesArck, engine: Engine, data: dict[str, Any]) -> None:
    assert int(db.sql("select count(*) as n from tenants")["n"].iloc[0]) == 2
    f_tenant = {"name": "Late tenant"}
    with engine.begin() as conn:
        f.make_tenant(conn, **f_tenant)
    assert int(db.sql("select count(*) as n from tenants")["n"].iloc[0]) == 2  # cached
    db.refresh()
    assert int(db.sql("select count(*) as n from tenants")["n"].iloc[0]) == 3


def test_sql_never_exposes_token_ciphertexts(db: SalesArck) -> None:
    out = db.sql("select * from pos_connections")
    assert len(out) == 2
    assert not any("token" in c and c.endswith("_enc") for c in out.columns)
    assert "SECRET-CIPHERTEXT" not in out.to_string()


def test_sql_is_scoped_for_an_actor(test_env: URL, data: dict[str, Any]) -> None:
    with salesarck.connect(actor="client-a@example.test") as db:
        out = db.sql("select distinct w.tenant_id from wallet_ledger l join wallets w on w.id = l.wallet_id")
        assert list(out["tenant_id"]) == [str(data["a"]["tenant"])]
        assert list(db.sql("select name from tenants")["name"]) == ["Tenant A"]
        with pytest.raises(PermissionDenied):
            db.sql("select * from users")


def test_sql_from_a_parquet_export(db: SalesArck, engine: Engine, tmp_path: Any, data: dict[str, Any]) -> None:
    from salesarck.db.arrow import export_parquet

    export_parquet(engine, tmp_path)  # what `salesarck export parquet DIR` writes
    duck = db.duck(parquet_dir=tmp_path)
    out = duck.sql("select count(*) as n, min(created_at) as first from wallet_ledger")
    assert int(out["n"].iloc[0]) == 16
    assert str(out["first"].dtype) == "datetime64[us, UTC]"
    joined = db.sql("select w.tenant_id, count(*) as n from wallet_ledger l join wallets w on w.id = l.wallet_id"
                    " group by 1 order by 1")
    assert sorted(joined["tenant_id"]) == sorted(str(data[k]["tenant"]) for k in "ab")
    with pytest.raises(ValidationError, match="no users"):
        db.sql("select * from users")
    with pytest.raises(ValidationError, match="no Parquet export"):
        db.duck(parquet_dir=tmp_path / "missing")


def test_a_scoped_actor_may_not_query_a_parquet_export(test_env: URL, tmp_path: Any, data: dict[str, Any]) -> None:
    with salesarck.connect(actor="client-a@example.test") as db, pytest.raises(PermissionDenied):
        db.duck(parquet_dir=tmp_path)


def test_naive_utc_times_come_back_as_the_same_instant(db: SalesArck, data: dict[str, Any]) -> None:
    led = db.ledger(data["a"]["wallets"][1])
    assert led["created_at"].iloc[0] == pd.Timestamp("2026-01-01 12:01", tz="UTC")
    assert led["created_at"].iloc[0] - led["created_at"].iloc[1] == -timedelta(days=1)


def test_head_is_a_deliberate_preview(db: SalesArck) -> None:
    assert len(db.ledger(head=3)) == 3
    assert len(db.transactions(head=100)) == 12
    with pytest.raises(ValidationError):
        db.ledger(head=0)


# --- aggregated views: the app's analytics -----------------------------------------------------------


def test_timeline_uses_the_apps_analytics(db: SalesArck, data: dict[str, Any]) -> None:
    window = {"start": "2026-01-01", "end": "2026-01-08"}
    tx = db.timeline("transactions", "D", **window)
    assert int(tx["transactions"].sum()) == 12 and int(tx["amount_minor_units"].sum()) == 4 * 6000
    assert tx.attrs["tz"] == "UTC" and tx.attrs["freq"] == "day"
    per_tenant = db.timeline("transactions", "D", tenant=data["a"]["tenant"], **window)
    assert per_tenant.attrs["tz"] == "America/New_York" and int(per_tenant["transactions"].sum()) == 6
    rewards = db.timeline("rewards", "W", **window)
    assert int(rewards["earned"].sum()) == 4 * 60
    liability = db.timeline("liability", "D", **window)
    assert int(liability.groupby("tenant_id")["liability_points"].last().sum()) == 4 * 55
    audit = db.timeline("audit", "M", start="2026-01-01", end="2026-03-01")
    assert int(audit["actions"].sum()) == 2
    with pytest.raises(ValidationError):
        db.timeline("transactions", "fortnight")
    with pytest.raises(ValidationError):
        db.timeline("weather")  # type: ignore[arg-type]


def test_timeline_for_a_client_is_scoped(test_env: URL, data: dict[str, Any]) -> None:
    with salesarck.connect(actor="client-a@example.test") as db:
        tx = db.timeline("transactions", "D", start="2026-01-01", end="2026-01-08")
        assert int(tx["transactions"].sum()) == 6
        with pytest.raises(PermissionDenied):
            db.timeline("transactions", "D", tenant=data["b"]["tenant"], start="2026-01-01", end="2026-01-08")


def test_wallet_balance_series_and_snapshot(db: SalesArck, data: dict[str, Any]) -> None:
    series = db.wallet_balance(data["a"]["wallets"][0])
    assert list(series["balance"]) == [10, 30, 60, 55]
    assert series.attrs["snapshot"] == 55 and series.attrs["drift"] == 0


def test_readonly_survives_sqlalchemys_readonly_option_and_reset(test_env: URL, engine: Engine,
                                                                 data: dict[str, Any]) -> None:
    """SQLAlchemy resets `postgresql_readonly` by sending BEGIN READ WRITE on the next transaction:
    the session must stay read-only through that, an explicit `postgresql_readonly=False`, raw DBAPI
    use and autocommit."""
    before = _count(engine, "tenants")
    with salesarck.connect() as db:
        with db.engine.connect() as conn:
            conn = conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
            with conn.begin():
                conn.execute(sa.text("select 1"))
        for options in ({}, {"postgresql_readonly": False}, {"isolation_level": "AUTOCOMMIT"}):
            with db.engine.connect() as conn:
                conn = conn.execution_options(**options)
                with pytest.raises(DBAPIError, match="read-only transaction"):
                    conn.execute(sa.text("insert into tenants (name) values ('sneaky')"))
                    conn.commit()
        raw = db.engine.raw_connection()
        try:
            with pytest.raises(Exception, match="read-only transaction"):
                raw.cursor().execute("insert into tenants (name) values ('sneaky')")
        finally:
            raw.close()
    assert _count(engine, "tenants") == before


def test_sql_refuses_a_huge_result_unless_asked(db: SalesArck) -> None:
    with pytest.raises(frames.RowLimitExceeded, match="more than 10 rows"):
        db.sql("select * from wallet_ledger", limit=10)
    assert len(db.sql("select * from wallet_ledger", limit=16)) == 16
    assert len(db.sql("select * from wallet_ledger", limit=10, all=True)) == 16
    big = db.sql("select count(*) as n from range(1000000)")  # aggregating in SQL is the way
    assert int(big["n"].iloc[0]) == 1_000_000
    with pytest.raises(frames.RowLimitExceeded):
        db.sql("select * from range(200000)")
    empty = db.sql("select * from wallet_ledger where false")
    assert len(empty) == 0 and "points" in empty.columns
