"""Posting: accruals, duplicates, customers, refunds, voids, repair, concurrency, hostile input."""

from __future__ import annotations

import threading
import uuid
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from salesarck.errors import NotFound, ValidationError
from salesarck.pos.records import PaymentRecord, RefundRecord
from salesarck.rewards.admin import freeze_wallet
from salesarck.rewards.posting import accrue, post_payments, post_refunds
from tests.factories import make_admin, make_rule, make_tenant, make_transaction, make_user

T0 = datetime(2026, 5, 1, 12)


def pay(pid: str, amount: int = 1000, *, email: str | None = None, mobile: str | None = None,
        status: str = "COMPLETED", at: datetime = T0, updated: datetime | None = None,
        refunds: tuple[RefundRecord, ...] = (), currency: str = "USD", provider: str = "square") -> PaymentRecord:
    ref: dict[str, Any] = {}
    if email:
        ref["email"] = email
    if mobile:
        ref["mobile"] = mobile
    return PaymentRecord(provider=provider, provider_payment_id=pid, status=status,  # type: ignore[arg-type]
                         is_completed=status in ("COMPLETED", "SUCCESS"), is_voided=status in ("CANCELED", "VOIDED"),
                         amount_minor_units=amount, currency=currency, transaction_at=at, updated_at=updated or at,
                         location_id="L1", customer_ref=ref, refunds=refunds)


def refund(rid: str, pid: str, amount: int, status: str = "COMPLETED", at: datetime = T0) -> RefundRecord:
    return RefundRecord(rid, pid, amount, status, status in ("COMPLETED", "SUCCESS"), at + timedelta(hours=1))


def check_invariants(conn: Connection) -> None:
    """Snapshot == ledger sum; per transaction: earned == credits - non-redemption debits; points > 0."""
    drift = conn.execute(sa.text("""
        select w.id, w.points_balance, coalesce(sum(case l.entry_type when 'credit' then l.points
                                                   else -l.points end), 0) as ledger
        from wallets w left join wallet_ledger l on l.wallet_id = w.id
        group by w.id having w.points_balance <> coalesce(sum(case l.entry_type when 'credit' then l.points
                                                   else -l.points end), 0)""")).all()
    assert drift == []
    mismatch = conn.execute(sa.text("""
        with e as (select transaction_id, sum(points_earned) as earned from reward_events
                   where transaction_id is not null and coalesce(points_redeemed, 0) = 0 group by 1),
             l as (select source_transaction_id as transaction_id,
                          sum(case when entry_type = 'credit' then points
                                   when description = 'redemption' then 0 else -points end) as net
                   from wallet_ledger where source_transaction_id is not null group by 1)
        select * from e full join l using (transaction_id)
        where coalesce(e.earned, 0) <> coalesce(l.net, 0)""")).all()
    assert mismatch == []
    assert conn.execute(sa.text("select count(*) from wallet_ledger where points <= 0")).scalar() == 0
    assert conn.execute(sa.text("select count(*) from (select transaction_id from reward_events "
                                "where coalesce(points_redeemed, 0) = 0 and points_earned >= 0 "
                                "and transaction_id is not null group by 1 having count(*) > 1) d")).scalar() == 0


def balance(conn: Connection, tenant: uuid.UUID, user: uuid.UUID) -> int | None:
    return conn.execute(sa.text("select points_balance from wallets where tenant_id = :t and user_id = :u"),
                        {"t": tenant, "u": user}).scalar()


@pytest.fixture
def world(engine: Engine) -> dict[str, Any]:
    with engine.begin() as conn:
        tenant = make_tenant(conn)["id"]
        make_rule(conn, tenant, 1, config={"conversionRate": 1, "roundingPolicy": "floor"},
                  effective_from=datetime(2026, 1, 1))
        alice = make_user(conn, email="Alice@Example.test", mobile="+14155550100")
        bob = make_user(conn, email="bob@example.test")
    return {"tenant": tenant, "alice": alice["id"], "bob": bob["id"]}


def post(engine: Engine, tenant: uuid.UUID, records: list[PaymentRecord], arrival: str = "file") -> Any:
    with engine.begin() as conn:
        return post_payments(conn, tenant_id=tenant, records=records, arrival=arrival)  # type: ignore[arg-type]


