"""`salesarck` commands of the rewards domain: rules, wallets, users, file ingest (registered on import)."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import click

from salesarck.cli.base import CliContext, cli, pass_ctx
from salesarck.cli.output import emit, emit_object
from salesarck.errors import ValidationError
from salesarck.rewards.guard import as_uuid
from salesarck.timeutil import parse_time


def _uuid(value: str, what: str) -> uuid.UUID:
    return as_uuid(value, what)


def _print_summary(ctx: CliContext, data: dict[str, Any]) -> None:
    if ctx.fmt == "table":
        reasons = data.pop("skipped_reasons", [])
        emit_object(data, "table")
        for line in reasons[:200]:
            click.echo(f"  skipped {line}")
        if len(reasons) > 200:
            click.echo(f"  ... and {len(reasons) - 200} more skipped")
    elif ctx.fmt == "csv":
        data["skipped_reasons"] = "; ".join(data.get("skipped_reasons", []))
        emit([data], "csv")
    else:
        emit_object(data, ctx.fmt)


# --- rules ------------------------------------------------------------------------------------

@cli.group()
def rules() -> None:
    """Reward rules: create a new version, list versions, simulate a hypothetical rule."""


def _config(text: str) -> dict[str, Any]:
    if len(text) > 20_000:
        raise ValidationError("--config is too large")
    try:
        raw = json.loads(text, parse_float=Decimal)
    except (ValueError, RecursionError) as exc:  # RecursionError: thousands of nested brackets
        raise ValidationError(f"--config is not valid JSON: {str(exc)[:120]}") from None
    if not isinstance(raw, dict):
        raise ValidationError("--config must be a JSON object")
    return raw


@rules.command("set")
@click.option("--tenant", "tenant", required=True, metavar="ID", help="Tenant id.")
@click.option("--config", "config", required=True, metavar="JSON",
              help='Rule config JSON, e.g. \'{"conversionRate": 1, "roundingPolicy": "floor"}\'.')
@click.option("--effective-from", metavar="TS", help="When the version takes effect (RFC 3339; default now).")
@click.option("--reason", metavar="TEXT", help="Why the rule changes (kept in the audit log).")
@pass_ctx
def rules_set(ctx: CliContext, tenant: str, config: str, effective_from: str | None, reason: str | None) -> None:
    """Create the next rule version for a tenant and make it the active one (admins only)."""
    from salesarck.rewards.rules import RuleConfig, create_rule

    tenant_id = _uuid(tenant, "--tenant")
    parsed = RuleConfig.parse(_config(config))
    when = parse_time(effective_from) if effective_from else None
    actor = ctx.actor()
    with ctx.engine.begin() as conn:
        version = create_rule(conn, actor=actor, tenant_id=tenant_id, config=parsed, effective_from=when, reason=reason)
    if parsed.unknown_keys:
        click.echo(f"note: unknown keys kept: {', '.join(parsed.unknown_keys)}", err=True)
    emit_object({"id": version.id, "version": version.version, "effective_from": version.effective_from,
                 "rule_config": json.dumps(version.as_dict()["rule_config"], sort_keys=True)}, ctx.fmt)


@rules.command("list")
@click.option("--tenant", "tenant", required=True, metavar="ID", help="Tenant id.")
@pass_ctx
def rules_list(ctx: CliContext, tenant: str) -> None:
    """List every rule version of a tenant, newest first."""
    from salesarck.authz import Permission
    from salesarck.rewards.rules import list_rules

    tenant_id = _uuid(tenant, "--tenant")
    ctx.actor().require(Permission.VIEW_FINANCE, tenant_id)
    with ctx.engine.connect() as conn:
        versions = list_rules(conn, tenant_id)
    emit([{"version": v.version, "active": v.is_active, "effective_from": v.effective_from,
           "rule_config": json.dumps(v.as_dict()["rule_config"], sort_keys=True), "id": v.id} for v in versions],
         ctx.fmt, title="Reward rules")


@rules.command("simulate")
@click.option("--tenant", "tenant", required=True, metavar="ID", help="Tenant id.")
@click.option("--config", "config", required=True, metavar="JSON", help="Hypothetical rule config JSON.")
@click.option("--start", required=True, metavar="TS", help="Window start (inclusive), RFC 3339 or date.")
@click.option("--end", required=True, metavar="TS", help="Window end (exclusive), RFC 3339 or date.")
@click.option("--per-transaction", is_flag=True, help="Print every transaction, not only the totals.")
@pass_ctx
def rules_simulate(ctx: CliContext, tenant: str, config: str, start: str, end: str, per_transaction: bool) -> None:
    """What-if: points and money the window's transactions would earn under a rule vs what they earned."""
    from salesarck.authz import Permission
    from salesarck.rewards.simulate import simulate_rules

    tenant_id = _uuid(tenant, "--tenant")
    ctx.actor().require(Permission.VIEW_FINANCE, tenant_id)
    with ctx.engine.connect() as conn:
        result = simulate_rules(conn, tenant_id=tenant_id, config=_config(config), start=start, end=end)
    if per_transaction:
        emit(result.transactions, ctx.fmt, title="Simulation")
    else:
        emit_object(result.totals, ctx.fmt)


# --- wallets ----------------------------------------------------------------------------------

@cli.group()
def wallet() -> None:
    """Wallet admin actions (audited): adjust, freeze, unfreeze, redeem."""


