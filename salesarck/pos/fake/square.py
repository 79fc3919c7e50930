"""A stateful, wire-compatible fake of the Square endpoints the project uses (Starlette).

Data is deterministic for a seed (several locations, customers with emails and phones, orders with
line items, tips, refunds, late offline payments, payments still APPROVED), with times placed before
`anchor` (default: when the fake is built). Tests change state through `FakeSquare` methods
(complete a payment, refund one, add a late offline payment) and inject `Faults` (429 with
Retry-After, 500s, timeouts, connections dropped mid-response, bodies truncated or malformed, token
expiry or revocation, a refresh whose answer is lost, eventual-consistency delay, a gate that holds
a request until released). `sign_webhook`/`FakeSquare.emit_webhook` send signed webhooks. The
official `squareup` SDK pages through it unchanged (see tests/test_square_fake.py).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import random
import threading
import time
import uuid
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

DEFAULT_ACCESS_TOKEN = "fake-square-access-token"  # a placeholder the fake accepts, not a real token
DEFAULT_REFRESH_TOKEN = "fake-square-refresh-token"
DEFAULT_CLIENT_ID = "sq0idp-fake-client"
DEFAULT_CLIENT_SECRET = "fake-client-secret"
MAX_LIMIT = 100
_FIRST_NAMES = ["Ava", "Liam", "Maya", "Noah", "Zoe", "Omar", "Iris", "Leo", "Nina", "Ravi", "Sofia", "Kenji"]
_LAST_NAMES = ["Patel", "Garcia", "Smith", "Nguyen", "Kim", "Okafor", "Rossi", "Haddad", "Silva", "Cohen"]
_ITEMS = [("Latte", 475), ("Espresso", 325), ("Bagel", 295), ("Croissant", 375), ("Sandwich", 895),
          ("Salad", 1150), ("Tea", 300), ("Muffin", 325), ("Cookie", 195), ("Smoothie", 650)]
_SORT_FIELDS = {"CREATED_AT": "created_at", "UPDATED_AT": "updated_at", "OFFLINE_CREATED_AT": "created_at"}


def ts(value: datetime) -> str:
    """Square's timestamp form, fixed width so strings sort like times: 2026-11-01T09:30:00.123Z."""
    value = value.astimezone(UTC) if value.tzinfo else value
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _parse_ts(text: str) -> str:
    """A query timestamp normalised to `ts` form; ValueError if it is not RFC 3339."""
    parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("no offset")
    return ts(parsed)


def sign_webhook(signature_key: str, notification_url: str, body: bytes) -> str:
    """Square's `x-square-hmacsha256-signature`: base64(HMAC-SHA256(key, notification URL + body))."""
    mac = hmac.new(signature_key.encode("utf-8"), notification_url.encode("utf-8") + body, hashlib.sha256)
    return base64.b64encode(mac.digest()).decode("ascii")


def square_error(status: int, code: str, detail: str, *, category: str | None = None, field_name: str | None = None,
                 headers: dict[str, str] | None = None) -> Response:
    cat = category or {401: "AUTHENTICATION_ERROR", 403: "AUTHENTICATION_ERROR", 429: "RATE_LIMIT_ERROR",
                       500: "API_ERROR", 502: "API_ERROR", 503: "API_ERROR"}.get(status, "INVALID_REQUEST_ERROR")
    err: dict[str, Any] = {"category": cat, "code": code, "detail": detail}
    if field_name:
        err["field"] = field_name
    return Response(json.dumps({"errors": [err]}), status_code=status, media_type="application/json",
                    headers=headers)


@dataclass
class Gate:
    """Holds matching requests after `after` of them passed, until `release()`; `reached` tells when."""

    path_prefix: str
    after: int
    method: str | None = None
    seen: int = 0
    reached: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)

    def release(self) -> None:
        self.released.set()


