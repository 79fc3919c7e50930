"""The `salesarck` command group, its global options, and the one error-to-exit-code path."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from typing import Any, NoReturn

import click
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from salesarck.config import Settings, load_settings
from salesarck.errors import SalesarckError

FORMATS = ["table", "json", "csv"]


@dataclass
class CliContext:
    """What every command may need, built lazily so `--help` never touches the database."""

    actor_email: str | None
    fmt: str
    _settings: Settings | None = None
    _engine: Engine | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings()
        return self._settings

    @property
    def engine(self) -> Engine:
        """The runtime engine (embedded database when DATABASE_URL is unset), migrated on first use."""
        if self._engine is None:
            from salesarck.db.session import open_engine

            self._engine = open_engine(self.settings)
        return self._engine

    def actor(self) -> Any:
        """The acting user (`--actor`, else SALESARCK_LOCAL_USER)."""
        from salesarck.authz import load_actor

        email = self.actor_email or self.settings.local_user
        with self.engine.connect() as conn:
            return load_actor(conn, email)


pass_ctx = click.make_pass_decorator(CliContext)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--actor", "actor_email", metavar="EMAIL", help="Who acts, for audit and permission checks "
              "(default: SALESARCK_LOCAL_USER).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True,
              help="Output format for commands that print data.")
@click.option("-v", "--verbose", is_flag=True, help="Log at DEBUG level.")
@click.version_option(package_name="salesarck")
@click.pass_context
def cli(ctx: click.Context, actor_email: str | None, fmt: str, verbose: bool) -> None:
    """SalesArck Recon: ingest POS data, post rewards, reconcile wallet balances.

    Times are RFC 3339 with an offset (2026-11-01T09:30:00Z) or a plain date (midnight UTC).
    """
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    ctx.obj = CliContext(actor_email=actor_email, fmt=fmt)


def fail(message: str, code: int = 2) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors become one line on stderr and a non-zero exit, never a traceback."""
    from salesarck.cli import commands  # noqa: F401  registers every command

    try:
        cli.main(args=argv, prog_name="salesarck", standalone_mode=False)
    except click.exceptions.Abort:
        fail("aborted", 130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except SalesarckError as exc:
        fail(str(exc), exc.exit_code)
    except (OperationalError, DBAPIError) as exc:
        detail = str(getattr(exc, "orig", exc)).strip().splitlines()
        fail(f"database error: {detail[0] if detail else type(exc).__name__}")
    except KeyboardInterrupt:
        fail("interrupted", 130)
