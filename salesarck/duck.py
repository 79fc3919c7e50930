"""DuckDB SQL over the project's tables, for analysts: `db.sql("select ... from wallet_ledger")`.

Tables are registered under their schema names (`wallets`, `wallet_ledger`, ... and `public.<name>`
for copy-pasted PostgreSQL queries). Each is read into Arrow the first time a query names it and then
cached (`refresh()` forgets them), or read from a Parquet export (`salesarck export parquet DIR`).
Reads from PostgreSQL go through `salesarck.db.arrow` (ADBC: binary COPY in a READ ONLY transaction),
filtered in the database to the actor's tenants; secret columns (encrypted POS tokens) never leave it.
Times are UTC-aware (`TIMESTAMPTZ`; the session time zone is UTC), ids are text, JSONB is JSON text.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from salesarck.authz import Actor
from salesarck.errors import PermissionDenied, ValidationError
from salesarck.frames import RowLimitExceeded, check_limit, visible_tenants

MAX_QUERY_CHARS = 100_000
DEFAULT_RESULT_LIMIT = 100_000
RESULT_BATCH_ROWS = 65_536
# Columns that hold secrets: never copied out of PostgreSQL, whoever asks.
SECRET_COLUMNS = {"access_token_enc", "refresh_token_enc"}
SECRET_HINTS = ("_enc", "secret", "token_hash", "password")

# How a table reaches its tenant, for actors scoped to some tenants. Tables not listed here (and not
# carrying a tenant_id column) are readable only without scope (admins, or no actor).
_TENANT_PATHS: dict[str, str] = {
    "tenants": "id = any({ids})",
    "wallet_ledger": "wallet_id in (select id from wallets where tenant_id = any({ids}))",
    "reward_events": "wallet_id in (select id from wallets where tenant_id = any({ids}))",
    "transaction_details": "transaction_id in (select id from transactions where tenant_id = any({ids}))",
}


def _metadata() -> sa.MetaData:
    from salesarck.db.all_models import metadata

    return metadata


def project_tables() -> dict[str, sa.Table]:
    """Every table the package's models define (the seed's and the side tables), by name."""
    return {t.name: t for t in _metadata().sorted_tables}


def _is_secret(column: str) -> bool:
    return column in SECRET_COLUMNS or any(h in column for h in SECRET_HINTS)


class DuckTables:
    """A DuckDB connection whose tables are the project's, loaded on demand and cached."""

    def __init__(self, engine: Engine, *, actor: Actor | None = None, parquet_dir: str | Path | None = None) -> None:
        self.engine = engine
        self.actor = actor
        self.scope = visible_tenants(actor, None)
        self.parquet_dir = Path(parquet_dir) if parquet_dir is not None else None
        if self.parquet_dir is not None:
            if self.scope is not None:
                raise PermissionDenied(
                    "a Parquet export holds every tenant; only admins (or a session without an actor) may query one"
                )
            if not self.parquet_dir.is_dir():
                raise ValidationError(f"no Parquet export at {self.parquet_dir}; run `salesarck export parquet DIR`")
        self.tables = project_tables()
        self.con = duckdb.connect()
        self.con.execute("set TimeZone = 'UTC'")
        self.con.execute("create schema if not exists public")
        self._loaded: dict[str, pa.Table] = {}

    def close(self) -> None:
        self.con.close()
        self._loaded.clear()

    def refresh(self) -> None:
        """Forget every cached table; the next query reads them again."""
        for name in list(self._loaded):
            self.con.execute(f'drop view if exists public."{name}"')
            self.con.unregister(name)
        self._loaded.clear()

    @property
    def loaded(self) -> list[str]:
        return sorted(self._loaded)

    # -- loading ----------------------------------------------------------------------------------

    def _columns(self, table: sa.Table) -> list[sa.Column[Any]]:
        return [c for c in table.columns if not _is_secret(c.name)]

    def _scope_clause(self, table: sa.Table) -> str | None:
        """A WHERE clause keeping the actor's tenants (None: no filter), from validated UUIDs only."""
        if self.scope is None:
            return None
        ids = "'{" + ",".join(str(uuid.UUID(str(t))) for t in self.scope) + "}'::uuid[]"
        path = _TENANT_PATHS.get(table.name)
        if path is not None:
            return path.format(ids=ids)
        if "tenant_id" in table.columns:
            return f"tenant_id = any({ids})"
        raise PermissionDenied(f"{self.actor} may not read {table.name} through SQL: it is not scoped to a tenant")

    def _from_postgres(self, table: sa.Table) -> pa.Table:
        """Through the reconciliation's Arrow reader (ADBC, binary COPY, a READ ONLY transaction)."""
        from salesarck.db.arrow import read_tables

        columns = ", ".join(f'"{c.name}"' for c in self._columns(table))
        clause = self._scope_clause(table)
        where = {table.name: clause} if clause else None
        read = read_tables(self.engine, {table.name: columns}, where=where)
        if table.name not in read:
            raise ValidationError(f"the database has no {table.name} table yet; run `salesarck db upgrade`")
        return _utc(read[table.name])

    def _from_parquet(self, name: str) -> pa.Table:
        assert self.parquet_dir is not None
        for candidate in (self.parquet_dir / f"{name}.parquet", self.parquet_dir / name):
            if candidate.exists():
                pattern = str(candidate / "*.parquet") if candidate.is_dir() else str(candidate)
                table = self.con.execute("select * from read_parquet(?)", [pattern]).to_arrow_table()
                keep = [c for c in table.column_names if not _is_secret(c)]
                return _utc(table.select(keep))
        raise ValidationError(f"the Parquet export in {self.parquet_dir} has no {name} table")

    def _plain(self, table: pa.Table) -> pa.Table:
        """Extension types (arrow.uuid, arrow.json) become text through DuckDB itself, so ids compare as
        text and DuckDB can push filters into the cached table (it cannot for arrow.uuid)."""
        if not any(isinstance(f.type, pa.ExtensionType) or "arrow." in str(f.type) for f in table.schema):
            return table
        return self.con.from_arrow(table).to_arrow_table()

    def load(self, name: str) -> pa.Table:
        """Read one table into Arrow (once) and register it under its name and `public.<name>`."""
        if name in self._loaded:
            return self._loaded[name]
        if name not in self.tables:
            raise ValidationError(f"{name[:60]!r} is not one of the project's tables")
        table = self._from_parquet(name) if self.parquet_dir else self._from_postgres(self.tables[name])
        table = self._plain(table)
        self.con.register(name, table)
        self.con.execute(f'create or replace view public."{name}" as select * from main."{name}"')  # noqa: S608
        self._loaded[name] = table
        return table

    def referenced(self, query: str) -> set[str]:
        """Project tables a query names (DuckDB's parser; a word match when it cannot parse alone)."""
        try:
            names = {n.split(".")[-1].strip('"') for n in duckdb.get_table_names(query)}
        except duckdb.Error:
            names = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", query))
        return names & set(self.tables)

    # -- querying ---------------------------------------------------------------------------------

    def sql(
        self,
        query: str,
        params: list[Any] | dict[str, Any] | None = None,
        *,
        limit: int | None = DEFAULT_RESULT_LIMIT,
    ) -> pd.DataFrame:
        """Run one DuckDB query over the project's tables and return a DataFrame.

        A result of more than `limit` rows (default 100,000) is refused rather than turned into a
        huge DataFrame by accident: aggregate in SQL, add LIMIT, or pass `limit=None`.
        """
        if not isinstance(query, str) or not query.strip():
            raise ValidationError("sql() needs a query string")
        if len(query) > MAX_QUERY_CHARS or "\x00" in query:
            raise ValidationError(f"the query is longer than {MAX_QUERY_CHARS:,} characters or contains a NUL")
        limit = check_limit(limit)
        for name in sorted(self.referenced(query)):
            self.load(name)
        batches: list[pa.RecordBatch] = []
        rows = 0
        try:
            result = self.con.execute(query, params) if params is not None else self.con.execute(query)
            reader = result.to_arrow_reader(RESULT_BATCH_ROWS)
            for batch in reader:
                rows += batch.num_rows
                if limit is not None and rows > limit:
                    raise RowLimitExceeded(
                        f"the query returns more than {limit:,} rows; aggregate or add LIMIT in SQL, "
                        f"or pass limit=None (all=True) to fetch them all"
                    )
                batches.append(batch)
            arrow = pa.Table.from_batches(batches, schema=reader.schema)
        except duckdb.Error as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValidationError(f"DuckDB could not run the query: {first}") from None
        return to_pandas(arrow)


