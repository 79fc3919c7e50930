"""kill -9 at many random points of a bulk `ingest`, of `webhooks process` and of `sync` (Square and
Clover; each run as the real CLI in a child process), then one uninterrupted run: the database equals
a run that was never interrupted, and a full reconciliation reports zero findings. (tests/test_sync_kill.py
kills a sync at 3 chosen points instead of random ones.)

Kill points are random delays spread over the operation's measured duration, on one database: every
kill lands on whatever the previous killed runs left behind. At least 20 kills per path."""

from __future__ import annotations

import collections
import json
import os
import random
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from pydantic import SecretStr
from sqlalchemy.engine import Engine

from salesarck.crypto import KeyRing, generate_key_spec
from salesarck.db.engine import make_engine
from salesarck.pos import connections
from salesarck.pos.fake.clover import FakeClover
from salesarck.pos.fake.server import ThreadServer
from salesarck.pos.fake.square import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, FakeSquare, sign_webhook
from salesarck.pos.webhooks import processor
from salesarck.pos.webhooks.store import build_square_event, store_events
from salesarck.reconcile import reconcile
from tests.conftest import Databases
from tests.factories import make_admin, make_rule, make_tenant, make_user
from tests.test_sync_support import db_state
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
            done = processor.process_now(ref, actor=None, settings=env.settings, batch_size=2)
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


# --- sync (Square and Clover) -------------------------------------------------------------------------

SYNC_DAYS = 20
SPARES = 2  # CLI children importing ahead of their turn


def _sync_fake(provider: str) -> Any:
    """Enough pages and commits, and a little latency per request, that a full sync takes 1-3 s."""
    anchor = datetime.now(UTC)
    if provider == "square":
        # a batch commits every 1,000 payments and at each location's end: the first location holds
        # half the payments (~1,400: commits at 1,000 and at its end), then 7 small ones
        square = FakeSquare(seed=21, payments=2_500, days=SYNC_DAYS, anchor=anchor, locations=8)
        square.faults.delay_seconds = 0.005
        return square
    # pages of 1,000, each committed: 3 commits a run; no server-side rate limit, whose 1 s
    # Retry-After waits would make run times, hence kill points, erratic
    clover = FakeClover(seed=21, payments=3_000, days=SYNC_DAYS, anchor=anchor, rate_limit_per_second=None)
    clover.faults.delay_seconds = 0.05
    return clover


def _sync_world(engine: Engine, provider: str, fake: Any, keyring: KeyRing) -> tuple[str, str]:
    """A tenant with a rule, loyalty members for every other fake customer, and the connection."""
    if provider == "square":
        emails = [c["email_address"] for c in fake.customers.values()]
        merchant, access, refresh = fake.merchant_id, fake.access_token, fake.refresh_token
    else:
        emails = [e["emailAddress"] for c in fake.customers for e in c["emailAddresses"]["elements"]]
        merchant = fake.merchant_id
        access, refresh = fake.access_token_for(merchant), fake.refresh_token_for(merchant)
    with engine.begin() as conn:
        admin = make_admin(conn)
        tenant = make_tenant(conn)["id"]
        make_rule(conn, tenant)
        for email in sorted(emails)[::2]:
            make_user(conn, email=email)
    info = connections.add_connection(engine, actor=admin, tenant_id=tenant, provider=provider,
                                      merchant_id=merchant, access_token=SecretStr(access),
                                      refresh_token=SecretStr(refresh), keyring=keyring)
    return str(info.id), admin.email or ""


def _sync_env(engine: Engine, home: Path, fake: Any, url: str, keys: str, admin: str) -> dict[str, str]:
    return _base_env(engine, home, SALESARCK_ENCRYPTION_KEYS=keys, SALESARCK_SQUARE_BASE_URL=url,
                     SALESARCK_CLOVER_BASE_URL=url, SQUARE_CLIENT_ID=DEFAULT_CLIENT_ID,
                     SQUARE_CLIENT_SECRET=DEFAULT_CLIENT_SECRET, CLOVER_CLIENT_ID=fake.client_id,
                     SALESARCK_LOCAL_USER=admin)


def _lease_state(engine: Engine) -> tuple[bool, float | None]:
    """(a run holds a live lease, seconds from lease to finish of the newest succeeded run)."""
    with engine.connect() as conn:
        live = conn.execute(sa.text("select count(*) from sync_runs where status = 'running'"
                                    " and lease_expires_at >= now() at time zone 'utc'")).scalar_one()
        took = conn.execute(sa.text("select extract(epoch from finished_at - started_at) from sync_runs"
                                    " where status = 'succeeded' order by finished_at desc limit 1")).scalar()
    return live > 0, None if took is None else float(took)


