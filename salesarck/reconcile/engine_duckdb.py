"""The duckdb backend (the analyst path): the same checks over Arrow tables read from PostgreSQL
(ADBC) or over a Parquet export (`salesarck export parquet DIR`)."""

# ruff: noqa: S608  (SQL is composed only from fixed fragments, validated table names and UUID literals)

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from salesarck.errors import ValidationError
from salesarck.reconcile import checks as C
from salesarck.reconcile.engine_postgres import run_plan

Progress = Callable[[str, int, int], None] | None

# Exact integer twin of the SQL function `salesarck_points` (revision 0004): amount x rate /
# 10^exponent with the rate scaled to an integer (10 decimals), so no step goes through a double.
_RATE = "cast(cast(cast(cast(cfg as json) ->> 'conversionRate' as decimal(38, 10)) * 10000000000 as decimal(38, 0)) as hugeint)"
_N = f"(cast(amt as hugeint) * {_RATE})"
_D = "cast(pow(10, e + 10) as hugeint)"
POINTS_MACRO = f"""
create or replace macro salesarck_points(amt, e, cfg) as (
    case
        when amt is null or e is null or cfg is null then null
        when amt <= 0 or amt < coalesce(cast(cast(cfg as json) ->> 'minSpendMinorUnits' as decimal(38, 10)), 0) then 0
        else cast(least(
            case coalesce(cast(cfg as json) ->> 'roundingPolicy', 'floor')
                when 'ceil' then ({_N} + {_D} - 1) // {_D}
                when 'round' then (2 * {_N} + {_D}) // (2 * {_D})
                else {_N} // {_D}
            end,
            coalesce(cast(floor(cast(cast(cfg as json) ->> 'maxPointsPerTransaction' as decimal(38, 10))) as hugeint),
                     2147483647),
            2147483647) as integer)
    end
)
"""

# Empty stand-ins for optional side tables, so the shared SQL runs on any export.
_EMPTY = {
    "transaction_refunds": "select cast(null as uuid) as id, cast(null as uuid) as tenant_id,"
                           " cast(null as uuid) as transaction_id, cast(null as integer) as amount_minor_units,"
                           " cast(null as varchar) as status, cast(null as boolean) as is_completed,"
                           " cast(null as timestamp) as refunded_at where false",
    "transaction_details": "select cast(null as uuid) as transaction_id, cast(null as varchar) as location_id,"
                           " cast(null as varchar) as provider_status, cast(null as boolean) as is_voided where false",
    "admin_audit_logs": "select cast(null as uuid) as id, cast(null as uuid) as actor_user_id,"
                        " cast(null as varchar) as action, cast(null as varchar) as target_entity_id,"
                        " cast(null as varchar) as target_entity_type, cast(null as json) as before_state,"
                        " cast(null as json) as after_state, cast(null as varchar) as reason,"
                        " cast(null as timestamp) as created_at where false",
}
REQUIRED = ("wallets", "wallet_ledger", "transactions", "reward_events", "reward_rules", "currency_minor_units")


def connect_arrow(tables: dict[str, pa.Table]) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    for name, table in tables.items():
        # copied into DuckDB's own storage: Arrow scans cannot push filters on UUID columns down
        con.register(f"_arrow_{name}", table)
        con.execute(f"create table {name} as select * from _arrow_{name}")
        con.unregister(f"_arrow_{name}")
    _finish(con, set(tables))
    return con


def connect_parquet(directory: str | Path) -> duckdb.DuckDBPyConnection:
    folder = Path(directory)
    if not folder.is_dir():
        raise ValidationError(f"no Parquet export at {folder}")
    con = duckdb.connect()
    present = set()
    for path in sorted(folder.glob("*.parquet")):
        name = path.stem
        if name in C_TABLE_NAMES:
            literal = str(path).replace("'", "''")
            con.execute(f"create view {name} as select * from read_parquet('{literal}')")
            present.add(name)
    _finish(con, present)
    return con


C_TABLE_NAMES = {*REQUIRED, *_EMPTY, "tenants"}


def _finish(con: duckdb.DuckDBPyConnection, present: set[str]) -> None:
    missing = [t for t in REQUIRED if t not in present]
    if missing:
        raise ValidationError(f"the data lacks tables the checks need: {', '.join(missing)}")
    for name, sql in _EMPTY.items():
        if name not in present:
            con.execute(f"create view {name} as {sql}")
    con.execute(POINTS_MACRO)


def fetch(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict[str, Any]]:
    cur = con.execute(sql)
    cols = [d[0] for d in cur.description or []]
    return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]


def run_checks(con: duckdb.DuckDBPyConnection, checks: tuple[str, ...], scope: C.Scope, *,
               timings: dict[str, float], progress: Progress = None
               ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, int]]:
    return run_plan(lambda sql: fetch(con, sql), C.DUCKDB,
                    lambda cross: C.transaction_sql(C.DUCKDB, scope, cross_tenant=cross),
                    checks, scope, timings=timings, progress=progress)
