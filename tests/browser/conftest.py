"""Real-browser harness: `streamlit run app.py` on a free port against a test database, Debian chromium.

Never `playwright install`: the browser is Debian's /usr/bin/chromium (installed by `.ci/run`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import URL

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class AppServer:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str]


def start_app(db_url: URL, home: Path, *, local_user: str, extra_env: dict[str, str] | None = None) -> AppServer:
    """Start a fresh Streamlit server (its first load is what a new user sees) and wait until healthy."""
    port = free_port()
    env = {**os.environ, "DATABASE_URL": db_url.render_as_string(hide_password=False),
           "SALESARCK_HOME": str(home), "SALESARCK_LOCAL_USER": local_user,
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), **(extra_env or {})}
    env.pop("DIRECT_DATABASE_URL", None)
    log = home / f"streamlit-{port}.log"
    home.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.address", "127.0.0.1", "--server.port",
         str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/_stcore/health", timeout=1).status_code == 200:
                return AppServer(url, proc, log, env)
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    stop_app(AppServer(url, proc, log, env))
    raise RuntimeError("streamlit did not become healthy within 60 s")


def stop_app(server: AppServer) -> None:
    if server.proc.poll() is None:
        os.killpg(server.proc.pid, signal.SIGTERM)
        try:
            server.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(server.proc.pid, signal.SIGKILL)


@pytest.fixture(scope="module")  # not session: sync Playwright keeps an event loop running in the main
def browser() -> Iterator[Any]:  # thread while open, which breaks every later asyncio.run() in the suite
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian chromium is missing: apt-get install -y chromium (never `playwright install`)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1440, "height": 1000})
    p = ctx.new_page()
    p.set_default_timeout(30_000)
    yield p
    ctx.close()


def shot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
