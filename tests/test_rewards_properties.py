"""Property tests: random sequences of accruals, refunds, voids, redemptions, adjustments and freezes,
some concurrent on one wallet. After every step: snapshot == ledger, the event table's invariant,
no ledger row <= 0; replaying every input in any order changes nothing; every payment ends at
exactly its target; a full reconciliation finds nothing."""

from __future__ import annotations

import random
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from salesarck.errors import Conflict
from salesarck.pos.records import PaymentRecord, RefundRecord
from salesarck.rewards.admin import adjust_wallet, freeze_wallet, unfreeze_wallet
from salesarck.rewards.posting import post_payments, post_refunds
from salesarck.rewards.redemption import redeem
from salesarck.rewards.rules import RuleConfig, points_for
from tests.factories import make_admin, make_rule, make_tenant, make_user, make_wallet
from tests.test_reliability_kill import _zero_findings
from tests.test_rewards_posting import check_invariants

RULE = {"conversionRate": 1.3, "roundingPolicy": "round", "maxPointsPerTransaction": 400, "minSpendMinorUnits": 150,
        "minBalanceToRedeem": 0, "maxRedemptionPercentage": 100}
CFG = RuleConfig.parse(RULE)
T0 = datetime(2026, 5, 1)


@dataclass
class Pay:
    amount: int
    customer: int  # 3 = anonymous
    refunds: dict[str, tuple[int, bool]] = field(default_factory=dict)
    voided: bool = False
    frozen_at_accrual: bool | None = None
    version: int = 0


ops = st.one_of(
    st.tuples(st.just("refund"), st.integers(0, 5), st.integers(0, 2), st.integers(1, 30_000), st.booleans(),
              st.booleans()),
    st.tuples(st.just("void"), st.integers(0, 5)),
    st.tuples(st.just("redeem"), st.integers(0, 2), st.integers(1, 300)),
    st.tuples(st.just("adjust"), st.integers(0, 2), st.integers(-300, 300).filter(bool)),
    st.tuples(st.just("freeze"), st.integers(0, 2)),
    st.tuples(st.just("replay"), st.integers(0, 2**16)),
    st.tuples(st.just("burst"), st.integers(0, 2), st.integers(0, 5)),
)
scenario = st.tuples(st.lists(st.tuples(st.integers(0, 40_000), st.integers(0, 3)), min_size=1, max_size=6),
                     st.lists(ops, max_size=10))


