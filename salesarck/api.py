"""The notebook API: `db = salesarck.connect()` and one-line DataFrames, DuckDB SQL and what-ifs.

`connect()` opens the same database the app and CLI use (DATABASE_URL, else the embedded server),
read-only by default: every pooled connection is put in READ ONLY mode by the database itself,
so neither a method nor a stray `db.engine` query can write. With an `actor` (an email or an
`Actor`), reads are scoped to that user's tenants exactly as in the app; actions need
`readonly=False` and an actor, and go through the package's own (audited) functions.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine

from salesarck import frames
from salesarck.authz import Actor, Permission, load_actor
from salesarck.errors import PermissionDenied, SchemaError, ValidationError

if TYPE_CHECKING:
    from salesarck.duck import DuckTables

TimeLike = datetime | date | str | None
TimelineKind = Literal["transactions", "rewards", "audit", "liability"]

# pandas offset aliases (what analysts type) -> the bucket names of salesarck.analytics
FREQ_ALIASES = {
    "h": "hour", "H": "hour", "hour": "hour",
    "D": "day", "d": "day", "day": "day",
    "W": "week", "w": "week", "week": "week",
    "M": "month", "MS": "month", "ME": "month", "month": "month",
}

# Reads that need an Actor (salesarck.analytics) get this one when the session has none: it sees
# every tenant, like the database credentials it stands for, and cannot write (the engine is read-only).
_CREDENTIALS_READER = Actor(
    user_id=uuid.UUID(int=0), email="(notebook: database credentials)", role="admin", status="active"
)


def make_readonly(engine: Engine, *, pooler: bool) -> Engine:
    """Make the database refuse writes on every connection and transaction of `engine`.

    Three layers, all enforced by PostgreSQL: each new connection gets READ ONLY as its session
    default (covers autocommit statements); each checkout sets the driver's `read_only` so
    psycopg opens transactions with BEGIN READ ONLY (covers raw DBAPI use); and every transaction
    SQLAlchemy begins runs `SET TRANSACTION READ ONLY` first, which also overrides SQLAlchemy's own
    `postgresql_readonly` reset (it would otherwise send BEGIN READ WRITE) and works behind a
    transaction pooler, where session state does not survive. Writes then fail with "cannot
    execute ... in a read-only transaction".
    """

    @event.listens_for(engine, "connect")
    def _session_read_only(dbapi_conn: Any, _record: Any) -> None:
        autocommit = dbapi_conn.autocommit
        dbapi_conn.autocommit = True
        try:
            with dbapi_conn.cursor() as cur:
                cur.execute("set session characteristics as transaction read only")
        finally:
            dbapi_conn.autocommit = autocommit
        dbapi_conn.read_only = True

    @event.listens_for(engine, "checkout")
    def _driver_read_only(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        dbapi_conn.read_only = True

    @event.listens_for(engine, "begin")
    def _transaction_read_only(conn: Connection) -> None:
        dbapi_conn = conn.connection.dbapi_connection
        if dbapi_conn is None or dbapi_conn.autocommit:  # autocommit: the session default applies
            return
        cur = dbapi_conn.cursor()  # a plain cursor: not the caller's stream_results options
        try:
            cur.execute("set transaction read only")
        finally:
            cur.close()

    _ = pooler  # every layer above is pooler-safe; kept for callers that know the mode
    return engine


def _open_engine(url: str | URL | None, *, readonly: bool) -> Engine:
    from salesarck.config import load_settings, normalize_database_url
    from salesarck.db.engine import check_connection, make_engine, resolve_url

    settings = load_settings()
    if url is None:
        resolved = resolve_url(settings)
    elif isinstance(url, URL):
        resolved = normalize_database_url(url.render_as_string(hide_password=False))
    elif isinstance(url, str):
        if len(url) > 4096:
            raise ValidationError("the database URL is longer than 4096 characters")
        resolved = normalize_database_url(url)
    else:
        raise ValidationError("url must be a database URL string such as postgresql://user@host/db")
    pooler = settings.uses_pooler(resolved)
    engine = make_engine(resolved, pooler=pooler)
    if readonly:
        make_readonly(engine, pooler=pooler)
    check_connection(engine)
    return engine


def _check_schema(engine: Engine) -> None:
    with engine.connect() as conn:
        missing = [t for t in ("wallets", "wallet_ledger", "transactions") if not sa.inspect(conn).has_table(t)]
    if missing:
        raise SchemaError(
            f"the database has no {', '.join(missing)} table; run `salesarck db upgrade` (and `salesarck demo seed`)"
        )


def connect(url: str | URL | None = None, actor: Actor | str | None = None, readonly: bool = True) -> SalesArck:
    """Open the project's database for analysis.

    `url`: a PostgreSQL URL; default DATABASE_URL, else the embedded database `make run` uses.
    `actor`: an email or `Actor`; scopes every read to that user's tenants (as in the app).
    `readonly`: True (default) makes the database refuse writes; False needs an actor.
    """
    if not isinstance(readonly, bool):
        raise ValidationError("readonly must be True or False")
    if not readonly and actor is None:
        raise PermissionDenied("readonly=False needs an actor: connect(actor='you@example.com', readonly=False)")
    if actor is not None and not isinstance(actor, Actor | str):
        raise ValidationError("actor must be an email address or an Actor")
    engine = _open_engine(url, readonly=readonly)
    try:
        _check_schema(engine)
        resolved: Actor | None = None
        if isinstance(actor, str):
            with engine.connect() as conn:
                resolved = load_actor(conn, actor)
        elif isinstance(actor, Actor):
            resolved = actor
        if resolved is not None and not resolved.is_active:
            raise PermissionDenied(f"{resolved} is not an active user")
    except BaseException:
        engine.dispose()
        raise
    return SalesArck(engine, actor=resolved, readonly=readonly)


class SalesArck:
    """An open analysis session: DataFrames, DuckDB SQL, reconciliation, timelines and what-ifs."""

    def __init__(self, engine: Engine, *, actor: Actor | None = None, readonly: bool = True) -> None:
        self.engine = engine
        self.actor = actor
        self.readonly = readonly
        self._duck: DuckTables | None = None

    # -- housekeeping ---------------------------------------------------------------------------

    def __repr__(self) -> str:
        who = f"actor={self.actor}" if self.actor else "no actor (database credentials are the boundary)"
        mode = "read-only" if self.readonly else "read-write"
        return f"<SalesArck {self.engine.url.render_as_string(hide_password=True)} {mode}, {who}>"

    def close(self) -> None:
        """Release the DuckDB tables and the database connections."""
        if self._duck is not None:
            self._duck.close()
            self._duck = None
        self.engine.dispose()

    def __enter__(self) -> SalesArck:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _rows(self, limit: int | None, all: bool) -> int | None:
        if not isinstance(all, bool):
            raise ValidationError("all must be True or False")
        return None if all else limit

    # -- row-level reads --------------------------------------------------------------------------

    def tenants(self) -> pd.DataFrame:
        """Tenants in scope, with their time zone."""
        return frames.tenants(self.engine, actor=self.actor)

    def wallets(
        self,
        tenant: object = None,
        *,
        user: object = None,
        status: str | None = None,
        limit: int | None = frames.DEFAULT_ROW_LIMIT,
        all: bool = False,
        head: int | None = None,
    ) -> pd.DataFrame:
        """Wallets with their snapshot balance."""
        return frames.wallets(
            self.engine, actor=self.actor, tenant=tenant, user=user, status=status, limit=self._rows(limit, all), head=head
        )

    def ledger(
        self,
        wallet: object = None,
        *,
        tenant: object = None,
        start: TimeLike = None,
        end: TimeLike = None,
        running_balance: bool | None = None,
        limit: int | None = frames.DEFAULT_ROW_LIMIT,
        all: bool = False,
        head: int | None = None,
    ) -> pd.DataFrame:
        """Ledger entries of one wallet or a tenant in [start, end); one wallet gets `balance_after`."""
        return frames.ledger(
            self.engine, actor=self.actor, wallet=wallet, tenant=tenant, start=start, end=end,
            running_balance=running_balance, limit=self._rows(limit, all), head=head,
        )

    def transactions(
        self,
        tenant: object = None,
        *,
        user: object = None,
        provider: str | None = None,
        start: TimeLike = None,
        end: TimeLike = None,
        line_items: bool = False,
        limit: int | None = frames.DEFAULT_ROW_LIMIT,
        all: bool = False,
        head: int | None = None,
    ) -> pd.DataFrame:
        """Transactions in [start, end) by provider payment time."""
        return frames.transactions(
            self.engine, actor=self.actor, tenant=tenant, user=user, provider=provider, start=start, end=end,
            line_items=line_items, limit=self._rows(limit, all), head=head,
        )

    def reward_events(
        self,
        tenant: object = None,
        *,
        wallet: object = None,
        transaction: object = None,
        start: TimeLike = None,
        end: TimeLike = None,
        limit: int | None = frames.DEFAULT_ROW_LIMIT,
        all: bool = False,
        head: int | None = None,
    ) -> pd.DataFrame:
        """Reward events in [start, end)."""
        return frames.reward_events(
            self.engine, actor=self.actor, tenant=tenant, wallet=wallet, transaction=transaction,
            start=start, end=end, limit=self._rows(limit, all), head=head,
        )

    def rules(self, tenant: object = None) -> pd.DataFrame:
        """Reward rule versions."""
        return frames.rules(self.engine, actor=self.actor, tenant=tenant)

    def audit(
        self,
        *,
        tenant: object = None,
        action: str | None = None,
        actor_email: str | None = None,
        target: object = None,
        target_type: str | None = None,
        start: TimeLike = None,
        end: TimeLike = None,
        limit: int | None = frames.DEFAULT_ROW_LIMIT,
        all: bool = False,
        head: int | None = None,
    ) -> pd.DataFrame:
        """Admin audit entries in [start, end)."""
        return frames.audit(
            self.engine, actor=self.actor, tenant=tenant, action=action, actor_email=actor_email, target=target,
            target_type=target_type, start=start, end=end, limit=self._rows(limit, all), head=head,
        )

    def chunks(self, table: str, *, chunksize: int = frames.CHUNK_ROWS, **filters: Any) -> Iterator[pd.DataFrame]:
        """Stream a large read as typed DataFrames of `chunksize` rows (flat memory).

        `table`: "ledger", "transactions", "reward_events", "wallets" or "audit"; `filters` as for
        the method of that name.
        """
        builders = {
            "ledger": lambda: frames.ledger_query(self.engine, actor=self.actor, **filters),
            "transactions": lambda: frames.transactions_query(actor=self.actor, **filters),
            "reward_events": lambda: frames.reward_events_query(self.engine, actor=self.actor, **filters),
            "wallets": lambda: frames.wallets_query(actor=self.actor, **filters),
            "audit": lambda: frames.audit_query(actor=self.actor, **filters),
        }
        if table not in builders:
            raise ValidationError(f"chunks() reads one of {', '.join(builders)}; got {str(table)[:40]!r}")
        try:
            query, spec = builders[table]()
        except TypeError as exc:
            raise ValidationError(f"unknown filter for {table}: {exc}") from None
        return frames.iter_frames(self.engine, query, spec, chunksize=chunksize)

    # -- DuckDB -----------------------------------------------------------------------------------

    def duck(self, parquet_dir: str | Path | None = None) -> DuckTables:
        """The DuckDB session behind `sql()` (tables load on first use and are cached)."""
        from salesarck.duck import DuckTables

        if parquet_dir is not None:
            if self._duck is not None:
                self._duck.close()
            self._duck = DuckTables(self.engine, actor=self.actor, parquet_dir=parquet_dir)
        elif self._duck is None:
            self._duck = DuckTables(self.engine, actor=self.actor)
        return self._duck

    def sql(
        self,
        query: str,
        params: list[Any] | dict[str, Any] | None = None,
        *,
        limit: int | None = frames.DEFAULT_ROW_LIMIT,
        all: bool = False,
    ) -> pd.DataFrame:
        """Run DuckDB SQL over the project's tables (by their schema names) and return a DataFrame.

        Tables load into Arrow on first use and stay cached (`refresh()`); a result over `limit`
        rows is refused unless `all=True` (aggregate in SQL instead of in pandas).
        """
        return self.duck().sql(query, params, limit=self._rows(limit, all))

    def refresh(self) -> None:
        """Forget cached DuckDB tables, so the next `sql()` reads the database again."""
        if self._duck is not None:
            self._duck.refresh()

    # -- aggregated views (the same functions the app draws) -----------------------------------------

    def _reader(self) -> Actor:
        return self.actor if self.actor is not None else _CREDENTIALS_READER

    def timeline(
        self,
        kind: TimelineKind = "transactions",
        freq: str = "D",
        *,
        start: TimeLike = None,
        end: TimeLike = None,
        tenant: object = None,
        by: str = "none",
        tz: str | None = None,
    ) -> pd.DataFrame:
        """Counts and sums per time bucket, aggregated in SQL by `salesarck.analytics` (as the app).

        `kind`: transactions (`by` none|tenant|provider|location), rewards (earned, redeemed,
        reversed per rule version), audit (actions) or liability (points outstanding at each
        bucket's end). `freq`: h, D, W or M (or hour/day/week/month). `tz`: bucket boundaries'
        zone; default the tenant's own when one tenant is asked for, else UTC. Default window:
        the last 90 days.
        """
        from salesarck import analytics

        if freq not in FREQ_ALIASES:
            raise ValidationError(f"freq must be one of h, D, W, M (got {str(freq)[:20]!r})")
        bucket = FREQ_ALIASES[freq]
        lo, hi = frames.as_time(start, "start"), frames.as_time(end, "end")
        tenant_id = frames.as_uuid(tenant, "tenant") if tenant is not None else None
        actor = self._reader()
        with self.engine.connect() as conn:
            zone = tz if tz is not None else analytics.display_timezone(conn, actor=actor, tenant_id=tenant_id)
            common: dict[str, Any] = {"actor": actor, "freq": bucket, "start": lo, "end": hi, "tz": zone}
            if kind == "transactions":
                df = analytics.transactions_timeline(conn, tenant_id=tenant_id, by=by, **common)
            elif kind == "rewards":
                df = analytics.rewards_timeline(conn, tenant_id=tenant_id, **common)
            elif kind == "liability":
                df = analytics.liability_timeline(conn, tenant_id=tenant_id, **common)
            elif kind == "audit":
                if tenant_id is not None:
                    raise ValidationError("the audit timeline is not per tenant; filter db.audit(tenant=...) instead")
                df = analytics.audit_timeline(conn, **common)
            else:
                raise ValidationError("kind must be transactions, rewards, audit or liability")
        df.attrs.update(tz=zone, freq=bucket, kind=kind)
        return df

    def wallet_balance(self, wallet: object, *, tz: str = "UTC") -> pd.DataFrame:
        """One wallet's running ledger balance (as the app's wallet page), `attrs['snapshot']` its snapshot."""
        from salesarck import analytics

        wallet_id = frames.as_uuid(wallet, "wallet")
        with self.engine.connect() as conn:
            summary = analytics.wallet_summary(conn, actor=self._reader(), wallet_id=wallet_id)
            series = analytics.wallet_balance_series(conn, actor=self._reader(), wallet_id=wallet_id, tz=tz)
        series.attrs.update(snapshot=int(summary["points_balance"]), ledger=int(summary["ledger_balance"]),
                            drift=int(summary["drift"]), tz=tz, wallet_id=str(wallet_id))
        return series

    # -- reconciliation, balances, liability, what-if (the package's own engines) ---------------------

    def reconcile(
        self,
        tenant: object = None,
        *,
        backend: Literal["postgres", "duckdb"] = "postgres",
        checks: str | list[str] | None = None,
        incremental: bool = False,
    ) -> Any:
        """Run the reconciliation (the CLI's report: `drift`, `findings`, `summary`, HTML in Jupyter).

        A read-only session gets the report without recording a run.
        """
        from salesarck.reconcile import reconcile

        if backend not in ("postgres", "duckdb"):
            raise ValidationError("backend must be postgres or duckdb")
        tenant_id = self.tenant_id(tenant) if tenant is not None else None
        return reconcile(
            self.engine, tenant_id=tenant_id, backend=backend, checks=checks, incremental=incremental, actor=self.actor
        )

    def balances(self, as_of: TimeLike = None, *, tenant: object = None) -> pd.DataFrame:
        """Every wallet's ledger balance at `as_of` (default now), from the reconciliation package,
        scoped to the actor's tenants."""
        from salesarck.reconcile.balances import balances_as_of
        from salesarck.timeutil import utcnow

        at = frames.as_time(as_of, "as_of") or utcnow()
        tenant_id = self.tenant_id(tenant) if tenant is not None else None
        df = balances_as_of(self.engine, as_of=at, tenant_id=tenant_id, actor=self.actor)
        if "last_entry_at" in df:
            df["last_entry_at"] = pd.to_datetime(df["last_entry_at"]).dt.tz_localize("UTC")
        return df

    def liability_rollforward(
        self, tenant: object, *, start: TimeLike, end: TimeLike, period: str = "month"
    ) -> pd.DataFrame:
        """Opening + earned - reversed - redeemed +/- adjustments = closing, per period (points and money);
        `ties` is False for a period that does not tie to the ledger."""
        from salesarck.reconcile.liability import liability_rollforward

        tenant_id = self.tenant_id(tenant)
        lo, hi = frames.as_time(start, "start"), frames.as_time(end, "end")
        if lo is None or hi is None:
            raise ValidationError("liability_rollforward needs start and end")
        return liability_rollforward(self.engine, tenant_id=tenant_id, start=lo, end=hi, period=period,
                                     actor=self.actor)

    def simulate_rules(self, tenant: object, config: Any, *, start: TimeLike, end: TimeLike) -> Any:
        """What-if: replay the window's transactions under `config` (a rule_config dict or RuleConfig).

        Returns the rewards engine's result: per transaction and in total, points and money it would
        have earned vs what was earned.
        """
        from salesarck.rewards.simulate import simulate_rules

        tenant_id = self.tenant_id(tenant)
        frames.scoped(self.actor, Permission.VIEW_FINANCE, tenant_id)
        lo, hi = frames.as_time(start, "start"), frames.as_time(end, "end")
        if lo is None or hi is None:
            raise ValidationError("simulate_rules needs start and end")
        frames.check_window(lo, hi)
        with self.engine.connect() as conn:
            return simulate_rules(conn, tenant_id=tenant_id, config=config, start=lo, end=hi)

    # -- actions (readonly=False with an actor): the package's own audited functions ------------------

    def adjust_wallet(self, wallet: object, points: int, *, reason: str) -> dict[str, Any]:
        """Credit (points > 0) or debit (< 0) a wallet by hand: ledger entry, snapshot and audit row."""
        from salesarck.rewards.admin import adjust_wallet

        actor = self._require_writable("adjusting a wallet")
        with self.engine.begin() as conn:
            return adjust_wallet(conn, actor=actor, wallet_id=frames.as_uuid(wallet, "wallet"), points=points,
                                 reason=reason)

    def freeze_wallet(self, wallet: object, *, reason: str) -> dict[str, Any]:
        """Freeze a wallet (it stops earning and redeeming); audited."""
        from salesarck.rewards.admin import freeze_wallet

        actor = self._require_writable("freezing a wallet")
        with self.engine.begin() as conn:
            return freeze_wallet(conn, actor=actor, wallet_id=frames.as_uuid(wallet, "wallet"), reason=reason)

    def unfreeze_wallet(self, wallet: object, *, reason: str) -> dict[str, Any]:
        """Unfreeze a wallet; audited."""
        from salesarck.rewards.admin import unfreeze_wallet

        actor = self._require_writable("unfreezing a wallet")
        with self.engine.begin() as conn:
            return unfreeze_wallet(conn, actor=actor, wallet_id=frames.as_uuid(wallet, "wallet"), reason=reason)

    def create_rule(
        self, tenant: object, config: Any, *, effective_from: TimeLike = None, reason: str | None = None
    ) -> Any:
        """A new reward rule version for the tenant (becomes the active one); audited `rule.create`."""
        from salesarck.rewards.rules import create_rule

        actor = self._require_writable("creating a reward rule")
        tenant_id = self.tenant_id(tenant)
        at = frames.as_time(effective_from, "effective_from")
        with self.engine.begin() as conn:
            return create_rule(conn, actor=actor, tenant_id=tenant_id, config=config, effective_from=at,
                               reason=reason)

    # -- identity ---------------------------------------------------------------------------------

    def _require_actor(self) -> Actor:
        if self.actor is None:
            raise PermissionDenied("this action needs an actor: salesarck.connect(actor='you@example.com', ...)")
        return self.actor

    def _require_writable(self, what: str) -> Actor:
        actor = self._require_actor()
        if self.readonly:
            raise PermissionDenied(f"{what} writes to the database; connect with readonly=False to do it")
        return actor

    def tenant_id(self, tenant: object) -> uuid.UUID:
        """A tenant's id from its id or exact name, within the actor's scope."""
        if isinstance(tenant, uuid.UUID):
            return tenant
        if not isinstance(tenant, str) or not tenant.strip() or len(tenant) > 200:
            raise ValidationError("tenant must be a tenant id or its exact name")
        try:
            return uuid.UUID(tenant.strip())
        except ValueError:
            pass
        found = self.tenants()
        match = found[found["name"] == tenant.strip()]
        if len(match) != 1:
            raise ValidationError(f"no single tenant named {tenant.strip()[:80]!r} in your scope")
        return uuid.UUID(str(match["tenant_id"].iloc[0]))


