"""The provider-neutral sync-run machinery: the lease row, fencing, history and its scope."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from salesarck.errors import NotFound, ValidationError
from salesarck.pos.sync_runs import (
    LeaseLost,
    SyncAlreadyRunning,
    acquire_lease,
    get_run,
    list_runs,
    recent_failures,
)
from tests.factories import make_admin, make_member, make_tenant


@pytest.fixture
def conn_row(engine: Engine) -> dict[str, Any]:
    with engine.begin() as conn:
        tenant = make_tenant(conn)
        admin = make_admin(conn)
        cid = conn.execute(sa.text(
            "insert into pos_connections (tenant_id, pos_type, access_token_enc, refresh_token_enc,"
            " merchant_account_id, status) values (:t, 'clover', '', '', 'M1', 'active') returning id"),
            {"t": tenant["id"]}).scalar_one()
        viewer = make_member(conn, tenant["id"], role="client")
        outsider = make_member(conn, make_tenant(conn)["id"], role="pos_operator")
    return {"cid": cid, "tenant": tenant["id"], "admin": admin, "viewer": viewer, "outsider": outsider}


def _lease(engine: Engine, c: dict[str, Any], seconds: int = 120):  # type: ignore[no-untyped-def]
    return acquire_lease(engine, connection_id=c["cid"], tenant_id=c["tenant"], provider="clover",
                         actor_user_id=None, lease_seconds=seconds)


def test_only_one_of_many_concurrent_callers_gets_the_lease(engine: Engine, conn_row: dict[str, Any]) -> None:
    got: list[object] = []
    refused: list[object] = []
    barrier = threading.Barrier(6)

    def attempt() -> None:
        barrier.wait()
        try:
            got.append(_lease(engine, conn_row))
        except SyncAlreadyRunning as exc:
            refused.append(exc)

    threads = [threading.Thread(target=attempt) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(got) == 1 and len(refused) == 5
    assert "already running" in str(refused[0])


def test_a_taken_over_sync_cannot_commit(engine: Engine, conn_row: dict[str, Any]) -> None:
    old = _lease(engine, conn_row)
    with engine.begin() as conn:
        conn.execute(sa.text("update sync_runs set lease_expires_at = lease_expires_at - interval '1 hour'"))
    new = _lease(engine, conn_row)
    old.progress.posted = 99
    with pytest.raises(LeaseLost, match="lost its lease"), engine.begin() as conn:
        conn.execute(sa.text("update pos_connections set last_synced_at = now() where id = :i"),
                     {"i": conn_row["cid"]})
        old.checkpoint(conn)  # the fence: the whole transaction is rolled back
    with engine.connect() as conn:
        assert conn.execute(sa.text("select last_synced_at from pos_connections")).scalar() is None
        rows = dict(conn.execute(sa.text("select id, status from sync_runs")).all())
    assert rows == {old.run_id: "abandoned", new.run_id: "running"}
    with pytest.raises(LeaseLost):
        old.finish(ok=True)
    result = new.finish(ok=False, error="x" * 5000)
    assert result.status == "failed" and len(result.error or "") == 1000
    assert _lease(engine, conn_row).run_id not in rows  # free again


def test_history_counters_scope_and_failures(engine: Engine, conn_row: dict[str, Any]) -> None:
    for ok in (True, False, False):
        lease = _lease(engine, conn_row)
        lease.count(pages=2, payments_seen=150, posted=100)
        lease.add_skipped("P1", "bad amount")
        lease.heartbeat()
        lease.finish(ok=ok, error=None if ok else "boom")
    with engine.connect() as conn:
        assert recent_failures(conn, conn_row["cid"]) == 2
    runs = list_runs(engine, actor=conn_row["viewer"], connection_id=conn_row["cid"])
    assert [r["status"] for r in runs] == ["failed", "failed", "succeeded"]
    assert runs[-1]["posted"] == 100 and runs[-1]["summary"]["skipped_records"][0]["provider_id"] == "P1"
    assert list_runs(engine, actor=conn_row["outsider"]) == []
    assert len(list_runs(engine, actor=conn_row["admin"], tenant_id=conn_row["tenant"])) == 3
    with pytest.raises(NotFound):
        get_run(engine, runs[0]["id"], actor=conn_row["outsider"])
    assert get_run(engine, runs[0]["id"], actor=conn_row["viewer"])["error"] == "boom"
    for bad in (0, -1, 10_001):
        with pytest.raises(ValidationError):
            list_runs(engine, actor=conn_row["admin"], limit=bad)
    with pytest.raises(NotFound):
        get_run(engine, uuid.uuid4(), actor=conn_row["admin"])
