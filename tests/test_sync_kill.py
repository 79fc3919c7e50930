"""Kill -9 in mid-sync, then re-run: the database ends exactly as after one uninterrupted sync.

The sync runs as `salesarck sync` in a child process against the fake Square in this process; a
gate in the fake holds a chosen request, the child is killed while it waits, the lease is aged
past its expiry (as time would), and a second run completes the sync.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from salesarck.db.engine import make_engine
from salesarck.pos.fake.server import ThreadServer
from salesarck.pos.fake.square import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, FakeSquare
from salesarck.pos.sync import sync_connection
from tests.conftest import Databases
from tests.test_reliability_kill import _zero_findings
from tests.test_sync_support import World, build_world, db_state, fast_client_factory

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def shared_fake() -> Iterator[tuple[FakeSquare, str]]:
    fake = FakeSquare(seed=11, payments=420, days=20, anchor=datetime.now(UTC))
    with ThreadServer(fake.app) as srv:
        yield fake, srv.base_url


@pytest.fixture(scope="module")
def reference(databases: Databases, shared_fake: tuple[FakeSquare, str]) -> Iterator[dict[str, list[tuple]]]:
    fake, url = shared_fake
    eng = make_engine(databases.clone())
    w = build_world(eng, fake, url)
    result = sync_connection(eng, w.connection.id, actor=None, settings=w.settings,
                             client_factory=fast_client_factory())
    assert result.ok and result.pages > 3, result
    yield db_state(eng)
    eng.dispose()


def _cli_sync(w: World, url: str, home: Path) -> subprocess.Popen[bytes]:
    db = w.engine.url.render_as_string(hide_password=False)
    env = {**os.environ, "DATABASE_URL": db, "SALESARCK_HOME": str(home), "SALESARCK_ENCRYPTION_KEYS": w.keys,
           "SALESARCK_SQUARE_BASE_URL": url, "SQUARE_CLIENT_ID": DEFAULT_CLIENT_ID,
           "SQUARE_CLIENT_SECRET": DEFAULT_CLIENT_SECRET, "SALESARCK_LOCAL_USER": w.admin.email or ""}
    env.pop("DIRECT_DATABASE_URL", None)
    return subprocess.Popen([sys.executable, "-c", "import sys; from salesarck.cli import main; main(sys.argv[1:])",
                             "--format", "json", "sync", "--connection", str(w.connection.id), "--no-progress"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.slow
@pytest.mark.parametrize("path,after", [
    ("/v2/payments", 2),                # after two pages committed, before the third is fetched
    ("/v2/orders/batch-retrieve", 3),   # a page fetched and being enriched: not committed
    ("/v2/customers/", 5),              # in the middle of a page's customer look-ups
])
def test_kill_mid_sync_then_rerun_equals_uninterrupted(engine: Engine, shared_fake: tuple[FakeSquare, str],
                                                       reference: dict[str, list[tuple]], tmp_path: Path,
                                                       path: str, after: int) -> None:
    fake, url = shared_fake
    w = build_world(engine, fake, url)
    gate = fake.gate(path, after=after)
    proc = _cli_sync(w, url, tmp_path)
    try:
        for _ in range(900):
            if gate.reached.wait(0.1) or proc.poll() is not None:
                break
        assert gate.reached.is_set(), proc.communicate()[1].decode() if proc.poll() is not None else "gate not reached"
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        gate.release()
        fake.faults.gates.remove(gate)
    with engine.begin() as conn:
        assert conn.execute(sa.text("select status from sync_runs")).scalar_one() == "running"
        assert conn.execute(sa.text("select last_synced_at from pos_connections")).scalar_one() is None
        # time passes: the dead sync's lease expires
        conn.execute(sa.text("update sync_runs set lease_expires_at = lease_expires_at - interval '1 hour'"))
    partial = db_state(engine)
    assert partial != reference
    rerun = _cli_sync(w, url, tmp_path)
    out, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err.decode()
    assert db_state(engine) == reference
    with engine.connect() as conn:
        runs = sorted(conn.execute(sa.text("select status from sync_runs")).scalars())
    assert runs == ["abandoned", "succeeded"]
    _zero_findings(engine)
