"""`reconcile()`: run the checks on either backend, explain drift, record the run."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from salesarck.authz import Actor, Permission
from salesarck.errors import PermissionDenied, ValidationError
from salesarck.reconcile import checks as C
from salesarck.reconcile import engine_duckdb, engine_postgres, explain, runs
from salesarck.reconcile import incremental as incr
from salesarck.reconcile.report import ReconciliationReport, drift_frame, findings_frame
from salesarck.timeutil import utcnow

log = logging.getLogger(__name__)
BACKENDS = ("postgres", "duckdb")
Progress = Callable[[str, int, int], None] | None


def parse_tenant(tenant_id: Any) -> uuid.UUID | None:
    if tenant_id is None:
        return None
    if isinstance(tenant_id, uuid.UUID):
        return tenant_id
    text = str(tenant_id).strip()
    try:
        if len(text) > 64:
            raise ValueError
        return uuid.UUID(text)
    except ValueError:
        raise ValidationError(f"not a tenant id (a UUID): {text[:40]!r}") from None


def resolve_tenants(actor: Actor | None, tenant_id: uuid.UUID | None) -> tuple[uuid.UUID, ...] | None:
    """The tenants a run covers: the one asked for, limited to what the actor may see."""
    if actor is None or actor.is_admin:
        return None if tenant_id is None else (tenant_id,)
    allowed = actor.tenant_scope(Permission.VIEW_FINANCE) or []
    if tenant_id is not None:
        if tenant_id not in allowed:
            raise PermissionDenied(f"{actor} may not view finance for tenant {tenant_id}")
        return (tenant_id,)
    if not allowed:
        raise PermissionDenied(f"{actor} may not view finance for any tenant")
    return tuple(sorted(allowed, key=str))


@contextmanager
def _reading(bind: Engine | Connection) -> Iterator[Connection]:
    """One consistent snapshot: a REPEATABLE READ, read-only transaction on an engine; a caller's
    connection is used as it is (inside its transaction)."""
    if isinstance(bind, Connection):
        yield bind
        return
    with bind.connect() as conn:
        conn = conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        with conn.begin():
            yield conn


def _writable(conn: Connection) -> bool:
    row = conn.execute(sa.text("select current_setting('transaction_read_only') = 'off'"
                               " and not pg_is_in_recovery()")).scalar()
    return bool(row)


def reconcile(conn: Engine | Connection | str | Path, *, tenant_id: Any = None, backend: str = "postgres",
              checks: Any = None, incremental: bool = False, actor: Actor | None = None,
              progress: Progress = None) -> ReconciliationReport:
    """Recompute every balance from the ledger and run the checks; returns drift and findings.

    `conn` is an engine or connection (postgres or duckdb backend); for duckdb it may also be the
    folder of a Parquet export. With an actor the run is recorded when the connection is writable.
    `incremental=True` recomputes only what changed since the last recorded run of the same scope.
    """
    if backend not in BACKENDS:
        raise ValidationError(f"unknown backend {str(backend)[:20]!r}; choose postgres or duckdb")
    check_ids = C.parse_checks(checks)
    tenant = parse_tenant(tenant_id)
    if actor is not None:
        actor.require(Permission.VIEW_FINANCE, tenant)
    tenants = resolve_tenants(actor, tenant)
    scope = C.Scope(tenants=tenants)
    started_at, t0 = utcnow(), time.perf_counter()
    timings: dict[str, float] = {}
    db_snapshot: str | None = None
    base_run: uuid.UUID | None = None
    is_incremental = False

    if isinstance(conn, str | Path):
        if backend != "duckdb":
            raise ValidationError("a Parquet folder can only be reconciled with the duckdb backend")
        con = engine_duckdb.connect_parquet(conn)
        drift, findings, totals = engine_duckdb.run_checks(con, check_ids, scope, timings=timings,
                                                           progress=progress)
        _explain(drift, lambda sql: engine_duckdb.fetch(con, sql), timings)
        con.close()
        return _report(None, drift, findings, totals, backend, check_ids, tenant, False, False, timings, t0)

    key = runs.scope_key(tenants, check_ids)
    if backend == "duckdb":
        from salesarck.db.arrow import read_tables

        t1 = time.perf_counter()
        with _reading(conn) as rc:
            db_snapshot = str(rc.execute(sa.text("select pg_current_snapshot()::text")).scalar())
        tables = read_tables(conn.engine if isinstance(conn, Connection) else conn)
        timings["load_arrow"] = time.perf_counter() - t1
        con = engine_duckdb.connect_arrow(tables)
        tables.clear()  # DuckDB holds its own copy now
        drift, findings, totals = engine_duckdb.run_checks(con, check_ids, scope, timings=timings,
                                                           progress=progress)
        _explain(drift, lambda sql: engine_duckdb.fetch(con, sql), timings)
        con.close()
    else:
        with _reading(conn) as rc:
            engine_postgres.tune(rc)
            db_snapshot = str(rc.execute(sa.text("select pg_current_snapshot()::text")).scalar())
            plan = incremental_plan = None
            if incremental:
                incremental_plan = incremental_plan_for(rc, key, db_snapshot, tenants)
            if incremental_plan is not None:
                plan = incremental_plan
                base_run, is_incremental = plan.base_run_id, True
                d_new, f_new, _ = engine_postgres.run_checks(rc, check_ids, plan.scope, timings=timings,
                                                             progress=progress)
                _explain(d_new, lambda sql: engine_postgres.fetch(rc, sql), timings)
                drift, findings = plan.merge(d_new, f_new)
                totals = plan.totals(rc)
            else:
                drift, findings, totals = engine_postgres.run_checks(rc, check_ids, scope, timings=timings,
                                                                     progress=progress)
                _explain(drift, lambda sql: engine_postgres.fetch(rc, sql), timings)

    run_id: uuid.UUID | None = None
    recorded = False
    if actor is not None and actor.can(Permission.RUN_RECONCILIATION, tenant):
        run_id = uuid.uuid4()
        scope_tenant = tenant if tenant is not None else (tenants[0] if tenants and len(tenants) == 1 else None)
        recorded = _record(conn, run_id=run_id, actor=actor, tenant_id=scope_tenant, key=key, backend=backend,
                           checks=check_ids, incremental=is_incremental, base_run_id=base_run,
                           db_snapshot=db_snapshot, started_at=started_at, t0=t0, totals=totals, drift=drift,
                           findings=findings, timings=timings)
        if not recorded:
            run_id = None
    return _report(run_id, drift, findings, totals, backend, check_ids, tenant, is_incremental, recorded,
                   timings, t0)


def incremental_plan_for(rc: Connection, key: str, db_snapshot: str,
                         tenants: tuple[uuid.UUID, ...] | None) -> incr.IncrementalPlan | None:
    return incr.plan(rc, key=key, tenants=tenants)


def _explain(drift: list[dict[str, Any]], fetch: Callable[[str], list[dict[str, Any]]],
             timings: dict[str, float]) -> None:
    t = time.perf_counter()
    explain.explain(drift, fetch)
    timings["explain"] = time.perf_counter() - t


def _record(conn: Engine | Connection, *, t0: float, **kw: Any) -> bool:
    """Record the run; a read-only connection (an analyst's notebook) records nothing."""
    finished = utcnow()
    kw["finished_at"] = finished
    kw["duration_ms"] = int((time.perf_counter() - t0) * 1000)
    try:
        if isinstance(conn, Connection):
            if not _writable(conn):
                return False
            runs.record_run(conn, **kw)
            return True
        with conn.begin() as wc:
            if not _writable(wc):
                return False
            runs.record_run(wc, **kw)
        return True
    except DBAPIError as exc:
        if "read-only" in str(exc.orig) or "permission denied" in str(exc.orig):
            log.info("run not recorded: %s", str(exc.orig).splitlines()[0])
            return False
        raise


def _report(run_id: uuid.UUID | None, drift: list[dict[str, Any]], findings: list[dict[str, Any]],
            totals: dict[str, int], backend: str, checks: tuple[str, ...], tenant: uuid.UUID | None,
            is_incremental: bool, recorded: bool, timings: dict[str, float], t0: float) -> ReconciliationReport:
    timings["total"] = time.perf_counter() - t0
    return ReconciliationReport(
        run_id=None if run_id is None else str(run_id), drift=drift_frame(drift), findings=findings_frame(findings),
        wallets_checked=int(totals["wallets_checked"]), ledger_entries=int(totals["ledger_entries"]),
        backend=backend, checks=checks, tenant_id=None if tenant is None else str(tenant),
        incremental=is_incremental, recorded=recorded, timings=timings)
