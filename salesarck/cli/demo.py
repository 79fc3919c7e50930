"""`salesarck demo ...`: demo data for `make run` and generated data for benchmarks."""

from __future__ import annotations

import click

from salesarck.cli.base import cli


@cli.group()
def demo() -> None:
    """Load demo data, generate benchmark data, serve the demo."""


@demo.command("seed")
@click.option("--wallets", type=click.IntRange(0, 5_000_000), default=3000, show_default=True,
              help="Wallets of generated history (two extra tenants).")
@click.option("--ledger-entries", type=click.IntRange(0, 50_000_000), default=40000, show_default=True,
              help="Ledger rows of generated history.")
def seed(wallets: int, ledger_entries: int) -> None:
    """Load the demo: users, tenants, rules, POS connections to the fake servers, history with faults."""
    from salesarck.demo import seed_demo

    summary = seed_demo(generated_wallets=wallets, generated_ledger_entries=ledger_entries)
    if summary.already_loaded:
        click.echo("demo data already loaded")
        return
    click.echo(f"demo loaded: tenants {', '.join(summary.tenants)} + generated history "
               f"({summary.generated}); {summary.users} users; {summary.connections} POS connections")


@demo.command("serve")
@click.option("--port", type=click.IntRange(1, 65535), default=8501, show_default=True, help="Port of the app.")
@click.option("--worker/--no-worker", default=False, show_default=True,
              help="Also run the scheduled worker (polls every connection).")
def serve(port: int, worker: bool) -> None:
    """Run the fake POS servers, the webhook receiver and the app (Ctrl-C stops them all)."""
    from salesarck.demo import serve_demo

    raise SystemExit(serve_demo(app_port=port, worker=worker))
