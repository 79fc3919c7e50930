"""The processor: webhooks from the fake providers, over real HTTP, end in the state a poll gives,
exactly once, whatever the order, the duplicates or the number of processors."""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import httpx
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from salesarck.pos.fake.square import sign_webhook
from salesarck.pos.sync import sync_connection
from salesarck.pos.webhooks import processor
from salesarck.pos.webhooks.fetch import ProviderFetcher
from salesarck.pos.webhooks.store import build_square_event, store_events
from salesarck.timeutil import utcnow
from tests.conftest import Databases
from tests.webhook_support import (
    CLOVER_AUTH,
    NOTIFICATION_URL,
    SIGNATURE_KEY,
    Env,
    process_in_parallel,
    provider_env,
    state,
)


def _emit_square(env: Env, payment_ids: list[str], event_type: str = "payment.updated") -> None:
    for pid in payment_ids:
        r = env.square.emit_webhook(env.receiver_url + "/webhooks/square", signature_key=SIGNATURE_KEY,
                                    event_type=event_type, object_id=pid, notification_url=NOTIFICATION_URL)
        assert r.status_code == 200, r.text


def _process(env: Env) -> processor.BatchResult:
    return processor.process_now(env.engine, actor=None, settings=env.settings)


def _count(engine: Engine, sql: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(sql)).scalar_one())


def test_square_webhooks_then_poll_equal_poll_alone(engine: Engine, databases: Databases) -> None:
    from salesarck.db.engine import make_engine

    with provider_env(engine) as env:
        completed = env.square.payment_ids(status="COMPLETED")[:8]
        _emit_square(env, completed)
        result = _process(env)
        assert result.processed == 8 and result.failed == 0, result.errors
        assert _count(engine, "select count(*) from transactions") == 8
        assert _count(engine, "select count(*) from pos_webhook_events_raw where processed") == 8
        after_webhooks = state(engine)
        assert sync_connection(engine, env.square_connection, actor=None, settings=env.settings).ok
        both = state(engine)
        # the poll added the rest but changed nothing the webhooks had posted
        mine = {t[1] for t in after_webhooks["transactions"]}
        assert [t for t in both["transactions"] if t[1] in mine] == after_webhooks["transactions"]
        assert [p for p in both["points"] if p[0] in mine] == after_webhooks["points"]

        # a second database that only polls the same fake reaches exactly the same state
        other = make_engine(databases.clone())
        try:
            with engine.connect() as src, other.begin() as dst:
                for table in ("users", "tenants", "reward_rules", "pos_connections"):
                    rows = [dict(r._mapping) for r in src.execute(sa.text(f"select * from {table}"))]
                    cols = list(rows[0])
                    for r in rows:
                        if table == "pos_connections":  # a fresh connection: never synced
                            r["last_synced_at"] = r["square_payments_watermark_at"] = None
                        for k, v in r.items():
                            if isinstance(v, dict | list):
                                r[k] = json.dumps(v)
                    dst.execute(sa.text(f"insert into {table} ({', '.join(cols)}) values "
                                        f"({', '.join(':' + c for c in cols)})"), rows)
            assert sync_connection(other, env.square_connection, actor=None, settings=env.settings).ok
            assert state(other) == both
        finally:
            other.dispose()


def test_poll_then_webhook_changes_nothing(engine: Engine) -> None:
    with provider_env(engine) as env:
        assert sync_connection(engine, env.square_connection, actor=None, settings=env.settings).ok
        before = state(engine)
        _emit_square(env, env.square.payment_ids(status="COMPLETED")[:5])
        assert _process(env).processed == 5
        assert state(engine) == before


