"""Repairs, with an audit trail: snapshots set to the ledger balance under a row lock, missed
accruals posted through the rewards engine, and an optional two-admin approval policy.

The ledger is never edited here. A snapshot repair locks the wallets (in id order), recomputes
their ledger balances inside the same transaction and refuses if a balance moved from what the
caller saw; each repaired wallet gets one `wallet.snapshot_repair` audit row (before and after).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from salesarck import audit
from salesarck.authz import Actor, Permission
from salesarck.errors import Conflict, NotFound, PermissionDenied, ValidationError
from salesarck.jsonutil import dumps
from salesarck.reconcile.engine import parse_tenant

APPROVAL_KEY = "repair_approval_required"
MAX_WALLETS = 100_000


@dataclass
class RepairOutcome:
    """What a repair did: `applied` (with the wallets changed) or `pending` (a request awaits approval)."""

    status: str
    request_id: str | None = None
    wallets: list[dict[str, Any]] = field(default_factory=list)  # wallet_id, before, after
    accruals: list[dict[str, Any]] = field(default_factory=list)  # transaction_id, points

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "request_id": self.request_id, "wallets_repaired": len(self.wallets),
                "accruals_posted": len(self.accruals), "wallets": self.wallets, "accruals": self.accruals}


def _parse_ids(values: Iterable[Any] | None) -> list[uuid.UUID] | None:
    if values is None:
        return None
    if isinstance(values, str | bytes):
        values = [values]
    out = []
    for v in values:
        try:
            text = str(v).strip()
            if len(text) > 64:
                raise ValueError
            out.append(v if isinstance(v, uuid.UUID) else uuid.UUID(text))
        except ValueError:
            raise ValidationError(f"not a wallet id (a UUID): {str(v)[:40]!r}") from None
        if len(out) > MAX_WALLETS:
            raise ValidationError(f"at most {MAX_WALLETS} wallets per repair")
    if not out:
        raise ValidationError("no wallets named")
    return sorted(set(out), key=str)


def _target(wallet_ids: Iterable[Any] | None, tenant_id: Any) -> tuple[list[uuid.UUID] | None, uuid.UUID | None]:
    ids = _parse_ids(wallet_ids)
    tenant = parse_tenant(tenant_id)
    if (ids is None) == (tenant is None):
        raise ValidationError("name the wallets to repair, or a tenant to repair all its drifted wallets (not both)")
    return ids, tenant


def _begin(bind: Engine | Connection) -> Any:
    return bind.begin() if isinstance(bind, Engine) else _Nested(bind)


class _Nested:
    """Run inside a caller's connection: a savepoint, so a refusal leaves nothing behind."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.tx: Any = None

    def __enter__(self) -> Connection:
        self.tx = self.conn.begin_nested()
        return self.conn

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.tx.commit()
        else:
            self.tx.rollback()


def approval_required(conn: Connection) -> bool:
    value = conn.execute(sa.text("select value from reconcile_settings where key = :k"), {"k": APPROVAL_KEY}).scalar()
    return bool(value) if value is not None else False


def set_approval_policy(engine: Engine | Connection, *, actor: Actor, required: bool, reason: str) -> bool:
    """Turn the two-admin approval of repairs on or off (admins only; audited)."""
    if not isinstance(required, bool):
        raise ValidationError("required must be true or false")
    actor.require(Permission.MANAGE_POLICY)
    actor.require_admin()
    why = audit.require_reason(reason)
    with _begin(engine) as conn:
        conn.execute(sa.text("select pg_advisory_xact_lock(hashtext('salesarck.repair_policy'))"))
        before = approval_required(conn)
        conn.execute(sa.text(
            "insert into reconcile_settings (key, value, updated_by, updated_at) values (:k, cast(:v as jsonb), :u,"
            " now() at time zone 'utc') on conflict (key) do update set value = excluded.value,"
            " updated_by = excluded.updated_by, updated_at = excluded.updated_at"),
            {"k": APPROVAL_KEY, "v": json.dumps(required), "u": actor.user_id})
        audit.record(conn, actor=actor, action="reconcile.approval_policy", target_type="setting",
                     target_id=APPROVAL_KEY, before={"required": before}, after={"required": required}, reason=why)
    return required