def test_accrual_customers_and_duplicates(engine: Engine, world: dict[str, Any]) -> None:
    t = world["tenant"]
    s = post(engine, t, [
        pay("p1", 1999, email=" ALICE@example.TEST "),     # email, case-insensitive: 19 points
        pay("p2", 500, mobile="(415) 555-0100"),           # national mobile -> E.164 match: 5
        pay("p3", 700),                                    # anonymous
        pay("p4", 900, email="nobody@example.test"),       # unknown customer: anonymous
        pay("p5", 900, email="bob@example.test", status="APPROVED"),  # not completed: no transaction
    ])
    assert (s.read, s.inserted, s.anonymous, s.not_completed, s.duplicates) == (5, 4, 2, 1, 0)
    assert (s.accruals, s.points_credited, s.points_debited) == (2, 24, 0)
    again = post(engine, t, [pay("p1", 1999, email="alice@example.test"), pay("p3", 700)])
    assert (again.inserted, again.duplicates, again.points_credited, again.accruals) == (0, 2, 0, 0)
    with engine.connect() as conn:
        assert balance(conn, t, world["alice"]) == 24
        assert balance(conn, t, world["bob"]) is None
        ledger = conn.execute(sa.text("select entry_type, points, description from wallet_ledger order by points")).all()
        assert [tuple(r) for r in ledger] == [("credit", 5, "accrual"), ("credit", 19, "accrual")]
        ev = conn.execute(sa.text("select e.points_earned, e.rule_version_id is not null as has_rule, x.customer_ref "
                                  "from reward_events e join transactions x on x.id = e.transaction_id "
                                  "where x.provider_transaction_id = 'p2'")).one()
        assert ev.points_earned == 5 and ev.has_rule and ev.customer_ref["mobile"] == "+14155550100"
        d = conn.execute(sa.text("select arrival, location_id, provider_status from transaction_details "
                                 "join transactions x on x.id = transaction_id where x.provider_transaction_id='p1'")).one()
        assert tuple(d) == ("file", "L1", "COMPLETED")
        assert conn.execute(sa.text("select count(*) from transactions")).scalar() == 4
        check_invariants(conn)


def test_no_rule_in_force_and_late_payment_uses_rule_of_its_time(engine: Engine, world: dict[str, Any]) -> None:
    t = world["tenant"]
    with engine.begin() as conn:
        conn.execute(sa.text("update reward_rules set is_active = false where tenant_id = :t"), {"t": t})
        make_rule(conn, t, 2, config={"conversionRate": 10}, effective_from=datetime(2026, 6, 1))
    s = post(engine, t, [
        pay("early", 1000, email="alice@example.test", at=datetime(2025, 12, 31)),   # no rule: no event
        pay("late", 1000, email="alice@example.test", at=datetime(2026, 5, 31, 23), updated=datetime(2026, 6, 3)),
        pay("new", 1000, email="alice@example.test", at=datetime(2026, 6, 2)),
    ])
    assert (s.inserted, s.accruals, s.points_credited) == (3, 2, 10 + 100)
    with engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from reward_events e join transactions x "
                                    "on x.id = e.transaction_id where x.provider_transaction_id = 'early'")).scalar() == 0
        check_invariants(conn)


def test_frozen_wallet_accrues_zero_without_ledger(engine: Engine, world: dict[str, Any]) -> None:
    t = world["tenant"]
    post(engine, t, [pay("a", 1000, email="alice@example.test")])
    with engine.begin() as conn:
        admin = make_admin(conn)
        wid = conn.execute(sa.text("select id from wallets where user_id = :u"), {"u": world["alice"]}).scalar_one()
        freeze_wallet(conn, actor=admin, wallet_id=wid, reason="fraud check")
    s = post(engine, t, [pay("b", 5000, email="alice@example.test", refunds=(refund("rb", "b", 1000),))])
    assert (s.accruals, s.points_credited, s.points_debited, s.reversals) == (1, 0, 0, 0)
    with engine.connect() as conn:
        ev = conn.execute(sa.text("select points_earned, rule_version_id from reward_events e join transactions x "
                                  "on x.id = e.transaction_id where x.provider_transaction_id = 'b'")).all()
        assert [tuple(r) for r in ev] == [(0, None)]
        assert balance(conn, t, world["alice"]) == 10
        check_invariants(conn)


