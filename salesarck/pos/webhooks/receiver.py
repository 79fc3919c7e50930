"""The webhook receiver: a small Starlette app, `POST /webhooks/square`, `POST /webhooks/clover`,
`GET /healthz`.

It checks, in this order, content type, size, authenticity, JSON and shape, and the merchant, then
stores the event raw and answers 2xx at once (processing happens later, in the processor), because
Square gives 10 s and retries anything else. A rejected request gets a 4xx with a short reason, is
counted, and writes nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from salesarck.config import Settings
from salesarck.errors import ValidationError
from salesarck.pos.webhooks import store
from salesarck.pos.webhooks.group_commit import GroupCommitter
from salesarck.pos.webhooks.verify import (
    CLOVER_AUTH_HEADER,
    SQUARE_LEGACY_SIGNATURE_HEADER,
    SQUARE_SIGNATURE_HEADER,
    verify_clover_auth,
    verify_square_signature,
)

log = logging.getLogger(__name__)
MAX_VERIFICATION_CODE_CHARS = 200


class Rejected(Exception):
    """A request refused with a status and a short reason (the reason is also the counter's name)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass
class ReceiverMetrics:
    """Counts of what the receiver did, by provider and outcome; shown on /healthz and by the bench."""

    counts: Counter[str] = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counts[name] += n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self.counts.items()))


@dataclass
class _Merchants:
    """Merchant -> tenant, cached briefly so a burst of deliveries does not look it up every time."""

    engine: Engine
    ttl_seconds: float
    _cache: dict[tuple[str, str], tuple[float, Any]] = field(default_factory=dict)

    def cached(self, provider: str, merchant_id: str) -> Any | None:
        """The tenant if the cache knows it (no I/O: safe on the event loop)."""
        hit = self._cache.get((provider, merchant_id))
        return hit[1] if hit is not None and hit[0] > time.monotonic() else None

    def tenants(self, provider: str, merchant_ids: list[str]) -> dict[str, Any]:
        now = time.monotonic()
        found: dict[str, Any] = {}
        missing = []
        for m in merchant_ids:
            hit = self._cache.get((provider, m))
            if hit is not None and hit[0] > now:
                found[m] = hit[1]
            else:
                missing.append(m)
        if missing:
            with self.engine.connect() as conn:
                fresh = store.merchant_tenants(conn, provider, missing)
            for m, t in fresh.items():  # only known merchants are cached: a new connection shows up at once
                if self.ttl_seconds > 0:
                    self._cache[(provider, m)] = (now + self.ttl_seconds, t)
                found[m] = t
        return found


