"""Alembic operations, plus adoption of a database the existing (Drizzle) system created."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

from salesarck.errors import SchemaError

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"

# Columns of the seed's tables at each Drizzle migration (0000 lacks the fields 0001/0002 add).
_SEED_0000: dict[str, set[str]] = {
    "users": {"id", "email", "mobile", "role", "status", "created_at", "updated_at"},
    "tenants": {"id", "name", "country", "status", "created_at"},
    "tenant_users": {"id", "user_id", "tenant_id", "role"},
    "pos_connections": {
        "id", "tenant_id", "pos_type", "access_token_enc", "refresh_token_enc", "merchant_account_id",
        "status", "token_expires_at", "last_synced_at", "created_at",
    },
    "pos_webhook_events_raw": {
        "id", "tenant_id", "provider", "event_type", "raw_payload", "signature_header", "processed", "created_at",
    },
    "transactions": {
        "id", "tenant_id", "user_id", "provider", "provider_transaction_id", "amount_minor_units", "currency",
        "customer_ref", "line_items", "transaction_at", "created_at",
    },
    "wallets": {"id", "tenant_id", "user_id", "points_balance", "status", "created_at", "updated_at"},
    "wallet_ledger": {
        "id", "wallet_id", "entry_type", "points", "description", "source_transaction_id", "created_by_admin",
        "created_at",
    },
    "reward_rules": {"id", "tenant_id", "version", "is_active", "rule_config", "effective_from", "created_at"},
    "reward_events": {
        "id", "wallet_id", "transaction_id", "rule_version_id", "points_earned", "points_redeemed", "created_at",
    },
    "idempotency_keys": {"key", "tenant_id", "handler", "result_snapshot", "expires_at", "created_at"},
    "admin_audit_logs": {
        "id", "actor_user_id", "action", "target_entity_id", "target_entity_type", "before_state",
        "after_state", "reason", "created_at",
    },
}
_ADDED_BY = {
    "0001": {"tenants": {"pos_provider_preference", "onboarding_profile", "updated_at"}},
    "0002": {"pos_connections": {"square_payments_watermark_at"}},
}


def alembic_config(connection: Connection | None = None, url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    cfg.stdout = io.StringIO()
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _seed_columns_at(level: str) -> dict[str, set[str]]:
    cols = {t: set(c) for t, c in _SEED_0000.items()}
    for rev in ("0001", "0002"):
        if rev > level:
            break
        for table, added in _ADDED_BY[rev].items():
            cols[table] |= added
    return cols


@dataclass(frozen=True)
class Adoption:
    """What an un-stamped database was recognised as."""

    revision: str | None  # None: empty database, nothing to stamp
    drizzle_journal: bool


def recognise_schema(conn: Connection) -> Adoption:
    """Match a database without `alembic_version` to the seed's migration 0000, 0001 or 0002.

    Refuses, with the difference named, anything that is neither empty nor one of those.
    """
    insp = sa.inspect(conn)
    tables = set(insp.get_table_names(schema="public"))
    journal = "__drizzle_migrations" in set(insp.get_table_names(schema="drizzle")) if "drizzle" in set(
        insp.get_schema_names()
    ) else False
    present = tables & set(_SEED_0000)
    if not present:
        if journal:
            raise SchemaError("found a Drizzle migrations journal but none of the seed's tables; refusing to guess")
        return Adoption(None, journal)
    missing = sorted(set(_SEED_0000) - tables)
    if missing:
        raise SchemaError(f"unrecognised schema: seed tables missing: {', '.join(missing)}")
    actual = {t: {c["name"] for c in insp.get_columns(t, schema="public")} for t in _SEED_0000}
    for level in ("0002", "0001", "0000"):
        if actual == _seed_columns_at(level):
            return Adoption(level, journal)
    # name the closest difference to help the operator
    expected = _seed_columns_at("0000")
    diffs = []
    for table in sorted(_SEED_0000):
        extra = actual[table] - _seed_columns_at("0002")[table]
        lacking = expected[table] - actual[table]
        if extra:
            diffs.append(f"{table} has unknown columns {sorted(extra)}")
        if lacking:
            diffs.append(f"{table} lacks columns {sorted(lacking)}")
    detail = "; ".join(diffs) or "columns match no single seed migration (a partial 0001?)"
    raise SchemaError(f"unrecognised schema: {detail}")


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str | None]:
    """Migrate to `revision`, adopting a Drizzle-made database first. Returns (adopted_as, now_at)."""
    adopted: str | None = None
    with engine.begin() as conn:
        conn.execute(sa.text("select pg_advisory_xact_lock(hashtext('salesarck.migrate'))"))
        ctx = MigrationContext.configure(conn)
        if ctx.get_current_revision() is None and not _has_version_table(conn):
            found = recognise_schema(conn)
            if found.revision is not None:
                command.stamp(alembic_config(conn), found.revision)
                adopted = found.revision
        command.upgrade(alembic_config(conn), revision)
    return adopted, current_revision(engine)


def downgrade(engine: Engine, revision: str) -> str | None:
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), revision)
    return current_revision(engine)


def _has_version_table(conn: Connection) -> bool:
    return sa.inspect(conn).has_table("alembic_version")
