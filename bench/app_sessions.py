"""Load: the app's pages under N concurrent browser sessions on generated data (issue 9: 20 sessions at
1M transactions / 10M ledger rows).

Needs the database `bench/app.py --keep` leaves (`salesarck_bench_app`, 1M wallets, 10M ledger rows).
Starts one real Streamlit server (`streamlit run app.py`, as the bench's admin) and N independent sessions
that all start together; every session walks every page `--rounds` times. Two kinds of client:

- `--client ws` (default): each session is Streamlit's own websocket protocol (what the browser speaks),
  without a browser: a page's time is from asking for the page until the server's `script_finished`. This
  is the server's answer time under N sessions, and does not charge the server for N browsers' rendering
  on the same machine.
- `--client browser`: one headless Debian chromium with N contexts; a page's time is from navigation until
  its text stopped changing (title shown, no skeleton, no stale element), what a user waits for. On a
  small machine the N renderers compete with the server for the same cores.

Reports per page p50/p95/max over all sessions, for the first round (a cold server process: caches empty,
rollups being built) and for the later rounds (warm), plus any page that failed or showed an error.

    .venv/bin/python bench/app.py --keep                # once: generate the data (about 10 min)
    .venv/bin/python bench/app_sessions.py --sessions 20 --rounds 3 [--client browser]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchdb import server_url  # noqa: E402

from salesarck.webapp.registry import PAGES  # noqa: E402
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, start_app, stop_app  # noqa: E402

DB = "salesarck_bench_app"
ERRORS = '[data-testid="stException"], [data-testid="stAlertContentError"]'


async def rendered(page: Any, t0: float, timeout_s: float) -> float:
    """Seconds from t0 until the page's text last changed, once it has a title and nothing is loading."""
    await page.wait_for_selector('[data-testid="stMainBlockContainer"] h1', state="visible",
                                 timeout=timeout_s * 1000)
    last, changed = None, time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        busy = await page.locator('[data-testid="stSkeleton"], [data-stale="true"]').count()
        text = await page.inner_text("body")
        if text != last or busy:
            last, changed = text, time.monotonic()
        elif time.monotonic() - changed > 1.5:
            return changed - t0
        await asyncio.sleep(0.2)
    raise TimeoutError(f"not rendered within {timeout_s} s")


async def session(browser: Any, base: str, rounds: int, timeout_s: float, out: list[tuple[int, str, float]],
                  errors: list[str]) -> None:
    ctx = await browser.new_context(viewport={"width": 1440, "height": 1000})
    page = await ctx.new_page()
    page.set_default_timeout(timeout_s * 1000)
    try:
        for rnd in range(rounds):
            for spec in PAGES:
                t0 = time.monotonic()
                await page.goto(f"{base}/{spec.key}")
                try:
                    out.append((rnd, spec.title, await rendered(page, t0, timeout_s)))
                except Exception as exc:  # a timeout is a result to report, not a crash
                    errors.append(f"{spec.key}: {type(exc).__name__}")
                    continue
                if await page.locator(ERRORS).count():
                    errors.append(f"{spec.key}: {(await page.locator(ERRORS).first.inner_text())[:200]}")
    finally:
        await ctx.close()


async def ws_session(base: str, rounds: int, timeout_s: float, out: list[tuple[int, str, float]],
                     errors: list[str]) -> None:
    """One Streamlit session over its websocket: ask for each page, wait for `script_finished`."""
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    ws = await websocket_connect(HTTPRequest(base.replace("http", "ws", 1) + "/_stcore/stream",
                                             headers={"Sec-WebSocket-Protocol": "streamlit"}))
    try:
        for rnd in range(rounds):
            for spec in PAGES:
                ask = BackMsg()
                # the default page lives at "/" (st.navigation serves no other path for it)
                ask.rerun_script.page_name = "" if spec is PAGES[0] else spec.key
                t0 = time.monotonic()
                await ws.write_message(ask.SerializeToString(), binary=True)
                while True:
                    raw = await asyncio.wait_for(ws.read_message(), timeout_s)
                    if raw is None:
                        raise ConnectionError("the server closed the session")
                    msg = ForwardMsg()
                    msg.ParseFromString(raw)
                    kind = msg.WhichOneof("type")
                    if kind == "delta" and msg.delta.new_element.WhichOneof("type") == "exception":
                        errors.append(f"{spec.key}: {msg.delta.new_element.exception.message[:200]}")
                    elif kind == "page_not_found":
                        errors.append(f"{spec.key}: page not found")
                    elif kind == "script_finished":
                        out.append((rnd, spec.title, time.monotonic() - t0))
                        break
    finally:
        ws.close()


async def drive(client: str, base: str, sessions: int, rounds: int,
                timeout_s: float) -> tuple[list[tuple[int, str, float]], list[str]]:
    out: list[tuple[int, str, float]] = []
    errors: list[str] = []
    if client == "ws":
        await asyncio.gather(*(ws_session(base, rounds, timeout_s, out, errors) for _ in range(sessions)))
        return out, errors
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            await asyncio.gather(*(session(browser, base, rounds, timeout_s, out, errors) for _ in range(sessions)))
        finally:
            await browser.close()
    return out, errors


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=180.0, help="seconds one page may take")
    ap.add_argument("--client", choices=["ws", "browser"], default="ws")
    args = ap.parse_args()
    url = server_url().set(database=DB)
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        tx, ledger, admin = conn.execute(sa.text(
            "select (select count(*) from transactions), (select count(*) from wallet_ledger),"
            " (select email from users where role = 'admin' and status = 'active' and email is not null limit 1)"
        )).one()
    engine.dispose()
    print(f"data: {tx:,} transactions, {ledger:,} ledger rows; {args.sessions} sessions x {args.rounds} rounds"
          f" x {len(PAGES)} pages, {args.client} client")
    with tempfile.TemporaryDirectory() as home:
        app = start_app(url, Path(home), local_user=admin)
        t0 = time.monotonic()
        try:
            out, errors = asyncio.run(drive(args.client, app.url, args.sessions, args.rounds, args.timeout))
        finally:
            stop_app(app)
    wall = time.monotonic() - t0
    print(f"\n{'page':24} {'round':6} {'n':>4} {'p50 s':>7} {'p95 s':>7} {'max s':>7}")
    for spec in PAGES:
        for label, pick in (("first", lambda r: r == 0), ("later", lambda r: r > 0)):
            times = [s for r, title, s in out if title == spec.title and pick(r)]
            if times:
                print(f"{spec.title:24} {label:6} {len(times):4} {statistics.median(times):7.2f}"
                      f" {pct(times, 0.95):7.2f} {max(times):7.2f}")
    views = len(out)
    print(f"\n{views} page views in {wall:.0f} s ({views / wall:.2f} views/s); {len(errors)} errors")
    for e in errors[:20]:
        print("  error:", e)


if __name__ == "__main__":
    main()
