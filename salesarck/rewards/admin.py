"""Admin actions on wallets and users: each one transaction with an `admin_audit_logs` row.

Every function runs in the caller's transaction (`with engine.begin() as conn:`), checks the
actor against the permission matrix (only active admins hold these permissions), requires a
reason, and writes before/after state to the audit log. A refusal writes nothing.
"""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from salesarck import audit
from salesarck.authz import Actor, Permission
from salesarck.errors import Conflict, NotFound, ValidationError
from salesarck.rewards.guard import MAX_INT32, as_int, as_uuid, lock_wallet, require, wallet_state


def _wallet_tenant(conn: Connection, wallet_id: uuid.UUID) -> uuid.UUID:
    tid = conn.execute(sa.text("select tenant_id from wallets where id = :w"), {"w": wallet_id}).scalar()
    if tid is None:
        raise NotFound(f"no wallet {wallet_id}")
    return uuid.UUID(str(tid))


def adjust_wallet(conn: Connection, *, actor: Actor, wallet_id: uuid.UUID, points: int, reason: str) -> dict[str, Any]:
    """Credit (points > 0) or debit (points < 0) a wallet by hand; returns the wallet's new state.

    Writes a ledger entry with `created_by_admin` (description `adjustment`), moves the snapshot,
    and audits `wallet.adjust`. A debit below zero or a balance beyond 2^31-1 is refused.
    """
    wallet_id = as_uuid(wallet_id, "wallet id")
    points = as_int(points, "points", minimum=-MAX_INT32)
    if points == 0:
        raise ValidationError("points must not be 0 (positive credits, negative debits)")
    why = audit.require_reason(reason)
    require(conn, actor, Permission.ADJUST_WALLETS, _wallet_tenant(conn, wallet_id))
    row = lock_wallet(conn, wallet_id)
    before = wallet_state(row)
    new_balance = row.points_balance + points
    if new_balance < 0 and points < 0:
        raise Conflict(f"cannot debit {-points} points: the balance is {row.points_balance}")
    if new_balance > MAX_INT32:
        raise Conflict("the balance would exceed 2147483647 points")
    conn.execute(sa.text("insert into wallet_ledger (wallet_id, entry_type, points, description, created_by_admin,"
                         " created_at) values (:w, :t, :p, 'adjustment', :a, now() at time zone 'utc')"),
                 {"w": wallet_id, "t": "credit" if points > 0 else "debit", "p": abs(points), "a": actor.user_id})
    after_row = conn.execute(sa.text(
        "update wallets set points_balance = points_balance + :p, updated_at = now() at time zone 'utc' "
        "where id = :w returning id, tenant_id, user_id, points_balance, status"), {"w": wallet_id, "p": points}).one()
    after = wallet_state(after_row) | {"adjustment": points}
    audit.record(conn, actor=actor, action="wallet.adjust", target_type="wallet", target_id=wallet_id,
                 before=before, after=after, reason=why)
    return after


def _set_wallet_status(conn: Connection, actor: Actor, wallet_id: uuid.UUID, reason: str, status: str,
                       action: str) -> dict[str, Any]:
    wallet_id = as_uuid(wallet_id, "wallet id")
    why = audit.require_reason(reason)
    require(conn, actor, Permission.ADJUST_WALLETS, _wallet_tenant(conn, wallet_id))
    row = lock_wallet(conn, wallet_id)
    if row.status == status:
        raise Conflict(f"wallet {wallet_id} is already {status}")
    after_row = conn.execute(sa.text(
        "update wallets set status = :s, updated_at = now() at time zone 'utc' where id = :w "
        "returning id, tenant_id, user_id, points_balance, status"), {"w": wallet_id, "s": status}).one()
    after = wallet_state(after_row)
    audit.record(conn, actor=actor, action=action, target_type="wallet", target_id=wallet_id,
                 before=wallet_state(row), after=after, reason=why)
    return after


def freeze_wallet(conn: Connection, *, actor: Actor, wallet_id: uuid.UUID, reason: str) -> dict[str, Any]:
    """Freeze a wallet: it stops earning (accruals post 0) and cannot redeem; audited `wallet.freeze`."""
    return _set_wallet_status(conn, actor, wallet_id, reason, "frozen", "wallet.freeze")


def unfreeze_wallet(conn: Connection, *, actor: Actor, wallet_id: uuid.UUID, reason: str) -> dict[str, Any]:
    """Unfreeze a wallet (earning and redeeming resume); audited `wallet.unfreeze`."""
    return _set_wallet_status(conn, actor, wallet_id, reason, "active", "wallet.unfreeze")




def _lock_user(conn: Connection, user_id: uuid.UUID | str) -> Any:
    if isinstance(user_id, str) and "@" in user_id:
        row = conn.execute(sa.text("select id, email, mobile, role, status from users where lower(email) = :e "
                                   "for update"), {"e": user_id.strip().lower()[:320]}).first()
    else:
        row = conn.execute(sa.text("select id, email, mobile, role, status from users where id = :u for update"),
                           {"u": as_uuid(user_id, "user id")}).first()
    if row is None:
        raise NotFound(f"no user {str(user_id)[:80]}")
    return row


def _user_state(row: Any) -> dict[str, Any]:
    return {"user_id": row.id, "email": row.email, "role": row.role, "status": row.status}


def _set_user_status(conn: Connection, actor: Actor, user_id: uuid.UUID | str, reason: str, status: str,
                     allowed_from: tuple[str, ...], action: str) -> dict[str, Any]:
    why = audit.require_reason(reason)
    require(conn, actor, Permission.MANAGE_USERS, None)
    row = _lock_user(conn, user_id)
    if row.id == actor.user_id:
        raise Conflict("you cannot change your own status")
    if row.status not in allowed_from:
        raise Conflict(f"user {row.email or row.id} is {row.status}; only {' or '.join(allowed_from)} users can be "
                       f"made {status}")
    after_row = conn.execute(sa.text(
        "update users set status = :s, updated_at = now() at time zone 'utc' where id = :u "
        "returning id, email, mobile, role, status"), {"u": row.id, "s": status}).one()
    after = _user_state(after_row)
    audit.record(conn, actor=actor, action=action, target_type="user", target_id=row.id,
                 before=_user_state(row), after=after, reason=why)
    return after


def approve_user(conn: Connection, *, actor: Actor, user_id: uuid.UUID | str, reason: str) -> dict[str, Any]:
    """Approve a pending (or re-activate a suspended) user; audited `user.approve`. Accepts an id or email."""
    return _set_user_status(conn, actor, user_id, reason, "active", ("pending_approval", "suspended"), "user.approve")


def suspend_user(conn: Connection, *, actor: Actor, user_id: uuid.UUID | str, reason: str) -> dict[str, Any]:
    """Suspend an active or pending user (they may no longer act); audited `user.suspend`."""
    return _set_user_status(conn, actor, user_id, reason, "suspended", ("active", "pending_approval"), "user.suspend")