def _check_scope(conn: Connection, actor: Actor, ids: list[uuid.UUID] | None, tenant: uuid.UUID | None,
                 permission: Permission) -> None:
    actor.require(permission)
    actor.require_admin()
    if tenant is not None and conn.execute(sa.text("select 1 from tenants where id = :t"), {"t": tenant}).first() is None:
        raise NotFound(f"no tenant {tenant}")
    if ids is not None:
        found = conn.execute(sa.text("select count(*) from wallets where id = any(:ids)"), {"ids": ids}).scalar_one()
        if found != len(ids):
            raise NotFound(f"{len(ids) - found} of the named wallets do not exist")


def _ledger_balances(conn: Connection, ids: list[uuid.UUID] | None, tenant: uuid.UUID | None,
                     lock: bool) -> list[Any]:
    """Wallets in scope with snapshot and ledger balance; locked (id order) when `lock`."""
    where = "w.id = any(:ids)" if ids is not None else "w.tenant_id = :t"
    locked = ""
    if lock:
        conn.execute(sa.text(f"select id from wallets w where {where} order by id for update"),  # noqa: S608
                     {"ids": ids, "t": tenant})
    return list(conn.execute(sa.text(
        f"select w.id, w.tenant_id, w.points_balance, coalesce(b.bal, 0) as ledger {locked}"  # noqa: S608
        " from wallets w left join (select l.wallet_id, sum(case when l.entry_type = 'credit' then l.points"
        " else -l.points end) as bal from wallet_ledger l where l.wallet_id in"
        f" (select w.id from wallets w where {where}) group by l.wallet_id) b on b.wallet_id = w.id"
        f" where {where} order by w.id"), {"ids": ids, "t": tenant}).all())


def _apply(conn: Connection, actor: Actor, ids: list[uuid.UUID] | None, tenant: uuid.UUID | None, reason: str,
           expected: dict[str, int] | None) -> list[dict[str, Any]]:
    seen = {str(r.id): int(r.ledger) for r in _ledger_balances(conn, ids, tenant, lock=False)}
    if expected:
        for wid, points in expected.items():
            if wid in seen and seen[wid] != int(points):
                raise Conflict(f"the ledger of wallet {wid} moved ({points} -> {seen[wid]}); reconcile again")
    rows = _ledger_balances(conn, ids, tenant, lock=True)
    for r in rows:
        if str(r.id) in seen and int(r.ledger) != seen[str(r.id)]:
            raise Conflict(f"the ledger of wallet {r.id} moved while repairing; nothing was changed, try again")
    drifted = [r for r in rows if int(r.points_balance) != int(r.ledger)]
    if not drifted:
        return []
    if any(abs(int(r.ledger)) > 2**31 - 1 for r in drifted):
        raise Conflict("a ledger balance does not fit the snapshot column; refusing")
    changes = [{"wallet_id": str(r.id), "tenant_id": str(r.tenant_id), "before": int(r.points_balance),
                "after": int(r.ledger)} for r in drifted]
    conn.execute(sa.text(
        "update wallets w set points_balance = c.after, updated_at = now() at time zone 'utc'"
        " from unnest(cast(:ids as uuid[]), cast(:after as integer[])) as c(id, after) where w.id = c.id"),
        {"ids": [c["wallet_id"] for c in changes], "after": [c["after"] for c in changes]})
    conn.execute(sa.text(
        "insert into admin_audit_logs (id, actor_user_id, action, target_entity_id, target_entity_type,"
        " before_state, after_state, reason, created_at)"
        " select gen_random_uuid(), :actor, 'wallet.snapshot_repair', c.id, 'wallet',"
        " jsonb_build_object('points_balance', c.before, 'ledger_points', c.after),"
        " jsonb_build_object('points_balance', c.after), :reason, now() at time zone 'utc'"
        " from unnest(cast(:ids as text[]), cast(:before as integer[]), cast(:after as integer[])) as c(id, before, after)"),
        {"actor": actor.user_id, "reason": reason, "ids": [c["wallet_id"] for c in changes],
         "before": [c["before"] for c in changes], "after": [c["after"] for c in changes]})
    return changes


