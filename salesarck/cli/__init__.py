"""The `salesarck` command line."""

from salesarck.cli.base import cli, main

__all__ = ["cli", "main"]
