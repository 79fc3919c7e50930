"""A stateful, wire-compatible fake of the Clover endpoints the project uses (Starlette).

One or more merchants, each with its own bearer token; deterministic data for a seed (orders with
line items and customers with emails and phones, tips, refunds, voided and failed payments, late
offline payments). Speaks `GET /v3/merchants/{mId}/payments` with repeated ANDed `filter` params on
`modifiedTime`/`createdTime` in epoch ms (no date filter: the last 90 days; a wider window: 400),
`expand`, `limit` (max 1000) and `offset`; `GET .../payments/{id}`; `POST /oauth/v2/refresh` with
single-use, rotating refresh tokens. It enforces Clover's per-token limits (16 requests/s, 5 at
once: 429) and takes the same injected `Faults` as the fake Square server (`repeat_cursor` here:
`offset` ignored). `emit_webhook` POSTs a Clover notification with `X-Clover-Auth`.
"""

from __future__ import annotations

import asyncio
import copy
import hmac
import json
import random
import re
import threading
import time
import uuid
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from salesarck.pos.fake.square import Faults, Gate, mangle

DEFAULT_ACCESS_TOKEN = "fake-clover-access-token"  # a placeholder the fake accepts, not a real token
DEFAULT_REFRESH_TOKEN = "fake-clover-refresh-token"
DEFAULT_CLIENT_ID = "fake-clover-client"  # what the demo settings name (CLOVER_CLIENT_ID)
DEFAULT_APP_ID = "FAKECLOVERAPP"
MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
MAX_WINDOW_MS = 90 * 86400 * 1000
_FILTER = re.compile(r"^(modifiedTime|createdTime)(>=|<=|>|<|=)(\d{1,15})$")
_ITEMS = [("Latte", 475), ("Espresso", 325), ("Bagel", 295), ("Croissant", 375), ("Sandwich", 895),
          ("Salad", 1150), ("Tea", 300), ("Muffin", 325), ("Cookie", 195), ("Smoothie", 650)]
_FIRST = ["Ava", "Liam", "Maya", "Noah", "Zoe", "Omar", "Iris", "Leo", "Nina", "Ravi", "Sofia", "Kenji"]
_LAST = ["Patel", "Garcia", "Smith", "Nguyen", "Kim", "Okafor", "Rossi", "Haddad", "Silva", "Cohen"]
_ALNUM = "ABCDEFGHJKMNPQRSTVWXYZ0123456789"


def ms(value: datetime) -> int:
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value
    return int(value.timestamp() * 1000)


def clover_error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """Clover's error body: `{"message": "..."}` with the HTTP status."""
    return Response(json.dumps({"message": message}), status_code=status, media_type="application/json",
                    headers=headers)


class _BadRequest(Exception):
    pass


