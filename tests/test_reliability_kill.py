"""kill -9 at many random points of a bulk `ingest` and of `webhooks process` (each run as the real CLI in
a child process), then one uninterrupted run: the database equals a run that was never interrupted,
and a full reconciliation reports zero findings. (The sync's own kill test is tests/test_sync_kill.py.)

Kill points are random delays spread over the operation's measured duration, on one database: every
kill lands on whatever the previous killed runs left behind. At least 20 kills per path."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from salesarck.db.engine import make_engine
from salesarck.pos.fake.square import sign_webhook
from salesarck.pos.webhooks import processor
from salesarck.pos.webhooks.fetch import ProviderFetcher
from salesarck.pos.webhooks.store import build_square_event, store_events
from salesarck.reconcile import reconcile
from tests.conftest import Databases
from tests.factories import make_admin, make_rule, make_tenant, make_user
from tests.webhook_support import NOTIFICATION_URL, SIGNATURE_KEY, Env, provider_env, state

ROOT = Path(__file__).resolve().parents[1]
KILLS = 20


def _child(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import sys; from salesarck.cli import main; main(sys.argv[1:])",
                             *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _timed_run(args: list[str], env: dict[str, str]) -> float:
    t0 = time.monotonic()
    proc = _child(args, env)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()[-2000:]
    return time.monotonic() - t0


def _kill_loop(args: list[str], env: dict[str, str], duration: float | None, seed: int,
               window: float = 0.4) -> dict[str, int]:
    """KILLS runs, each SIGKILLed after a random delay: within the operation's duration (an operation
    that restarts from scratch, like one-transaction ingest), or, for `duration=None` (resumable work
    such as a backlog), within `window` seconds after start-up so every run leaves work for the next."""
    rnd = random.Random(seed)
    outcome = {"killed": 0, "finished": 0}
    startup = _timed_run(["--version"], env)  # imports: a kill before this tests nothing
    attempts = 0
    limit = KILLS if duration is None else 2 * KILLS  # a finished one-transaction run is retried
    while outcome["killed"] < KILLS and attempts < limit:
        attempts += 1
        proc = _child(args, env)
        if duration is None:
            time.sleep(startup + rnd.uniform(0.0, window))
        else:
            time.sleep(rnd.uniform(min(startup, 0.6 * duration), 0.9 * duration))
        if proc.poll() is None:
            proc.kill()
            outcome["killed"] += 1
        else:
            outcome["finished"] += 1
        proc.communicate(timeout=60)
    return outcome


def _timeless(st: dict[str, Any]) -> dict[str, Any]:
    return {**st, "transactions": sorted(t[:-1] for t in st["transactions"])}


def _zero_findings(engine: Engine) -> None:
    report = reconcile(engine)
    assert report.drift.empty, report.drift.head().to_dict()
    assert report.findings.empty, report.findings.head().to_dict()


def _base_env(engine: Engine, home: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "DATABASE_URL": engine.url.render_as_string(hide_password=False),
           "SALESARCK_HOME": str(home), **extra}
    env.pop("DIRECT_DATABASE_URL", None)
    return env


# --- bulk ingest ----------------------------------------------------------------------------------


def _ingest_world(engine: Engine) -> tuple[str, str]:
    with engine.begin() as conn:
        admin = make_admin(conn)
        tenant = make_tenant(conn)["id"]
        make_rule(conn, tenant, 1, config={"conversionRate": 1})
        for i in range(300):
            make_user(conn, email=f"kill{i}@example.test")
    return str(tenant), admin.email or ""


def _payments_file(path: Path, n: int) -> None:
    pays = []
    for i in range(n):
        p: dict[str, Any] = {
            "id": f"kp{i:06d}", "status": "COMPLETED", "amount_money": {"amount": 100 + i % 9000, "currency": "USD"},
            "created_at": "2026-05-01T12:00:00Z", "updated_at": "2026-05-01T12:00:00Z", "location_id": "L1",
            "buyer_email_address": f"kill{i % 400}@example.test"}
        if i % 17 == 0:
            p["refunded_money"] = {"amount": 50, "currency": "USD"}
            p["refund_ids"] = [f"kr{i}"]
        pays.append(p)
    path.write_text(json.dumps({"payments": pays}))


@pytest.mark.slow
def test_kill_bulk_ingest_then_rerun_equals_uninterrupted(databases: Databases, engine: Engine,
                                                          tmp_path: Path) -> None:
    data = tmp_path / "payments.json"
    _payments_file(data, 6_000)
    ref = make_engine(databases.clone())
    try:
        tenant, admin = _ingest_world(ref)
        args = ["ingest", str(data), "--tenant", tenant, "--provider", "square"]
        duration = _timed_run(args, _base_env(ref, tmp_path / "h1", SALESARCK_LOCAL_USER=admin))
        reference = state(ref)
    finally:
        ref.dispose()
    tenant, admin = _ingest_world(engine)
    # the same ids are not needed: state() compares business content (emails, payment ids, points)
    args = ["ingest", str(data), "--tenant", tenant, "--provider", "square"]
    env = _base_env(engine, tmp_path / "h2", SALESARCK_LOCAL_USER=admin)
    outcome = _kill_loop(args, env, duration, seed=1)
    assert outcome["killed"] >= KILLS // 2, outcome  # most kills landed mid-operation
    _timed_run(args, env)
    assert state(engine) == reference
    _zero_findings(engine)


# --- webhook processor ------------------------------------------------------------------------------


def _backlog(env: Env, n_payments: int) -> int:
    events = []
    for pid in env.square.payment_ids(status="COMPLETED")[:n_payments]:
        for _ in range(2):
            ev = {**env.square.webhook_event("payment.updated", pid), "event_id": str(uuid.uuid4())}
            raw = json.dumps(ev).encode()
            events.append(build_square_event(tenant_id=env.square_tenant, payload=ev, raw_body=raw,
                                             signature=sign_webhook(SIGNATURE_KEY, NOTIFICATION_URL, raw)))
    return store_events(env.engine, events).stored


def _processor_env(env: Env, home: Path) -> dict[str, str]:
    s = env.settings
    assert s.encryption_keys is not None and s.square_client_secret is not None
    return _base_env(env.engine, home, SALESARCK_ENCRYPTION_KEYS=s.encryption_keys.get_secret_value(),
                     SALESARCK_SQUARE_BASE_URL=env.square_url, SALESARCK_CLOVER_BASE_URL=env.clover_url,
                     SQUARE_CLIENT_ID=s.square_client_id or "", SQUARE_CLIENT_SECRET=s.square_client_secret
                     .get_secret_value(), SQUARE_WEBHOOK_SIGNATURE_KEY=SIGNATURE_KEY,
                     SQUARE_WEBHOOK_NOTIFICATION_URL=NOTIFICATION_URL, SALESARCK_LOCAL_USER=env.admin.email or "")


@pytest.mark.slow
def test_kill_webhook_processor_then_rerun_equals_uninterrupted(databases: Databases, engine: Engine,
                                                                tmp_path: Path) -> None:
    args = ["webhooks", "process", "--batch-size", "2"]
    ref = make_engine(databases.clone())
    try:
        with provider_env(ref, receiver=False, square_payments=60, clover_payments=5) as env:
            stored = _backlog(env, 50)
            fetcher = ProviderFetcher(ref, env.settings)
            try:
                done = processor.process_pending(ref, fetcher=fetcher, batch_size=2)
            finally:
                fetcher.close()
            assert done.processed == stored and done.failed == 0
            reference = state(ref)
    finally:
        ref.dispose()
    with provider_env(engine, receiver=False, square_payments=60, clover_payments=5) as env:
        assert _backlog(env, 50) == stored
        penv = _processor_env(env, tmp_path / "h2")
        outcome = _kill_loop(args, penv, None, seed=2)
        _timed_run(args, penv)
        with engine.connect() as conn:
            assert conn.execute(sa.text("select count(*) from pos_webhook_events_raw where not processed")
                                ).scalar() == 0
        got = state(engine)
    assert outcome["killed"] >= KILLS // 2, outcome
    # the fakes are seeded alike, but anchored at their creation time: compare without transaction_at
    assert _timeless(got) == _timeless(reference)
    _zero_findings(engine)