def test_refunds_in_any_order_and_replays_change_nothing(engine: Engine, world: dict[str, Any]) -> None:
    t = world["tenant"]
    e = "alice@example.test"
    post(engine, t, [pay("p", 10_000, email=e)])                        # 100 points
    s1 = post(engine, t, [pay("p", 10_000, email=e, refunds=(refund("r2", "p", 2550),))])
    assert (s1.duplicates, s1.refunds_recorded, s1.refunds_applied, s1.points_debited) == (1, 1, 1, 26)  # 100 -> 74
    with engine.begin() as conn:
        s2 = post_refunds(conn, tenant_id=t, provider="square", refunds=[
            refund("r1", "p", 1000, "PENDING"), refund("r2", "p", 2550)], arrival="webhook")
    assert (s2.points_debited, s2.refunds_recorded) == (0, 1)            # pending moves nothing
    with engine.begin() as conn:
        s3 = post_refunds(conn, tenant_id=t, provider="square", refunds=[refund("r1", "p", 1000)], arrival="webhook")
    assert s3.points_debited == 10                                        # 74 -> 64 (amount 6450)
    for _ in range(2):                                                    # replays, any order
        s = post(engine, t, [pay("p", 10_000, email=e, refunds=(refund("r1", "p", 1000), refund("r2", "p", 2550)))])
        assert (s.points_debited, s.points_credited, s.reversals) == (0, 0, 0)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("select description, points from wallet_ledger where entry_type = 'debit' "
                                    "order by created_at, points desc")).all()
        assert [tuple(r) for r in rows] == [("refund:r2", 26), ("refund:r1", 10)]
        ev = conn.execute(sa.text("select points_earned, rule_version_id from reward_events order by points_earned")).all()
        assert [r.points_earned for r in ev] == [-26, -10, 100] and len({r.rule_version_id for r in ev}) == 1
        assert balance(conn, t, world["alice"]) == 64
        check_invariants(conn)


def test_void_reverses_all_and_never_more(engine: Engine, world: dict[str, Any]) -> None:
    t = world["tenant"]
    e = "alice@example.test"
    post(engine, t, [pay("v", 5000, email=e, refunds=(refund("r", "v", 1000),))])  # 50 then -10
    s = post(engine, t, [pay("v", 5000, email=e, status="CANCELED", updated=T0 + timedelta(days=1))])
    assert (s.voided, s.points_debited, s.refunds_applied) == (1, 40, 0)
    # an older report arriving late does not un-void; a later refund changes nothing
    s = post(engine, t, [pay("v", 5000, email=e, refunds=(refund("r", "v", 1000), refund("r9", "v", 4000)))])
    assert (s.points_debited, s.points_credited, s.voided) == (0, 0, 0)
    with engine.connect() as conn:
        assert balance(conn, t, world["alice"]) == 0
        rows = conn.execute(sa.text("select description from wallet_ledger where entry_type = 'debit' "
                                    "order by created_at")).scalars().all()
        assert rows == ["refund:r", "void"]
        assert conn.execute(sa.text("select is_voided from transaction_details")).scalar() is True
        check_invariants(conn)


def test_wallet_may_go_negative_after_spending(engine: Engine, world: dict[str, Any]) -> None:
    from salesarck.rewards.redemption import redeem

    t = world["tenant"]
    post(engine, t, [pay("x", 10_000, email="alice@example.test")])
    with engine.begin() as conn:
        admin = make_admin(conn)
        wid = conn.execute(sa.text("select id from wallets where user_id = :u"), {"u": world["alice"]}).scalar_one()
        redeem(conn, wallet_id=wid, points=100, purchase_amount_minor_units=10_000, actor=admin, idempotency_key="k")
    post(engine, t, [pay("x", 10_000, email="alice@example.test", status="CANCELED", updated=T0 + timedelta(1))])
    with engine.connect() as conn:
        assert balance(conn, t, world["alice"]) == -100
        check_invariants(conn)


def test_accrue_repairs_a_missed_accrual(engine: Engine, world: dict[str, Any]) -> None:
    t = world["tenant"]
    with engine.begin() as conn:
        tx = make_transaction(conn, t, user_id=world["bob"], amount_minor_units=4321, transaction_at=T0)
        anon = make_transaction(conn, t, amount_minor_units=4321, transaction_at=T0)
    with engine.begin() as conn:
        assert accrue(conn, tx["id"]) == 43
        assert accrue(conn, tx["id"]) == 0          # already accrued
        assert accrue(conn, anon["id"]) == 0        # anonymous: nothing
        with pytest.raises(NotFound):
            accrue(conn, uuid.uuid4())
    with engine.connect() as conn:
        assert balance(conn, t, world["bob"]) == 43
        check_invariants(conn)