def test_a_thousand_deliveries_of_one_event_make_one_transaction_and_one_reward(engine: Engine) -> None:
    with provider_env(engine) as env:
        pid = env.square.payment_ids(status="COMPLETED")[0]
        body = json.dumps(env.square.webhook_event("payment.updated", pid)).encode()
        headers = {"content-type": "application/json",
                   "x-square-hmacsha256-signature": sign_webhook(SIGNATURE_KEY, NOTIFICATION_URL, body)}

        def deliver(n: int) -> list[int]:
            with httpx.Client(base_url=env.receiver_url, timeout=30) as c:
                return [c.post("/webhooks/square", content=body, headers=headers).status_code for _ in range(n)]

        with ThreadPoolExecutor(8) as pool:
            codes = [c for part in pool.map(deliver, [125] * 8) for c in part]
        assert codes == [200] * 1000
        assert _count(engine, "select count(*) from pos_webhook_events_raw") == 1
        _process(env)
        _process(env)
        assert _count(engine, "select count(*) from transactions") == 1
        assert _count(engine, "select count(*) from reward_events") == 1
        assert _count(engine, "select count(*) from wallet_ledger") <= 1


def test_racing_processors_handle_each_event_once(engine: Engine) -> None:
    with provider_env(engine, receiver=False) as env:
        events = []
        for pid in env.square.payment_ids(status="COMPLETED")[:15]:
            ev = env.square.webhook_event("payment.updated", pid)
            for _ in range(3):  # distinct deliveries (event ids) of the same payment
                ev = {**ev, "event_id": str(uuid.uuid4())}
                raw = json.dumps(ev).encode()
                events.append(build_square_event(tenant_id=env.square_tenant, payload=ev, raw_body=raw,
                                                 signature=sign_webhook(SIGNATURE_KEY, NOTIFICATION_URL, raw)))
        assert store_events(engine, events).stored == 45
        results = process_in_parallel(engine, env.settings, workers=4, batch_size=5)
        # a posting that lost a deadlock inside the rewards engine (retried in place up to 3 times) stays
        # unprocessed for a backed-off retry; drain those as the next worker loop would
        failed = sum(r.failed for r in results)
        assert all("deadlock" in e for r in results for e in r.errors), [e for r in results for e in r.errors]
        later = processor.process_pending(engine, fetcher=ProviderFetcher(engine, env.settings),
                                          now=utcnow() + timedelta(hours=1))
        assert later.failed == 0 and later.processed == failed
        assert sum(r.processed for r in results) + later.processed == 45  # each event handled once
        assert _count(engine, "select count(*) from pos_webhook_events_raw where not processed") == 0
        assert _count(engine, "select count(*) from pos_webhook_event_attempts where processed_at is null") == 0
        assert _count(engine, "select count(*) from transactions") == 15
        assert _count(engine, "select count(*) from reward_events where points_earned > 0") == _count(
            engine, "select count(*) from wallet_ledger where entry_type = 'credit'")
        assert _count(engine, "select count(*) from (select transaction_id from reward_events"
                              " where points_earned > 0 group by 1 having count(*) > 1) d") == 0


def test_clover_webhook_fetches_the_payment_and_matches_the_poll(engine: Engine) -> None:
    with provider_env(engine) as env:
        new = env.clover.add_payment(amount=2500)
        refunded = env.clover.payment_ids(result="SUCCESS")[0]
        env.clover.refund_payment(refunded, 100)
        r = env.clover.emit_webhook(env.receiver_url + "/webhooks/clover", auth_code=CLOVER_AUTH, events={
            env.clover.merchant_id: [(f"P:{new['id']}", "CREATE"), (f"P:{refunded}", "UPDATE"), ("O:XYZ", "UPDATE")]})
        assert r.status_code == 200 and r.json()["stored"] == 1
        result = _process(env)
        assert result.processed == 1 and result.failed == 0, result.errors
        with engine.connect() as conn:
            row = conn.execute(sa.text("select amount_minor_units, line_items, customer_ref from transactions"
                                       " where provider_transaction_id = :p"), {"p": new["id"]}).one()
        assert row.amount_minor_units == 2500 and row.line_items and row.customer_ref.get("email")
        before = state(engine)
        assert sync_connection(engine, env.clover_connection, actor=None, settings=env.settings).ok
        after = state(engine)
        mine = {t[1] for t in before["transactions"]}
        assert [t for t in after["transactions"] if t[1] in mine] == before["transactions"]
        assert [p for p in after["points"] if p[0] in mine] == before["points"]


