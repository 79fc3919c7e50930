"""Recorded reconciliation runs: who ran what, when, how long, what was found; trend and compare."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from salesarck.authz import Actor, Permission
from salesarck.errors import NotFound, ValidationError
from salesarck.reconcile.checks import DRIFT_COLUMNS, FINDING_COLUMNS

MAX_LIST = 1000
_FINDING_INSERT = sa.text(
    "insert into reconcile_findings (run_id, kind, check_id, severity, entity_type, entity_id, tenant_id,"
    " wallet_id, transaction_id, user_id, snapshot_points, ledger_points, drift_points, explanation_code, detail)"
    " values (:run_id, :kind, :check_id, :severity, :entity_type, :entity_id, :tenant_id, :wallet_id,"
    " :transaction_id, :user_id, :snapshot_points, :ledger_points, :drift_points, :explanation_code, :detail)"
)


def scope_key(tenants: tuple[uuid.UUID, ...] | None, checks: tuple[str, ...]) -> str:
    """What a checkpoint covers: an incremental run reuses only a run with the same scope key."""
    who = "all" if tenants is None else ",".join(sorted(str(t) for t in tenants))
    return f"{who}|{','.join(checks)}"


def record_run(conn: Connection, *, run_id: uuid.UUID, actor: Actor, tenant_id: uuid.UUID | None, key: str,
               backend: str, checks: tuple[str, ...], incremental: bool, base_run_id: uuid.UUID | None,
               db_snapshot: str | None, started_at: datetime, finished_at: datetime, duration_ms: int,
               totals: dict[str, int], drift: list[dict[str, Any]], findings: list[dict[str, Any]],
               timings: dict[str, float]) -> None:
    """Insert the run and its drift/findings (executemany in one transaction), then prune change
    tracking that no retained checkpoint needs any more."""
    conn.execute(
        sa.text("insert into reconcile_runs (id, actor_user_id, tenant_id, scope_key, backend, checks, incremental,"
                " base_run_id, status, db_snapshot, started_at, finished_at, duration_ms, wallets_checked,"
                " ledger_entries, drift_count, error_count, warning_count, timings) values (:id, :actor, :tenant,"
                " :key, :backend, cast(:checks as jsonb), :inc, :base, 'completed', :snap, :started, :finished,"
                " :ms, :wallets, :ledger, :drift, :errors, :warnings, cast(:timings as jsonb))"),
        {"id": run_id, "actor": actor.user_id, "tenant": tenant_id, "key": key, "backend": backend,
         "checks": json.dumps(list(checks)), "inc": incremental, "base": base_run_id, "snap": db_snapshot,
         "started": started_at, "finished": finished_at, "ms": duration_ms,
         "wallets": totals["wallets_checked"], "ledger": totals["ledger_entries"], "drift": len(drift),
         "errors": len(drift) + sum(1 for f in findings if f["severity"] == "error"),
         "warnings": sum(1 for f in findings if f["severity"] == "warning"),
         "timings": json.dumps({k: round(v, 4) for k, v in timings.items()})},
    )
    rows = [{"run_id": run_id, "kind": "drift", "check_id": "snapshot_drift", "severity": "error",
             "entity_type": "wallet", "entity_id": d["wallet_id"], "tenant_id": d["tenant_id"],
             "wallet_id": d["wallet_id"], "transaction_id": None, "user_id": d["user_id"],
             "snapshot_points": d["snapshot_points"], "ledger_points": d["ledger_points"],
             "drift_points": d["drift_points"], "explanation_code": d["explanation_code"],
             "detail": d["explanation"]} for d in drift]
    rows += [{"run_id": run_id, "kind": "finding", "check_id": f["check"], "severity": f["severity"],
              "entity_type": f["entity_type"], "entity_id": f["entity_id"], "tenant_id": f["tenant_id"],
              "wallet_id": f["wallet_id"], "transaction_id": f["transaction_id"], "user_id": None,
              "snapshot_points": None, "ledger_points": None, "drift_points": None, "explanation_code": None,
              "detail": f["detail"]} for f in findings]
    for i in range(0, len(rows), 5000):
        conn.execute(_FINDING_INSERT, rows[i:i + 5000])
    conn.execute(sa.text(
        "delete from reconcile_changes where txid < (select min(pg_snapshot_xmin(cast(s.db_snapshot as pg_snapshot))"
        "::text::bigint) from (select distinct on (scope_key) db_snapshot from reconcile_runs"
        " where status = 'completed' and db_snapshot is not null"
        " and started_at > (now() at time zone 'utc') - interval '30 days'"
        " order by scope_key, started_at desc) s)"))


def _s(v: Any) -> str | None:
    return None if v is None else str(v)


def load_results(conn: Connection, run_id: uuid.UUID) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A recorded run's drift rows and findings, in the shapes the engine produces."""
    drift: list[dict[str, Any]] = []
    findings: list[dict[str, Any]] = []
    for r in conn.execute(sa.text("select * from reconcile_findings where run_id = :r order by id"),
                          {"r": run_id}).mappings():
        if r["kind"] == "drift":
            drift.append({"wallet_id": str(r["wallet_id"]), "tenant_id": _s(r["tenant_id"]), "user_id": _s(r["user_id"]),
                          "snapshot_points": int(r["snapshot_points"]), "ledger_points": int(r["ledger_points"]),
                          "drift_points": int(r["drift_points"]), "explanation_code": r["explanation_code"],
                          "explanation": r["detail"]})
        else:
            findings.append({"check": r["check_id"], "severity": r["severity"], "entity_type": r["entity_type"],
                             "entity_id": r["entity_id"], "tenant_id": _s(r["tenant_id"]), "detail": r["detail"],
                             "wallet_id": _s(r["wallet_id"]), "transaction_id": _s(r["transaction_id"])})
    return drift, findings


