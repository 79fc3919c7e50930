"""The worker: polls on schedule (the backstop for dropped webhooks), processes the backlog, beats a
heartbeat, honours per-connection intervals, and exits cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

from salesarck.errors import PermissionDenied, ValidationError
from salesarck.timeutil import utcnow
from salesarck.worker import Worker, poll_schedule, set_connection_options, worker_status
from tests.factories import make_member
from tests.webhook_support import CLOVER_AUTH, provider_env


def _txn_ids(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(sa.text("select provider_transaction_id from transactions")).scalars())


def test_worker_picks_up_payments_whose_webhooks_were_dropped(engine: Engine) -> None:
    with provider_env(engine) as env:
        w = Worker(engine, env.settings)
        w.run_once()  # first polls of both connections
        assert w.stats.polls == 2 and w.stats.poll_failures == 0, w.stats
        first = _txn_ids(engine)
        sq = env.square.add_payment(status="COMPLETED")  # no webhook is ever sent for these
        cl = env.clover.add_payment(amount=1234)
        w.run_once()
        assert w.stats.polls == 2  # not due yet: the default interval is 300 s
        with engine.begin() as conn:
            conn.execute(sa.text("update worker_poll_state set next_due_at = :t"), {"t": utcnow()})
        w.run_once()
        assert w.stats.polls == 4
        assert _txn_ids(engine) - first == {sq["id"], cl["id"]}


def test_worker_processes_webhooks_and_beats(engine: Engine) -> None:
    with provider_env(engine) as env:
        pay = env.clover.add_payment(amount=999)
        w = Worker(engine, env.settings)
        with engine.begin() as conn:  # polls not due: only webhooks can bring this payment now
            for cid in (env.square_connection, env.clover_connection):
                conn.execute(sa.text("insert into worker_poll_state (connection_id, next_due_at) values (:c, :t)"),
                             {"c": cid, "t": utcnow() + timedelta(hours=1)})
        r = env.clover.emit_webhook(env.receiver_url + "/webhooks/clover", auth_code=CLOVER_AUTH,
                                    events={env.clover.merchant_id: [(f"P:{pay['id']}", "CREATE")]})
        assert r.status_code == 200
        w.run_once()
        assert w.stats.polls == 0 and w.stats.events_processed == 1
        assert pay["id"] in _txn_ids(engine)
        beats = worker_status(engine)
        assert beats[0]["worker_id"] == w.worker_id and beats[0]["alive"]
        assert beats[0]["detail"]["events_processed"] == 1


def test_per_connection_interval_and_options(engine: Engine) -> None:
    with provider_env(engine, receiver=False) as env:
        set_connection_options(engine, actor=env.admin, connection_id=env.square_connection, poll_interval_seconds=5)
        set_connection_options(engine, actor=env.admin, connection_id=env.clover_connection, clover_region="eu")
        rows = {r["connection_id"]: r for r in poll_schedule(engine, actor=env.admin, default_interval=300)}
        assert rows[env.square_connection]["interval_seconds"] == 5
        assert rows[env.clover_connection]["clover_region"] == "eu"
        set_connection_options(engine, actor=env.admin, connection_id=env.clover_connection, clover_region=None)
        calls: list[uuid.UUID] = []
        w = Worker(engine, env.settings, sync=lambda eng, cid, settings: calls.append(cid))
        w.run_once()
        assert sorted(calls) == sorted([env.square_connection, env.clover_connection])
        with engine.connect() as conn:
            due = dict(conn.execute(sa.text("select connection_id, next_due_at - last_started_at"
                                            " from worker_poll_state")).all())
        assert due[env.square_connection] == timedelta(seconds=5)
        assert due[env.clover_connection] == timedelta(seconds=env.settings.worker_interval_seconds)
        for bad in (0, 4, 86401, True, "60"):
            with pytest.raises(ValidationError):
                set_connection_options(engine, actor=env.admin, connection_id=env.square_connection,
                                       poll_interval_seconds=bad)  # type: ignore[arg-type]
        with pytest.raises(ValidationError):
            set_connection_options(engine, actor=env.admin, connection_id=env.square_connection, clover_region="eu")
        with pytest.raises(ValidationError):
            set_connection_options(engine, actor=env.admin, connection_id=env.clover_connection, clover_region="mars")
        with engine.begin() as conn:
            client = make_member(conn, env.square_tenant, role="client", user_role="client")
        with pytest.raises(PermissionDenied):
            set_connection_options(engine, actor=client, connection_id=env.square_connection, poll_interval_seconds=60)


def test_two_workers_never_poll_one_connection_at_once(engine: Engine) -> None:
    with provider_env(engine, receiver=False) as env:
        calls: list[uuid.UUID] = []
        a = Worker(engine, env.settings, sync=lambda eng, cid, settings: calls.append(cid))
        b = Worker(engine, env.settings, sync=lambda eng, cid, settings: calls.append(cid))
        assert a._claim_due_poll() is not None
        assert b._claim_due_poll() is not None
        assert a._claim_due_poll() is None and b._claim_due_poll() is None


def test_sigterm_finishes_and_exits_cleanly(engine: Engine, db_url: URL, tmp_path: object) -> None:
    with provider_env(engine, receiver=False) as env:
        s = env.settings
        env_vars = {**os.environ, "DATABASE_URL": db_url.render_as_string(hide_password=False),
                    "SALESARCK_HOME": str(tmp_path), "SALESARCK_ENCRYPTION_KEYS": s.encryption_keys.get_secret_value(),
                    "SALESARCK_SQUARE_BASE_URL": s.square_base_url, "SALESARCK_CLOVER_BASE_URL": s.clover_base_url,
                    "SQUARE_CLIENT_ID": s.square_client_id or "", "CLOVER_CLIENT_ID": s.clover_client_id or "",
                    "SQUARE_CLIENT_SECRET": s.square_client_secret.get_secret_value() if s.square_client_secret else "",
                    "SALESARCK_WORKER_INTERVAL_SECONDS": "5"}
        proc = subprocess.Popen([sys.executable, "-c", "import sys; from salesarck.cli import main; main(sys.argv[1:])", "--format", "json", "worker",
                                 "--idle-seconds", "0.2"], env=env_vars, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                with engine.connect() as conn:
                    polls = conn.execute(sa.text("select count(*) from worker_poll_state where last_finished_at"
                                                 " is not null")).scalar_one()
                if polls == 2 or proc.poll() is not None:
                    break
                time.sleep(0.2)
            if polls != 2:
                proc.kill()
                raise AssertionError(proc.communicate(timeout=10)[1].decode()[-3000:])
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, err.decode()[-2000:]
        assert b'"polls"' in out
        beats = worker_status(engine)
        assert beats[0]["state"] == "stopped" and not beats[0]["alive"]
        assert len(_txn_ids(engine)) > 0


def test_a_never_polled_connection_makes_the_worker_wake_at_once(engine: Engine) -> None:
    with provider_env(engine, receiver=False) as env:
        w = Worker(engine, env.settings, idle_seconds=30, sync=lambda eng, cid, settings: None)
        assert w._sleep_seconds() <= 0.1  # never polled: due now
        w.run_once()
        assert 1 <= w._sleep_seconds() <= 30  # both polled: the idle wait, bounded by the next due poll
