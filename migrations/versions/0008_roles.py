"""Least-privilege runtime role.

Creates `salesarck_runtime` (NOLOGIN; the migrating user may `SET ROLE` to it, and a login role can
be granted it): it owns no table, may read and write the mutable tables, may only INSERT into
`wallet_ledger` and `admin_audit_logs` (no UPDATE, DELETE, TRUNCATE), and, not being an owner,
cannot disable their triggers. Used when `SALESARCK_RUNTIME_ROLE` names it.

Roles are cluster-wide: the downgrade revokes this database's grants and leaves the role.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

ROLE = "salesarck_runtime"
APPEND_ONLY = ("wallet_ledger", "admin_audit_logs")


def upgrade() -> None:
    op.execute(
        f"""
        do $$ begin
            if not exists (select 1 from pg_roles where rolname = '{ROLE}') then
                create role {ROLE} nologin;
            end if;
        exception when duplicate_object then null;  -- a concurrent migration created it
        end $$
        """
    )
    op.execute(f"grant {ROLE} to current_user")
    op.execute(f"grant usage on schema public to {ROLE}")
    op.execute(f"grant select, insert, update, delete on all tables in schema public to {ROLE}")
    op.execute(f"grant usage, select on all sequences in schema public to {ROLE}")
    op.execute(f"grant execute on all functions in schema public to {ROLE}")
    for table in APPEND_ONLY:
        op.execute(f"revoke update, delete, truncate on {table} from {ROLE}")
    op.execute(f"revoke update, delete, truncate on alembic_version from {ROLE}")
    # tables added by later revisions get the same read/write grants
    op.execute(f"alter default privileges in schema public grant select, insert, update, delete on tables to {ROLE}")
    op.execute(f"alter default privileges in schema public grant usage, select on sequences to {ROLE}")


def downgrade() -> None:
    op.execute(f"alter default privileges in schema public revoke all on tables from {ROLE}")
    op.execute(f"alter default privileges in schema public revoke all on sequences from {ROLE}")
    op.execute(f"revoke all on all tables in schema public from {ROLE}")
    op.execute(f"revoke all on all sequences in schema public from {ROLE}")
    op.execute(f"revoke all on all functions in schema public from {ROLE}")
    op.execute(f"revoke usage on schema public from {ROLE}")
