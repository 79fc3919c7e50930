"""Tables into Arrow (ADBC, columnar straight from PostgreSQL's binary COPY) and Parquet exports.

The analyst path: DuckDB reads these Arrow tables or the Parquet files without a row-by-row Python
detour. UUIDs stay UUIDs (`arrow.uuid`) and JSONB stays JSON (`arrow.json`), so DuckDB sees the
same types as PostgreSQL.
"""

# ruff: noqa: S608  (SQL is composed only from fixed fragments, validated table names and UUID literals)

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine

from salesarck.errors import ValidationError

_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
ROW_GROUP_ROWS = 122_880

# What the reconciliation checks read (and what `salesarck export parquet` writes by default).
RECONCILE_TABLES: dict[str, str] = {
    "wallets": "id, tenant_id, user_id, points_balance, status, created_at, updated_at",
    "wallet_ledger": "id, wallet_id, entry_type, points, description, source_transaction_id, created_by_admin,"
                     " created_at",
    "transactions": "id, tenant_id, user_id, provider, provider_transaction_id, amount_minor_units, currency,"
                    " transaction_at, created_at",
    "reward_events": "id, wallet_id, transaction_id, rule_version_id, points_earned, points_redeemed, created_at",
    "reward_rules": "id, tenant_id, version, is_active, rule_config, effective_from, created_at",
    "admin_audit_logs": "id, actor_user_id, action, target_entity_id, target_entity_type, before_state,"
                        " after_state, reason, created_at",
    "transaction_refunds": "id, tenant_id, transaction_id, amount_minor_units, status, is_completed, refunded_at",
    "transaction_details": "transaction_id, location_id, provider_status, is_voided",
    "currency_minor_units": "code, exponent",
    "tenants": "id, name, country, status, onboarding_profile, created_at",
}


def adbc_uri(bind: Engine | Connection | URL | str) -> str:
    """A libpq URI for ADBC from an engine, connection or URL (password included: never log it)."""
    if isinstance(bind, str):
        url = sa.make_url(bind)
    elif isinstance(bind, URL):
        url = bind
    else:
        url = bind.engine.url
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def _check_name(name: str) -> str:
    if not _NAME.match(name):
        raise ValidationError(f"not a table name: {name[:70]!r}")
    return name


def read_tables(bind: Engine | Connection | URL | str, tables: dict[str, str] | Sequence[str] | None = None,
                *, where: dict[str, str] | None = None) -> dict[str, pa.Table]:
    """Read tables (name -> column list, or names for all columns) into Arrow, all from one
    REPEATABLE READ snapshot so they are consistent with each other."""
    import adbc_driver_postgresql.dbapi as adbc

    spec = RECONCILE_TABLES if tables is None else (
        dict(tables) if isinstance(tables, dict) else {t: "*" for t in tables})
    out: dict[str, pa.Table] = {}
    with adbc.connect(adbc_uri(bind)) as conn:
        cur = conn.cursor()
        try:
            cur.execute("set transaction isolation level repeatable read")
            cur.execute("set transaction read only")
            for name, cols in spec.items():
                _check_name(name)
                cur.execute("select to_regclass(" + "'" + name + "') is not null")
                row = cur.fetchone()
                if not row or not row[0]:
                    continue
                clause = f" where {where[name]}" if where and name in where else ""
                cur.execute(f"select {cols} from {name}{clause}")
                out[name] = cur.fetch_arrow_table()
        finally:
            cur.close()
            conn.rollback()
    return out


def export_parquet(bind: Engine | Connection | URL | str, directory: str | Path,
                   tables: Iterable[str] | None = None) -> list[Path]:
    """Write each table to `DIR/<table>.parquet` (zstd) and return the paths."""
    target = Path(directory)
    if target.exists() and not target.is_dir():
        raise ValidationError(f"{target} exists and is not a directory")
    target.mkdir(parents=True, exist_ok=True)
    spec = RECONCILE_TABLES if tables is None else {
        _check_name(t): RECONCILE_TABLES.get(t, "*") for t in tables}
    paths = []
    for name, table in read_tables(bind, spec).items():
        path = target / f"{name}.parquet"
        tmp = path.with_suffix(".parquet.tmp")
        # DuckDB's own row group size: a 10M-row ledger gives ~80 units of parallel scan, not 10
        pq.write_table(table, tmp, compression="zstd", row_group_size=ROW_GROUP_ROWS)
        tmp.replace(path)
        paths.append(path)
    return paths