def _warm_child(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """The CLI in a child that imports everything (~3 s of CPU: every command, pandas, DuckDB), then
    waits for a line on stdin before it runs `args`, so start-ups overlap the runs before them."""
    code = ("import sys; from salesarck.cli import main, commands; import salesarck.pos.sync, "
            "salesarck.pos.clover_sync; sys.stdin.readline(); main(sys.argv[1:])")
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT, env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _sync_kill_loop(args: list[str], env: dict[str, str], engine: Engine, span: float,
                    seed: int) -> dict[str, Any]:
    """KILLS runs of `salesarck sync`, each SIGKILLed a random time after it took the lease: anywhere
    in [0, span], `span` being how long the last finished run held its lease (at first the fresh
    sync's), since every commit makes the next run shorter. After each kill the dead run's lease is
    aged past its expiry, as time would (the lease is 120 s and not configurable), so the next run
    has to take it over. `mid_run`: kills that found the run still `running`."""
    rnd = random.Random(seed)
    out: dict[str, Any] = {"killed": 0, "finished": 0, "mid_run": 0, "after_a_commit": 0, "points": []}
    attempts = 0
    spares = collections.deque(_warm_child(args, env) for _ in range(SPARES))
    try:
        while out["killed"] < KILLS and attempts < 2 * KILLS:
            attempts += 1
            proc = spares.popleft()
            spares.append(_warm_child(args, env))
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            proc.stdin.flush()
            deadline = time.monotonic() + 120
            while proc.poll() is None and not _lease_state(engine)[0] and time.monotonic() < deadline:
                time.sleep(0.02)
            delay = rnd.uniform(0.0, span)
            time.sleep(delay)
            if proc.poll() is None:
                proc.kill()
                out["killed"] += 1
            else:
                out["finished"] += 1
            _, err = proc.communicate(timeout=60)
            assert proc.returncode in (0, -9), err.decode()[-2000:]
            with engine.begin() as conn:
                pages = conn.execute(sa.text(
                    "update sync_runs set lease_expires_at = now() at time zone 'utc' - interval '1 second'"
                    " where status = 'running' and lease_expires_at >= now() at time zone 'utc' returning pages"
                )).scalar()
            if pages is not None:
                out["mid_run"] += 1
                out["after_a_commit"] += pages > 0
                out["points"].append(round(delay / span, 2))
            took = _lease_state(engine)[1]
            if took is not None:
                span = min(span, took)
    finally:
        for spare in spares:
            spare.kill()
            spare.communicate(timeout=60)
    out["span_last"] = round(span, 2)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("provider", ["square", "clover"])
def test_kill_sync_then_rerun_equals_uninterrupted(databases: Databases, engine: Engine, tmp_path: Path,
                                                   provider: str) -> None:
    fake = _sync_fake(provider)
    keys = generate_key_spec()
    keyring = KeyRing.parse(keys)
    # the same window for every run, so each killed run starts the whole sync again on what the
    # previous ones committed (after a finished run, a watermark-based run would only re-read 72 h)
    since = (fake.anchor - timedelta(days=SYNC_DAYS + 1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    with ThreadServer(fake.app) as srv:
        ref = make_engine(databases.clone())
        try:
            cid, admin = _sync_world(ref, provider, fake, keyring)
            args = ["sync", "--connection", cid, "--no-progress", "--since", since]
            duration = _timed_run(args, _sync_env(ref, tmp_path / "h1", fake, srv.base_url, keys, admin))
            span = _lease_state(ref)[1]
            assert span is not None
            reference = db_state(ref)
        finally:
            ref.dispose()
        cid, admin = _sync_world(engine, provider, fake, keyring)
        args = ["sync", "--connection", cid, "--no-progress", "--since", since]
        env = _sync_env(engine, tmp_path / "h2", fake, srv.base_url, keys, admin)
        t0 = time.monotonic()
        outcome = _sync_kill_loop(args, env, engine, span, seed=3)
        elapsed = time.monotonic() - t0
        _timed_run(args, env)
    print(f"{provider}: uninterrupted {duration:.2f} s (lease held {span:.2f} s); {outcome}; kill loop {elapsed:.1f} s")
    assert outcome["killed"] >= KILLS and outcome["mid_run"] >= KILLS // 2, outcome
    assert db_state(engine) == reference
    with engine.connect() as conn:
        runs: dict[str, int] = dict(conn.execute(sa.text("select status, count(*) from sync_runs group by 1")).all())
    # every run killed while it held the lease was taken over by the next; none is left running or failed
    assert set(runs) == {"abandoned", "succeeded"} and runs["abandoned"] == outcome["mid_run"], runs
    _zero_findings(engine)