def repair_wallets(engine: Engine | Connection, *, actor: Actor, wallet_ids: Iterable[Any] | None = None,
                   tenant_id: Any = None, reason: str, expected: dict[str, int] | None = None) -> RepairOutcome:
    """Set drifted snapshots to their ledger balance (named wallets, or every wallet of a tenant).

    With the approval policy on, this files a request instead (status `pending`). `expected`
    (wallet id -> ledger points the caller saw) makes the repair refuse if a ledger moved since.
    """
    ids, tenant = _target(wallet_ids, tenant_id)
    why = audit.require_reason(reason)
    with _begin(engine) as conn:
        _check_scope(conn, actor, ids, tenant, Permission.REPAIR)
        if approval_required(conn):
            return _file_request(conn, actor, ids, tenant, why)
        changes = _apply(conn, actor, ids, tenant, why, expected)
    return RepairOutcome(status="applied", wallets=changes)


def _file_request(conn: Connection, actor: Actor, ids: list[uuid.UUID] | None, tenant: uuid.UUID | None,
                  reason: str) -> RepairOutcome:
    rid = uuid.uuid4()
    conn.execute(sa.text(
        "insert into repair_requests (id, tenant_id, wallet_ids, reason, status, requested_by, requested_at)"
        " values (:id, :t, cast(:w as jsonb), :r, 'pending', :u, now() at time zone 'utc')"),
        {"id": rid, "t": tenant, "w": None if ids is None else dumps([str(i) for i in ids]), "r": reason,
         "u": actor.user_id})
    audit.record(conn, actor=actor, action="repair.request", target_type="repair_request", target_id=rid,
                 after={"tenant_id": tenant, "wallet_ids": ids, "status": "pending"}, reason=reason)
    return RepairOutcome(status="pending", request_id=str(rid))


def request_repair(engine: Engine | Connection, *, actor: Actor, wallet_ids: Iterable[Any] | None = None,
                   tenant_id: Any = None, reason: str) -> RepairOutcome:
    """File a repair request (whatever the policy); another active admin approves or rejects it."""
    ids, tenant = _target(wallet_ids, tenant_id)
    why = audit.require_reason(reason)
    with _begin(engine) as conn:
        _check_scope(conn, actor, ids, tenant, Permission.REPAIR)
        return _file_request(conn, actor, ids, tenant, why)


def _load_request(conn: Connection, request_id: Any) -> Any:
    try:
        rid = request_id if isinstance(request_id, uuid.UUID) else uuid.UUID(str(request_id).strip()[:64])
    except ValueError:
        raise ValidationError(f"not a request id: {str(request_id)[:40]!r}") from None
    row = conn.execute(sa.text("select * from repair_requests where id = :i for update"), {"i": rid}).first()
    if row is None:
        raise NotFound(f"no repair request {rid}")
    if row.status != "pending":
        raise Conflict(f"repair request {rid} is already {row.status}")
    return row


def _decider(actor: Actor, row: Any) -> None:
    actor.require(Permission.APPROVE_REPAIR)
    actor.require_admin()
    if row.requested_by == actor.user_id:
        raise PermissionDenied("a repair must be approved or rejected by a different admin than the requester")


