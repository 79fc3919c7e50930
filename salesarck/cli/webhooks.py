"""`salesarck webhooks ...` (receiver, processor, replay, dead letters, key purge) and `salesarck worker`."""

from __future__ import annotations

import uuid

import click

from salesarck.cli.base import CliContext, cli, pass_ctx
from salesarck.cli.output import emit, emit_object
from salesarck.errors import ValidationError
from salesarck.timeutil import parse_time


def _uuid(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value.strip())
    except ValueError:
        raise ValidationError(f"{what} {value[:40]!r} is not a UUID") from None


@cli.group()
def webhooks() -> None:
    """Receive Square and Clover webhooks, process stored events, replay them, purge old keys."""


@webhooks.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8780, show_default=True, help="Port to listen on.")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Receiver processes (uvicorn workers), each with its own database pool.")
@pass_ctx
def webhooks_serve(ctx: CliContext, host: str, port: int, workers: int) -> None:
    """Run the receiver: POST /webhooks/square, POST /webhooks/clover, GET /healthz (until stopped)."""
    from salesarck.pos.webhooks.receiver import serve

    settings = ctx.settings
    if not settings.square_webhook_signature_key or not settings.square_webhook_notification_url:
        click.echo("warning: SQUARE_WEBHOOK_SIGNATURE_KEY / SQUARE_WEBHOOK_NOTIFICATION_URL are not set; "
                   "Square webhooks will be refused", err=True)
    if not settings.clover_webhook_auth_code:
        click.echo("warning: CLOVER_WEBHOOK_AUTH_CODE is not set; Clover webhooks (after the verification "
                   "handshake) will be refused", err=True)
    serve(ctx.engine, settings, host=host, port=port, workers=workers)


@webhooks.command("process")
@click.option("--limit", type=click.IntRange(1, 10_000_000), default=None,
              help="Process at most N events (default: everything due).")
@click.option("--batch-size", type=click.IntRange(1, 10_000), default=200, show_default=True,
              help="Events claimed per database transaction.")
@click.option("--provider", type=click.Choice(["square", "clover"]), help="Only this provider's events.")
@pass_ctx
def webhooks_process(ctx: CliContext, limit: int | None, batch_size: int, provider: str | None) -> None:
    """Process stored events in order: fetch what they name, post, mark processed."""
    from salesarck.pos.webhooks.processor import process_now

    result = process_now(ctx.engine, actor=ctx.actor(), settings=ctx.settings, limit=limit, batch_size=batch_size,
                         provider=provider)
    emit_object(result.as_dict(), ctx.fmt)
    for err in result.errors[:10]:
        click.echo(f"failed: {err}", err=True)


@webhooks.command("replay")
@click.option("--since", required=True, metavar="TS", help="Replay events received at or after TS (RFC 3339).")
@click.option("--provider", type=click.Choice(["square", "clover"]), help="Only this provider's events.")
@pass_ctx
def webhooks_replay(ctx: CliContext, since: str, provider: str | None) -> None:
    """Re-verify stored Square signatures from the stored bytes and re-process events (idempotent)."""
    from salesarck.pos.webhooks.processor import replay_now

    out = replay_now(ctx.engine, actor=ctx.actor(), settings=ctx.settings, since=parse_time(since),
                     provider=provider)
    emit_object(out.as_dict(), ctx.fmt)
    for event_id in out.verify_failed[:20]:
        click.echo(f"signature does not verify: event {event_id} (left as it was)", err=True)


@webhooks.command("purge-keys")
@pass_ctx
def webhooks_purge_keys(ctx: CliContext) -> None:
    """Delete idempotency keys whose expiry has passed."""
    from salesarck.pos.webhooks.processor import purge_expired_keys

    n = purge_expired_keys(ctx.engine, actor=ctx.actor())
    emit_object({"deleted": n}, ctx.fmt)


@webhooks.command("status")
@pass_ctx
def webhooks_status(ctx: CliContext) -> None:
    """The backlog: pending events, retrying ones, dead letters, the oldest waiting."""
    from salesarck.pos.webhooks.processor import backlog

    emit_object(backlog(ctx.engine, actor=ctx.actor()), ctx.fmt)


