"""`salesarck worker`: scheduled polling of every active connection plus the webhook processor loop.

Polling is the backstop that makes ingestion complete when webhooks are lost (Clover does not
guarantee delivery); webhooks only make it faster. Each connection is polled every
`poll_interval_seconds` (its `pos_connection_options` row, else SALESARCK_WORKER_INTERVAL_SECONDS).
Several workers may run: a poll is claimed by moving the connection's `worker_poll_state.next_due_at`
forward in one statement, and the sync lease guards the rest. The worker beats a heartbeat row the
app shows; SIGTERM (or SIGINT) lets the current batch or sync finish, then it marks itself stopped.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import FrameType
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from salesarck import audit
from salesarck.authz import Actor, Permission
from salesarck.config import Settings
from salesarck.errors import NotFound, SalesarckError, ValidationError
from salesarck.jsonutil import dumps
from salesarck.pos.webhook_models import CLOVER_REGIONS
from salesarck.pos.webhooks import processor
from salesarck.pos.webhooks.fetch import ProviderFetcher
from salesarck.timeutil import utcnow

log = logging.getLogger(__name__)

POLLABLE_STATUSES = ("active", "error")
DB_RETRY_SECONDS = 5.0
HEARTBEAT_EVERY_SECONDS = 15.0
MAX_ERROR_CHARS = 500
SyncFn = Callable[..., Any]


def _default_sync(engine: Engine, connection_id: uuid.UUID, *, settings: Settings,
                  progress: Callable[[Any], None] | None = None) -> Any:
    from salesarck.pos.sync import sync_connection

    return sync_connection(engine, connection_id, actor=None, settings=settings, trigger="worker",
                           progress=progress)


@dataclass
class WorkerStats:
    loops: int = 0
    polls: int = 0
    poll_failures: int = 0
    events_processed: int = 0
    events_failed: int = 0
    last_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Worker:
    """One worker process. `run()` loops until `stop()`; `run_once()` is one loop (tests, --once)."""

    engine: Engine
    settings: Settings
    worker_id: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}")
    batch_size: int = processor.DEFAULT_BATCH
    max_events_per_loop: int = 2000
    idle_seconds: float = 2.0
    sync: SyncFn = field(default=_default_sync)
    stats: WorkerStats = field(default_factory=WorkerStats)
    _stop: threading.Event = field(default_factory=threading.Event)

    # --- lifecycle ---------------------------------------------------------------------------
    def stop(self, *_: Any) -> None:
        """Ask the loop to end after the current unit of work (signal-handler safe)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def install_signal_handlers(self) -> None:
        def handler(signum: int, frame: FrameType | None) -> None:
            log.warning("worker %s: signal %d received, finishing the current batch", self.worker_id, signum)
            self.stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def beat(self, state: str = "running") -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.text(
                "insert into worker_heartbeats (worker_id, hostname, pid, state, started_at, beat_at, detail)"
                " values (:w, :h, :p, :s, :now, :now, cast(:d as jsonb))"
                " on conflict (worker_id) do update set state = excluded.state, beat_at = excluded.beat_at,"
                " detail = excluded.detail"),
                {"w": self.worker_id, "h": socket.gethostname(), "p": os.getpid(), "s": state, "now": utcnow(),
                 "d": dumps(self.stats.as_dict())})

    def run(self) -> WorkerStats:
        """Loop until stopped; the heartbeat says `stopped` when it returns."""
        log.info("worker %s started", self.worker_id)
        self.beat("running")
        try:
            while not self.stopping:
                try:
                    self.run_once()
                    pause = self._sleep_seconds()
                except SQLAlchemyError as exc:  # the database is away: keep trying, do not die
                    self.stats.last_error = f"database error: {type(exc).__name__}"
                    log.warning("worker %s: database error (%s); retrying in %.0f s", self.worker_id,
                                type(exc).__name__, DB_RETRY_SECONDS)
                    pause = DB_RETRY_SECONDS
                if not self.stopping:
                    self._stop.wait(pause)
        finally:
            try:
                self.beat("stopped")
            except SQLAlchemyError:
                log.warning("worker %s: could not record that it stopped (database unavailable)", self.worker_id)
            log.info("worker %s stopped", self.worker_id)
        return self.stats

    def _sleep_seconds(self) -> float:
        wait = self.idle_seconds
        nxt = self._next_poll_due()
        if nxt is not None:
            wait = min(wait, max(0.0, (nxt - utcnow()).total_seconds()))
        return max(0.05, wait)

    def run_once(self) -> WorkerStats:
        """Poll every connection that is due, then process the webhook backlog; beat in between."""
        self.stats.loops += 1
        self.beat("stopping" if self.stopping else "running")
        while not self.stopping:
            cid = self._claim_due_poll()
            if cid is None:
                break
            self._poll(cid)
            self.beat("stopping" if self.stopping else "running")
        if not self.stopping:
            self._process_webhooks()
        self.beat("stopping" if self.stopping else "running")
        return self.stats

    # --- polling -----------------------------------------------------------------------------
    def _claim_due_poll(self) -> uuid.UUID | None:
        """Take the most overdue connection and move its next due time forward, in one statement."""
        now = utcnow()
        with self.engine.begin() as conn:
            row = conn.execute(sa.text(
                "with due as ("
                " select c.id, coalesce(o.poll_interval_seconds, :dflt) as secs"
                " from pos_connections c"
                " left join pos_connection_options o on o.connection_id = c.id"
                " left join worker_poll_state s on s.connection_id = c.id"
                " where c.status = any(:statuses) and (s.next_due_at is null or s.next_due_at <= :now)"
                " order by s.next_due_at nulls first, c.created_at limit 1)"
                " insert into worker_poll_state as s (connection_id, last_started_at, next_due_at)"
                " select id, :now, :now + make_interval(secs => secs) from due"
                " on conflict (connection_id) do update set last_started_at = excluded.last_started_at,"
                " next_due_at = excluded.next_due_at"
                " where s.next_due_at is null or s.next_due_at <= :now"
                " returning connection_id"),
                {"dflt": self.settings.worker_interval_seconds, "statuses": list(POLLABLE_STATUSES),
                 "now": now}).first()
        return None if row is None else uuid.UUID(str(row.connection_id))

    def _poll(self, connection_id: uuid.UUID) -> None:
        from salesarck.pos.sync_runs import SyncAlreadyRunning

        status, error = "ok", None
        try:
            if self.sync is _default_sync:  # beat during a long sync too, so the app does not think we died
                last = [time.monotonic()]

                def beat_now(_progress: Any) -> None:
                    if time.monotonic() - last[0] >= HEARTBEAT_EVERY_SECONDS:
                        last[0] = time.monotonic()
                        self.beat("stopping" if self.stopping else "running")

                result = _default_sync(self.engine, connection_id, settings=self.settings, progress=beat_now)
            else:
                result = self.sync(self.engine, connection_id, settings=self.settings)
            if getattr(result, "ok", True) is False:
                status, error = "failed", getattr(result, "error", None)
        except SyncAlreadyRunning:
            status = "skipped"
        except SalesarckError as exc:
            status, error = "failed", str(exc)
        except Exception as exc:  # keep the worker alive; the sync run records the details
            log.exception("worker %s: sync of connection %s crashed", self.worker_id, connection_id)
            status, error = "failed", f"internal error ({type(exc).__name__})"
        self.stats.polls += 1
        if status == "failed":
            self.stats.poll_failures += 1
            self.stats.last_error = (error or "")[:MAX_ERROR_CHARS]
        with self.engine.begin() as conn:
            conn.execute(sa.text(
                "update worker_poll_state set last_finished_at = :now, last_status = :s, last_error = :e"
                " where connection_id = :c"),
                {"now": utcnow(), "s": status, "e": (error or None) and error[:MAX_ERROR_CHARS], "c": connection_id})

    def _next_poll_due(self) -> datetime | None:
        with self.engine.connect() as conn:
            return conn.execute(sa.text(
                "select min(coalesce(s.next_due_at, :now)) from pos_connections c"
                " left join worker_poll_state s on s.connection_id = c.id where c.status = any(:statuses)"),
                {"statuses": list(POLLABLE_STATUSES), "now": utcnow()}).scalar()

    # --- webhooks ----------------------------------------------------------------------------
    def _process_webhooks(self) -> None:
        try:
            with ProviderFetcher(self.engine, self.settings) as fetcher:
                result = processor.process_pending(self.engine, limit=self.max_events_per_loop,
                                                   batch_size=self.batch_size, fetcher=fetcher,
                                                   should_stop=lambda: self.stopping)
        except SalesarckError as exc:
            self.stats.last_error = str(exc)[:MAX_ERROR_CHARS]
            return
        self.stats.events_processed += result.processed
        self.stats.events_failed += result.failed
        if result.errors:
            self.stats.last_error = result.errors[-1][:MAX_ERROR_CHARS]


