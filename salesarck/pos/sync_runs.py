"""Sync runs: one sync per connection at a time (a lease row), heartbeats, history and progress.

Provider-neutral: the Square and Clover syncs both run inside `SyncLease`. The lease is a
`sync_runs` row with `status = 'running'`; a partial unique index allows one per connection, so a
second caller gets `SyncAlreadyRunning` from the database itself, which works behind a transaction
pooler (no session-level advisory locks). Each heartbeat pushes `lease_expires_at` forward; a sync
that crashed stops beating and its lease is taken over once expired. Every batch a sync commits
calls `lease.checkpoint(conn, ...)` in the same transaction: it locks the run row and refuses when
the lease was lost, so a stalled sync that was taken over cannot commit behind the new one's back.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from salesarck.authz import Actor, Permission
from salesarck.errors import Conflict, NotFound, SalesarckError, ValidationError
from salesarck.jsonutil import dumps
from salesarck.rewards.guard import as_uuid

LEASE_SECONDS = 120
MAX_ERROR_CHARS = 1000
MAX_SKIPPED_IN_SUMMARY = 100


class SyncAlreadyRunning(Conflict):
    """Another sync of this connection holds the lease."""


class LeaseLost(Conflict):
    """This sync's lease expired and was taken over (or the run was ended) while it worked."""


@dataclass
class SyncProgress:
    """What a progress bar shows; the same object is updated and passed after every page."""

    run_id: uuid.UUID
    connection_id: uuid.UUID
    provider: str
    phase: str = "starting"  # starting, locations, payments, finishing, done, failed
    location_id: str | None = None
    pages: int = 0
    payments_seen: int = 0
    posted: int = 0
    duplicates: int = 0
    skipped: int = 0
    points_credited: int = 0
    points_debited: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


ProgressCallback = Callable[[SyncProgress], None]


@dataclass
class SyncResult:
    """The stored summary of one run (what `salesarck sync` prints and the app shows)."""

    run_id: uuid.UUID
    connection_id: uuid.UUID
    provider: str
    status: str  # succeeded, failed
    started_at: datetime
    finished_at: datetime | None
    pages: int
    payments_seen: int
    posted: int
    duplicates: int
    skipped: int
    points_credited: int
    points_debited: int
    watermark_after: datetime | None = None
    error: str | None = None
    skipped_records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"