def test_hostile_records_are_skipped_and_write_nothing(engine: Engine, world: dict[str, Any]) -> None:
    t = world["tenant"]
    good = pay("ok", 100, email="alice@example.test")
    bad: list[Any] = [
        replace(good, provider_payment_id="neg", amount_minor_units=-1),
        replace(good, provider_payment_id="big", amount_minor_units=2**31),
        replace(good, provider_payment_id="flt", amount_minor_units=1.5),
        replace(good, provider_payment_id="cur", currency="ZZZ"),
        replace(good, provider_payment_id="x" * 300),
        replace(good, provider_payment_id="tz", transaction_at=datetime(2026, 1, 1).astimezone()),
        replace(good, provider_payment_id="prov", provider="paypal"),
        replace(good, provider_payment_id="ref", refunds=(refund("r", "other", 1),)),
        replace(good, provider_payment_id="nul", customer_ref={"externalCustomerId": "a\x00b"}),
        replace(good, provider_payment_id="set", customer_ref={"externalCustomerId": {1, 2}}),
        replace(good, provider_payment_id="huge", line_items=[{"name": "x" * 300_000}]),
        replace(good, provider_payment_id="stat", status="OK\x00"),
        replace(good, provider_payment_id="flag", is_completed="yes"),
        replace(good, provider_payment_id="twice", refunds=(refund("r", "twice", 1), refund("r", "twice", 2))),
        replace(good, provider_payment_id="steal", refunds=(refund("rx", "steal", 1),)),
        {"id": "dict"},
        None,
    ]
    owner = replace(good, provider_payment_id="owner", refunds=(refund("rx", "owner", 1),))
    s = post(engine, t, [owner, *bad, good])
    assert (s.read, s.inserted, len(s.skipped)) == (19, 2, 17)
    assert all(sk.reason for sk in s.skipped)
    with engine.connect() as conn:
        assert sorted(conn.execute(sa.text("select provider_transaction_id from transactions")).scalars()) == [
            "ok", "owner"]
    with pytest.raises(ValidationError), engine.begin() as conn:
        post_payments(conn, tenant_id=t, records=[good], arrival="carrier-pigeon")  # type: ignore[arg-type]
    with pytest.raises(NotFound), engine.begin() as conn:
        post_payments(conn, tenant_id=uuid.uuid4(), records=[good], arrival="poll")
    for kw in ({"tenant_id": "'; drop table transactions; --"}, {"records": None}, {"records": "abc"}):
        with pytest.raises(ValidationError), engine.begin() as conn:
            post_payments(conn, **{"tenant_id": t, "records": [good], "arrival": "poll", **kw})  # type: ignore[arg-type]
    with pytest.raises(ValidationError), engine.begin() as conn:
        accrue(conn, "not-a-uuid")  # type: ignore[arg-type]
    with pytest.raises(ValidationError), engine.begin() as conn:
        post_refunds(conn, tenant_id=t, provider="paypal", refunds=[], arrival="poll")


def test_failure_mid_transaction_leaves_nothing(engine: Engine, world: dict[str, Any]) -> None:
    t = world["tenant"]
    with pytest.raises(RuntimeError), engine.begin() as conn:
        post_payments(conn, tenant_id=t, records=[pay("z", 1000, email="alice@example.test")], arrival="poll")
        raise RuntimeError("watermark write failed")
    with engine.connect() as conn:
        for table in ("transactions", "reward_events", "wallet_ledger", "wallets", "transaction_details"):
            assert conn.execute(sa.text(f"select count(*) from {table}")).scalar() == 0  # noqa: S608


def test_concurrent_batches_no_deadlock_no_double_post(engine: Engine, world: dict[str, Any]) -> None:
    t = world["tenant"]
    with engine.begin() as conn:
        emails = [make_user(conn)["email"] for _ in range(8)]
    batches = []
    for b in range(4):
        recs = [pay(f"c{i}", 100 + i, email=emails[(i * 7 + b) % 8],
                    refunds=(refund(f"cr{i}", f"c{i}", 50),) if (i + b) % 3 == 0 else ())
                for i in range(60)]
        batches.append(list(reversed(recs)) if b % 2 else recs)
    errors: list[BaseException] = []

    def run(records: list[PaymentRecord]) -> None:
        try:
            post(engine, t, records, "poll")
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(b,)) for b in batches]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    with engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from transactions")).scalar() == 60
        check_invariants(conn)
        # every transaction is at its target: refunded ones earn floor((amount - 50) / 100)
        net = conn.execute(sa.text("select x.provider_transaction_id, sum(e.points_earned) from reward_events e "
                                   "join transactions x on x.id = e.transaction_id group by 1")).all()
    assert len(net) == 60


def test_rule_without_rate_posts_no_event(engine: Engine, world: dict[str, Any]) -> None:
    t = world["tenant"]
    with engine.begin() as conn:
        conn.execute(sa.text("update reward_rules set is_active = false where tenant_id = :t"), {"t": t})
        make_rule(conn, t, 2, config={"roundingPolicy": "floor"}, effective_from=datetime(2026, 4, 1))
    s = post(engine, t, [pay("norate", 1000, email="alice@example.test")])
    assert (s.inserted, s.accruals, s.points_credited) == (1, 0, 0)
    with engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from reward_events")).scalar() == 0
        check_invariants(conn)
