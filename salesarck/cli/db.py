"""`salesarck db ...`: migrations and the database in use."""

from __future__ import annotations

import click

from salesarck.cli.base import CliContext, cli, pass_ctx
from salesarck.config import redact_url
from salesarck.db import migrate
from salesarck.db.engine import engine_from_settings, resolve_url


@cli.group()
def db() -> None:
    """Migrate the database and show which one is in use."""


def _migration_engine(ctx: CliContext):  # type: ignore[no-untyped-def]
    return engine_from_settings(ctx.settings, for_migrations=True)


@db.command()
@click.argument("revision", default="head")
@pass_ctx
def upgrade(ctx: CliContext, revision: str) -> None:
    """Migrate up to REVISION (default head); adopts a database made by the existing Drizzle system."""
    adopted, now = migrate.upgrade(_migration_engine(ctx), revision)
    if adopted:
        click.echo(f"adopted an existing schema as revision {adopted}")
    click.echo(f"database at revision {now}")


@db.command()
@click.argument("revision")
@pass_ctx
def downgrade(ctx: CliContext, revision: str) -> None:
    """Migrate down to REVISION (use 'base' to remove everything)."""
    now = migrate.downgrade(_migration_engine(ctx), revision)
    click.echo(f"database at revision {now or 'base'}")


@db.command()
@pass_ctx
def current(ctx: CliContext) -> None:
    """Print the database's revision and the newest one this code knows."""
    rev = migrate.current_revision(_migration_engine(ctx))
    head = migrate.head_revision()
    state = "up to date" if rev == head else f"behind head {head}: run 'salesarck db upgrade'"
    click.echo(f"{rev or 'none'} ({state})")


@db.command()
@click.option("--show-password", is_flag=True, help="Print the password too (for psql).")
@pass_ctx
def url(ctx: CliContext, show_password: bool) -> None:
    """Print the database URL in use (the embedded server's when DATABASE_URL is unset)."""
    resolved = resolve_url(ctx.settings)
    plain = resolved.set(drivername="postgresql")
    click.echo(plain.render_as_string(hide_password=False) if show_password else redact_url(plain))


@db.command()
@pass_ctx
def stop(ctx: CliContext) -> None:
    """Stop the embedded PostgreSQL (it otherwise keeps running for the app and notebooks)."""
    from salesarck.db.embedded import stop_embedded

    click.echo("stopped" if stop_embedded(ctx.settings.home) else "not running")