class DroppedResponse(Response):
    """The work is done and the headers go out, then the connection drops before the body: what a
    client sees when a connection is reset mid-response (the answer is lost, the effect is not).
    Returning with the body unsent makes uvicorn close the connection (it logs one error line)."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})


def mangle(kind: str, response: Response) -> Response:
    """`response` as a faulty network or proxy delivers it (see `Faults`)."""
    body = bytes(response.body)
    mid = len(body) // 2
    if kind == "dropped":
        return DroppedResponse(body, status_code=response.status_code, media_type=response.media_type)
    if kind == "truncated":  # framed as complete: only the JSON parser can tell
        return Response(body[:mid], status_code=response.status_code, media_type=response.media_type)
    if kind == "malformed":  # a NUL byte is invalid anywhere in JSON, inside strings too
        return Response(body[:mid] + b"\x00" + body[mid:], status_code=response.status_code,
                        media_type=response.media_type)
    return response


FAULT_KINDS = ("rate_limited", "server_errors", "timeouts", "expired", "dropped", "truncated", "malformed")


@dataclass
class Faults:
    """Injected misbehaviour. Each counter counts down per request under `fault_path_prefix` (one
    fault per request, in `FAULT_KINDS` order), once `after` such requests have passed untouched."""

    rate_limited: int = 0
    retry_after: str | None = "0"
    server_errors: int = 0
    server_error_status: int = 500
    timeouts: int = 0  # answer only after `timeout_seconds` (the client should give up first)
    timeout_seconds: float = 2.0
    expired: int = 0  # the access token expires just before this request
    dropped: int = 0  # handled, then the connection drops after the headers (reset mid-response)
    truncated: int = 0  # a body cut off halfway, framed as complete
    malformed: int = 0  # a body that is not JSON
    lost_refreshes: int = 0  # the token endpoint rotates the tokens, then the answer is dropped
    after: int = 0
    fault_path_prefix: str = "/v2/"
    delay_seconds: float = 0.0
    consistency_delay_seconds: float = 0.0  # changes become visible to lists only after this long
    # a buggy server, to test the hard stop: Square hands back the request's own cursor, Clover ignores `offset`
    repeat_cursor: bool = False
    gates: list[Gate] = field(default_factory=list)

    def take(self, path: str) -> str | None:
        """The fault this request gets (a `FAULT_KINDS` name), if any; counts it down."""
        if not path.startswith(self.fault_path_prefix):
            return None
        if self.after > 0:
            self.after -= 1
            return None
        for kind in FAULT_KINDS:
            left = getattr(self, kind)
            if left > 0:
                setattr(self, kind, left - 1)
                return kind
        return None

    def take_lost_refresh(self) -> bool:
        if self.lost_refreshes > 0:
            self.lost_refreshes -= 1
            return True
        return False

    def clear(self) -> None:
        """No more injected faults (gates stay: tests release them)."""
        for kind in (*FAULT_KINDS, "lost_refreshes", "after"):
            setattr(self, kind, 0)
        self.delay_seconds = self.consistency_delay_seconds = 0.0
        self.repeat_cursor = False

    async def hold_at_gates(self, path: str, method: str) -> None:
        """Hold a request at every matching gate past its `after` count until the test releases it (<= 120 s)."""
        for g in list(self.gates):
            if path.startswith(g.path_prefix) and (g.method is None or g.method == method):
                g.seen += 1
                if g.seen > g.after and not g.released.is_set():
                    g.reached.set()
                    deadline = time.monotonic() + 120
                    while not g.released.is_set() and time.monotonic() < deadline:
                        await asyncio.sleep(0.01)


class FakeSquare:
    """State and behaviour of one fake Square seller; `.app` is the ASGI app."""

    def __init__(
        self,
        *,
        seed: int = 1,
        payments: int = 200,
        access_token: str = DEFAULT_ACCESS_TOKEN,
        refresh_token: str = DEFAULT_REFRESH_TOKEN,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        anchor: datetime | None = None,
        days: int = 20,
        locations: int = 3,
        rotate_refresh_tokens: bool = False,
    ) -> None:
        self.rng = random.Random(seed)
        self.seed = seed
        self.anchor = (anchor or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
        self.merchant_id = f"MLFAKE{seed:06d}"
        self.access_token = access_token
        self.refresh_token = refresh_token
        self.client_id = client_id
        self.client_secret = client_secret
        self.rotate_refresh_tokens = rotate_refresh_tokens
        self.token_expired = False
        self.token_revoked = False
        self.faults = Faults()
        self.stats: dict[str, int] = {"requests": 0, "payment_pages": 0, "refresh": 0}
        self._lock = threading.RLock()
        self.locations: list[dict[str, Any]] = []
        self.customers: dict[str, dict[str, Any]] = {}
        self.orders: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self.payments: dict[str, dict[str, Any]] = {}
        self._visible_at: dict[str, float] = {}
        self._blob: dict[str, bytes] = {}
        self._index: dict[tuple[str, str], tuple[list[tuple[str, str]], list[str]]] = {}
        self._n = 0
        self._generate(payments, days, locations)
        self.app = self._build_app()

    # --- deterministic data -------------------------------------------------------------------
    def _id(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}{self.seed:04d}{self._n:08d}{self.rng.getrandbits(24):06x}".upper()

    def _generate(self, n_payments: int, days: int, n_locations: int) -> None:
        rng = self.rng
        for i in range(max(1, n_locations)):
            lid = self._id("L")
            self.locations.append({
                "id": lid, "name": f"Store {i + 1}", "merchant_id": self.merchant_id, "status": "ACTIVE",
                "timezone": "America/New_York", "currency": "USD", "country": "US", "type": "PHYSICAL",
                "business_name": f"Fake Coffee {self.seed}", "created_at": ts(self.anchor - timedelta(days=400)),
                "capabilities": ["CREDIT_CARD_PROCESSING"],
            })
        for _ in range(max(5, min(5000, n_payments // 20))):
            cid = self._id("C")
            first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
            self.customers[cid] = {
                "id": cid, "given_name": first, "family_name": last,
                "email_address": f"{first}.{last}.{cid[-6:]}@example.com".lower(),
                "phone_number": f"+1415{rng.randrange(2000000, 9999999)}",
                "created_at": ts(self.anchor - timedelta(days=500)), "updated_at": ts(self.anchor - timedelta(days=1)),
            }
        customer_ids = list(self.customers)
        span = days * 86400
        for _ in range(n_payments):
            created = self.anchor - timedelta(seconds=rng.uniform(60, span))
            loc = self.locations[0]["id"] if rng.random() < 0.5 else rng.choice(self.locations)["id"]
            roll = rng.random()
            status = "COMPLETED" if roll < 0.88 else "APPROVED" if roll < 0.93 else "CANCELED" if roll < 0.97 else "FAILED"
            offline = rng.random() < 0.03
            updated = created + (timedelta(hours=rng.uniform(24, 60)) if offline else timedelta(seconds=rng.uniform(1, 90)))
            updated = min(updated, self.anchor - timedelta(seconds=1))
            pay = self._make_payment(created, updated, loc, status, customer_ids, offline=offline)
            if status == "COMPLETED" and rng.random() < 0.05:
                when = min(created + timedelta(hours=rng.uniform(1, 120)), self.anchor - timedelta(seconds=1))
                amount = pay["amount_money"]["amount"] if rng.random() < 0.5 else max(1, pay["amount_money"]["amount"] // 3)
                self._attach_refund(pay, amount, "COMPLETED" if rng.random() < 0.9 else "PENDING", when)
            self.payments[pay["id"]] = pay

    def _make_payment(self, created: datetime, updated: datetime, location_id: str, status: str,
                      customer_ids: list[str], *, offline: bool = False, amount: int | None = None) -> dict[str, Any]:
        rng = self.rng
        pid = self._id("P")
        order_id: str | None = None
        if amount is None and rng.random() < 0.7:
            order_id = self._id("O")
            items = []
            total = 0
            for _ in range(rng.randint(1, 3)):
                name, price = rng.choice(_ITEMS)
                qty = rng.randint(1, 3)
                items.append({"uid": uuid.UUID(int=rng.getrandbits(128)).hex[:22], "name": name,
                              "quantity": str(qty), "catalog_object_id": f"ITEM{hash(name) & 0xFFFF:05d}",
                              "base_price_money": {"amount": price, "currency": "USD"},
                              "total_money": {"amount": price * qty, "currency": "USD"}})
                total += price * qty
            amount = total
            self.orders[order_id] = {"id": order_id, "location_id": location_id, "line_items": items,
                                     "state": "COMPLETED", "created_at": ts(created), "updated_at": ts(updated),
                                     "total_money": {"amount": total, "currency": "USD"}}
        if amount is None:
            amount = rng.randint(100, 20000)
        tip = rng.choice([0, 0, 0, amount // 10, amount // 5])
        pay: dict[str, Any] = {
            "id": pid, "created_at": ts(created), "updated_at": ts(updated),
            "amount_money": {"amount": amount, "currency": "USD"},
            "tip_money": {"amount": tip, "currency": "USD"},
            "total_money": {"amount": amount + tip, "currency": "USD"},
            "approved_money": {"amount": amount + tip, "currency": "USD"},
            "status": status, "source_type": rng.choice(["CARD", "CARD", "CASH", "WALLET"]),
            "location_id": location_id, "receipt_number": pid[-4:],
            "version_token": uuid.UUID(int=rng.getrandbits(128)).hex,
            "delay_action": "CANCEL",
        }
        if offline:
            pay["offline_payment_details"] = {"client_created_at": ts(created)}
        if order_id:
            pay["order_id"] = order_id
            self.orders[order_id]["customer_id"] = None
        roll = rng.random()
        if roll < 0.6 and customer_ids:
            pay["customer_id"] = rng.choice(customer_ids)
            if order_id:
                self.orders[order_id]["customer_id"] = pay["customer_id"]
        elif roll < 0.85:
            pay["buyer_email_address"] = f"guest{rng.randrange(100000)}@example.org"
        if order_id and self.orders[order_id].get("customer_id") is None:
            self.orders[order_id].pop("customer_id", None)
        return pay

    def _attach_refund(self, pay: dict[str, Any], amount: int, status: str, when: datetime) -> dict[str, Any]:
        rid = self._id("R")
        refund = {"id": rid, "status": status, "amount_money": {"amount": amount, "currency": "USD"},
                  "payment_id": pay["id"], "order_id": pay.get("order_id"), "location_id": pay["location_id"],
                  "reason": "Returned goods", "created_at": ts(when), "updated_at": ts(when)}
        if refund["order_id"] is None:
            del refund["order_id"]
        self.refunds[rid] = refund
        pay.setdefault("refund_ids", []).append(rid)
        refunded = sum(self.refunds[r]["amount_money"]["amount"] for r in pay["refund_ids"]
                       if self.refunds[r]["status"] in {"COMPLETED", "PENDING"})
        pay["refunded_money"] = {"amount": refunded, "currency": "USD"}
        pay["updated_at"] = max(pay["updated_at"], ts(when))
        pay["version_token"] = uuid.UUID(int=self.rng.getrandbits(128)).hex
        return refund

    # --- state changes for tests --------------------------------------------------------------
    def _now(self) -> datetime:
        return datetime.now(UTC)

    def _touched(self, pid: str) -> None:
        self._blob.pop(pid, None)
        self._index.clear()
        if self.faults.consistency_delay_seconds:
            self._visible_at[pid] = time.monotonic() + self.faults.consistency_delay_seconds

    def _bump(self, pay: dict[str, Any]) -> None:
        now = ts(self._now())
        pay["updated_at"] = now if now > pay["updated_at"] else pay["updated_at"]
        pay["version_token"] = uuid.uuid4().hex

    def payment_ids(self, *, status: str | None = None) -> list[str]:
        with self._lock:
            return [p["id"] for p in self.payments.values() if status is None or p["status"] == status]

    def set_status(self, payment_id: str, status: str) -> dict[str, Any]:
        """Move a payment to a new status now (APPROVED -> COMPLETED, or -> CANCELED)."""
        with self._lock:
            pay = self.payments[payment_id]
            pay["status"] = status
            self._bump(pay)
            self._touched(payment_id)
            return dict(pay)

    def add_payment(self, *, created_at: datetime | None = None, status: str = "COMPLETED",
                    amount: int | None = None, location_id: str | None = None, offline: bool = False,
                    customer: bool = True, raw: dict[str, Any] | None = None) -> dict[str, Any]:
        """A new payment updated now; `created_at` in the past models a late offline payment.
        `raw` overrides fields verbatim (malformed records for tests)."""
        with self._lock:
            now = self._now()
            pay = self._make_payment(created_at or now, now, location_id or self.locations[0]["id"], status,
                                     list(self.customers) if customer else [], offline=offline, amount=amount)
            pay.update(raw or {})
            self.payments[pay["id"]] = pay
            self._touched(pay["id"])
            return dict(pay)

    def refund_payment(self, payment_id: str, amount: int, *, status: str = "COMPLETED") -> dict[str, Any]:
        with self._lock:
            pay = self.payments[payment_id]
            refund = self._attach_refund(pay, amount, status, self._now())
            self._bump(pay)
            self._touched(payment_id)
            return dict(refund)

    def set_refund_status(self, refund_id: str, status: str) -> dict[str, Any]:
        with self._lock:
            refund = self.refunds[refund_id]
            refund["status"] = status
            refund["updated_at"] = ts(self._now())
            pay = self.payments[refund["payment_id"]]
            self._bump(pay)
            self._touched(pay["id"])
            return dict(refund)

    def expire_token(self) -> None:
        self.token_expired = True

    def revoke_token(self) -> None:
        self.token_revoked = True

    def authorize(self) -> tuple[str, str]:
        """The merchant authorizes the app again (OAuth code flow): a fresh (access, refresh) pair;
        the previous pair stops working."""
        with self._lock:
            self.access_token = f"fake-square-access-{uuid.uuid4().hex}"
            self.refresh_token = f"fake-square-refresh-{uuid.uuid4().hex}"
            self.token_expired = self.token_revoked = False
            return self.access_token, self.refresh_token

    def gate(self, path_prefix: str, *, after: int = 0, method: str | None = None) -> Gate:
        """Hold requests to `path_prefix` once `after` have passed, until the gate is released."""
        g = Gate(path_prefix, after, method)
        self.faults.gates.append(g)
        return g

    def webhook_event(self, event_type: str, object_id: str) -> dict[str, Any]:
        """A Square webhook body for a payment or refund in the fake's state."""
        kind = event_type.split(".", 1)[0]
        with self._lock:
            obj = self.payments[object_id] if kind == "payment" else self.refunds[object_id]
            return {"merchant_id": self.merchant_id, "type": event_type, "event_id": str(uuid.uuid4()),
                    "created_at": ts(self._now()),
                    "data": {"type": kind, "id": object_id, "object": {kind: json.loads(json.dumps(obj))}}}

    def emit_webhook(self, url: str, *, signature_key: str, event_type: str, object_id: str,
                     notification_url: str | None = None, timeout: float = 10.0) -> httpx.Response:
        """POST a signed webhook (as Square would) to `url`; signs over `notification_url` (default `url`)."""
        body = json.dumps(self.webhook_event(event_type, object_id), separators=(",", ":")).encode()
        sig = sign_webhook(signature_key, notification_url or url, body)
        return httpx.post(url, content=body, timeout=timeout, headers={
            "content-type": "application/json", "x-square-hmacsha256-signature": sig})

    # --- HTTP ---------------------------------------------------------------------------------
    def _build_app(self) -> Starlette:
        routes = [
            Route("/v2/locations", self._guard(self._list_locations)),
            Route("/v2/locations/{id}", self._guard(self._get_location)),
            Route("/v2/payments", self._guard(self._list_payments)),
            Route("/v2/payments/{id}", self._guard(self._get_payment)),
            Route("/v2/refunds", self._guard(self._list_refunds)),
            Route("/v2/refunds/{id}", self._guard(self._get_refund)),
            Route("/v2/orders/batch-retrieve", self._guard(self._batch_orders), methods=["POST"]),
            Route("/v2/orders/{id}", self._guard(self._get_order)),
            Route("/v2/customers/{id}", self._guard(self._get_customer)),
            Route("/oauth2/token", self._guard(self._oauth_token, auth=False), methods=["POST"]),
        ]
        app = Starlette(routes=routes)

        async def not_found(request: Request, exc: Exception) -> Response:
            return square_error(404, "NOT_FOUND", f"{request.method} {request.url.path} is not a Square endpoint")

        app.add_exception_handler(404, not_found)
        app.add_exception_handler(405, not_found)
        return app

    def _guard(self, handler: Any, *, auth: bool = True) -> Any:
        async def endpoint(request: Request) -> Response:
            path = request.url.path
            self.stats["requests"] += 1
            f = self.faults
            await f.hold_at_gates(path, request.method)
            if f.delay_seconds:
                await asyncio.sleep(f.delay_seconds)
            kind = f.take(path)
            if kind == "rate_limited":
                hdr = {"Retry-After": f.retry_after} if f.retry_after is not None else None
                return square_error(429, "RATE_LIMITED", "Rate limit exceeded.", headers=hdr)
            if kind == "server_errors":
                return square_error(f.server_error_status, "INTERNAL_SERVER_ERROR" if
                                    f.server_error_status == 500 else "SERVICE_UNAVAILABLE", "Injected failure.")
            if kind == "timeouts":
                await asyncio.sleep(f.timeout_seconds)
            if kind == "expired":
                self.token_expired = True
            if auth:
                problem = self._check_auth(request.headers.get("authorization", ""))
                if problem is not None:
                    return problem
            try:
                with self._lock:
                    response = await handler(request)
            except _BadRequest as exc:
                return square_error(400, exc.code, exc.detail, field_name=exc.field)
            if not auth and response.status_code == 200 and f.take_lost_refresh():
                kind = "dropped"  # the rotation happened; its answer never arrives
            return mangle(kind, response) if kind else response

        return endpoint

    def _check_auth(self, header: str) -> Response | None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return square_error(401, "UNAUTHORIZED", "This request could not be authorized.")
        if not hmac.compare_digest(token.encode(), self.access_token.encode()):
            return square_error(401, "UNAUTHORIZED", "The `Authorization` http header of your request was "
                                "incorrect or expired.")
        if self.token_revoked:
            return square_error(401, "ACCESS_TOKEN_REVOKED", "The access token has been revoked.")
        if self.token_expired:
            return square_error(401, "ACCESS_TOKEN_EXPIRED", "The access token has expired.")
        return None

    @staticmethod
    def _json(body: dict[str, Any]) -> Response:
        return Response(json.dumps(body, separators=(",", ":")), media_type="application/json")

    async def _list_locations(self, request: Request) -> Response:
        return self._json({"locations": self.locations})

    async def _get_location(self, request: Request) -> Response:
        for loc in self.locations:
            if loc["id"] == request.path_params["id"]:
                return self._json({"location": loc})
        return square_error(404, "NOT_FOUND", "Location not found.")

    def _sorted(self, location_id: str, key: str) -> tuple[list[tuple[str, str]], list[str]]:
        idx = self._index.get((location_id, key))
        if idx is None:
            pairs = sorted((p[key], p["id"]) for p in self.payments.values() if p.get("location_id") == location_id)
            idx = (pairs, [pid for _, pid in pairs])
            self._index[(location_id, key)] = idx
        return idx

    async def _list_payments(self, request: Request) -> Response:
        q = request.query_params
        location_id = q.get("location_id") or self.locations[0]["id"]
        if location_id not in {loc["id"] for loc in self.locations}:
            raise _BadRequest("NOT_FOUND", f"Location `{location_id}` not found.", "location_id")
        sort_field = q.get("sort_field", "CREATED_AT")
        if sort_field not in _SORT_FIELDS:
            raise _BadRequest("INVALID_ENUM_VALUE", f"`{sort_field}` is not a valid sort_field.", "sort_field")
        order = q.get("sort_order", "DESC")
        if order not in {"ASC", "DESC"}:
            raise _BadRequest("INVALID_SORT_ORDER", f"`{order}` is not a valid sort_order.", "sort_order")
        limit = _int_param(q.get("limit"), MAX_LIMIT, "limit")
        now = self._now()
        begin = _time_param(q.get("begin_time"), "begin_time") or ts(now - timedelta(days=365))
        end = _time_param(q.get("end_time"), "end_time") or ts(now + timedelta(days=1))
        up_begin = _time_param(q.get("updated_at_begin_time"), "updated_at_begin_time")
        up_end = _time_param(q.get("updated_at_end_time"), "updated_at_end_time")
        key = _SORT_FIELDS[sort_field]
        raw_q = [q.get(k) for k in ("begin_time", "end_time", "updated_at_begin_time", "updated_at_end_time")]
        sig = hashlib.sha256(f"{location_id}|{sort_field}|{order}|{raw_q}".encode()).hexdigest()[:16]
        pairs, _ = self._sorted(location_id, key)
        start_after: tuple[str, str] | None = None
        cursor = q.get("cursor")
        if cursor:
            start_after = _decode_cursor(cursor, sig)
        out: list[bytes] = []
        last: tuple[str, str] | None = None
        mono = time.monotonic()
        more = False
        if order == "ASC":
            i = bisect_right(pairs, start_after) if start_after else 0
            # jump ahead with the bisect when the sort key is also the filtered field
            if key == "updated_at" and up_begin and (start_after is None or start_after[0] < up_begin):
                i = max(i, bisect_left(pairs, (up_begin, "")))
            rng = range(i, len(pairs))
        else:
            i = bisect_left(pairs, start_after) if start_after else len(pairs)
            rng = range(i - 1, -1, -1)
        for j in rng:
            sk, pid = pairs[j]
            pay = self.payments[pid]
            if key == "updated_at" and order == "ASC" and up_end and sk > up_end:
                break
            if not (begin <= pay["created_at"] <= end):
                continue
            if up_begin and pay["updated_at"] < up_begin or up_end and pay["updated_at"] > up_end:
                continue
            if self._visible_at.get(pid, 0) > mono:
                continue
            if len(out) == limit:
                more = True
                break
            out.append(self._payment_blob(pid))
            last = (sk, pid)
        self.stats["payment_pages"] += 1
        body = b'{"payments":[' + b",".join(out) + b"]"
        if more and last is not None:
            nxt = cursor if self.faults.repeat_cursor and cursor else _encode_cursor(last, sig)
            body += b',"cursor":' + json.dumps(nxt).encode()
        if not out:
            body = b"{}"  # Square omits empty lists
        return Response(body + (b"}" if out else b""), media_type="application/json")

    def _payment_blob(self, pid: str) -> bytes:
        blob = self._blob.get(pid)
        if blob is None:
            blob = json.dumps(self.payments[pid], separators=(",", ":")).encode()
            self._blob[pid] = blob
        return blob

    async def _get_payment(self, request: Request) -> Response:
        pay = self.payments.get(request.path_params["id"])
        if pay is None:
            return square_error(404, "NOT_FOUND", "Payment not found.")
        return self._json({"payment": pay})

    async def _list_refunds(self, request: Request) -> Response:
        q = request.query_params
        limit = _int_param(q.get("limit"), MAX_LIMIT, "limit")
        begin = _time_param(q.get("begin_time"), "begin_time") or ts(self._now() - timedelta(days=365))
        end = _time_param(q.get("end_time"), "end_time") or ts(self._now() + timedelta(days=1))
        order = q.get("sort_order", "DESC")
        rows = sorted((r for r in self.refunds.values()
                       if begin <= r["created_at"] <= end
                       and (not q.get("location_id") or r["location_id"] == q.get("location_id"))
                       and (not q.get("status") or r["status"] == q.get("status"))),
                      key=lambda r: (r["created_at"], r["id"]), reverse=order == "DESC")
        sig = hashlib.sha256(f"refunds|{q.get('begin_time')}|{q.get('end_time')}|{order}".encode()).hexdigest()[:16]
        offset = 0
        if q.get("cursor"):
            offset = int(_decode_cursor(q["cursor"], sig)[1])
        page = rows[offset:offset + limit]
        body: dict[str, Any] = {"refunds": page} if page else {}
        if offset + limit < len(rows):
            body["cursor"] = _encode_cursor(("", str(offset + limit)), sig)
        return self._json(body)

    async def _get_refund(self, request: Request) -> Response:
        refund = self.refunds.get(request.path_params["id"])
        if refund is None:
            return square_error(404, "NOT_FOUND", "Refund not found.")
        return self._json({"refund": refund})

    async def _batch_orders(self, request: Request) -> Response:
        try:
            data = json.loads(await request.body())
        except ValueError:
            raise _BadRequest("INVALID_BODY", "The request body is not valid JSON.", None) from None
        ids = data.get("order_ids") if isinstance(data, dict) else None
        if not isinstance(ids, list) or not ids or len(ids) > 100 or not all(isinstance(i, str) for i in ids):
            raise _BadRequest("INVALID_ARRAY_LENGTH", "order_ids must list 1 to 100 ids.", "order_ids")
        found = [self.orders[i] for i in ids if i in self.orders]
        return self._json({"orders": found} if found else {})

    async def _get_order(self, request: Request) -> Response:
        order = self.orders.get(request.path_params["id"])
        if order is None:
            return square_error(404, "NOT_FOUND", "Order not found.")
        return self._json({"order": order})

    async def _get_customer(self, request: Request) -> Response:
        customer = self.customers.get(request.path_params["id"])
        if customer is None:
            return square_error(404, "NOT_FOUND", "Customer not found.")
        return self._json({"customer": customer})

    async def _oauth_token(self, request: Request) -> Response:
        try:
            data = json.loads(await request.body())
        except ValueError:
            raise _BadRequest("INVALID_BODY", "The request body is not valid JSON.", None) from None
        if not isinstance(data, dict) or data.get("grant_type") != "refresh_token":
            raise _BadRequest("INVALID_REQUEST", "grant_type must be refresh_token.", "grant_type")
        if data.get("client_id") != self.client_id or not hmac.compare_digest(
                str(data.get("client_secret", "")).encode(), self.client_secret.encode()):
            return square_error(401, "UNAUTHORIZED", "Invalid client credentials.")
        if self.token_revoked or not hmac.compare_digest(str(data.get("refresh_token", "")).encode(),
                                                         self.refresh_token.encode()):
            return square_error(401, "UNAUTHORIZED", "Invalid refresh token.")
        self.stats["refresh"] += 1
        self.access_token = f"fake-square-access-{uuid.uuid4().hex}"
        if self.rotate_refresh_tokens:
            self.refresh_token = f"fake-square-refresh-{uuid.uuid4().hex}"
        self.token_expired = False
        expires = self._now() + timedelta(days=30)
        return self._json({"access_token": self.access_token, "token_type": "bearer",
                           "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%SZ"), "merchant_id": self.merchant_id,
                           "refresh_token": self.refresh_token, "short_lived": False})


