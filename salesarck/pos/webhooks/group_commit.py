"""Group commit for the webhook receiver: deliveries that arrive while a transaction is committing share
the next one.

Under a burst, one transaction per request spends the time on round trips, pool waits and WAL flushes;
the requests queue, and Square (which gives 10 s) times out and retries. Here one task stores whatever
has queued, up to `max_batch` events, in one `store_events` transaction, then answers each waiting
request. A request still gets its 200 only after its own event is committed, so nothing acknowledged can
be lost. If a shared transaction fails, each of its events is retried alone, so one bad event cannot make
its neighbours fail.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

from salesarck.pos.webhooks.store import NewEvent, store_events

log = logging.getLogger(__name__)
MAX_BATCH = 256


class GroupCommitter:
    """Queue of events to store for one event loop; `store` answers True (stored) or False (duplicate)."""

    def __init__(self, engine: Engine, *, max_batch: int = MAX_BATCH) -> None:
        self._engine = engine
        self._max_batch = max_batch
        self._queue: list[tuple[NewEvent, asyncio.Future[bool]]] = []
        self._draining = False

    async def store(self, event: NewEvent) -> bool:
        """Store one event; raises what storing it alone raised (the caller answers 503)."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.append((event, future))
        if not self._draining:
            self._draining = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch:]
                await self._commit(batch)
        finally:
            self._draining = False

    async def _commit(self, batch: list[tuple[NewEvent, asyncio.Future[bool]]]) -> None:
        try:
            result = await run_in_threadpool(store_events, self._engine, [event for event, _ in batch])
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0][1], exc=exc)
                return
            log.warning("a shared webhook transaction failed (%s); storing its %d events one by one",
                        type(exc).__name__, len(batch))
            for item in batch:
                await self._commit([item])
            return
        kept = set(result.event_ids)
        for event, future in batch:
            _settle(future, stored=event.event_id in kept)


def _settle(future: asyncio.Future[bool], *, stored: bool = False, exc: BaseException | None = None) -> None:
    if future.done():  # the request went away (client disconnected); the event is stored or not, as it is
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(stored)