@webhooks.command("list")
@click.option("--state", type=click.Choice(["dead", "pending", "failed", "processed"]), default="dead",
              show_default=True, help="Which events to list.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True, help="At most N rows.")
@pass_ctx
def webhooks_list(ctx: CliContext, state: str, limit: int) -> None:
    """List events by state, newest first (dead letters by default)."""
    from salesarck.pos.webhooks.processor import list_events

    emit(list_events(ctx.engine, actor=ctx.actor(), state=state, limit=limit), ctx.fmt, title=f"{state} events")


@webhooks.command("retry")
@click.argument("event_id", metavar="EVENT_ID")
@pass_ctx
def webhooks_retry(ctx: CliContext, event_id: str) -> None:
    """Give one dead-lettered or failing event a fresh start and process it now."""
    from salesarck.pos.webhooks.processor import retry_now

    result = retry_now(ctx.engine, actor=ctx.actor(), settings=ctx.settings, event_id=_uuid(event_id, "EVENT_ID"))
    emit_object(result.as_dict(), ctx.fmt)
    for err in result.errors[:10]:
        click.echo(f"failed: {err}", err=True)


@cli.group(invoke_without_command=True)
@click.option("--once", is_flag=True, help="Run one loop (poll what is due, process the backlog) and exit.")
@click.option("--idle-seconds", type=click.FloatRange(0.05, 600), default=2.0, show_default=True,
              help="How long to wait between loops when there is nothing to do.")
@click.pass_context
def worker(click_ctx: click.Context, once: bool, idle_seconds: float) -> None:
    """Run the scheduled polling of every active connection and the webhook processor until stopped.

    SIGTERM or Ctrl-C finishes the current batch, then exits cleanly.
    """
    if click_ctx.invoked_subcommand is not None:
        return
    from salesarck.worker import Worker

    ctx: CliContext = click_ctx.obj
    w = Worker(ctx.engine, ctx.settings, idle_seconds=idle_seconds)
    if once:
        stats = w.run_once()
        w.beat("stopped")
    else:
        w.install_signal_handlers()
        click.echo(f"worker {w.worker_id} running (default interval {ctx.settings.worker_interval_seconds} s); "
                   "SIGTERM or Ctrl-C stops it", err=True)
        stats = w.run()
    emit_object(stats.as_dict(), ctx.fmt)


@worker.command("status")
@pass_ctx
def worker_status_cmd(ctx: CliContext) -> None:
    """Worker heartbeats (alive = beat within two minutes and not stopped)."""
    from salesarck.authz import Permission
    from salesarck.worker import worker_status

    ctx.actor().require(Permission.VIEW_SYNC)
    emit(worker_status(ctx.engine), ctx.fmt, title="workers")


@worker.command("schedule")
@pass_ctx
def worker_schedule(ctx: CliContext) -> None:
    """Each connection's polling interval, region, last and next poll."""
    from salesarck.worker import poll_schedule

    emit(poll_schedule(ctx.engine, actor=ctx.actor(), default_interval=ctx.settings.worker_interval_seconds),
         ctx.fmt, title="polling schedule")


@worker.command("options")
@click.option("--connection", "connection", required=True, metavar="ID", help="Connection (UUID).")
@click.option("--interval", type=click.IntRange(5, 86400), default=None,
              help="Polling interval in seconds (5..86400).")
@click.option("--default-interval", is_flag=True, help="Use SALESARCK_WORKER_INTERVAL_SECONDS again.")
@click.option("--clover-region", type=click.Choice(["na", "eu", "la", "sandbox", "default"]), default=None,
              help="Clover API region of the connection ('default': SALESARCK_CLOVER_BASE_URL).")
@pass_ctx
def worker_options(ctx: CliContext, connection: str, interval: int | None, default_interval: bool,
                   clover_region: str | None) -> None:
    """Set a connection's polling interval and (Clover) API region."""
    from salesarck.worker import set_connection_options

    if interval is not None and default_interval:
        raise ValidationError("give --interval or --default-interval, not both")
    kwargs: dict[str, object] = {}
    if interval is not None or default_interval:
        kwargs["poll_interval_seconds"] = interval
    if clover_region is not None:
        kwargs["clover_region"] = None if clover_region == "default" else clover_region
    if not kwargs:
        raise ValidationError("nothing to change: give --interval, --default-interval or --clover-region")
    out = set_connection_options(ctx.engine, actor=ctx.actor(), connection_id=_uuid(connection, "--connection"),
                                 **kwargs)  # type: ignore[arg-type]
    emit_object(out, ctx.fmt)