@wallet.command("adjust")
@click.option("--wallet", "wallet_id", required=True, metavar="ID", help="Wallet id.")
@click.option("--points", required=True, type=int, help="Points to credit; negative to debit.")
@click.option("--reason", required=True, metavar="TEXT", help="Why (required; kept in the audit log).")
@pass_ctx
def wallet_adjust(ctx: CliContext, wallet_id: str, points: int, reason: str) -> None:
    """Credit or debit a wallet by hand (admins only)."""
    from salesarck.rewards.admin import adjust_wallet

    actor = ctx.actor()
    with ctx.engine.begin() as conn:
        state = adjust_wallet(conn, actor=actor, wallet_id=_uuid(wallet_id, "--wallet"), points=points, reason=reason)
    emit_object(state, ctx.fmt)


@wallet.command("freeze")
@click.option("--wallet", "wallet_id", required=True, metavar="ID", help="Wallet id.")
@click.option("--reason", required=True, metavar="TEXT", help="Why (required; kept in the audit log).")
@pass_ctx
def wallet_freeze(ctx: CliContext, wallet_id: str, reason: str) -> None:
    """Freeze a wallet: it earns nothing and cannot redeem until unfrozen (admins only)."""
    from salesarck.rewards.admin import freeze_wallet

    actor = ctx.actor()
    with ctx.engine.begin() as conn:
        state = freeze_wallet(conn, actor=actor, wallet_id=_uuid(wallet_id, "--wallet"), reason=reason)
    emit_object(state, ctx.fmt)


@wallet.command("unfreeze")
@click.option("--wallet", "wallet_id", required=True, metavar="ID", help="Wallet id.")
@click.option("--reason", required=True, metavar="TEXT", help="Why (required; kept in the audit log).")
@pass_ctx
def wallet_unfreeze(ctx: CliContext, wallet_id: str, reason: str) -> None:
    """Unfreeze a wallet (admins only)."""
    from salesarck.rewards.admin import unfreeze_wallet

    actor = ctx.actor()
    with ctx.engine.begin() as conn:
        state = unfreeze_wallet(conn, actor=actor, wallet_id=_uuid(wallet_id, "--wallet"), reason=reason)
    emit_object(state, ctx.fmt)


@wallet.command("redeem")
@click.option("--wallet", "wallet_id", required=True, metavar="ID", help="Wallet id.")
@click.option("--points", required=True, type=int, help="Points to redeem (> 0).")
@click.option("--purchase", "purchase", required=True, type=int, help="Purchase amount in minor units (cents).")
@click.option("--key", "key", required=True, metavar="TEXT", help="Idempotency key: the same key redeems once.")
@click.option("--transaction", "transaction_id", metavar="ID", help="The purchase's transaction id, if stored.")
@pass_ctx
def wallet_redeem(ctx: CliContext, wallet_id: str, points: int, purchase: int, key: str,
                  transaction_id: str | None) -> None:
    """Redeem points against a purchase, on the customer's behalf."""
    from salesarck.rewards.redemption import redeem

    actor = ctx.actor()
    with ctx.engine.begin() as conn:
        result = redeem(conn, wallet_id=_uuid(wallet_id, "--wallet"), points=points,
                        purchase_amount_minor_units=purchase, actor=actor, idempotency_key=key,
                        transaction_id=_uuid(transaction_id, "--transaction") if transaction_id else None)
    emit_object({"reward_event_id": result.reward_event_id, "points": result.points,
                 "balance_after": result.balance_after, "value_minor_units": result.value_minor_units,
                 "replayed": result.replayed}, ctx.fmt)


# --- users ------------------------------------------------------------------------------------

@cli.group()
def users() -> None:
    """User admin actions (audited): approve, suspend."""


@users.command("approve")
@click.option("--user", "user", required=True, metavar="ID|EMAIL", help="User id or email.")
@click.option("--reason", required=True, metavar="TEXT", help="Why (required; kept in the audit log).")
@pass_ctx
def users_approve(ctx: CliContext, user: str, reason: str) -> None:
    """Approve a pending user, or re-activate a suspended one (admins only)."""
    from salesarck.rewards.admin import approve_user

    actor = ctx.actor()
    with ctx.engine.begin() as conn:
        state = approve_user(conn, actor=actor, user_id=user, reason=reason)
    emit_object(state, ctx.fmt)


@users.command("suspend")
@click.option("--user", "user", required=True, metavar="ID|EMAIL", help="User id or email.")
@click.option("--reason", required=True, metavar="TEXT", help="Why (required; kept in the audit log).")
@pass_ctx
def users_suspend(ctx: CliContext, user: str, reason: str) -> None:
    """Suspend a user: they may no longer act (admins only)."""
    from salesarck.rewards.admin import suspend_user

    actor = ctx.actor()
    with ctx.engine.begin() as conn:
        state = suspend_user(conn, actor=actor, user_id=user, reason=reason)
    emit_object(state, ctx.fmt)


# --- ingest -----------------------------------------------------------------------------------

@cli.command("ingest")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--tenant", "tenant", required=True, metavar="ID", help="Tenant the payments belong to.")
@click.option("--provider", required=True, type=click.Choice(["square", "clover"]),
              help="Whose JSON: Square ListPayments / Payment list, or Clover payments {elements}.")
@pass_ctx
def ingest(ctx: CliContext, file: Path, tenant: str, provider: str) -> None:
    """Import a provider's payments export: transactions, points, refunds, in one transaction."""
    from salesarck.rewards.ingest import ingest_file

    tenant_id = _uuid(tenant, "--tenant")
    actor = ctx.actor()
    with ctx.engine.begin() as conn:
        summary = ingest_file(conn, actor=actor, tenant_id=tenant_id, path=file, provider=provider)
    _print_summary(ctx, summary.as_dict())
