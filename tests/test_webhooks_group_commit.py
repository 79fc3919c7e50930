"""Group commit: concurrent Square deliveries share transactions, yet each is answered for its own event."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from salesarck.pos.webhooks.group_commit import GroupCommitter
from salesarck.pos.webhooks.store import NewEvent, build_square_event
from tests.test_webhooks_receiver import connect, square_event


def event(tenant: uuid.UUID, event_id: str) -> NewEvent:
    payload = square_event(event_id=event_id)
    return build_square_event(tenant_id=tenant, payload=payload, raw_body=json.dumps(payload).encode(),
                              signature="sig")


def stored_keys(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return sorted(conn.execute(sa.text("select dedup_key from pos_webhook_event_keys")).scalars())


def test_concurrent_deliveries_share_commits_and_each_gets_its_own_answer(engine: Engine) -> None:
    tenant = connect(engine, "square", "MSQ1")
    ids = [f"evt-{i:03d}" for i in range(120)]
    committer = GroupCommitter(engine, max_batch=50)

    async def burst() -> list[bool]:
        # every event once, and 30 of them a second time in the same burst (Square retries)
        return await asyncio.gather(*(committer.store(event(tenant, i)) for i in ids + ids[:30]))

    answers = asyncio.run(burst())
    assert answers[:120] == [True] * 120  # the first delivery of each is stored...
    assert answers[120:] == [False] * 30  # ...the repeats are duplicates
    assert stored_keys(engine) == ids


def test_a_failing_event_fails_alone(engine: Engine) -> None:
    tenant = connect(engine, "square", "MSQ1")
    good = [event(tenant, f"ok-{i}") for i in range(10)]
    bad = event(uuid.uuid4(), "orphan")  # no such tenant: the insert violates a foreign key
    committer = GroupCommitter(engine)

    async def burst() -> list[bool | BaseException]:
        return await asyncio.gather(*(committer.store(e) for e in [*good[:5], bad, *good[5:]]),
                                    return_exceptions=True)

    answers = asyncio.run(burst())
    assert isinstance(answers[5], sa.exc.IntegrityError)
    assert answers[:5] + answers[6:] == [True] * 10
    assert stored_keys(engine) == sorted(f"ok-{i}" for i in range(10))


@pytest.mark.parametrize("max_batch", [1, 3])
def test_small_batches_store_everything_in_order(engine: Engine, max_batch: int) -> None:
    tenant = connect(engine, "square", "MSQ1")
    committer = GroupCommitter(engine, max_batch=max_batch)

    async def burst() -> list[bool]:
        return await asyncio.gather(*(committer.store(event(tenant, f"e{i}")) for i in range(7)))

    assert asyncio.run(burst()) == [True] * 7
    assert len(stored_keys(engine)) == 7
