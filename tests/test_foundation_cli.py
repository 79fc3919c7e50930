"""The CLI: db commands, one-line errors with exit codes, help text everywhere."""

from __future__ import annotations

import os
import subprocess
import sys

import click
import pytest
from sqlalchemy.engine import URL

from salesarck.cli import commands  # noqa: F401  registers every command
from salesarck.cli.base import cli
from salesarck.db import migrate


def run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "salesarck", *args], capture_output=True, text=True,
                          env=full_env, timeout=120)


def _dsn(url: URL) -> str:
    return url.render_as_string(hide_password=False)


def test_db_upgrade_current_url_downgrade(empty_db_url: URL, tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {"DATABASE_URL": _dsn(empty_db_url), "SALESARCK_HOME": str(tmp_path)}
    assert "none" in run(["db", "current"], env).stdout
    up = run(["db", "upgrade"], env)
    assert up.returncode == 0, up.stderr
    assert f"revision {migrate.head_revision()}" in up.stdout
    assert "up to date" in run(["db", "current"], env).stdout
    shown = run(["db", "url"], env).stdout.strip()
    assert shown.startswith("postgresql://") and empty_db_url.database in shown
    down = run(["db", "downgrade", "0002"], env)
    assert down.returncode == 0 and "0002" in down.stdout


@pytest.mark.parametrize(
    "url,fragment",
    [
        ("mysql://root@localhost/x", "must start with postgres"),
        ("postgresql://nobody:s3cret-pw@127.0.0.1:1/x", "cannot reach the database"),
        ("postgresql://no_such_role_x:s3cret-pw@127.0.0.1:5432/postgres", "refused the credentials"),
    ],
)
def test_errors_are_one_line_without_traceback_or_password(url: str, fragment: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    if "5432" in url and not os.environ.get("SALESARCK_TEST_DATABASE_URL"):
        pytest.skip("needs the PostgreSQL service on 127.0.0.1:5432")
    out = run(["db", "current"], {"DATABASE_URL": url, "SALESARCK_HOME": str(tmp_path)})
    assert out.returncode == 2
    assert fragment in out.stderr
    assert "Traceback" not in out.stderr and "s3cret" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_unrecognised_schema_is_a_clear_error(empty_db_url: URL, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import psycopg

    with psycopg.connect(_dsn(empty_db_url.set(drivername="postgresql")), autocommit=True) as c:
        c.execute("create table users (id uuid primary key, nickname text)")
    out = run(["db", "upgrade"], {"DATABASE_URL": _dsn(empty_db_url), "SALESARCK_HOME": str(tmp_path)})
    assert out.returncode == 2
    assert "unrecognised schema" in out.stderr and "Traceback" not in out.stderr


def _walk(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    found: list[tuple[str, click.Command]] = []
    for name, cmd in group.commands.items():
        found.append((f"{prefix}{name}", cmd))
        if isinstance(cmd, click.Group):
            found += _walk(cmd, f"{prefix}{name} ")
    return found


def test_every_command_and_option_has_help() -> None:
    missing = []
    for path, cmd in _walk(cli):
        if not (cmd.help or cmd.short_help):
            missing.append(path)
        for param in cmd.params:
            if isinstance(param, click.Option) and not param.help:
                missing.append(f"{path} {param.opts[0]}")
    assert missing == []


def test_unknown_command_is_usage_error() -> None:
    out = run(["no-such-command"])
    assert out.returncode == 2 and "No such command" in out.stderr


def test_readme_names_every_command() -> None:
    """The README's command table names every command: `salesarck TOP` and each subcommand in a TOP row."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    rows = [line for line in readme.splitlines() if line.startswith("| `salesarck ")]
    missing = []
    for path, cmd in _walk(cli):
        if isinstance(cmd, click.Group) and cmd.commands:
            continue
        top, _, rest = path.partition(" ")
        top_rows = [r for r in rows if f"salesarck {top}" in r]
        if not top_rows or (rest and not any(rest.split()[-1] in r for r in top_rows)):
            missing.append(path)
    assert missing == []
