"""The admin audit log: one append-only row per admin action, with before and after state."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from salesarck.authz import Actor
from salesarck.errors import ValidationError
from salesarck.jsonutil import dumps

MAX_REASON_CHARS = 2000


def require_reason(reason: str | None) -> str:
    """Admin actions must say why; the reason is what finance reads later."""
    text = (reason or "").strip()
    if not text:
        raise ValidationError("a reason is required for this action")
    if len(text) > MAX_REASON_CHARS:
        raise ValidationError(f"the reason is longer than {MAX_REASON_CHARS} characters")
    if "\x00" in text:
        raise ValidationError("the reason contains a NUL character")
    return text


def record(
    conn: Connection,
    *,
    actor: Actor,
    action: str,
    target_type: str | None,
    target_id: object | None,
    before: Any = None,
    after: Any = None,
    reason: str | None = None,
) -> uuid.UUID:
    """Append an audit row inside the caller's transaction and return its id."""
    row_id = uuid.uuid4()
    conn.execute(
        sa.text(
            "insert into admin_audit_logs (id, actor_user_id, action, target_entity_id, target_entity_type,"
            " before_state, after_state, reason, created_at)"
            " values (:id, :actor, :action, :tid, :ttype, cast(:before as jsonb), cast(:after as jsonb), :reason,"
            " now() at time zone 'utc')"
        ),
        {
            "id": row_id,
            "actor": actor.user_id,
            "action": action,
            "tid": None if target_id is None else str(target_id),
            "ttype": target_type,
            "before": None if before is None else dumps(before),
            "after": None if after is None else dumps(after),
            "reason": reason,
        },
    )
    return row_id
