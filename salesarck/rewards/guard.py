"""Shared checks for mutating rewards actions: who may act, and well-formed numbers."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from salesarck.authz import Actor, Permission
from salesarck.errors import NotFound, PermissionDenied, ValidationError

MAX_INT32 = 2_147_483_647


def require(conn: Connection, actor: Actor, permission: Permission, tenant_id: uuid.UUID | None) -> None:
    """Check the matrix, and that the actor is still active in the database (not a stale snapshot)."""
    if not isinstance(actor, Actor):
        raise PermissionDenied("an acting user is required")
    actor.require(permission, tenant_id)
    row = conn.execute(sa.text("select role, status from users where id = :u"), {"u": actor.user_id}).first()
    if row is None or row.status != "active" or (actor.role == "admin" and row.role != "admin"):
        raise PermissionDenied(f"{actor} is no longer an active user with this role")


def as_uuid(value: Any, what: str) -> uuid.UUID:
    """A UUID from a UUID or its text; anything else is a clear ValidationError."""
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, str) and len(value) <= 64:
        try:
            return uuid.UUID(value.strip())
        except ValueError:
            pass
    raise ValidationError(f"{what} must be a UUID, got {str(value)[:40]!r}")


def as_int(value: Any, what: str, *, minimum: int, maximum: int = MAX_INT32) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{what} must be a whole number")
    if not minimum <= value <= maximum:
        raise ValidationError(f"{what} must be between {minimum} and {maximum}, got {value}")
    return value


def lock_wallet(conn: Connection, wallet_id: uuid.UUID) -> Any:
    """The wallet row, locked for this transaction (concurrent changes queue behind it)."""
    row = conn.execute(sa.text("select id, tenant_id, user_id, points_balance, status from wallets "
                               "where id = :w for update"), {"w": wallet_id}).first()
    if row is None:
        raise NotFound(f"no wallet {wallet_id}")
    return row


def wallet_state(row: Any) -> dict[str, Any]:
    return {"wallet_id": row.id, "tenant_id": row.tenant_id, "user_id": row.user_id,
            "points_balance": row.points_balance, "status": row.status}