def _visible_tenants(actor: Actor) -> list[uuid.UUID] | None:
    return actor.tenant_scope(Permission.VIEW_FINANCE)


def list_runs(engine: Engine | Connection, *, actor: Actor, limit: int = 50) -> pd.DataFrame:
    """Recent runs the actor may see (admins: all; others: runs scoped to their tenants), newest first."""
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LIST:
        raise ValidationError(f"limit must be between 1 and {MAX_LIST}")
    actor.require(Permission.VIEW_FINANCE)
    tenants = _visible_tenants(actor)
    sql = sa.text(
        "select r.id as run_id, r.started_at, r.finished_at, r.duration_ms, u.email as actor, r.tenant_id,"
        " r.backend, r.checks, r.incremental, r.status, r.wallets_checked, r.ledger_entries, r.drift_count,"
        " r.error_count, r.warning_count from reconcile_runs r join users u on u.id = r.actor_user_id"
        " where (:all_tenants or r.tenant_id = any(:tenants))"
        " order by r.started_at desc, r.id limit :limit")
    params: dict[str, Any] = {"limit": limit, "tenants": tenants or [], "all_tenants": tenants is None}
    with _conn(engine) as conn:
        rows = [dict(r) for r in conn.execute(sql, params).mappings()]
    cols = ["run_id", "started_at", "finished_at", "duration_ms", "actor", "tenant_id", "backend", "checks",
            "incremental", "status", "wallets_checked", "ledger_entries", "drift_count", "error_count",
            "warning_count"]
    return pd.DataFrame(rows, columns=cols)


class _conn:
    """`with _conn(engine_or_connection) as conn` without closing a caller's connection."""

    def __init__(self, bind: Engine | Connection) -> None:
        self.bind = bind
        self._own: Connection | None = None

    def __enter__(self) -> Connection:
        if isinstance(self.bind, Connection):
            return self.bind
        self._own = self.bind.connect()
        return self._own

    def __exit__(self, *exc: object) -> None:
        if self._own is not None:
            self._own.close()


def _parse_run_id(value: Any) -> uuid.UUID:
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value).strip()[:64])
    except ValueError:
        raise ValidationError(f"not a run id: {str(value)[:40]!r}") from None


def compare_runs(engine: Engine | Connection, run_a: Any, run_b: Any, *, actor: Actor | None = None
                 ) -> dict[str, pd.DataFrame]:
    """What changed between two runs: drift and findings `new` in B, `resolved` since A, and
    `changed` drift amounts. Keyed by (check, entity)."""
    a, b = _parse_run_id(run_a), _parse_run_id(run_b)
    with _conn(engine) as conn:
        for rid in (a, b):
            row = conn.execute(sa.text("select tenant_id from reconcile_runs where id = :r"), {"r": rid}).first()
            if row is None:
                raise NotFound(f"no reconciliation run {rid}")
            if actor is not None:
                if row.tenant_id is None:
                    actor.require_admin()
                else:
                    actor.require(Permission.VIEW_FINANCE, row.tenant_id)
        da, fa = load_results(conn, a)
        db, fb = load_results(conn, b)
    return {"drift": _diff(pd.DataFrame(da, columns=DRIFT_COLUMNS), pd.DataFrame(db, columns=DRIFT_COLUMNS),
                           ["wallet_id"], "drift_points"),
            "findings": _diff(pd.DataFrame(fa, columns=FINDING_COLUMNS), pd.DataFrame(fb, columns=FINDING_COLUMNS),
                              ["check", "entity_type", "entity_id", "detail"], None)}


def _diff(a: pd.DataFrame, b: pd.DataFrame, key: list[str], value: str | None) -> pd.DataFrame:
    merged = a.merge(b, on=key, how="outer", suffixes=("_a", "_b"), indicator=True)
    status = merged["_merge"].map({"left_only": "resolved", "right_only": "new", "both": "unchanged"})
    if value is not None:
        changed = (merged["_merge"] == "both") & (merged[f"{value}_a"] != merged[f"{value}_b"])
        status = status.where(~changed, "changed")
    merged.insert(0, "status", status.astype(str))
    return merged.drop(columns="_merge").sort_values(["status", *key]).reset_index(drop=True)
