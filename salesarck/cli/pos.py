"""`salesarck connections ...`, `salesarck sync` and `salesarck fakepos serve ...` (registered on import).

Tokens are read from a file or stdin (`-`), never from the command line, where they would land
in shell history and `ps` output.
"""

from __future__ import annotations

import sys
import uuid
from typing import Any

import click

from salesarck.cli.base import CliContext, cli, pass_ctx
from salesarck.cli.output import emit, emit_object
from salesarck.errors import SalesarckError, ValidationError
from salesarck.timeutil import parse_time

MAX_TOKEN_FILE_BYTES = 64 * 1024


def _uuid(value: str | None, what: str) -> uuid.UUID | None:
    if value is None:
        return None
    try:
        return uuid.UUID(value.strip())
    except ValueError:
        raise ValidationError(f"{what} {value[:40]!r} is not a UUID") from None


def _read_token(path: str, what: str) -> str:
    """A token from a file, or stdin for '-'; bounded, and the message never echoes its content."""
    if path == "-":
        data = sys.stdin.read(MAX_TOKEN_FILE_BYTES + 1)
    else:
        try:
            with open(path, encoding="utf-8") as fh:
                data = fh.read(MAX_TOKEN_FILE_BYTES + 1)
        except OSError as exc:
            raise ValidationError(f"cannot read the {what} file {path}: {exc.strerror or type(exc).__name__}") from None
        except UnicodeDecodeError:
            raise ValidationError(f"the {what} file {path} is not UTF-8 text") from None
    if len(data) > MAX_TOKEN_FILE_BYTES:
        raise ValidationError(f"the {what} file is larger than {MAX_TOKEN_FILE_BYTES // 1024} KiB; it is not a token")
    return data.strip()


def _keyring(ctx: CliContext) -> Any:
    from salesarck.crypto import KeyRing

    return KeyRing.from_settings(ctx.settings)


@cli.group()
def connections() -> None:
    """Connect POS merchants (Square, Clover), list and disconnect them, rotate token keys."""


@connections.command("add")
@click.option("--tenant", "tenant", required=True, metavar="ID", help="Tenant (UUID) the merchant belongs to.")
@click.option("--provider", type=click.Choice(["square", "clover"]), required=True, help="POS provider.")
@click.option("--merchant-id", required=True, metavar="M", help="The provider's merchant id.")
@click.option("--access-token-file", required=True, metavar="F",
              help="File holding the access token ('-' reads stdin). Tokens are never taken from argv.")
@click.option("--refresh-token-file", metavar="F", help="File holding the refresh token ('-' reads stdin).")
@click.option("--expires-at", metavar="TS", help="When the access token expires (RFC 3339).")
@pass_ctx
def connections_add(ctx: CliContext, tenant: str, provider: str, merchant_id: str, access_token_file: str,
                    refresh_token_file: str | None, expires_at: str | None) -> None:
    """Connect a merchant to a tenant, storing its tokens encrypted (AES-256-GCM)."""
    from salesarck.pos.connections import add_connection

    if access_token_file == "-" and refresh_token_file == "-":
        raise ValidationError("only one of the token files can be '-' (stdin)")
    tenant_id = _uuid(tenant, "--tenant")
    assert tenant_id is not None
    expires = parse_time(expires_at) if expires_at else None
    access = _read_token(access_token_file, "access token")
    refresh = _read_token(refresh_token_file, "refresh token") if refresh_token_file else None
    keyring = _keyring(ctx)
    info = add_connection(ctx.engine, actor=ctx.actor(), tenant_id=tenant_id, provider=provider,
                          merchant_id=merchant_id, access_token=access, refresh_token=refresh or None,
                          expires_at=expires, keyring=keyring)
    emit_object(info.as_row(), ctx.fmt)


@connections.command("list")
@click.option("--tenant", metavar="ID", help="Only this tenant's connections.")
@click.option("--provider", type=click.Choice(["square", "clover"]), help="Only this provider's connections.")
@pass_ctx
def connections_list(ctx: CliContext, tenant: str | None, provider: str | None) -> None:
    """List connections with their status and last sync (never any token)."""
    from salesarck.pos.connections import list_connections

    rows = list_connections(ctx.engine, actor=ctx.actor(), tenant_id=_uuid(tenant, "--tenant"), provider=provider)
    emit([r.as_row() for r in rows], ctx.fmt, title="POS connections")


@connections.command("disconnect")
@click.argument("connection_id", metavar="ID")
@click.option("--reason", default="disconnected by an operator", show_default=True, help="Why (recorded).")
@pass_ctx
def connections_disconnect(ctx: CliContext, connection_id: str, reason: str) -> None:
    """Disconnect a connection: its status becomes disconnected and its stored tokens are wiped."""
    from salesarck.audit import require_reason
    from salesarck.pos.connections import disconnect_connection

    cid = _uuid(connection_id, "connection id")
    assert cid is not None
    info = disconnect_connection(ctx.engine, actor=ctx.actor(), connection_id=cid, reason=require_reason(reason))
    emit_object(info.as_row(), ctx.fmt)


@connections.command("rotate-keys")
@pass_ctx
def connections_rotate_keys(ctx: CliContext) -> None:
    """Re-encrypt every stored token under the current (first) key of SALESARCK_ENCRYPTION_KEYS, in one
    transaction. Keep the old key listed until this has run."""
    from salesarck.pos.connections import rotate_keys

    result = rotate_keys(ctx.engine, actor=ctx.actor(), keyring=_keyring(ctx))
    emit_object(result, ctx.fmt)