def _utc(table: pa.Table) -> pa.Table:
    """Naive timestamps are UTC in this schema: make them UTC-aware for DuckDB and pandas."""
    fields = []
    for f in table.schema:
        if pa.types.is_timestamp(f.type) and f.type.tz is None:
            fields.append(pa.field(f.name, pa.timestamp("us", tz="UTC")))
        else:
            fields.append(f)
    return table.cast(pa.schema(fields))


_PANDAS_TYPES = {
    pa.int8(): pd.Int64Dtype(), pa.int16(): pd.Int64Dtype(), pa.int32(): pd.Int64Dtype(),
    pa.int64(): pd.Int64Dtype(), pa.uint8(): pd.Int64Dtype(), pa.uint16(): pd.Int64Dtype(),
    pa.uint32(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype(), pa.string(): pd.StringDtype(),
    pa.large_string(): pd.StringDtype(),
}


def _integral_decimals(table: pa.Table) -> pa.Table:
    """DuckDB sums integers as HUGEINT (decimal(38,0) in Arrow): bring them back to int64 when they fit."""
    for i, f in enumerate(table.schema):
        if pa.types.is_decimal(f.type) and f.type.scale == 0:
            try:
                table = table.set_column(i, f.name, table.column(i).cast(pa.int64()))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                pass  # beyond int64: leave it as an exact decimal
    return table


def to_pandas(table: pa.Table) -> pd.DataFrame:
    """Arrow to pandas with nullable integers (points stay integers even with NULLs) and UTC times."""
    return _integral_decimals(table).to_pandas(types_mapper=_PANDAS_TYPES.get)


__all__ = ["DuckTables", "project_tables", "to_pandas"]
