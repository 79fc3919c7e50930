"""Square polling sync against the fake Square over real HTTP on 127.0.0.1, on a real PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from salesarck.errors import Conflict, NotFound, PermissionDenied, ValidationError
from salesarck.pos.connections import load_tokens
from salesarck.pos.sync import sync_connection
from salesarck.pos.sync_runs import SyncAlreadyRunning, SyncProgress, acquire_lease
from tests.test_sync_support import (  # noqa: F401  (fixtures)
    World,
    count,
    db_state,
    fake_fixture,
    fake_server_fixture,
    fast_client_factory,
    world_fixture,
)


def _sync(w: World, **kw):  # type: ignore[no-untyped-def]
    kw.setdefault("client_factory", fast_client_factory())
    return sync_connection(w.engine, w.connection.id, actor=kw.pop("actor", w.operator), settings=w.settings, **kw)


def _completed(w: World) -> set[str]:
    return set(w.fake.payment_ids(status="COMPLETED"))


def test_full_sync_posts_every_completed_payment_with_details(world: World) -> None:
    w = world
    seen: list[SyncProgress] = []
    result = _sync(w, progress=lambda p: seen.append(SyncProgress(**p.as_dict())))
    assert result.ok, result.error
    with w.engine.connect() as conn:
        stored = set(conn.execute(sa.text("select provider_transaction_id from transactions")).scalars())
        conn_row = conn.execute(sa.text("select * from pos_connections")).mappings().one()
        run = conn.execute(sa.text("select * from sync_runs")).mappings().one()
        with_items = conn.execute(sa.text("select count(*) from transactions where line_items is not null")).scalar()
        by_mobile = conn.execute(sa.text(
            "select count(*) from transactions x join users u on u.id = x.user_id where u.email is null")).scalar()
        debits = conn.execute(sa.text("select count(*) from wallet_ledger where entry_type = 'debit'")).scalar()
    assert stored == _completed(w)
    assert result.posted == len(stored) and result.payments_seen == len(w.fake.payments)
    assert conn_row["square_payments_watermark_at"] is not None and conn_row["last_synced_at"] is not None
    assert run["status"] == "succeeded" and run["posted"] == len(stored) and run["finished_at"] is not None
    assert with_items > 0 and by_mobile > 0  # orders' line items and customers' phones were used
    assert result.points_credited > 0
    completed_refunds = [r for r in w.fake.refunds.values() if r["status"] == "COMPLETED"]
    assert completed_refunds and debits > 0
    # progress went up page by page, per location, and ended done
    assert [p.pages for p in seen if p.phase == "payments"] == sorted(p.pages for p in seen if p.phase == "payments")
    assert seen[-1].phase == "done" and seen[-1].pages == result.pages >= len(w.fake.locations)


def test_batch_size_does_not_change_the_outcome(world: World, databases, engine) -> None:  # type: ignore[no-untyped-def]
    from salesarck.db.engine import make_engine
    from tests.test_sync_support import build_world

    w = world
    assert _sync(w).ok
    other = make_engine(databases.clone())
    try:
        w2 = build_world(other, w.fake, w.base_url)
        one_by_one = sync_connection(other, w2.connection.id, actor=None, settings=w2.settings, batch_size=7,
                                     client_factory=fast_client_factory())
        assert one_by_one.ok
        assert db_state(other) == db_state(w.engine)
    finally:
        other.dispose()


def test_resync_changes_nothing(world: World) -> None:
    w = world
    assert _sync(w).ok
    before = db_state(w.engine)
    second = _sync(w)
    assert second.ok and second.posted == 0 and second.points_credited == 0 and second.points_debited == 0
    assert second.duplicates == second.payments_seen > 0
    after = db_state(w.engine)
    assert after == before


def test_late_completion_offline_payment_and_refund_on_old_payment(world: World) -> None:
    w = world
    assert _sync(w).ok
    approved = w.fake.payment_ids(status="APPROVED")[0]
    w.fake.set_status(approved, "COMPLETED")
    offline = w.fake.add_payment(created_at=datetime.now(UTC) - timedelta(hours=48), offline=True, amount=2500)
    old = min((w.fake.payments[p] for p in _completed(w) if "refund_ids" not in w.fake.payments[p]
               and w.fake.payments[p].get("customer_id")), key=lambda p: p["created_at"])
    refund = w.fake.refund_payment(old["id"], old["amount_money"]["amount"])
    before_debits = count(w.engine, "select count(*) from wallet_ledger where entry_type = 'debit'")
    result = _sync(w)
    assert result.ok, result.error
    with w.engine.connect() as conn:
        ids = set(conn.execute(sa.text("select provider_transaction_id from transactions")).scalars())
        refund_row = conn.execute(sa.text("select amount_minor_units, is_completed from transaction_refunds"
                                          " where provider_refund_id = :r"), {"r": refund["id"]}).one()
        offline_at = conn.execute(sa.text("select transaction_at from transactions where provider_transaction_id"
                                          " = :p"), {"p": offline["id"]}).scalar_one()
    assert approved in ids and offline["id"] in ids
    assert offline_at < datetime.now(UTC).replace(tzinfo=None) - timedelta(hours=47)
    assert refund_row == (old["amount_money"]["amount"], True)
    assert result.posted == 2
    if count(w.engine, "select count(*) from transactions where provider_transaction_id = :p and user_id is not null",
             {"p": old["id"]}):
        assert count(w.engine, "select count(*) from wallet_ledger where entry_type = 'debit'") == before_debits + 1


def test_pending_refund_moves_points_only_once_completed(world: World) -> None:
    w = world
    assert _sync(w).ok
    pid = next(p for p in _completed(w) if "refund_ids" not in w.fake.payments[p])
    refund = w.fake.refund_payment(pid, 100, status="PENDING")
    assert _sync(w).ok
    assert count(w.engine, "select count(*) from transaction_refunds where provider_refund_id = :r and is_completed",
                 {"r": refund["id"]}) == 0
    w.fake.set_refund_status(refund["id"], "COMPLETED")
    assert _sync(w).ok
    assert count(w.engine, "select count(*) from transaction_refunds where provider_refund_id = :r and is_completed",
                 {"r": refund["id"]}) == 1


def test_survives_429_and_500(world: World) -> None:
    w = world
    w.fake.faults.rate_limited = 2  # then two 500s: the fifth and last attempt succeeds
    w.fake.faults.retry_after = "0"
    w.fake.faults.server_errors = 2
    result = _sync(w)
    assert result.ok, result.error
    assert count(w.engine, "select count(*) from transactions") == len(_completed(w))
    run = w.engine.connect().execute(sa.text("select summary from sync_runs")).scalar_one()
    assert run["retries"] == 4


def test_eventual_consistency_is_covered_by_the_lookback(world: World) -> None:
    w = world
    assert _sync(w).ok
    w.fake.faults.consistency_delay_seconds = 3600  # invisible to lists for now
    late = w.fake.add_payment(amount=1234)
    assert _sync(w).ok
    assert count(w.engine, "select count(*) from transactions where provider_transaction_id = :p",
                 {"p": late["id"]}) == 0
    w.fake._visible_at.clear()  # it shows up, with an updated_at behind the new watermark
    assert _sync(w).ok
    assert count(w.engine, "select count(*) from transactions where provider_transaction_id = :p",
                 {"p": late["id"]}) == 1


def test_malformed_records_are_skipped_counted_and_write_nothing(world: World) -> None:
    w = world
    bad = {
        "neg": w.fake.add_payment(raw={"amount_money": {"amount": -5, "currency": "USD"}})["id"],
        "big": w.fake.add_payment(raw={"amount_money": {"amount": 2**31, "currency": "USD"}})["id"],
        "cur": w.fake.add_payment(raw={"amount_money": {"amount": 500, "currency": "ZZZ"}})["id"],
        "none": w.fake.add_payment(raw={"amount_money": None})["id"],
        "str": w.fake.add_payment(raw={"amount_money": {"amount": "12.50", "currency": "USD"}})["id"],
        "status": w.fake.add_payment(raw={"status": "WEIRD"})["id"],
        "id": w.fake.add_payment(raw={"refund_ids": "not-a-list"})["id"],
    }
    result = _sync(w)
    assert result.ok, result.error
    assert result.skipped == len(bad)
    reported = {r["provider_id"] for r in result.skipped_records}
    assert reported == set(bad.values())
    with w.engine.connect() as conn:
        stored = set(conn.execute(sa.text("select provider_transaction_id from transactions")).scalars())
        keys = set(conn.execute(sa.text("select key from idempotency_keys")).scalars())
    assert not stored & set(bad.values())
    assert not any(k.endswith(tuple(bad.values())) for k in keys)
    assert stored == _completed(w) - set(bad.values())


def test_two_concurrent_syncs_never_both_run(world: World) -> None:
    w = world
    gate = w.fake.gate("/v2/payments", after=1)
    results: list[object] = []
    t = threading.Thread(target=lambda: results.append(_sync(w)))
    t.start()
    try:
        assert gate.reached.wait(30)
        with pytest.raises(SyncAlreadyRunning, match="already running"):
            _sync(w)
        with pytest.raises(SyncAlreadyRunning):
            _sync(w, actor=None)
    finally:
        gate.release()
        t.join(60)
    assert results and results[0].ok  # type: ignore[attr-defined]
    assert count(w.engine, "select count(*) from sync_runs") == 1


def test_expired_lease_is_taken_over(world: World) -> None:
    w = world
    lease = acquire_lease(w.engine, connection_id=w.connection.id, tenant_id=w.tenant_id, provider="square",
                          actor_user_id=None, lease_seconds=1)
    with w.engine.begin() as conn:
        conn.execute(sa.text("update sync_runs set lease_expires_at = lease_expires_at - interval '1 hour'"))
    assert _sync(w).ok
    with w.engine.connect() as conn:
        statuses = dict(conn.execute(sa.text("select id, status from sync_runs")).all())
    assert statuses[lease.run_id] == "abandoned"
    assert sorted(statuses.values()) == ["abandoned", "succeeded"]


def test_revoked_token_marks_connection_and_stops(world: World) -> None:
    w = world
    w.fake.revoke_token()
    result = _sync(w)
    assert not result.ok and "revoked" in (result.error or "")
    assert w.fake.stats["payment_pages"] == 0
    with w.engine.connect() as conn:
        status = conn.execute(sa.text("select status from pos_connections")).scalar_one()
        event = conn.execute(sa.text("select from_status, to_status, error_code, actor_user_id from "
                                     "pos_connection_events where event = 'status_changed'")).one()
    assert status == "disconnected"
    assert tuple(event) == ("active", "disconnected", "ACCESS_TOKEN_REVOKED", None)
    with pytest.raises(Conflict, match="disconnected"):
        _sync(w)


def test_expired_token_is_refreshed_and_stored(world: World) -> None:
    w = world
    w.fake.expire_token()
    result = _sync(w)
    assert result.ok, result.error
    assert w.fake.stats["refresh"] == 1
    with w.engine.connect() as conn:
        tokens = load_tokens(conn, w.connection.id, w.keyring)
        events = conn.execute(sa.text("select event from pos_connection_events order by created_at")).scalars().all()
    assert tokens.access_token.get_secret_value() == w.fake.access_token
    assert tokens.expires_at is not None and "tokens_refreshed" in events


def test_expired_token_with_failing_refresh_marks_token_expired(world: World) -> None:
    w = world
    w.fake.expire_token()
    w.fake.client_secret = "another-secret"
    result = _sync(w)
    assert not result.ok and "refresh failed" in (result.error or "")
    assert count(w.engine, "select count(*) from pos_connections where status = 'token_expired'") == 1
    assert count(w.engine, "select count(*) from transactions") == 0


def test_repeated_failures_mark_error_then_recover(world: World) -> None:
    w = world
    for _ in range(3):
        w.fake.faults.server_errors = 2
        result = _sync(w, client_factory=fast_client_factory(max_attempts=2))
        assert not result.ok and "HTTP 500" in (result.error or "")
    assert count(w.engine, "select count(*) from pos_connections where status = 'error'") == 1
    assert _sync(w).ok
    assert count(w.engine, "select count(*) from pos_connections where status = 'active'") == 1


def test_repeated_cursor_stops_hard(world: World) -> None:
    w = world
    for _ in range(120):  # more than one page in the main location
        w.fake.add_payment(amount=100)
    w.fake.faults.repeat_cursor = True
    result = _sync(w)
    assert not result.ok and "cursor" in (result.error or "")
    assert count(w.engine, "select count(*) from pos_connections where square_payments_watermark_at is null") == 1


def test_permissions_and_hostile_input(world: World, engine: sa.engine.Engine) -> None:
    w = world
    with pytest.raises(PermissionDenied):
        _sync(w, actor=w.client_user)  # may view, may not sync
    from tests.factories import make_member, make_tenant

    with engine.begin() as conn:
        other = make_member(conn, make_tenant(conn)["id"], role="pos_operator")
    with pytest.raises(NotFound):
        _sync(w, actor=other)
    import uuid

    with pytest.raises(NotFound):
        sync_connection(w.engine, uuid.uuid4(), actor=w.admin, settings=w.settings)
    with pytest.raises(ValidationError, match="future"):
        _sync(w, since=datetime(2999, 1, 1))
    assert count(w.engine, "select count(*) from sync_runs") == 0


def test_missing_or_wrong_key_fails_the_run_clearly(world: World) -> None:
    w = world
    from tests.test_sync_support import key_spec, make_settings

    result = sync_connection(w.engine, w.connection.id, actor=None,
                             settings=make_settings(w.base_url, key_spec("k1")))
    assert not result.ok and str(w.connection.id) in (result.error or "")
    assert w.fake.access_token not in (result.error or "")
    result = sync_connection(w.engine, w.connection.id, actor=None,
                             settings=make_settings(w.base_url, key_spec("k9")))
    assert not result.ok and "'k1'" in (result.error or "")
    result = sync_connection(w.engine, w.connection.id, actor=None, settings=make_settings(w.base_url, ""))
    assert not result.ok and "SALESARCK_ENCRYPTION_KEYS" in (result.error or "")
    assert count(w.engine, "select count(*) from transactions") == 0


def test_token_close_to_expiry_is_refreshed_before_use(world: World) -> None:
    w = world
    with w.engine.begin() as conn:
        conn.execute(sa.text("update pos_connections set token_expires_at = now() at time zone 'utc'"
                             " + interval '2 minutes'"))
    old_token = w.fake.access_token
    result = _sync(w)
    assert result.ok, result.error
    assert w.fake.stats["refresh"] == 1 and w.fake.access_token != old_token
    with w.engine.connect() as conn:
        tokens = load_tokens(conn, w.connection.id, w.keyring)
    assert tokens.access_token.get_secret_value() == w.fake.access_token
    assert tokens.expires_at is not None and tokens.expires_at > datetime.now(UTC).replace(tzinfo=None) + timedelta(days=1)


def test_a_failing_progress_callback_does_not_stop_the_sync(world: World) -> None:
    def broken(p: SyncProgress) -> None:
        raise RuntimeError("progress bar crashed")

    result = _sync(world, progress=broken)
    assert result.ok and result.posted > 0


def test_failed_early_refresh_keeps_using_a_still_valid_token(world: World) -> None:
    w = world
    with w.engine.begin() as conn:
        conn.execute(sa.text("update pos_connections set token_expires_at = now() at time zone 'utc'"
                             " + interval '2 minutes'"))
    w.fake.client_secret = "rotated-elsewhere"  # the refresh is refused
    result = _sync(w)
    assert result.ok, result.error
    assert count(w.engine, "select count(*) from pos_connections where status = 'active'") == 1
    assert count(w.engine, "select count(*) from transactions") == len(_completed(w))
