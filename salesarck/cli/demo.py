"""`salesarck demo ...`: demo data for `make run` and generated data for benchmarks."""

from __future__ import annotations

from salesarck.cli.base import cli


@cli.group()
def demo() -> None:
    """Load demo data, generate benchmark data, serve the demo."""
