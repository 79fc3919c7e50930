"""The `make run` demo: local settings, demo users, tenants, rules, POS connections to the fake
servers, generated history with planted faults, and the processes that serve it all.

Everything here goes through the package's own functions (rules, connections, generator), so the
demo exercises the same code as production.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from salesarck.config import Settings, load_settings, local_env_file
from salesarck.errors import Conflict

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
PORTS = {"square": 8701, "clover": 8702, "webhooks": 8703, "app": 8501}
SQUARE_SEED, SQUARE_PAYMENTS = 7, 3000
CLOVER_SEED, CLOVER_PAYMENTS = 11, 1500
GENERATED_SEED = 4242
KNOWN_CUSTOMER_SHARE = 0.6  # share of the fake POS customers who have a loyalty account

ADMIN = "admin@demo.salesarck.test"
APPROVER = "approver@demo.salesarck.test"
FINANCE = "finance@demo.salesarck.test"
OPERATOR = "operator@demo.salesarck.test"
PENDING = "pending@demo.salesarck.test"

SQUARE_TENANT = "Harbor Coffee"
CLOVER_TENANT = "Maple Diner"


@dataclass
class DemoSummary:
    already_loaded: bool = False
    tenants: list[str] = field(default_factory=list)
    users: int = 0
    connections: int = 0
    generated: dict[str, Any] = field(default_factory=dict)


def write_local_env(home: Path) -> Path:
    """Create `$SALESARCK_HOME/salesarck.env` with generated keys and the fake servers' URLs.

    Existing values are kept, so keys that encrypt stored tokens are never replaced.
    """
    from salesarck.crypto import generate_key_spec

    path = local_env_file(home)
    home.mkdir(parents=True, exist_ok=True)
    existing: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and not key.startswith("#"):
                existing[key.strip()] = value.strip()
    wanted = {
        "SALESARCK_ENCRYPTION_KEYS": generate_key_spec("demo1"),
        "SALESARCK_SQUARE_BASE_URL": f"http://127.0.0.1:{PORTS['square']}",
        "SALESARCK_CLOVER_BASE_URL": f"http://127.0.0.1:{PORTS['clover']}",
        "SQUARE_CLIENT_ID": "sq0idp-fake-client",
        "SQUARE_CLIENT_SECRET": "fake-client-secret",
        "CLOVER_CLIENT_ID": "fake-clover-client",
        "SQUARE_WEBHOOK_SIGNATURE_KEY": uuid.uuid4().hex,
        "SQUARE_WEBHOOK_NOTIFICATION_URL": f"http://127.0.0.1:{PORTS['webhooks']}/webhooks/square",
        "CLOVER_WEBHOOK_AUTH_CODE": uuid.uuid4().hex,
    }
    merged = {**wanted, **existing}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("# Local settings written by `salesarck demo seed`; the environment overrides them.\n")
        for key, value in merged.items():
            fh.write(f"{key}={value}\n")
    return path


def _add_user(conn: sa.Connection, email: str, role: str, status: str = "active",
              mobile: str | None = None) -> uuid.UUID:
    found = conn.execute(sa.text("select id from users where lower(email) = :e"), {"e": email.lower()}).first()
    if found:
        return uuid.UUID(str(found.id))
    uid = uuid.uuid4()
    conn.execute(sa.text("insert into users (id, email, mobile, role, status) values (:i, :e, :m, :r, :s)"),
                 {"i": uid, "e": email.lower(), "m": mobile, "r": role, "s": status})
    return uid


def _add_tenant(conn: sa.Connection, name: str, provider: str, timezone: str) -> uuid.UUID:
    tid = uuid.uuid4()
    conn.execute(
        sa.text("insert into tenants (id, name, country, pos_provider_preference, onboarding_profile)"
                " values (:i, :n, 'US', :p, cast(:o as jsonb))"),
        {"i": tid, "n": name, "p": provider,
         "o": f'{{"timezone": "{timezone}", "businessType": "food_and_beverage"}}'},
    )
    return tid


def _member(conn: sa.Connection, user_id: uuid.UUID, tenant_id: uuid.UUID, role: str) -> None:
    conn.execute(sa.text("insert into tenant_users (user_id, tenant_id, role) values (:u, :t, :r)"
                         " on conflict (user_id, tenant_id) do nothing"), {"u": user_id, "t": tenant_id, "r": role})


def seed_demo(settings: Settings | None = None, *, generated_wallets: int = 3000,
              generated_ledger_entries: int = 40000) -> DemoSummary:
    """Load the demo once; a second call reports that it is already there and changes nothing."""
    from salesarck.authz import load_actor
    from salesarck.crypto import KeyRing
    from salesarck.db.session import open_engine
    from salesarck.pos.connections import add_connection
    from salesarck.pos.fake.clover import DEFAULT_REFRESH_TOKEN as CLOVER_REFRESH
    from salesarck.pos.fake.clover import FakeClover
    from salesarck.pos.fake.square import DEFAULT_ACCESS_TOKEN, DEFAULT_REFRESH_TOKEN, FakeSquare
    from salesarck.reconcile.generate import generate
    from salesarck.rewards.rules import create_rule
    from salesarck.timeutil import utcnow

    settings = settings or load_settings()
    write_local_env(settings.home)
    settings = load_settings()  # now with the local env file
    engine = open_engine(settings, auto_migrate=True)
    summary = DemoSummary()
    with engine.connect() as conn:
        if conn.execute(sa.text("select 1 from tenants where name = :n"), {"n": SQUARE_TENANT}).first():
            summary.already_loaded = True
            return summary

    square = FakeSquare(seed=SQUARE_SEED, payments=SQUARE_PAYMENTS)
    clover = FakeClover(seed=CLOVER_SEED, payments=CLOVER_PAYMENTS)
    now = utcnow()
    with engine.begin() as conn:
        admin_id = _add_user(conn, settings.local_user, "admin")
        _add_user(conn, APPROVER, "admin")
        finance = _add_user(conn, FINANCE, "client")
        operator = _add_user(conn, OPERATOR, "pos_operator")
        pending = _add_user(conn, PENDING, "client", status="pending_approval")
        sq_tenant = _add_tenant(conn, SQUARE_TENANT, "square", "America/Los_Angeles")
        cl_tenant = _add_tenant(conn, CLOVER_TENANT, "clover", "America/New_York")
        for tenant in (sq_tenant, cl_tenant):
            _member(conn, finance, tenant, "client")
            _member(conn, pending, tenant, "client")
        _member(conn, operator, sq_tenant, "pos_operator")
        # loyalty members: a share of the POS customers, matched later by email or phone
        customers = list(square.customers.values())
        for c in customers[: int(len(customers) * KNOWN_CUSTOMER_SHARE)]:
            _add_user(conn, c["email_address"], "consumer", mobile=c.get("phone_number"))
        cl_customers: list[dict[str, Any]] = list(clover.customers)
        for cc in cl_customers[: int(len(cl_customers) * KNOWN_CUSTOMER_SHARE)]:
            _add_user(conn, cc["emailAddresses"]["elements"][0]["emailAddress"], "consumer")
        summary.users = int(conn.execute(sa.text("select count(*) from users")).scalar_one())
    with engine.begin() as conn:
        admin = load_actor(conn, str(conn.execute(sa.text("select email from users where id = :i"),
                                                  {"i": admin_id}).scalar_one()))
        base = {"minSpendMinorUnits": 100, "maxPointsPerTransaction": 500, "minBalanceToRedeem": 100,
                "maxRedemptionPercentage": 50, "roundingPolicy": "floor", "pointValueMinorUnits": 1}
        create_rule(conn, actor=admin, tenant_id=sq_tenant, config={**base, "conversionRate": 1},
                    effective_from=now - timedelta(days=365), reason="demo: launch rule")
        create_rule(conn, actor=admin, tenant_id=sq_tenant, config={**base, "conversionRate": 2},
                    effective_from=now - timedelta(days=5), reason="demo: double points week")
        create_rule(conn, actor=admin, tenant_id=cl_tenant,
                    config={**base, "conversionRate": 1, "roundingPolicy": "round"},
                    effective_from=now - timedelta(days=365), reason="demo: launch rule")
    keyring = KeyRing.from_settings(settings)
    add_connection(engine, actor=admin, tenant_id=sq_tenant, provider="square", merchant_id=square.merchant_id,
                   access_token=DEFAULT_ACCESS_TOKEN, refresh_token=DEFAULT_REFRESH_TOKEN,
                   expires_at=now + timedelta(days=30), keyring=keyring)
    add_connection(engine, actor=admin, tenant_id=cl_tenant, provider="clover", merchant_id=clover.merchant_id,
                   access_token=clover.access_token_for(clover.merchant_id), refresh_token=CLOVER_REFRESH,
                   expires_at=now + timedelta(days=30), keyring=keyring)
    summary.connections = 2
    # a year of consistent history for two more tenants, with one planted fault of every check
    gen = generate(engine, tenants=2, wallets=generated_wallets, ledger_entries=generated_ledger_entries,
                   drift_rate=0.01, plant_faults=True, seed=GENERATED_SEED)
    summary.generated = {k: v for k, v in vars(gen).items() if isinstance(v, int | float | str)}
    summary.tenants = [SQUARE_TENANT, CLOVER_TENANT]
    engine.dispose()
    return summary


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _spawn(args: list[str], *, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(args, env=env, cwd=ROOT, start_new_session=True)


def serve_demo(*, app_port: int = PORTS["app"], worker: bool = False) -> int:
    """Run the fake POS servers and the webhook receiver in the background and the app in front."""
    from salesarck.pos.fake.server import wait_for_port

    cli = [sys.executable, "-m", "salesarck"]
    env = {**os.environ}
    # SIGTERM (timeout, a supervisor) must also stop the children we started in their own sessions
    signal.signal(signal.SIGTERM, _interrupt)
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    plan: list[tuple[str, list[str], int]] = [
        ("fake Square", [*cli, "fakepos", "serve", "square", "--port", str(PORTS["square"]), "--seed",
                         str(SQUARE_SEED), "--payments", str(SQUARE_PAYMENTS)], PORTS["square"]),
        ("fake Clover", [*cli, "fakepos", "serve", "clover", "--port", str(PORTS["clover"]), "--seed",
                         str(CLOVER_SEED), "--payments", str(CLOVER_PAYMENTS)], PORTS["clover"]),
        ("webhook receiver", [*cli, "webhooks", "serve", "--port", str(PORTS["webhooks"])], PORTS["webhooks"]),
    ]
    try:
        for name, args, port in plan:
            _port_free_or_fail(port, name)
            proc = _spawn(args, env=env)
            children.append((name, proc))
            wait_for_port(port, proc=proc, timeout=60)
            print(f"{name:18s} http://127.0.0.1:{port}", flush=True)
        if worker:
            children.append(("worker", _spawn([*cli, "worker"], env=env)))
        _port_free_or_fail(app_port, "the app")
        print(f"{'app':18s} http://127.0.0.1:{app_port}", flush=True)
        app = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.address", "127.0.0.1",
             "--server.port", str(app_port), "--server.headless", "true",
             "--browser.gatherUsageStats", "false"],
            env=env, cwd=ROOT,
        )
        children.append(("app", app))
        return app.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        for _name, proc in reversed(children):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _name, proc in children:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def _port_free_or_fail(port: int, what: str) -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        if sock.connect_ex(("127.0.0.1", port)) == 0:
            raise Conflict(f"port {port} for {what} is already in use; is another `make run` still running?")


def demo_engine() -> Engine:
    from salesarck.db.session import open_engine

    return open_engine(load_settings())