class FakeClover:
    """State and behaviour of fake Clover merchants; `.app` is the ASGI app."""

    def __init__(
        self,
        *,
        seed: int = 1,
        payments: int = 200,
        merchants: int = 1,
        access_token: str = DEFAULT_ACCESS_TOKEN,
        refresh_token: str = DEFAULT_REFRESH_TOKEN,
        client_id: str = DEFAULT_CLIENT_ID,
        anchor: datetime | None = None,
        days: int = 20,
        rate_limit_per_second: int | None = 16,
        concurrency_limit: int | None = 5,
    ) -> None:
        self.rng = random.Random(seed)
        self.seed = seed
        self.anchor = (anchor or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
        self.client_id = client_id
        self.app_id = DEFAULT_APP_ID
        self.rate_limit_per_second = rate_limit_per_second
        self.concurrency_limit = concurrency_limit
        self.faults = Faults(fault_path_prefix="/v3/")
        self.stats: dict[str, int] = {"requests": 0, "payment_pages": 0, "refresh": 0, "rate_limited": 0}
        self._lock = threading.RLock()
        self._n = 0
        self.merchant_ids: list[str] = [self._id(f"M{i}") for i in range(max(1, merchants))]
        self.merchant_id = self.merchant_ids[0]
        # token -> merchant; each merchant: its token, refresh token, expiry flag
        self.tokens: dict[str, str] = {}
        self.refresh_tokens: dict[str, str] = {}
        for i, mid in enumerate(self.merchant_ids):
            suffix = "" if i == 0 else f"-{i}"
            self.tokens[access_token + suffix] = mid
            self.refresh_tokens[refresh_token + suffix] = mid
        self.expired_tokens: set[str] = set()
        self.payments: dict[str, dict[str, dict[str, Any]]] = {mid: {} for mid in self.merchant_ids}
        self._sent: dict[str, deque[float]] = {}
        self._inflight: dict[str, int] = {}
        self._generate(payments, days)
        self.app = self._build_app()

    # --- deterministic data -------------------------------------------------------------------
    def _id(self, prefix: str = "") -> str:
        self._n += 1
        body = "".join(self.rng.choice(_ALNUM) for _ in range(13 - len(prefix)))
        return (prefix + body)[:13].upper()

    def access_token_for(self, merchant_id: str) -> str:
        return next(t for t, m in self.tokens.items() if m == merchant_id)

    def refresh_token_for(self, merchant_id: str) -> str:
        return next(t for t, m in self.refresh_tokens.items() if m == merchant_id)

    def _generate(self, n_payments: int, days: int) -> None:
        rng = self.rng
        customers = []
        for _ in range(max(5, min(5000, n_payments // 20))):
            first, last = rng.choice(_FIRST), rng.choice(_LAST)
            cid = self._id()
            customers.append({
                "id": cid, "firstName": first, "lastName": last,
                "emailAddresses": {"elements": [{"id": self._id(),
                                                 "emailAddress": f"{first}.{last}.{cid[-5:]}@example.com".lower()}]},
                "phoneNumbers": {"elements": [{"id": self._id(), "phoneNumber": f"+1202555{rng.randrange(10000):04d}"}]},
            })
        self.customers = customers
        span = days * 86400
        for i in range(n_payments):
            mid = self.merchant_ids[i % len(self.merchant_ids)]
            created = self.anchor - timedelta(seconds=rng.uniform(60, span))
            roll = rng.random()
            result = "SUCCESS" if roll < 0.9 else "VOIDED" if roll < 0.95 else "FAIL"
            offline = rng.random() < 0.03
            modified = created + (timedelta(hours=rng.uniform(24, 60)) if offline else timedelta(seconds=rng.uniform(1, 90)))
            modified = min(modified, self.anchor - timedelta(seconds=1))
            pay = self._make_payment(created, modified, result, offline=offline)
            if result == "SUCCESS" and rng.random() < 0.05:
                when = min(created + timedelta(hours=rng.uniform(1, 120)), self.anchor - timedelta(seconds=1))
                self._attach_refund(pay, pay["amount"] if rng.random() < 0.5 else max(1, pay["amount"] // 3), when)
            self.payments[mid][pay["id"]] = pay

    def _make_payment(self, created: datetime, modified: datetime, result: str, *, offline: bool = False,
                      amount: int | None = None, customer: bool | None = None) -> dict[str, Any]:
        rng = self.rng
        order_id = self._id()
        items = []
        if amount is None:
            amount = 0
            for _ in range(rng.randint(1, 3)):
                name, price = rng.choice(_ITEMS)
                qty = rng.randint(1, 3)
                for _ in range(qty):  # Clover lists one line item per unit unless unitQty is used
                    items.append({"id": self._id(), "name": name, "price": price, "printed": True})
                    amount += price
        else:
            items.append({"id": self._id(), "name": "Custom amount", "price": amount, "printed": True})
        tip = rng.choice([0, 0, 0, amount // 10, amount // 5])
        order: dict[str, Any] = {"id": order_id, "currency": "USD", "total": amount, "state": "locked",
                                 "lineItems": {"elements": items}}
        with_customer = rng.random() < 0.7 if customer is None else customer
        if with_customer:
            order["customers"] = {"elements": [copy.deepcopy(rng.choice(self.customers))]}
        pay = {
            "id": self._id(), "order": order,
            "tender": rng.choice([{"id": self._id(), "labelKey": "com.clover.tender.credit_card", "label": "Credit Card"},
                                  {"id": self._id(), "labelKey": "com.clover.tender.cash", "label": "Cash"}]),
            "amount": amount, "tipAmount": tip, "taxAmount": 0, "cashbackAmount": 0,
            "createdTime": ms(created), "clientCreatedTime": ms(created), "modifiedTime": ms(modified),
            "offline": offline, "result": result,
        }
        return pay

    def _attach_refund(self, pay: dict[str, Any], amount: int, when: datetime) -> dict[str, Any]:
        refund = {"id": self._id(), "amount": amount, "createdTime": ms(when), "payment": {"id": pay["id"]}}
        pay.setdefault("refunds", {"elements": []})["elements"].append(refund)
        pay["modifiedTime"] = max(pay["modifiedTime"], ms(when))
        return refund

    # --- state changes for tests --------------------------------------------------------------
    def _now_ms(self) -> int:
        return ms(datetime.now(UTC))

    def _touch(self, pay: dict[str, Any]) -> None:
        pay["modifiedTime"] = max(pay["modifiedTime"] + 1, self._now_ms())

    def payment(self, payment_id: str, merchant_id: str | None = None) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self.payments[merchant_id or self.merchant_id][payment_id])

    def payment_ids(self, merchant_id: str | None = None, *, result: str | None = None) -> list[str]:
        with self._lock:
            return [p["id"] for p in self.payments[merchant_id or self.merchant_id].values()
                    if result is None or p["result"] == result]

    def add_payment(self, *, merchant_id: str | None = None, created_at: datetime | None = None,
                    result: str = "SUCCESS", amount: int | None = None, customer: bool | None = True,
                    raw: dict[str, Any] | None = None) -> dict[str, Any]:
        """A new payment modified now; `created_at` in the past models a late offline payment."""
        with self._lock:
            now = datetime.now(UTC)
            pay = self._make_payment(created_at or now, now, result, offline=created_at is not None,
                                     amount=amount, customer=customer)
            pay["modifiedTime"] = max(pay["modifiedTime"], self._now_ms())
            pay.update(raw or {})
            self.payments[merchant_id or self.merchant_id][pay["id"]] = pay
            return copy.deepcopy(pay)

    def refund_payment(self, payment_id: str, amount: int, *, merchant_id: str | None = None) -> dict[str, Any]:
        with self._lock:
            pay = self.payments[merchant_id or self.merchant_id][payment_id]
            refund = self._attach_refund(pay, amount, datetime.now(UTC))
            self._touch(pay)
            return copy.deepcopy(refund)

    def void_payment(self, payment_id: str, *, merchant_id: str | None = None) -> dict[str, Any]:
        with self._lock:
            pay = self.payments[merchant_id or self.merchant_id][payment_id]
            pay["result"] = "VOIDED"
            self._touch(pay)
            return copy.deepcopy(pay)

    def expire_token(self, merchant_id: str | None = None) -> None:
        self.expired_tokens.add(self.access_token_for(merchant_id or self.merchant_id))

    def authorize(self, merchant_id: str | None = None) -> tuple[str, str]:
        """The merchant authorizes the app again (OAuth code flow): a fresh (access, refresh) pair;
        the merchant's previous tokens stop working."""
        mid = merchant_id or self.merchant_id
        with self._lock:
            for table in (self.tokens, self.refresh_tokens):
                for tok in [t for t, m in table.items() if m == mid]:
                    del table[tok]
            access = f"fake-clover-access-{uuid.uuid4().hex}"
            refresh = f"fake-clover-refresh-{uuid.uuid4().hex}"
            self.tokens[access] = mid
            self.refresh_tokens[refresh] = mid
            return access, refresh

    def gate(self, path_prefix: str, *, after: int = 0, method: str | None = None) -> Gate:
        g = Gate(path_prefix, after, method)
        self.faults.gates.append(g)
        return g

    def webhook_body(self, events: dict[str, list[tuple[str, str]]]) -> dict[str, Any]:
        """A Clover notification: {merchant: [(objectId, type)]} -> the batched body Clover sends."""
        now = self._now_ms()
        return {"appId": self.app_id, "merchants": {
            mid: [{"objectId": oid, "type": typ, "ts": now} for oid, typ in evs] for mid, evs in events.items()}}

    def emit_webhook(self, url: str, *, auth_code: str, events: dict[str, list[tuple[str, str]]] | None = None,
                     body: dict[str, Any] | None = None, timeout: float = 10.0) -> httpx.Response:
        """POST a Clover notification with `X-Clover-Auth` to `url`."""
        payload = body if body is not None else self.webhook_body(events or {})
        return httpx.post(url, content=json.dumps(payload).encode(), timeout=timeout,
                          headers={"content-type": "application/json", "x-clover-auth": auth_code})

    # --- HTTP ---------------------------------------------------------------------------------
    def _build_app(self) -> Starlette:
        app = Starlette(routes=[
            Route("/v3/merchants/{mid}/payments", self._guard(self._list_payments)),
            Route("/v3/merchants/{mid}/payments/{pid}", self._guard(self._get_payment)),
            Route("/oauth/v2/refresh", self._guard(self._refresh, auth=False), methods=["POST"]),
        ])

        async def not_found(request: Request, exc: Exception) -> Response:
            return clover_error(404, "Not Found")

        app.add_exception_handler(404, not_found)
        app.add_exception_handler(405, not_found)
        return app

    def _limited(self, token: str) -> bool:
        """Clover's per-token limits: 16 requests in any second, 5 at once."""
        now = time.monotonic()
        with self._lock:
            sent = self._sent.setdefault(token, deque())
            while sent and now - sent[0] >= 1.0:
                sent.popleft()
            if self.rate_limit_per_second is not None and len(sent) >= self.rate_limit_per_second:
                return True
            if self.concurrency_limit is not None and self._inflight.get(token, 0) >= self.concurrency_limit:
                return True
            sent.append(now)
            self._inflight[token] = self._inflight.get(token, 0) + 1
            return False

    def _guard(self, handler: Any, *, auth: bool = True) -> Any:
        async def endpoint(request: Request) -> Response:
            path = request.url.path
            self.stats["requests"] += 1
            f = self.faults
            await f.hold_at_gates(path, request.method)
            kind = f.take(path)
            if kind == "rate_limited":
                hdr = {"Retry-After": f.retry_after} if f.retry_after is not None else None
                return clover_error(429, "Too Many Requests", hdr)
            if kind == "server_errors":
                return clover_error(f.server_error_status, "Internal Server Error")
            if kind == "timeouts":
                await asyncio.sleep(f.timeout_seconds)
            if not auth:
                response = await self._call(handler, request, None)
                if response.status_code == 200 and f.take_lost_refresh():
                    return mangle("dropped", response)  # rotated, and the answer never arrives
                return response
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            if kind == "expired":
                self.expired_tokens.add(token)
            merchant = self.tokens.get(token) if scheme.lower() == "bearer" else None
            if merchant is None or token in self.expired_tokens:
                return clover_error(401, "401 Unauthorized")
            if merchant != request.path_params.get("mid"):
                return clover_error(401, "401 Unauthorized: token not valid for this merchant")
            if self._limited(token):
                self.stats["rate_limited"] += 1
                return clover_error(429, "Too Many Requests", {"Retry-After": "1"})
            try:
                if f.delay_seconds:
                    await asyncio.sleep(f.delay_seconds)
                response = await self._call(handler, request, merchant)
                return mangle(kind, response) if kind else response
            finally:
                with self._lock:
                    self._inflight[token] -= 1

        return endpoint

    async def _call(self, handler: Any, request: Request, merchant: str | None) -> Response:
        try:
            with self._lock:
                return await handler(request, merchant)
        except _BadRequest as exc:
            return clover_error(400, str(exc))

    @staticmethod
    def _json(body: Any) -> Response:
        return Response(json.dumps(body, separators=(",", ":")), media_type="application/json")

    @staticmethod
    def _shape(pay: dict[str, Any], expand: set[str]) -> dict[str, Any]:
        """What Clover returns for `expand`: unexpanded references carry only the id."""
        out = copy.deepcopy(pay)
        if "order" not in expand:
            out["order"] = {"id": pay["order"]["id"]}
        else:
            if "order.lineItems" not in expand and "lineItems" not in expand:
                out["order"].pop("lineItems", None)
            if "order.customers" not in expand and "customers" not in expand:
                out["order"].pop("customers", None)
        if "tender" not in expand:
            out["tender"] = {"id": pay["tender"]["id"]}
        if "refunds" not in expand:
            out.pop("refunds", None)
        return out

    async def _list_payments(self, request: Request, merchant: str) -> Response:
        q = request.query_params
        lo: dict[str, int] = {}
        hi: dict[str, int] = {}
        for raw in q.getlist("filter"):
            m = _FILTER.match(raw.replace(" ", ""))
            if not m:
                raise _BadRequest(f"Invalid filter: {raw[:80]}")
            fld, op, val = m.group(1), m.group(2), int(m.group(3))
            if op in (">=", ">"):
                lo[fld] = max(lo.get(fld, 0), val + (1 if op == ">" else 0))
            elif op in ("<", "<="):
                hi[fld] = min(hi.get(fld, 1 << 62), val + (1 if op == "<=" else 0))
            else:
                lo[fld], hi[fld] = val, val + 1
        if not lo and not hi:  # Clover: no date filter, only the last 90 days
            lo["createdTime"] = self._now_ms() - MAX_WINDOW_MS
        for fld in set(lo) | set(hi):
            if fld in lo and fld in hi and hi[fld] - lo[fld] > MAX_WINDOW_MS:
                raise _BadRequest("Time range exceeds 90 days")
        limit = _int(q.get("limit"), DEFAULT_LIMIT, "limit")
        if limit > MAX_LIMIT:
            raise _BadRequest(f"limit must be at most {MAX_LIMIT}")
        offset = _int(q.get("offset"), 0, "offset", minimum=0)
        if self.faults.repeat_cursor:
            offset = 0  # a server (or proxy) ignoring `offset`: the first page, again and again
        expand = {e.strip() for e in q.get("expand", "").split(",") if e.strip()}
        rows = [p for p in self.payments[merchant].values()
                if all(p[f] >= v for f, v in lo.items()) and all(p[f] < v for f, v in hi.items())]
        rows.sort(key=lambda p: (p["createdTime"], p["id"]), reverse=True)  # Clover's default: newest first
        page = rows[offset:offset + limit]
        self.stats["payment_pages"] += 1
        return self._json({"elements": [self._shape(p, expand) for p in page],
                           "href": f"{request.url.scheme}://{request.url.netloc}{request.url.path}?limit={limit}"})

    async def _get_payment(self, request: Request, merchant: str) -> Response:
        pay = self.payments[merchant].get(request.path_params["pid"])
        if pay is None:
            return clover_error(404, "Not Found")
        expand = {e.strip() for e in request.query_params.get("expand", "").split(",") if e.strip()}
        return self._json(self._shape(pay, expand))

    async def _refresh(self, request: Request, merchant: str | None) -> Response:
        try:
            data = json.loads(await request.body())
        except ValueError:
            raise _BadRequest("Invalid JSON body") from None
        if not isinstance(data, dict) or data.get("client_id") != self.client_id:
            return clover_error(401, "Invalid client_id")
        old = str(data.get("refresh_token", ""))
        found = next((t for t in self.refresh_tokens if hmac.compare_digest(t.encode(), old.encode())), None)
        if found is None:
            return clover_error(401, "Invalid refresh token")
        mid = self.refresh_tokens.pop(found)  # single use: the old one is dead from now on
        for tok in [t for t, m in self.tokens.items() if m == mid]:
            del self.tokens[tok]
        access = f"fake-clover-access-{uuid.uuid4().hex}"
        refresh = f"fake-clover-refresh-{uuid.uuid4().hex}"
        self.tokens[access] = mid
        self.refresh_tokens[refresh] = mid
        self.stats["refresh"] += 1
        now = int(time.time())
        return self._json({"access_token": access, "access_token_expiration": now + 1800,
                           "refresh_token": refresh, "refresh_token_expiration": now + 365 * 86400})


def _int(raw: str | None, default: int, name: str, *, minimum: int = 1) -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _BadRequest(f"{name} must be an integer") from None
    if value < minimum:
        raise _BadRequest(f"{name} must be at least {minimum}")
    return value
