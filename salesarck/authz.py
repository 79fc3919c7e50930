"""Who may do what: the one permission matrix, checked in the package (not only by the app).

`users.role = admin` with status `active` may do everything. Other users act per tenant through
`tenant_users.role`. Consumers, unknown users and users not `active` may do nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from salesarck.errors import PermissionDenied, ValidationError


class Permission(StrEnum):
    VIEW_FINANCE = "view_finance"  # overview, reconciliation, wallets, rewards timeline
    VIEW_TRANSACTIONS = "view_transactions"
    VIEW_SYNC = "view_sync"
    VIEW_AUDIT = "view_audit"
    RUN_RECONCILIATION = "run_reconciliation"  # records a run; changes no balances
    SYNC = "sync"
    PROCESS_WEBHOOKS = "process_webhooks"
    MANAGE_CONNECTIONS = "manage_connections"
    MANAGE_RULES = "manage_rules"
    ADJUST_WALLETS = "adjust_wallets"  # adjust, freeze, unfreeze, redeem on behalf
    MANAGE_USERS = "manage_users"  # approve, suspend
    REPAIR = "repair"
    APPROVE_REPAIR = "approve_repair"
    MANAGE_POLICY = "manage_policy"


P = Permission
# tenant role -> what it may do within its own tenants. Admins have every permission everywhere.
TENANT_ROLE_PERMISSIONS: dict[str, frozenset[Permission]] = {
    "client": frozenset({P.VIEW_FINANCE, P.VIEW_TRANSACTIONS, P.VIEW_SYNC, P.VIEW_AUDIT, P.RUN_RECONCILIATION}),
    "pos_operator": frozenset({P.VIEW_SYNC, P.VIEW_TRANSACTIONS, P.SYNC, P.PROCESS_WEBHOOKS}),
}


@dataclass(frozen=True)
class Actor:
    """The user acting, with the tenants they belong to. Build with `load_actor`."""

    user_id: uuid.UUID
    email: str | None
    role: str
    status: str
    tenant_roles: dict[uuid.UUID, str] = field(default_factory=dict)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin" and self.status == "active"

    @property
    def is_active(self) -> bool:
        return self.status == "active"

    def can(self, permission: Permission, tenant_id: uuid.UUID | None = None) -> bool:
        """True if allowed; `tenant_id=None` asks "in at least one tenant" (admins: everywhere)."""
        if self.is_admin:
            return True
        if not self.is_active or self.role in {"consumer"}:
            return False
        if tenant_id is None:
            return any(permission in TENANT_ROLE_PERMISSIONS.get(r, frozenset()) for r in self.tenant_roles.values())
        role = self.tenant_roles.get(tenant_id)
        return role is not None and permission in TENANT_ROLE_PERMISSIONS.get(role, frozenset())

    def require(self, permission: Permission, tenant_id: uuid.UUID | None = None) -> None:
        """Raise PermissionDenied unless allowed."""
        if not self.can(permission, tenant_id):
            where = f" for tenant {tenant_id}" if tenant_id else ""
            raise PermissionDenied(f"{self.email or self.user_id} may not {permission.value.replace('_', ' ')}{where}")

    def require_admin(self) -> None:
        if not self.is_admin:
            raise PermissionDenied(f"{self.email or self.user_id} is not an active admin; only admins may do this")

    def tenant_scope(self, permission: Permission) -> list[uuid.UUID] | None:
        """Tenants the actor may see for `permission`: None means all (admins), [] means none."""
        if self.is_admin:
            return None
        return [t for t in self.tenant_roles if self.can(permission, t)]

    def __str__(self) -> str:
        return self.email or str(self.user_id)


def load_actor(conn: Connection, email: str) -> Actor:
    """The user with this email and their tenant memberships; unknown users are refused."""
    email = (email or "").strip().lower()
    if not email or len(email) > 320:
        raise ValidationError("an actor email is required (use --actor or SALESARCK_LOCAL_USER)")
    row = conn.execute(
        sa.text("select id, email, role, status from users where lower(email) = :e"), {"e": email}
    ).first()
    if row is None:
        raise PermissionDenied(f"no user with email {email!r}; ask an admin to add you")
    roles = conn.execute(
        sa.text("select tenant_id, role from tenant_users where user_id = :u"), {"u": row.id}
    ).all()
    return Actor(row.id, row.email, row.role, row.status, {r.tenant_id: r.role for r in roles})