@connections.command("events")
@click.argument("connection_id", metavar="ID")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True, help="How many, newest first.")
@pass_ctx
def connections_events(ctx: CliContext, connection_id: str, limit: int) -> None:
    """Status changes and token refreshes of a connection."""
    from salesarck.pos.connections import connection_events

    cid = _uuid(connection_id, "connection id")
    assert cid is not None
    emit(connection_events(ctx.engine, actor=ctx.actor(), connection_id=cid, limit=limit), ctx.fmt,
         title="Connection events")


@cli.command("sync")
@click.option("--connection", "connection", metavar="ID", help="Sync this connection.")
@click.option("--tenant", metavar="ID", help="Sync every active connection of this tenant.")
@click.option("--all", "all_", is_flag=True, help="Sync every active connection you may sync.")
@click.option("--since", metavar="TS", help="Poll from this time instead of watermark - lookback "
              "(first sync default: SALESARCK_SYNC_INITIAL_DAYS back).")
@click.option("--progress/--no-progress", default=None, help="Show a progress bar (default: when on a terminal).")
@pass_ctx
def sync_cmd(ctx: CliContext, connection: str | None, tenant: str | None, all_: bool, since: str | None,
             progress: bool | None) -> None:
    """Pull payments from the POS into the ledger; exits non-zero if any sync failed."""
    from salesarck.pos.sync import connections_to_sync, sync_connection
    from salesarck.pos.sync_runs import SyncProgress

    actor = ctx.actor()
    since_at = parse_time(since) if since else None
    ids = connections_to_sync(ctx.engine, actor=actor, connection_id=_uuid(connection, "--connection"),
                              tenant_id=_uuid(tenant, "--tenant"), all_connections=all_)
    if not ids:
        raise ValidationError("no active connection matches; see `salesarck connections list`")
    show = sys.stderr.isatty() if progress is None else progress
    results: list[dict[str, Any]] = []
    failed = 0
    for cid in ids:
        def bar(p: SyncProgress, _cid: uuid.UUID = cid) -> None:
            if show:
                click.echo(f"\r{str(_cid)[:8]} {p.phase:<10} pages {p.pages:>5}  payments {p.payments_seen:>7}  "
                           f"posted {p.posted:>6}  duplicates {p.duplicates:>6}  skipped {p.skipped:>4}  "
                           f"points +{p.points_credited}/-{p.points_debited}", nl=False, err=True)

        try:
            result = sync_connection(ctx.engine, cid, actor=actor, progress=bar, since=since_at,
                                     settings=ctx.settings)
        except SalesarckError as exc:
            if len(ids) == 1:
                raise
            failed += 1
            results.append({"connection_id": cid, "status": "not run", "error": str(exc)})
            continue
        finally:
            if show:
                click.echo("", err=True)
        if not result.ok:
            failed += 1
        results.append({"connection_id": cid, "run_id": result.run_id, "status": result.status,
                        "pages": result.pages, "payments_seen": result.payments_seen, "posted": result.posted,
                        "duplicates": result.duplicates, "skipped": result.skipped,
                        "points_credited": result.points_credited, "points_debited": result.points_debited,
                        "watermark_after": result.watermark_after, "error": result.error})
        for rec in result.skipped_records[:20]:
            click.echo(f"skipped {rec.get('provider_id') or '?'}: {rec.get('reason')}", err=True)
    emit(results, ctx.fmt, title="Sync summary")
    if failed:
        raise SyncFailed(f"{failed} of {len(ids)} sync(s) failed; see the error column and `salesarck sync-runs`")


class SyncFailed(SalesarckError):
    exit_code = 1


@cli.command("sync-runs")
@click.option("--connection", metavar="ID", help="Only this connection's runs.")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True, help="How many, newest first.")
@pass_ctx
def sync_runs_cmd(ctx: CliContext, connection: str | None, limit: int) -> None:
    """History of syncs: status, counts and errors."""
    from salesarck.pos.sync_runs import list_runs

    rows = list_runs(ctx.engine, actor=ctx.actor(), connection_id=_uuid(connection, "--connection"), limit=limit)
    emit([{k: v for k, v in r.items() if k not in {"summary", "tenant_id"}} for r in rows], ctx.fmt,
         title="Sync runs")


@cli.group()
def fakepos() -> None:
    """Fake POS servers for tests, benchmarks and the demo (127.0.0.1 only)."""


@fakepos.command("serve")
@click.argument("provider", metavar="PROVIDER")
@click.option("--port", type=click.IntRange(1, 65535), default=8765, show_default=True, help="Port on 127.0.0.1.")
@click.option("--seed", type=int, default=1, show_default=True, help="Seed of the deterministic data.")
@click.option("--payments", type=click.IntRange(0, 5_000_000), default=200, show_default=True,
              help="How many payments to generate.")
@click.option("--access-token", metavar="T", help="The bearer token the fake accepts (default: a fixed test value).")
def fakepos_serve(provider: str, port: int, seed: int, payments: int, access_token: str | None) -> None:
    """Serve a fake PROVIDER (square, or any fake registered) until interrupted."""
    from salesarck.pos.fake import FAKE_PROVIDERS, build_fake
    from salesarck.pos.fake.server import serve_forever

    if provider not in FAKE_PROVIDERS:
        raise ValidationError(f"no fake server for {provider[:20]!r}; choose one of {', '.join(sorted(FAKE_PROVIDERS))}")
    fake = build_fake(provider, seed=seed, payments=payments, access_token=access_token)
    click.echo(f"fake {provider} on http://127.0.0.1:{port} (seed {seed}, {payments} payments)", err=True)
    serve_forever(fake.app, port=port)