# --- operator views and settings ------------------------------------------------------------


def worker_status(engine: Engine, *, stale_after: timedelta | None = None) -> list[dict[str, Any]]:
    """Heartbeats, newest first, each with `alive` (beat recently and not stopped)."""
    stale = stale_after or timedelta(minutes=2)
    now = utcnow()
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "select worker_id, hostname, pid, state, started_at, beat_at, detail from worker_heartbeats"
            " order by beat_at desc limit 50")).mappings().all()
    return [{**dict(r), "alive": r["state"] != "stopped" and now - r["beat_at"] <= stale} for r in rows]


def poll_schedule(engine: Engine, *, actor: Actor, default_interval: int) -> list[dict[str, Any]]:
    """Every connection the actor may see, with its interval, region and last and next poll."""
    scope = actor.tenant_scope(Permission.VIEW_SYNC)
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "select c.id as connection_id, c.tenant_id, c.pos_type as provider, c.status,"
            " coalesce(o.poll_interval_seconds, :dflt) as interval_seconds, o.clover_region,"
            " s.last_started_at, s.last_finished_at, s.last_status, s.last_error, s.next_due_at"
            " from pos_connections c left join pos_connection_options o on o.connection_id = c.id"
            " left join worker_poll_state s on s.connection_id = c.id"
            " where (cast(:all_tenants as boolean) or c.tenant_id = any(cast(:scope as uuid[])))"
            " order by c.created_at"),
            {"dflt": default_interval, "all_tenants": scope is None, "scope": scope or []}).mappings().all()
    return [dict(r) for r in rows]