def test_failures_back_off_then_dead_letter_then_replay(engine: Engine) -> None:
    with provider_env(engine) as env:
        env.clover.faults.server_errors = 10_000
        env.clover.emit_webhook(env.receiver_url + "/webhooks/clover", auth_code=CLOVER_AUTH, events={
            env.clover.merchant_id: [(f"P:{env.clover.payment_ids(result='SUCCESS')[0]}", "UPDATE")]})
        fetcher = ProviderFetcher(engine, env.settings, client_factory=None)
        from salesarck.pos.clover import CloverClient
        from salesarck.pos.http import RetryPolicy

        fetcher.client_factory = lambda url, tok: CloverClient(url, tok, policy=RetryPolicy(max_attempts=1))
        now = datetime(2030, 1, 1)
        for attempt in range(1, processor.MAX_ATTEMPTS + 1):
            res = processor.process_batch(engine, fetcher=fetcher, now=now)
            assert res.claimed == 1 and res.failed == 1
            nothing = processor.process_batch(engine, fetcher=fetcher, now=now)
            assert nothing.claimed == 0  # backing off
            with engine.connect() as conn:
                a = conn.execute(sa.text("select * from pos_webhook_event_attempts")).one()
            assert a.attempts == attempt and "500" in a.last_error
            if attempt < processor.MAX_ATTEMPTS:
                assert a.next_attempt_at == now + timedelta(seconds=processor.backoff_seconds(attempt))
                now = a.next_attempt_at
            else:
                assert a.dead_lettered_at is not None and a.next_attempt_at is None
        fetcher.close()
        assert processor.process_batch(engine, now=now + timedelta(days=30)).claimed == 0  # dead letters wait
        assert processor.backlog(engine)["dead_letters"] == 1
        assert len(processor.list_events(engine, actor=env.admin, state="dead")) == 1
        env.clover.faults.server_errors = 0
        out = processor.replay(engine, actor=env.admin, since=datetime(2000, 1, 1), settings=env.settings,
                               fetcher=ProviderFetcher(engine, env.settings))
        assert out.requeued == 1 and out.batch.processed == 1
        assert processor.backlog(engine)["dead_letters"] == 0
        assert _count(engine, "select count(*) from transactions") == 1


def test_replay_reverifies_signatures_and_changes_nothing(engine: Engine) -> None:
    with provider_env(engine) as env:
        pids = env.square.payment_ids(status="COMPLETED")[:3]
        _emit_square(env, pids)
        _process(env)
        before = state(engine)
        out = processor.replay(engine, actor=env.admin, since=datetime(2000, 1, 1), provider="square",
                               settings=env.settings, fetcher=ProviderFetcher(engine, env.settings))
        assert (out.selected, out.verified, out.requeued, out.batch.processed) == (3, 3, 3, 3)
        assert state(engine) == before
        with engine.begin() as conn:  # a stored signature that no longer matches the stored bytes
            conn.execute(sa.text("update pos_webhook_event_bodies set raw_body = raw_body || '\\x20'::bytea"
                                 " where event_id = (select min(event_id::text)::uuid from pos_webhook_event_bodies)"))
        out = processor.replay(engine, actor=env.admin, since=datetime(2000, 1, 1), settings=env.settings,
                               fetcher=ProviderFetcher(engine, env.settings))
        assert len(out.verify_failed) == 1 and out.requeued == 2
        assert state(engine) == before


def test_unmappable_event_is_dead_lettered_at_once(engine: Engine) -> None:
    with provider_env(engine, receiver=False) as env:
        ev = env.square.webhook_event("payment.updated", env.square.payment_ids(status="COMPLETED")[0])
        ev["data"]["object"]["payment"]["amount_money"] = {"amount": -5, "currency": "USD"}
        raw = json.dumps(ev).encode()
        store_events(engine, [build_square_event(tenant_id=env.square_tenant, payload=ev, raw_body=raw,
                                                 signature="x")])
        res = processor.process_batch(engine, fetcher=ProviderFetcher(engine, env.settings))
        assert (res.failed, res.dead_lettered) == (1, 1)
        assert _count(engine, "select count(*) from transactions") == 0
        assert _count(engine, "select count(*) from pos_webhook_events_raw") == 1  # never silently dropped