class SyncLease:
    """A held sync lease; build with `acquire_lease`, end with `finish`."""

    def __init__(self, engine: Engine, run_id: uuid.UUID, connection_id: uuid.UUID, tenant_id: uuid.UUID,
                 provider: str, lease_seconds: int) -> None:
        self.engine = engine
        self.run_id = run_id
        self.connection_id = connection_id
        self.tenant_id = tenant_id
        self.provider = provider
        self.lease_seconds = lease_seconds
        self.progress = SyncProgress(run_id, connection_id, provider)
        self.skipped_records: list[dict[str, Any]] = []
        self._lock = threading.Lock()  # a fetching thread and the posting thread both count

    def count(self, **deltas: int) -> None:
        """Add to progress counters (pages=1, posted=n, ...), safely from several threads."""
        with self._lock:
            for name, delta in deltas.items():
                setattr(self.progress, name, getattr(self.progress, name) + delta)

    def checkpoint(self, conn: Connection, *, window_start: datetime | None = None) -> None:
        """In the caller's transaction: fence on the lease, beat, store the counters so far."""
        p = self.progress
        row = conn.execute(sa.text(
            "update sync_runs set heartbeat_at = now() at time zone 'utc',"
            " lease_expires_at = now() at time zone 'utc' + make_interval(secs => :ttl),"
            " pages = :pages, payments_seen = :seen, posted = :posted, duplicates = :dups, skipped = :skipped,"
            " points_credited = :pc, points_debited = :pd, window_start = coalesce(:ws, window_start)"
            " where id = :id and status = 'running' returning id"
        ), {"ttl": self.lease_seconds, "pages": p.pages, "seen": p.payments_seen, "posted": p.posted,
            "dups": p.duplicates, "skipped": p.skipped, "pc": p.points_credited, "pd": p.points_debited,
            "ws": window_start, "id": self.run_id}).first()
        if row is None:
            raise LeaseLost(f"the sync of connection {self.connection_id} lost its lease (it ran longer than "
                            f"{self.lease_seconds} s without a heartbeat and was taken over); nothing more was written")

    def heartbeat(self) -> None:
        """Beat in a transaction of its own (between slow provider calls)."""
        with self.engine.begin() as conn:
            self.checkpoint(conn)

    def add_skipped(self, provider_id: str | None, reason: str) -> None:
        with self._lock:
            self.progress.skipped += 1
            if len(self.skipped_records) < MAX_SKIPPED_IN_SUMMARY:
                self.skipped_records.append({"provider_id": provider_id, "reason": reason[:300]})

    def finish(self, *, ok: bool, error: str | None = None, watermark_after: datetime | None = None,
               extra: dict[str, Any] | None = None, conn: Connection | None = None) -> SyncResult:
        """End the run (in `conn`'s transaction when given) and return its stored summary."""
        p = self.progress
        p.phase = "done" if ok else "failed"
        summary = {**p.as_dict(), "skipped_records": self.skipped_records, **(extra or {})}
        status = "succeeded" if ok else "failed"
        err = (error or "")[:MAX_ERROR_CHARS] or None
        params: dict[str, Any] = {"status": status, "error": err,
                  "summary": dumps(summary), "wm": watermark_after, "id": self.run_id,
                  "pages": p.pages, "seen": p.payments_seen, "posted": p.posted, "dups": p.duplicates,
                  "skipped": p.skipped, "pc": p.points_credited, "pd": p.points_debited}
        sql = sa.text(
            "update sync_runs set status = :status, finished_at = now() at time zone 'utc', error = :error,"
            " summary = cast(:summary as jsonb), watermark_after = :wm, pages = :pages, payments_seen = :seen,"
            " posted = :posted, duplicates = :dups, skipped = :skipped, points_credited = :pc,"
            " points_debited = :pd where id = :id and status = 'running'"
            " returning started_at, finished_at"
        )
        if conn is not None:
            row = conn.execute(sql, params).first()
        else:
            with self.engine.begin() as c:
                row = c.execute(sql, params).first()
        if row is None:
            raise LeaseLost(f"the sync of connection {self.connection_id} lost its lease before it finished")
        return SyncResult(
            run_id=self.run_id, connection_id=self.connection_id, provider=self.provider,
            status=status, started_at=row.started_at, finished_at=row.finished_at, pages=p.pages,
            payments_seen=p.payments_seen, posted=p.posted, duplicates=p.duplicates, skipped=p.skipped,
            points_credited=p.points_credited, points_debited=p.points_debited, watermark_after=watermark_after,
            error=err, skipped_records=list(self.skipped_records),
        )


