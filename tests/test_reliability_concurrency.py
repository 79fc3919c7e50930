"""Concurrency: 8 transactions each posting several overlapping batches (payments, then refunds, in
different orders: what the webhook processor does inside one batch transaction) never deadlock and post
each accrual once; 8 webhook processors on one backlog handle each event once with no deadlock
failures. The fix under test: posting takes its tenant's advisory lock first (one global lock order)."""

from __future__ import annotations

import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from salesarck.pos.fake.square import sign_webhook
from salesarck.pos.webhooks.store import build_square_event, store_events
from salesarck.rewards.posting import post_payments, post_refunds
from tests.factories import make_rule, make_tenant, make_user
from tests.test_reliability_kill import _zero_findings
from tests.test_rewards_posting import check_invariants, pay, refund
from tests.webhook_support import NOTIFICATION_URL, SIGNATURE_KEY, process_in_parallel, provider_env


def test_multi_batch_transactions_in_parallel_do_not_deadlock(engine: Engine) -> None:
    with engine.begin() as conn:
        tenants = [make_tenant(conn)["id"] for _ in range(2)]
        for t in tenants:
            make_rule(conn, t, 1, config={"conversionRate": 1, "roundingPolicy": "floor"})
        emails = [make_user(conn)["email"] for _ in range(6)]
    n = 40
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def run(k: int) -> None:
        recs = [pay(f"p{i}", 100 + i, email=emails[(i * 5 + k) % 6]) for i in range(n)]
        chunks = [recs[i::3] for i in range(3)]
        if k % 2:
            chunks = [list(reversed(c)) for c in reversed(chunks)]
        refunds = [refund(f"r{i}", f"p{i}", 50) for i in range(k % 4, n, 4)]
        try:
            start.wait()
            with engine.begin() as conn:
                for t in sorted(tenants):  # several tenants in one transaction: in tenant id order
                    for chunk in chunks:
                        post_payments(conn, tenant_id=t, records=chunk, arrival="webhook")
                    post_refunds(conn, tenant_id=t, provider="square", refunds=refunds, arrival="webhook")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(run, range(8)))
    assert [str(e)[:200] for e in errors] == []
    with engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from transactions")).scalar() == 2 * n
        check_invariants(conn)
        dup = conn.execute(sa.text("select count(*) from (select transaction_id from reward_events "
                                   "where points_earned > 0 group by 1 having count(*) > 1) d")).scalar()
        refunds_n = conn.execute(sa.text("select count(*) from transaction_refunds")).scalar()
    assert dup == 0
    assert refunds_n == 2 * n  # every payment was refunded by some thread (k % 4 covers all residues)
    _zero_findings(engine)


def test_eight_processors_on_one_backlog_no_deadlock(engine: Engine) -> None:
    with provider_env(engine, receiver=False, square_payments=20) as env:
        events = []
        for pid in env.square.payment_ids(status="COMPLETED")[:12]:
            for _ in range(3):  # distinct deliveries of the same payment, spread over the backlog
                ev = {**env.square.webhook_event("payment.updated", pid), "event_id": str(uuid.uuid4())}
                raw = json.dumps(ev).encode()
                events.append(build_square_event(tenant_id=env.square_tenant, payload=ev, raw_body=raw,
                                                 signature=sign_webhook(SIGNATURE_KEY, NOTIFICATION_URL, raw)))
        assert store_events(engine, events).stored == 36
        results = process_in_parallel(engine, env.settings, workers=8, batch_size=4)
        assert [e for r in results for e in r.errors] == []  # no deadlock, no other failure
        assert sum(r.processed for r in results) == 36  # each event handled exactly once
        with engine.connect() as conn:
            assert conn.execute(sa.text("select count(*) from pos_webhook_events_raw where not processed")
                                ).scalar() == 0
            assert conn.execute(sa.text("select count(*) from transactions")).scalar() == 12
            check_invariants(conn)
        _zero_findings(engine)


def test_eight_parallel_syncs_over_the_same_connections(engine: Engine) -> None:
    from salesarck.pos.sync import sync_connection
    from salesarck.pos.sync_runs import SyncAlreadyRunning

    with provider_env(engine, receiver=False, square_payments=60, clover_payments=40) as env:
        conns = [env.square_connection, env.clover_connection]
        start = threading.Barrier(8)
        outcomes: list[str] = []

        def run(k: int) -> None:
            start.wait()
            for cid in (conns if k % 2 else list(reversed(conns))):
                try:
                    res = sync_connection(engine, cid, actor=None, settings=env.settings)
                    outcomes.append("ok" if res.ok else f"failed: {res}")
                except SyncAlreadyRunning:
                    outcomes.append("busy")
                except Exception as exc:  # noqa: BLE001
                    outcomes.append(f"error: {type(exc).__name__}: {exc}"[:300])

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(run, range(8)))
        assert [o for o in outcomes if o not in ("ok", "busy")] == []
        assert "ok" in outcomes
        for cid in conns:  # a final sync of each connection completes
            assert sync_connection(engine, cid, actor=None, settings=env.settings).ok
        with engine.connect() as conn:
            dup = conn.execute(sa.text("select count(*) from (select transaction_id from reward_events "
                                       "where points_earned > 0 group by 1 having count(*) > 1) d")).scalar()
            running = conn.execute(sa.text("select count(*) from sync_runs where status = 'running'")).scalar()
            square_tx = conn.execute(sa.text("select count(*) from transactions where provider = 'square'")).scalar()
            check_invariants(conn)
        assert dup == 0 and running == 0
        assert square_tx == len(env.square.payment_ids(status="COMPLETED"))
        _zero_findings(engine)