def test_events_without_the_object_are_fetched_and_clover_tokens_refreshed(engine: Engine) -> None:
    with provider_env(engine) as env:
        pid = env.square.payment_ids(status="COMPLETED")[0]
        ev = env.square.webhook_event("payment.updated", pid)
        del ev["data"]["object"]  # a notification that names the payment only
        raw = json.dumps(ev).encode()
        headers = {"content-type": "application/json",
                   "x-square-hmacsha256-signature": sign_webhook(SIGNATURE_KEY, NOTIFICATION_URL, raw)}
        assert httpx.post(env.receiver_url + "/webhooks/square", content=raw, headers=headers).status_code == 200
        cpay = env.clover.payment_ids(result="SUCCESS")[0]
        env.clover.expire_token()
        env.clover.emit_webhook(env.receiver_url + "/webhooks/clover", auth_code=CLOVER_AUTH,
                                events={env.clover.merchant_id: [(f"P:{cpay}", "UPDATE")]})
        result = _process(env)
        assert result.processed == 2 and result.failed == 0, result.errors
        assert {pid, cpay} <= _txn_ids(engine)
        assert env.clover.stats["refresh"] == 1


def test_clover_poll_then_webhook_changes_nothing(engine: Engine) -> None:
    with provider_env(engine) as env:
        assert sync_connection(engine, env.clover_connection, actor=None, settings=env.settings).ok
        before = state(engine)
        ids = env.clover.payment_ids()[:6]
        env.clover.emit_webhook(env.receiver_url + "/webhooks/clover", auth_code=CLOVER_AUTH,
                                events={env.clover.merchant_id: [(f"P:{p}", "UPDATE") for p in ids]})
        assert _process(env).processed == 1
        assert state(engine) == before


def test_a_revoked_clover_token_fails_the_event_and_marks_the_connection(engine: Engine) -> None:
    with provider_env(engine) as env:
        with engine.begin() as conn:  # a legacy token: nothing to refresh with
            conn.execute(sa.text("update pos_connections set refresh_token_enc = '' where id = :c"),
                         {"c": env.clover_connection})
        env.clover.expire_token()
        env.clover.emit_webhook(env.receiver_url + "/webhooks/clover", auth_code=CLOVER_AUTH,
                                events={env.clover.merchant_id: [(f"P:{env.clover.payment_ids()[0]}", "UPDATE")]})
        result = _process(env)
        assert result.failed == 1 and result.dead_lettered == 0 and "reconnect" in result.errors[0]
        with engine.connect() as conn:
            status = conn.execute(sa.text("select status from pos_connections where id = :c"),
                                  {"c": env.clover_connection}).scalar_one()
        assert status == "token_expired"


def _txn_ids(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(sa.text("select provider_transaction_id from transactions")).scalars())


def test_app_operations_process_now_and_retry_now(engine: Engine) -> None:
    from salesarck.pos.clover import CloverClient
    from salesarck.pos.http import RetryPolicy

    with provider_env(engine) as env:
        env.clover.faults.server_errors = 10_000
        env.clover.emit_webhook(env.receiver_url + "/webhooks/clover", auth_code=CLOVER_AUTH,
                                events={env.clover.merchant_id: [(f"P:{env.clover.payment_ids()[0]}", "UPDATE")]})
        fetcher = ProviderFetcher(engine, env.settings,
                                  client_factory=lambda url, tok: CloverClient(url, tok, policy=RetryPolicy(max_attempts=1)))
        assert processor.process_batch(engine, fetcher=fetcher).failed == 1
        fetcher.close()
        event_id = processor.list_events(engine, actor=env.admin, state="failed")[0]["id"]
        env.clover.faults.server_errors = 0
        assert processor.process_now(engine, actor=env.admin, settings=env.settings).claimed == 0  # backing off
        assert processor.retry_now(engine, actor=env.admin, settings=env.settings, event_id=event_id).processed == 1
        assert processor.backlog(engine, actor=env.admin)["pending"] == 0
        with engine.connect() as conn:
            assert conn.execute(sa.text("select count(*) from admin_audit_logs where action = 'webhooks.retry'")
                                ).scalar_one() == 1