def burst(engine: Engine, tenant: uuid.UUID, admin: Any, wallet: uuid.UUID, rec: PaymentRecord, key: str) -> None:
    """Concurrent redemptions (same idempotency key), an adjustment and re-posts on one wallet."""
    errors: list[BaseException] = []

    def guarded(fn: Any) -> None:
        try:
            fn()
        except Conflict:
            pass
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def do_redeem() -> None:
        with engine.begin() as conn:
            redeem(conn, wallet_id=wallet, points=7, purchase_amount_minor_units=10**6, actor=admin, idempotency_key=key)

    def do_adjust() -> None:
        with engine.begin() as conn:
            adjust_wallet(conn, actor=admin, wallet_id=wallet, points=3, reason="burst")

    def do_repost() -> None:
        with engine.begin() as conn:
            post_payments(conn, tenant_id=tenant, records=[rec], arrival="webhook")

    threads = [threading.Thread(target=guarded, args=(f,)) for f in (do_redeem, do_redeem, do_adjust, do_repost,
                                                                      do_repost)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    with engine.connect() as conn:
        used = conn.execute(sa.text("select count(*) from idempotency_keys where key = :k"),
                            {"k": f"redemption:{wallet}:{key}"}).scalar()
        redeemed = conn.execute(sa.text("select count(*) from wallet_ledger where wallet_id = :w and "
                                        "description = 'redemption' and created_at = (select created_at from "
                                        "idempotency_keys where key = :k)"),
                                {"w": wallet, "k": f"redemption:{wallet}:{key}"}).scalar()
    assert used in (0, 1) and redeemed == used  # the same key redeemed at most once


def test_random_sequences_keep_the_books(engine: Engine) -> None:
    @settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                     HealthCheck.too_slow])
    @given(scenario)
    def run(sc: tuple[list[tuple[int, int]], list[tuple[Any, ...]]]) -> None:
        payments_spec, steps = sc
        tag = uuid.uuid4().hex[:8]
        with engine.begin() as conn:
            tenant = make_tenant(conn)["id"]
            make_rule(conn, tenant, 1, config=RULE, effective_from=datetime(2020, 1, 1))
            admin = make_admin(conn)
            users = [make_user(conn) for _ in range(3)]
            wallets = [make_wallet(conn, tenant_id=tenant, user_id=u["id"])["id"] for u in users]
        frozen = [False, False, False]
        pays: dict[str, Pay] = {}
        history: list[PaymentRecord] = []

        def record(pid: str) -> PaymentRecord:
            p = pays[pid]
            p.version += 1
            refunds = tuple(RefundRecord(rid, pid, amt, "COMPLETED" if done else "PENDING", done, T0 + timedelta(hours=1))
                            for rid, (amt, done) in sorted(p.refunds.items()))
            ref = {"email": users[p.customer]["email"].upper()} if p.customer < 3 else {}
            return PaymentRecord(provider="square", provider_payment_id=pid,
                                 status="CANCELED" if p.voided else "COMPLETED", is_completed=not p.voided,
                                 is_voided=p.voided, amount_minor_units=p.amount, currency="USD", transaction_at=T0,
                                 updated_at=T0 + timedelta(minutes=p.version), customer_ref=ref, refunds=refunds)

        def post(recs: list[PaymentRecord]) -> None:
            with engine.begin() as conn:
                post_payments(conn, tenant_id=tenant, records=recs, arrival="poll")
            history.extend(recs)

        def snapshot() -> tuple[Any, ...]:
            with engine.connect() as conn:
                check_invariants(conn)
                return tuple(conn.execute(sa.text(
                    "select (select count(*) from wallet_ledger l join wallets w on w.id = l.wallet_id "
                    "where w.tenant_id = :t), (select count(*) from reward_events e join wallets w on w.id = e.wallet_id"
                    " where w.tenant_id = :t), (select coalesce(sum(points_balance), 0) from wallets where tenant_id = :t)"),
                    {"t": tenant}).one())

        for i, (amount, customer) in enumerate(payments_spec):
            pid = f"{tag}-p{i}"
            pays[pid] = Pay(amount, customer, frozen_at_accrual=frozen[customer] if customer < 3 else None)
            post([record(pid)])
        snapshot()
        pids = list(pays)
        for n, step in enumerate(steps):
            kind = step[0]
            if kind == "refund":
                _, pi, ri, amount, completed, via_webhook = step
                pid = pids[pi % len(pids)]
                rid = f"{pid}-r{ri}"
                old = pays[pid].refunds.get(rid)
                if old is not None:
                    amount, completed = old[0], old[1] or completed  # a refund's amount never changes; completion sticks
                pays[pid].refunds[rid] = (amount, completed)
                if via_webhook:
                    with engine.begin() as conn:
                        post_refunds(conn, tenant_id=tenant, provider="square", arrival="webhook", refunds=[
                            RefundRecord(rid, pid, amount, "COMPLETED" if completed else "PENDING", completed, T0)])
                else:
                    post([record(pid)])
            elif kind == "void":
                pid = pids[step[1] % len(pids)]
                pays[pid].voided = True
                post([record(pid)])
            elif kind == "redeem":
                try:
                    with engine.begin() as conn:
                        redeem(conn, wallet_id=wallets[step[1]], points=step[2], purchase_amount_minor_units=10**6,
                               actor=admin, idempotency_key=f"{tag}-{len(history)}-{step}")
                except Conflict:
                    pass
            elif kind == "adjust":
                try:
                    with engine.begin() as conn:
                        adjust_wallet(conn, actor=admin, wallet_id=wallets[step[1]], points=step[2], reason="prop")
                except Conflict:
                    pass
            elif kind == "freeze":
                c = step[1]
                with engine.begin() as conn:
                    (unfreeze_wallet if frozen[c] else freeze_wallet)(conn, actor=admin, wallet_id=wallets[c],
                                                                      reason="prop")
                frozen[c] = not frozen[c]
            elif kind == "replay":
                before = snapshot()
                shuffled = list(history)
                random.Random(step[1]).shuffle(shuffled)
                for chunk in (shuffled[: len(shuffled) // 2], shuffled[len(shuffled) // 2:]):
                    with engine.begin() as conn:
                        post_payments(conn, tenant_id=tenant, records=chunk, arrival="file")
                assert snapshot() == before
            elif kind == "burst":
                pid = pids[step[2] % len(pids)]
                burst(engine, tenant, admin, wallets[step[1]], record(pid), f"{tag}-burst-{n}")
            snapshot()

        with engine.connect() as conn:
            net = dict(conn.execute(sa.text(
                "select x.provider_transaction_id, coalesce(sum(e.points_earned), 0) from transactions x "
                "left join reward_events e on e.transaction_id = x.id and coalesce(e.points_redeemed, 0) = 0 "
                "where x.tenant_id = :t group by 1"), {"t": tenant}).all())
        for pid, p in pays.items():
            refunded = sum(a for a, done in p.refunds.values() if done)
            if p.customer == 3 or p.frozen_at_accrual or p.voided:
                expected = 0
            else:
                expected = points_for(max(p.amount - refunded, 0), "USD", CFG)
            assert net[pid] == expected, (pid, p)
        _zero_findings(engine)  # a full reconciliation (every example so far) finds nothing

    run()
