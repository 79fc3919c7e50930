"""Printing data in the format the user chose: `--format table|json|csv`."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import click

from salesarck.jsonutil import jsonable

if TYPE_CHECKING:  # pandas is imported only when a command prints a DataFrame: fast CLI start-up
    import pandas as pd


def _is_frame(data: object) -> bool:
    return type(data).__name__ == "DataFrame" and hasattr(data, "to_dict")


def _rows(data: pd.DataFrame | Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    if _is_frame(data):
        assert not isinstance(data, Sequence)
        return [jsonable({k: (None if _isna(v) else v) for k, v in r.items()}) for r in data.to_dict("records")]
    return [jsonable(dict(r)) for r in data]


def _isna(value: Any) -> bool:
    import pandas as pd

    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def emit(data: pd.DataFrame | Sequence[Mapping[str, Any]], fmt: str, *, title: str | None = None) -> None:
    """Print rows as a table (humans), JSON (scripts) or CSV (spreadsheets)."""
    rows = _rows(data)
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    columns = list(data.columns) if _is_frame(data) else (list(rows[0]) if rows else [])  # type: ignore[union-attr]
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        click.echo(buf.getvalue(), nl=False)
        return
    if not rows:
        click.echo("(no rows)")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_lines=False)
    for col in columns:
        table.add_column(str(col))
    for row in rows:
        table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
    Console(width=200).print(table)


def emit_object(obj: Mapping[str, Any], fmt: str) -> None:
    """Print one summary object: JSON as is, otherwise `key: value` lines."""
    if fmt == "json":
        click.echo(json.dumps(jsonable(dict(obj)), indent=2))
        return
    for key, value in jsonable(dict(obj)).items():
        click.echo(f"{key}: {value}")