def _require_json(request: Request) -> None:
    ctype = request.headers.get("content-type", "")
    if ctype.split(";", 1)[0].strip().lower() != "application/json":
        raise Rejected(415, "content type must be application/json")


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise Rejected(413, "body larger than 1 MiB")
        except ValueError:
            raise Rejected(400, "content-length is not a number") from None
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Rejected(413, "body larger than 1 MiB")
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(
    engine: Engine,
    settings: Settings,
    *,
    metrics: ReceiverMetrics | None = None,
    merchant_cache_seconds: float = 10.0,
    max_body_bytes: int = store.MAX_BODY_BYTES,
) -> Starlette:
    """The receiver app; `metrics` lets a caller (tests, the bench) read the counters."""
    counters = metrics or ReceiverMetrics()
    merchants = _Merchants(engine, merchant_cache_seconds)
    committer = GroupCommitter(engine)  # Square deliveries: one event each, so they share transactions
    square_key = settings.square_webhook_signature_key.get_secret_value() if settings.square_webhook_signature_key \
        else ""
    square_url = settings.square_webhook_notification_url or ""
    clover_code = settings.clover_webhook_auth_code.get_secret_value() if settings.clover_webhook_auth_code else ""

    def reject(provider: str, exc: Rejected) -> JSONResponse:
        counters.add(f"{provider}.rejected.{exc.reason}")
        counters.add("rejected")
        log.info("%s webhook rejected: %s", provider, exc.reason)
        return JSONResponse({"error": exc.reason}, status_code=exc.status)

    def stored(provider: str, result: store.StoreResult, extra: dict[str, Any] | None = None) -> JSONResponse:
        counters.add(f"{provider}.stored", result.stored)
        counters.add(f"{provider}.duplicates", result.duplicates)
        counters.add("accepted")
        body = {"status": "stored" if result.stored else "duplicate", "stored": result.stored,
                "duplicates": result.duplicates, **(extra or {})}
        return JSONResponse(body, status_code=200)

    async def square(request: Request) -> JSONResponse:
        try:
            _require_json(request)
            body = await _read_body(request, max_body_bytes)
            if not square_key or not square_url:
                counters.add("square.unconfigured")
                return JSONResponse({"error": "square webhooks are not configured"}, status_code=503)
            signature = request.headers.get(SQUARE_SIGNATURE_HEADER)
            if not signature:
                legacy = request.headers.get(SQUARE_LEGACY_SIGNATURE_HEADER)
                raise Rejected(401, "legacy sha1 signature refused" if legacy else "missing signature")
            if not verify_square_signature(signature_key=square_key, notification_url=square_url, body=body,
                                           signature=signature):
                raise Rejected(401, "bad signature")
            try:
                payload = store.parse_json_body(body)
                merchant, _, _ = store.square_fields(payload)
            except ValidationError as exc:
                raise Rejected(400, str(exc)) from None
            tenant = merchants.cached("square", merchant)
            if tenant is None:  # a cache miss reads the database: in a worker thread
                tenant = (await run_in_threadpool(merchants.tenants, "square", [merchant])).get(merchant)
            if tenant is None:
                raise Rejected(422, "unknown merchant")
            event = store.build_square_event(tenant_id=tenant, payload=payload, raw_body=body,
                                             signature=signature.strip())
            fresh = await committer.store(event)
            return stored("square", store.StoreResult(int(fresh), int(not fresh),
                                                      (event.event_id,) if fresh else ()))
        except Rejected as exc:
            return reject("square", exc)
        except SQLAlchemyError as exc:
            counters.add("square.unavailable")
            log.warning("square webhook not stored: database error %s", type(exc).__name__)
            return JSONResponse({"error": "temporarily unavailable"}, status_code=503)

    async def clover(request: Request) -> JSONResponse:
        try:
            _require_json(request)
            body = await _read_body(request, max_body_bytes)
            presented = request.headers.get(CLOVER_AUTH_HEADER)
            if presented is None:
                return _clover_handshake(body)
            if not clover_code:
                counters.add("clover.unconfigured")
                return JSONResponse({"error": "clover webhooks are not configured"}, status_code=503)
            if not verify_clover_auth(expected_code=clover_code, presented=presented):
                raise Rejected(401, "bad auth code")
            try:
                payload = store.parse_json_body(body)
                app_id, merchant_events = store.clover_merchant_events(payload)
            except ValidationError as exc:
                raise Rejected(400, str(exc)) from None
            def lookup_and_store() -> tuple[store.StoreResult, int] | None:  # one worker-thread hop
                tenants = merchants.tenants("clover", list(merchant_events))
                if not tenants:
                    return None
                events = store.build_clover_events(app_id=app_id, merchant_events=merchant_events,
                                                   tenants=tenants, raw_body=body)
                return store.store_events(engine, events), len(merchant_events) - len(tenants)

            outcome = await run_in_threadpool(lookup_and_store)
            if outcome is None:
                raise Rejected(422, "unknown merchant")
            result, unknown = outcome
            if unknown:
                counters.add("clover.unknown_merchants_skipped", unknown)
            return stored("clover", result, {"unknown_merchants": unknown})
        except Rejected as exc:
            return reject("clover", exc)
        except SQLAlchemyError as exc:
            counters.add("clover.unavailable")
            log.warning("clover webhook not stored: database error %s", type(exc).__name__)
            return JSONResponse({"error": "temporarily unavailable"}, status_code=503)

    def _clover_handshake(body: bytes) -> JSONResponse:
        """Clover's first POST carries only a verification code: log it for the operator, store nothing."""
        try:
            payload = store.parse_json_body(body)
        except ValidationError:
            raise Rejected(401, "missing auth code") from None
        code = payload.get("verificationCode") if isinstance(payload, dict) else None
        if not isinstance(code, str) or set(payload) != {"verificationCode"}:
            raise Rejected(401, "missing auth code")
        if not code.strip() or len(code) > MAX_VERIFICATION_CODE_CHARS or not code.isprintable():
            raise Rejected(400, "malformed verification code")
        counters.add("clover.verification")
        log.warning("Clover webhook verification code (paste it into the Clover dashboard): %s", code)
        return JSONResponse({"status": "verification code received"}, status_code=200)

    async def healthz(request: Request) -> JSONResponse:
        def ping() -> bool:
            try:
                with engine.connect() as conn:
                    conn.execute(sa.text("select 1"))
                return True
            except SQLAlchemyError:
                return False

        ok = await run_in_threadpool(ping)
        body = {"status": "ok" if ok else "database unavailable", "database": ok,
                "uptime_seconds": int(time.monotonic() - counters.started), "counts": counters.snapshot()}
        return JSONResponse(body, status_code=200 if ok else 503)

    app = Starlette(routes=[
        Route("/webhooks/square", square, methods=["POST"]),
        Route("/webhooks/clover", clover, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
    ])
    app.state.metrics = counters
    return app


def app_from_environment() -> Starlette:
    """The receiver built from the environment's settings (one per uvicorn worker process)."""
    from salesarck.config import load_settings
    from salesarck.db.session import open_engine

    settings = load_settings()
    return create_app(open_engine(settings), settings)


def serve(engine: Engine, settings: Settings, *, host: str, port: int, workers: int = 1) -> None:
    """Run the receiver with uvicorn until stopped (SIGINT/SIGTERM shut it down gracefully).
    With `workers` > 1, uvicorn runs that many processes, each with its own engine."""
    import uvicorn

    common: dict[str, Any] = {"host": host, "port": port, "log_level": settings.log_level.lower(),
                              "access_log": False, "timeout_graceful_shutdown": 10}
    if workers > 1:
        uvicorn.run("salesarck.pos.webhooks.receiver:app_from_environment", factory=True, workers=workers,
                    **common)
    else:
        uvicorn.run(create_app(engine, settings), **common)