def acquire_lease(
    engine: Engine,
    *,
    connection_id: uuid.UUID,
    tenant_id: uuid.UUID,
    provider: str,
    actor_user_id: uuid.UUID | None,
    trigger: str = "manual",
    lease_seconds: int = LEASE_SECONDS,
) -> SyncLease:
    """Start a run, or raise SyncAlreadyRunning. An expired lease is marked abandoned and taken over."""
    with engine.begin() as conn:
        conn.execute(sa.text(
            "update sync_runs set status = 'abandoned', finished_at = now() at time zone 'utc',"
            " error = 'lease expired: the sync stopped sending heartbeats (crashed or killed)'"
            " where connection_id = :c and status = 'running' and lease_expires_at < now() at time zone 'utc'"
        ), {"c": connection_id})
        run_id = conn.execute(sa.text(
            "insert into sync_runs (connection_id, tenant_id, provider, trigger, actor_user_id, lease_expires_at,"
            " started_at, heartbeat_at)"
            " values (:c, :t, :p, :trigger, :a, now() at time zone 'utc' + make_interval(secs => :ttl),"
            " now() at time zone 'utc', now() at time zone 'utc')"
            " on conflict (connection_id) where status = 'running' do nothing returning id"
        ), {"c": connection_id, "t": tenant_id, "p": provider, "trigger": trigger, "a": actor_user_id,
            "ttl": lease_seconds}).scalar()
        if run_id is None:
            since = conn.execute(sa.text(
                "select started_at from sync_runs where connection_id = :c and status = 'running'"
            ), {"c": connection_id}).scalar()
            raise SyncAlreadyRunning(
                f"a sync of connection {connection_id} is already running (since {since:%Y-%m-%d %H:%M:%S} UTC); "
                "wait for it to finish" if since else f"a sync of connection {connection_id} is already running"
            )
    return SyncLease(engine, run_id, connection_id, tenant_id, provider, lease_seconds)


def recent_failures(conn: Connection, connection_id: uuid.UUID, *, limit: int = 3) -> int:
    """How many of the last `limit` finished runs failed, counting back until one succeeded."""
    rows = conn.execute(sa.text(
        "select status from sync_runs where connection_id = :c and status in ('succeeded', 'failed', 'abandoned')"
        " order by started_at desc limit :n"
    ), {"c": connection_id, "n": limit}).scalars().all()
    count = 0
    for status in rows:
        if status == "succeeded":
            break
        count += 1
    return count


def list_runs(engine: Engine, *, actor: Actor, connection_id: uuid.UUID | None = None,
              tenant_id: uuid.UUID | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """Run history, newest first, within what the actor may see (VIEW_SYNC)."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
        raise ValidationError("limit must be between 1 and 1000")
    # ids may come from a form or URL: a malformed one is a clear error, not a database DataError
    connection_id = None if connection_id is None else as_uuid(connection_id, "connection id")
    tenant_id = None if tenant_id is None else as_uuid(tenant_id, "tenant id")
    scope = actor.tenant_scope(Permission.VIEW_SYNC)
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "select r.id, r.connection_id, r.tenant_id, r.provider, r.status, r.trigger, u.email as actor,"
            " r.started_at, r.finished_at, r.heartbeat_at, r.pages, r.payments_seen, r.posted, r.duplicates,"
            " r.skipped, r.points_credited, r.points_debited, r.watermark_after, r.error, r.summary"
            " from sync_runs r left join users u on u.id = r.actor_user_id"
            " where (cast(:c as uuid) is null or r.connection_id = :c)"
            " and (cast(:t as uuid) is null or r.tenant_id = :t)"
            " and (cast(:all_tenants as boolean) or r.tenant_id = any(cast(:scope as uuid[])))"
            " order by r.started_at desc limit :limit"
        ), {"c": connection_id, "t": tenant_id, "all_tenants": scope is None, "scope": scope or [],
            "limit": limit}).mappings().all()
    return [dict(r) for r in rows]


def get_run(engine: Engine, run_id: uuid.UUID, *, actor: Actor) -> dict[str, Any]:
    with engine.connect() as conn:
        row = conn.execute(sa.text("select * from sync_runs where id = :i"), {"i": run_id}).mappings().first()
    if row is None or not actor.can(Permission.VIEW_SYNC, row["tenant_id"]):
        raise NotFound(f"no sync run {run_id}")
    return dict(row)


class ConnectionAuthError(SalesarckError):
    """The provider refused the connection's credentials for good: the sync stops and the
    connection moves to `to_status` (token_expired or disconnected)."""

    def __init__(self, message: str, *, to_status: str, code: str | None = None) -> None:
        super().__init__(message)
        self.to_status = to_status
        self.code = code
