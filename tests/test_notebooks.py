"""The analysts' notebooks: stored without outputs, and each runs top to bottom on demo-like data.

Each notebook is executed with nbclient in a real kernel, reading the database from DATABASE_URL
(set here to a throwaway database filled with demo-like data); any cell error fails the test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
import sqlalchemy as sa
from nbclient import NotebookClient
from sqlalchemy.engine import URL

from salesarck.demo import seed_demo
from tests.conftest import ROOT, Databases

NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
EXPECTED = {"01_reconciliation.ipynb", "02_rewards_analysis.ipynb", "03_sync_health.ipynb"}
CELL_TIMEOUT_S = 180


def test_the_three_notebooks_exist() -> None:
    assert {p.name for p in NOTEBOOKS} >= EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_without_outputs(path: Path) -> None:
    book = nbformat.read(path, as_version=4)
    nbformat.validate(book)
    dirty = [i for i, c in enumerate(book.cells)
             if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs; clear them before committing"
    assert book.cells[0].cell_type == "markdown", "start with a short explanation of what and why"
    markdown = [c for c in book.cells if c.cell_type == "markdown"]
    assert len(markdown) >= 4, "each step needs a short what-and-why"
    assert all("salesarck.connect()" in c.source for c in book.cells[:2] if c.cell_type == "code")


def test_output_check_catches_committed_outputs(tmp_path: Path) -> None:
    book = nbformat.read(NOTEBOOKS[0], as_version=4)
    code = next(c for c in book.cells if c.cell_type == "code")
    code.outputs = [nbformat.v4.new_output("stream", name="stdout", text="left over\n")]
    code.execution_count = 3
    dirty_path = tmp_path / NOTEBOOKS[0].name
    nbformat.write(book, dirty_path)
    with pytest.raises(AssertionError, match="carry outputs"):
        test_notebook_is_stored_without_outputs(dirty_path)


@pytest.fixture(scope="module")
def demo_env(databases: Databases, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[URL, Path]]:
    """One database loaded by `salesarck demo seed` itself (smaller history), shared by every notebook
    run: they only read. Users, tenants, rules and POS connections as in `make run`, plus generated
    history with drift and one planted fault of every check, so every section has something to show."""
    url = databases.clone()
    home = tmp_path_factory.mktemp("demo-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DATABASE_URL", url.render_as_string(hide_password=False))
        mp.setenv("SALESARCK_HOME", str(home))
        mp.delenv("DIRECT_DATABASE_URL", raising=False)
        seed_demo(generated_wallets=300, generated_ledger_entries=4000)
        _sync_demo_square(mp, url)
    yield url, home


def _sync_demo_square(mp: pytest.MonkeyPatch, url: URL) -> None:
    """Press "Sync now" on the demo's Square connection against its fake server, as a demo user
    would, so the sync-health notebook sees polled payments with locations and lag."""
    from salesarck.authz import load_actor
    from salesarck.config import load_settings
    from salesarck.db.engine import make_engine
    from salesarck.demo import SQUARE_SEED
    from salesarck.pos.fake.server import ThreadServer
    from salesarck.pos.fake.square import FakeSquare
    from salesarck.pos.sync import sync_connection

    fake = FakeSquare(seed=SQUARE_SEED, payments=400)
    with ThreadServer(fake.app) as server:
        mp.setenv("SALESARCK_SQUARE_BASE_URL", server.base_url)
        engine = make_engine(url)
        try:
            with engine.connect() as conn:
                admin = load_actor(conn, load_settings().local_user)
                connection_id = conn.execute(sa.text(
                    "select id from pos_connections where pos_type = 'square'")).scalar_one()
            sync_connection(engine, connection_id, actor=admin)
        finally:
            engine.dispose()


@pytest.fixture
def notebook_env(monkeypatch: pytest.MonkeyPatch, demo_env: tuple[URL, Path], tmp_path: Path) -> Path:
    url, home = demo_env
    monkeypatch.setenv("DATABASE_URL", url.render_as_string(hide_password=False))
    monkeypatch.setenv("SALESARCK_HOME", str(home))
    monkeypatch.delenv("DIRECT_DATABASE_URL", raising=False)
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    return tmp_path


def _execute(path: Path, workdir: Path) -> nbformat.NotebookNode:
    book = nbformat.read(path, as_version=4)
    client = NotebookClient(book, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(workdir)}})
    client.execute()  # raises CellExecutionError on the first failing cell
    return book


def _outputs(book: nbformat.NotebookNode, kind: str) -> list[Any]:
    return [o for c in book.cells if c.cell_type == "code" for o in c.outputs if kind in o.get("data", {})]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_top_to_bottom(path: Path, notebook_env: Path) -> None:
    book = _execute(path, notebook_env)
    errors = [o for c in book.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    assert _outputs(book, "application/vnd.plotly.v1+json"), "each notebook draws with salesarck.charts/plotly"
    if path.name.startswith("01_"):
        assert any("Reconciliation" in o["data"]["text/html"] for o in _outputs(book, "text/html"))
        exported = sorted(p.name for p in (notebook_env / "exports").iterdir())
        assert exported == ["reconciliation_drift.csv", "reconciliation_drift.parquet",
                            "reconciliation_findings.csv", "reconciliation_findings.parquet"]
