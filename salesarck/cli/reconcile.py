"""`salesarck reconcile ...`, `balances`, `liability`, `export parquet`, `demo generate`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from salesarck.cli.base import FORMATS, CliContext, cli, pass_ctx
from salesarck.cli.demo import demo
from salesarck.cli.output import emit, emit_object
from salesarck.errors import ValidationError
from salesarck.reconcile.checks import ALL_CHECKS

MAX_PATH = 4096


def _fmt(ctx: CliContext, local: str | None) -> str:
    return local or ctx.fmt


def _path(value: str | None) -> Path | None:
    if value is None:
        return None
    if not value.strip() or len(value) > MAX_PATH or "\x00" in value:
        raise ValidationError("not a usable file path")
    return Path(value)


@cli.group(invoke_without_command=True)
@click.option("--tenant", metavar="ID", help="Only this tenant (default: every tenant you may see).")
@click.option("--backend", type=click.Choice(["postgres", "duckdb"]), default="postgres", show_default=True,
              help="Run the checks in PostgreSQL, or in DuckDB over Arrow (or --parquet).")
@click.option("--checks", metavar="A,B,...", help="Comma-separated check ids (default all): " + ", ".join(ALL_CHECKS))
@click.option("--incremental", is_flag=True, help="Recompute only what changed since the last recorded run.")
@click.option("--parquet", "parquet_dir", metavar="DIR", help="With --backend duckdb: read a Parquet export "
              "(`salesarck export parquet DIR`) instead of the database.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), help="Output format (overrides the global --format).")
@click.option("--output", metavar="FILE", help="Write the report to FILE (json; csv writes FILE_drift.csv and "
              "FILE_findings.csv; a .parquet FILE writes two Parquet files).")
@click.pass_context
def reconcile(click_ctx: click.Context, tenant: str | None, backend: str, checks: str | None, incremental: bool,
              parquet_dir: str | None, fmt: str | None, output: str | None) -> None:
    """Recompute every wallet from the ledger and run the consistency checks.

    Exit 0 when clean, 1 when anything was found, 2 when it could not run.
    """
    if click_ctx.invoked_subcommand is not None:
        return
    ctx: CliContext = click_ctx.obj
    from salesarck.reconcile import reconcile as run

    out_path = _path(output)
    fmt = _fmt(ctx, fmt)
    if parquet_dir is not None:
        if backend != "duckdb":
            raise ValidationError("--parquet needs --backend duckdb")
        source: Any = _path(parquet_dir)
        actor = None
    else:
        source = ctx.engine
        actor = ctx.actor()
    progress = None
    if fmt == "table" and sys.stderr.isatty():
        def progress(step: str, done: int, total: int) -> None:
            click.echo(f"  {done}/{total} {step}", err=True)
    report = run(source, tenant_id=tenant, backend=backend, checks=checks, incremental=incremental, actor=actor,
                 progress=progress)
    if fmt == "json":
        text = report.to_json(out_path) if out_path and out_path.suffix != ".parquet" else report.to_json()
        if out_path is None:
            click.echo(text)
    elif fmt == "csv":
        drift_path, findings_path = report.to_csv(out_path or Path("reconciliation"))
        click.echo(f"wrote {drift_path} and {findings_path}")
    else:
        summary = report.summary
        emit_object({k: v for k, v in summary.items() if k not in ("timings", "checks")}, "table")
        if not report.drift.empty:
            emit(report.drift.head(200), "table", title="Drift")
            if len(report.drift) > 200:
                click.echo(f"... {len(report.drift) - 200} more drifted wallets (use --format json or --output)")
        if not report.findings.empty:
            cols = ["check", "severity", "entity_type", "entity_id", "tenant_id", "detail"]
            emit(report.findings[cols].head(200), "table", title="Findings")
            if len(report.findings) > 200:
                click.echo(f"... {len(report.findings) - 200} more findings (use --format json or --output)")
        if out_path is not None:
            if out_path.suffix == ".parquet":
                report.to_parquet(out_path)
            else:
                report.to_json(out_path)
    if fmt == "json" and out_path is not None and out_path.suffix == ".parquet":
        report.to_parquet(out_path)
    sys.exit(report.exit_code)


@reconcile.command("repair")
@click.option("--wallet", "wallets", multiple=True, metavar="ID", help="A wallet to repair (repeatable).")
@click.option("--all", "all_", is_flag=True, help="Every drifted wallet of --tenant.")
@click.option("--tenant", metavar="ID", help="With --all: the tenant whose wallets to repair.")
@click.option("--missing-accruals", is_flag=True, help="Instead: post missed accruals of --tenant through the "
              "rewards engine.")
@click.option("--reason", required=True, help="Why (kept in the audit log).")
@pass_ctx
def repair_cmd(ctx: CliContext, wallets: tuple[str, ...], all_: bool, tenant: str | None, missing_accruals: bool,
               reason: str) -> None:
    """Set drifted snapshots to the ledger balance (audited; needs approval when the policy is on)."""
    from salesarck.reconcile import repair

    if missing_accruals:
        if not tenant or wallets:
            raise ValidationError("--missing-accruals needs --tenant (and no --wallet)")
        outcome = repair.repair_missing_accruals(ctx.engine, actor=ctx.actor(), tenant_id=tenant, reason=reason)
    else:
        if all_ == bool(wallets):
            raise ValidationError("give --wallet ID (repeatable) or --all --tenant ID")
        if all_ and not tenant:
            raise ValidationError("--all needs --tenant")
        if wallets and tenant:
            raise ValidationError("--tenant goes with --all, not with --wallet")
        outcome = repair.repair_wallets(ctx.engine, actor=ctx.actor(), wallet_ids=list(wallets) or None,
                                        tenant_id=tenant if all_ else None, reason=reason)
    _print_outcome(ctx, outcome.as_dict())


def _print_outcome(ctx: CliContext, data: dict[str, Any]) -> None:
    if ctx.fmt == "json":
        click.echo(json.dumps(data, indent=2, default=str))
        return
    details = data.pop("wallets", []) + data.pop("accruals", [])
    emit_object(data, "table" if ctx.fmt == "table" else ctx.fmt)
    if details:
        emit(details, ctx.fmt)


@reconcile.command("requests")
@click.option("--status", type=click.Choice(["pending", "applied", "rejected"]), help="Only this status.")
@pass_ctx
def requests_cmd(ctx: CliContext, status: str | None) -> None:
    """List repair requests."""
    from salesarck.reconcile import repair

    emit(repair.list_requests(ctx.engine, actor=ctx.actor(), status=status), ctx.fmt)


@reconcile.command("approve")
@click.argument("request_id")
@click.option("--reason", help="Why it is approved (kept in the audit log).")
@pass_ctx
def approve_cmd(ctx: CliContext, request_id: str, reason: str | None) -> None:
    """Approve a pending repair request (a different admin than the requester) and apply it."""
    from salesarck.reconcile import repair

    _print_outcome(ctx, repair.approve_repair(ctx.engine, actor=ctx.actor(), request_id=request_id,
                                              reason=reason).as_dict())


@reconcile.command("reject")
@click.argument("request_id")
@click.option("--reason", required=True, help="Why it is rejected (kept in the audit log).")
@pass_ctx
def reject_cmd(ctx: CliContext, request_id: str, reason: str) -> None:
    """Reject a pending repair request."""
    from salesarck.reconcile import repair

    _print_outcome(ctx, repair.reject_repair(ctx.engine, actor=ctx.actor(), request_id=request_id,
                                             reason=reason).as_dict())


@reconcile.command("policy")
@click.option("--require-approval/--no-require-approval", "required", default=None,
              help="Turn the two-admin approval of repairs on or off (omit to show it).")
@click.option("--reason", help="Why (required when changing; kept in the audit log).")
@pass_ctx
def policy_cmd(ctx: CliContext, required: bool | None, reason: str | None) -> None:
    """Show or change the repair approval policy (admins only)."""
    from salesarck.reconcile import repair

    if required is None:
        with ctx.engine.connect() as conn:
            emit_object({"repair_approval_required": repair.approval_required(conn)}, ctx.fmt)
        return
    value = repair.set_approval_policy(ctx.engine, actor=ctx.actor(), required=required, reason=reason or "")
    emit_object({"repair_approval_required": value}, ctx.fmt)


@reconcile.command("runs")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True, help="How many runs.")
@pass_ctx
def runs_cmd(ctx: CliContext, limit: int) -> None:
    """Recorded runs, newest first (the trend)."""
    from salesarck.reconcile.runs import list_runs

    emit(list_runs(ctx.engine, actor=ctx.actor(), limit=limit), ctx.fmt)


@reconcile.command("compare")
@click.argument("run_a")
@click.argument("run_b")
@pass_ctx
def compare_cmd(ctx: CliContext, run_a: str, run_b: str) -> None:
    """What changed between two recorded runs (new, resolved, changed)."""
    from salesarck.reconcile.runs import compare_runs

    diff = compare_runs(ctx.engine, run_a, run_b, actor=ctx.actor())
    for name, frame in diff.items():
        frame = frame[frame["status"] != "unchanged"]
        if ctx.fmt == "table":
            click.echo(f"{name}: {len(frame)} differences")
        emit(frame, ctx.fmt, title=name)


@reconcile.command("pos")
@click.option("--connection", "connection_id", required=True, metavar="ID", help="POS connection id.")
@click.option("--from", "start", required=True, metavar="TS", help="Window start (RFC 3339 or date).")
@click.option("--to", "end", required=True, metavar="TS", help="Window end (exclusive).")
@pass_ctx
def pos_cmd(ctx: CliContext, connection_id: str, start: str, end: str) -> None:
    """Tie stored transactions out against the provider's payments and refunds (read-only)."""
    from salesarck.reconcile.tieout import pos_tieout

    result = pos_tieout(ctx.engine, actor=ctx.actor(), connection_id=connection_id, start=start, end=end,
                        settings=ctx.settings)
    if ctx.fmt == "json":
        click.echo(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        emit_object(result.summary, "table" if ctx.fmt == "table" else ctx.fmt)
        if not result.differences.empty:
            emit(result.differences, ctx.fmt, title="Differences")
        emit(result.daily, ctx.fmt, title="Per location and day")
    sys.exit(0 if result.ties else 1)


@cli.command("balances")
@click.option("--as-of", "as_of", required=True, metavar="TS", help="The moment (RFC 3339 or date).")
@click.option("--tenant", metavar="ID", help="Only this tenant.")
@pass_ctx
def balances_cmd(ctx: CliContext, as_of: str, tenant: str | None) -> None:
    """Every wallet's ledger balance at a past moment."""
    from salesarck.reconcile.balances import balances_as_of

    emit(balances_as_of(ctx.engine, as_of=as_of, tenant_id=tenant, actor=ctx.actor()), ctx.fmt)


@cli.command("liability")
@click.option("--tenant", required=True, metavar="ID", help="Tenant id.")
@click.option("--from", "start", required=True, metavar="TS", help="Start (RFC 3339 or date).")
@click.option("--to", "end", required=True, metavar="TS", help="End (exclusive).")
@click.option("--period", type=click.Choice(["day", "week", "month", "quarter", "year"]), default="month",
              show_default=True, help="Period length.")
@pass_ctx
def liability_cmd(ctx: CliContext, tenant: str, start: str, end: str, period: str) -> None:
    """Points liability roll-forward (opening + earned - reversed - redeemed +/- adjustments = closing).

    Exit 1 when a period does not tie.
    """
    from salesarck.reconcile.liability import liability_rollforward

    frame = liability_rollforward(ctx.engine, tenant_id=tenant, start=start, end=end, period=period,
                                  actor=ctx.actor())
    emit(frame, ctx.fmt)
    sys.exit(0 if bool(frame["ties"].all()) else 1)


@cli.group("export")
def export() -> None:
    """Export tables for analysis."""


@export.command("parquet")
@click.argument("directory")
@click.option("--table", "tables", multiple=True, metavar="NAME", help="Only these tables (repeatable).")
@pass_ctx
def export_parquet_cmd(ctx: CliContext, directory: str, tables: tuple[str, ...]) -> None:
    """Write the reconciliation tables to DIRECTORY/<table>.parquet (for DuckDB and notebooks)."""
    from salesarck.authz import Permission
    from salesarck.db.arrow import RECONCILE_TABLES, export_parquet

    actor = ctx.actor()
    actor.require(Permission.VIEW_FINANCE)
    actor.require_admin()  # whole tables cross tenants
    unknown = [t for t in tables if t not in RECONCILE_TABLES]
    if unknown:
        raise ValidationError(f"unknown table {unknown[0][:40]!r}; choose from {', '.join(RECONCILE_TABLES)}")
    target = _path(directory)
    assert target is not None
    paths = export_parquet(ctx.engine, target, tables or None)
    emit([{"table": p.stem, "path": str(p), "bytes": p.stat().st_size} for p in paths], ctx.fmt)


@demo.command("generate")
@click.option("--tenants", type=click.IntRange(1, 10_000), default=5, show_default=True, help="Tenants.")
@click.option("--wallets", type=click.IntRange(1, 50_000_000), default=10_000, show_default=True,
              help="Wallets (one customer each).")
@click.option("--ledger-entries", type=click.IntRange(0, 500_000_000), default=100_000, show_default=True,
              help="About this many ledger rows.")
@click.option("--drift-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of wallets given a wrong snapshot.")
@click.option("--plant-faults", is_flag=True, help="Add one known fault of every reconciliation check.")
@click.option("--seed", type=click.IntRange(0, 0xFFFF), default=0, show_default=True, help="Seed (ids derive from it).")
@pass_ctx
def generate_cmd(ctx: CliContext, tenants: int, wallets: int, ledger_entries: int, drift_rate: float,
                 plant_faults: bool, seed: int) -> None:
    """Fill the database quickly with consistent generated data (for demos and benchmarks)."""
    from salesarck.reconcile.generate import generate

    ctx.actor().require_admin()
    s = generate(ctx.engine, tenants=tenants, wallets=wallets, ledger_entries=ledger_entries, drift_rate=drift_rate,
                 plant_faults=plant_faults, seed=seed)
    emit_object({"tenants": s.tenants, "wallets": s.wallets, "transactions": s.transactions,
                 "reward_events": s.reward_events, "ledger_entries": s.ledger_entries, "refunds": s.refunds,
                 "drifted_wallets": s.drifted_wallets, "planted_faults": sum(len(v) for v in s.planted.values()),
                 "seconds": round(s.seconds, 2)}, ctx.fmt)