def approve_repair(engine: Engine | Connection, *, actor: Actor, request_id: Any, reason: str | None = None
                   ) -> RepairOutcome:
    """Approve a pending request (a second, different active admin) and apply it in one transaction."""
    why = audit.require_reason(reason or "approved")
    with _begin(engine) as conn:
        row = _load_request(conn, request_id)
        _decider(actor, row)
        ids = None if row.wallet_ids is None else [uuid.UUID(w) for w in row.wallet_ids]
        changes = _apply(conn, actor, ids, row.tenant_id, row.reason, None)
        result = {"wallets_repaired": len(changes)}
        conn.execute(sa.text(
            "update repair_requests set status = 'applied', decided_by = :u, decided_at = now() at time zone 'utc',"
            " decision_reason = :r, result = cast(:res as jsonb) where id = :i"),
            {"u": actor.user_id, "r": why, "res": json.dumps(result), "i": row.id})
        audit.record(conn, actor=actor, action="repair.approve", target_type="repair_request", target_id=row.id,
                     before={"status": "pending"}, after={"status": "applied", **result}, reason=why)
    return RepairOutcome(status="applied", request_id=str(row.id), wallets=changes)


def reject_repair(engine: Engine | Connection, *, actor: Actor, request_id: Any, reason: str) -> RepairOutcome:
    """Reject a pending request (a different active admin; audited)."""
    why = audit.require_reason(reason)
    with _begin(engine) as conn:
        row = _load_request(conn, request_id)
        _decider(actor, row)
        conn.execute(sa.text(
            "update repair_requests set status = 'rejected', decided_by = :u, decided_at = now() at time zone 'utc',"
            " decision_reason = :r where id = :i"), {"u": actor.user_id, "r": why, "i": row.id})
        audit.record(conn, actor=actor, action="repair.reject", target_type="repair_request", target_id=row.id,
                     before={"status": "pending"}, after={"status": "rejected"}, reason=why)
    return RepairOutcome(status="rejected", request_id=str(row.id))


def list_requests(engine: Engine | Connection, *, actor: Actor, status: str | None = None) -> pd.DataFrame:
    actor.require(Permission.REPAIR)
    with _begin(engine) as conn:
        rows = conn.execute(sa.text(
            "select r.id as request_id, r.status, r.tenant_id, r.wallet_ids, r.reason, u.email as requested_by,"
            " r.requested_at, d.email as decided_by, r.decided_at, r.decision_reason"
            " from repair_requests r join users u on u.id = r.requested_by left join users d on d.id = r.decided_by"
            " where (cast(:s as text) is null or r.status = :s) order by r.requested_at desc limit 500"),
            {"s": status}).mappings().all()
    return pd.DataFrame([dict(r) for r in rows])


def repair_missing_accruals(engine: Engine | Connection, *, actor: Actor, transaction_ids: Iterable[Any] | None = None,
                            tenant_id: Any = None, reason: str) -> RepairOutcome:
    """Post missed accruals through the rewards engine's `accrue` (never by editing a snapshot):
    the named transactions, or every transaction of a tenant that `missing_reward_event` finds."""
    from salesarck.rewards.posting import accrue

    why = audit.require_reason(reason)
    tenant = parse_tenant(tenant_id)
    ids = None
    if transaction_ids is not None:
        ids = _parse_ids(transaction_ids)
    if (ids is None) == (tenant is None):
        raise ValidationError("name the transactions, or a tenant to post all its missed accruals (not both)")
    actor.require(Permission.REPAIR)
    actor.require_admin()
    posted: list[dict[str, Any]] = []
    with _begin(engine) as conn:
        if ids is None:
            from salesarck.reconcile import checks as C
            from salesarck.reconcile.engine_postgres import fetch, transaction_sql

            rows = fetch(conn, transaction_sql(conn, C.Scope(tenants=(tenant,) if tenant else None)))
            ids = [r["transaction_id"] for r in rows if r["rule_in_force"] and int(r["n_earn_events"]) == 0]
        for tid in ids:
            points = accrue(conn, tid)
            posted.append({"transaction_id": str(tid), "points": int(points)})
            audit.record(conn, actor=actor, action="transaction.accrual_repair", target_type="transaction",
                         target_id=tid, after={"points_credited": int(points)}, reason=why)
    return RepairOutcome(status="applied", accruals=posted)