class _BadRequest(Exception):
    def __init__(self, code: str, detail: str, field_name: str | None) -> None:
        super().__init__(detail)
        self.code, self.detail, self.field = code, detail, field_name


def _int_param(raw: str | None, maximum: int, name: str) -> int:
    if raw is None or raw == "":
        return maximum
    try:
        value = int(raw)
    except ValueError:
        raise _BadRequest("EXPECTED_INTEGER", f"`{name}` must be an integer.", name) from None
    if value < 1:
        raise _BadRequest("INVALID_VALUE", f"`{name}` must be at least 1.", name)
    return min(value, maximum)  # Square caps silently


def _time_param(raw: str | None, name: str) -> str | None:
    if not raw:
        return None
    try:
        return _parse_ts(raw)
    except ValueError:
        raise _BadRequest("INVALID_TIME", f"`{name}` is not a valid RFC 3339 time.", name) from None


def _encode_cursor(last: tuple[str, str], sig: str) -> str:
    raw = json.dumps([last[0], last[1], sig], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str, sig: str) -> tuple[str, str]:
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not (isinstance(data, list) and len(data) == 3 and all(isinstance(x, str) for x in data)):
            raise ValueError
    except ValueError:
        raise _BadRequest("INVALID_CURSOR", "The pagination cursor is invalid.", "cursor") from None
    if data[2] != sig:
        raise _BadRequest("INVALID_CURSOR", "The cursor does not belong to this query.", "cursor")
    return data[0], data[1]