_UNSET: Any = object()


def set_connection_options(
    engine: Engine,
    *,
    actor: Actor,
    connection_id: uuid.UUID,
    poll_interval_seconds: int | None = _UNSET,
    clover_region: str | None = _UNSET,
) -> dict[str, Any]:
    """Set a connection's polling interval (5 s .. 1 day; None: the default) and, for Clover, its
    region (na, eu, la, sandbox; None: SALESARCK_CLOVER_BASE_URL). Audited."""
    if poll_interval_seconds is not _UNSET and poll_interval_seconds is not None and (
            isinstance(poll_interval_seconds, bool) or not isinstance(poll_interval_seconds, int)
            or not 5 <= poll_interval_seconds <= 86400):
        raise ValidationError("the polling interval must be a whole number of seconds from 5 to 86400")
    if clover_region is not _UNSET and clover_region is not None and clover_region not in CLOVER_REGIONS:
        raise ValidationError(f"the Clover region must be one of {', '.join(CLOVER_REGIONS)}")
    with engine.begin() as conn:
        row = conn.execute(sa.text("select tenant_id, pos_type from pos_connections where id = :c"),
                           {"c": connection_id}).first()
        if row is None or not actor.can(Permission.VIEW_SYNC, row.tenant_id):
            raise NotFound(f"no POS connection {connection_id}")
        actor.require(Permission.MANAGE_CONNECTIONS, row.tenant_id)
        if clover_region not in (_UNSET, None) and row.pos_type != "clover":
            raise ValidationError("a region applies to Clover connections only")
        before = conn.execute(sa.text(
            "select poll_interval_seconds, clover_region from pos_connection_options where connection_id = :c"),
            {"c": connection_id}).mappings().first()
        old = dict(before) if before else {"poll_interval_seconds": None, "clover_region": None}
        new = dict(old)
        if poll_interval_seconds is not _UNSET:
            new["poll_interval_seconds"] = poll_interval_seconds
        if clover_region is not _UNSET:
            new["clover_region"] = clover_region
        conn.execute(sa.text(
            "insert into pos_connection_options (connection_id, poll_interval_seconds, clover_region, updated_at)"
            " values (:c, :i, :r, :now) on conflict (connection_id) do update set"
            " poll_interval_seconds = excluded.poll_interval_seconds, clover_region = excluded.clover_region,"
            " updated_at = excluded.updated_at"),
            {"c": connection_id, "i": new["poll_interval_seconds"], "r": new["clover_region"], "now": utcnow()})
        # a shorter interval takes effect now, not after the old one runs out
        conn.execute(sa.text("update worker_poll_state set next_due_at = least(next_due_at,"
                             " coalesce(last_started_at, :now) + make_interval(secs => :i)) where connection_id = :c"),
                     {"c": connection_id, "now": utcnow(),
                      "i": new["poll_interval_seconds"] or 86400})
        audit.record(conn, actor=actor, action="pos_connection.options", target_type="pos_connection",
                     target_id=connection_id, before=old, after=new, reason="connection options changed")
    return {"connection_id": connection_id, **new}
