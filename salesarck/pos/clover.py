"""Clover API client: payments (windowed by `modifiedTime`, offset paging), one payment, OAuth refresh.

Base URL per connection region (North America by default from `SALESARCK_CLOVER_BASE_URL`; EU, LA and
sandbox selectable in `pos_connection_options`). Filters are epoch milliseconds, a window never spans
more than 90 days, pages are up to 1000. Requests keep within Clover's per-token limits (16 per
second, 5 concurrent) with a process-wide limiter per token; a 429 is honoured by the shared retrying
helper (`Retry-After`, else jittered backoff).
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from pydantic import SecretStr

from salesarck.errors import ValidationError
from salesarck.pos.http import JsonHttp, ProviderHTTPError, RetryPolicy
from salesarck.pos.square import OAuthTokens

REGION_BASE_URLS = {
    "na": "https://api.clover.com",
    "eu": "https://api.eu.clover.com",
    "la": "https://api.la.clover.com",
    "sandbox": "https://apisandbox.dev.clover.com",
}
PAGE_LIMIT = 1000
MAX_WINDOW = timedelta(days=90)
PAYMENT_EXPAND = "refunds,order,tender,order.lineItems,order.customers"
REQUESTS_PER_SECOND = 16
CONCURRENT_PER_TOKEN = 5
WINDOW_SECONDS = 1.1  # Clover counts per second on its side; a margin absorbs network jitter
MAX_OFFSET = 10_000_000  # a safety net: no real window holds ten million payments
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def check_clover_id(value: str, what: str) -> str:
    """Clover ids are short alphanumerics (13 upper-case characters in practice)."""
    if not isinstance(value, str) or not _ID.match(value):
        raise ValidationError(f"{what} {str(value)[:40]!r} is not a valid Clover id")
    return value


def to_ms(value: datetime) -> int:
    """A naive-UTC (or aware) datetime as Clover's epoch milliseconds."""
    aware = value.replace(tzinfo=UTC) if value.tzinfo is None else value
    return int(aware.timestamp() * 1000)


def windows(start: datetime, end: datetime, span: timedelta = MAX_WINDOW) -> Iterator[tuple[datetime, datetime]]:
    """[start, end) cut into consecutive windows no wider than `span` (Clover refuses wider ones)."""
    if end <= start:
        return
    cur = start
    while cur < end:
        nxt = min(end, cur + span)
        yield cur, nxt
        cur = nxt


class TokenRateLimiter:
    """At most `rate` requests in any 1-second window and `concurrency` at once, per access token."""

    _registry: dict[str, TokenRateLimiter] = {}
    _registry_lock = threading.Lock()

    def __init__(self, rate: int = REQUESTS_PER_SECOND, concurrency: int = CONCURRENT_PER_TOKEN) -> None:
        self.rate = rate
        self._sent: deque[float] = deque()
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(concurrency)

    @classmethod
    def for_token(cls, token: str) -> TokenRateLimiter:
        """The limiter shared by every client in this process using this token (keyed by its hash)."""
        key = hashlib.sha256(token.encode()).hexdigest()
        with cls._registry_lock:
            if key not in cls._registry:
                cls._registry[key] = cls()
            return cls._registry[key]

    def acquire(self) -> None:
        self._slots.acquire()
        while True:
            with self._lock:
                now = time.monotonic()
                while self._sent and now - self._sent[0] >= WINDOW_SECONDS:
                    self._sent.popleft()
                if len(self._sent) < self.rate:
                    self._sent.append(now)
                    return
                wait = WINDOW_SECONDS - (now - self._sent[0])
            time.sleep(max(wait, 0.001))

    def release(self) -> None:
        self._slots.release()


class PageRepeatError(ProviderHTTPError):
    """Offset paging answered, for the next offset, the page it had just answered: stop hard."""


def check_page_advanced(previous: list[dict[str, Any]] | None, page: list[dict[str, Any]]) -> None:
    """Raise PageRepeatError when `page` repeats `previous` id for id. A server or proxy that ignores
    `offset` answers full pages forever; real inserts between two requests shift a page by a few rows,
    never by exactly a whole page every time."""
    if previous and page and [p.get("id") for p in page] == [p.get("id") for p in previous]:
        raise PageRepeatError("clover answered the same payments page again for the next offset (is `offset` "
                              "ignored?); stopped to avoid an endless loop", status=200, method="GET",
                              path="/v3/merchants/{mId}/payments")


@dataclass(frozen=True)
class CloverPaymentPage:
    payments: list[dict[str, Any]]
    window_start: datetime
    window_end: datetime
    offset: int


class CloverClient:
    """The Clover endpoints the sync and the webhook processor need."""

    def __init__(
        self,
        base_url: str,
        access_token: SecretStr,
        *,
        policy: RetryPolicy | None = None,
        page_limit: int = PAGE_LIMIT,
        limiter: TokenRateLimiter | None = None,
        http: JsonHttp | None = None,
    ) -> None:
        if not 1 <= page_limit <= PAGE_LIMIT:
            raise ValidationError(f"page limit must be 1..{PAGE_LIMIT}")
        self.base_url = base_url.rstrip("/")
        self.page_limit = page_limit
        self._http = http or JsonHttp(self.base_url, policy=policy, provider="clover")
        self._token = access_token
        self._limiter = limiter or TokenRateLimiter.for_token(access_token.get_secret_value())
        self._http.set_header("Authorization", f"Bearer {access_token.get_secret_value()}")

    def __repr__(self) -> str:
        return f"CloverClient(base_url={self.base_url!r})"

    @property
    def calls(self) -> int:
        return self._http.calls

    def set_access_token(self, token: SecretStr) -> None:
        self._token = token
        self._limiter = TokenRateLimiter.for_token(token.get_secret_value())
        self._http.set_header("Authorization", f"Bearer {token.get_secret_value()}")

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> CloverClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        self._limiter.acquire()
        try:
            return self._http.request("GET", path, params=params)
        finally:
            self._limiter.release()

    def payment_page(self, merchant_id: str, start: datetime, end: datetime, offset: int = 0
                     ) -> list[dict[str, Any]]:
        """One page of payments modified in [start, end) (at most 90 days), from `offset`."""
        if end - start > MAX_WINDOW:
            raise ValidationError("a Clover payments window may not span more than 90 days")
        if not 0 <= offset <= MAX_OFFSET:
            raise ProviderHTTPError("clover payments paging ran past ten million rows; stopping",
                                    status=None, method="GET", path="/v3/merchants/{mId}/payments")
        mid = quote(check_clover_id(merchant_id, "merchant id"), safe="")
        body = self._get(f"/v3/merchants/{mid}/payments", {
            "filter": [f"modifiedTime>={to_ms(start)}", f"modifiedTime<{to_ms(end)}"],
            "expand": PAYMENT_EXPAND,
            "limit": self.page_limit,
            "offset": offset,
        })
        return _elements(body)

    def iter_payment_pages(self, merchant_id: str, start: datetime, end: datetime) -> Iterator[CloverPaymentPage]:
        """Payments modified in [start, end), window by window (<= 90 days), offset-paged."""
        for w_start, w_end in windows(start, end):
            offset = 0
            previous: list[dict[str, Any]] | None = None
            while True:
                elements = self.payment_page(merchant_id, w_start, w_end, offset)
                check_page_advanced(previous, elements)
                yield CloverPaymentPage(elements, w_start, w_end, offset)
                if len(elements) < self.page_limit:
                    break
                offset += len(elements)
                previous = elements

    def get_payment(self, merchant_id: str, payment_id: str) -> dict[str, Any]:
        """One payment with the same expansions the sync uses (the webhook processor fetches by id)."""
        mid = quote(check_clover_id(merchant_id, "merchant id"), safe="")
        pid = quote(check_clover_id(payment_id, "payment id"), safe="")
        body = self._get(f"/v3/merchants/{mid}/payments/{pid}", {"expand": PAYMENT_EXPAND})
        if not isinstance(body, dict) or not isinstance(body.get("id"), str):
            raise ProviderHTTPError("clover GET payment answered no payment object", status=200,
                                    method="GET", path="/v3/merchants/{mId}/payments/{id}")
        return body

    def refresh_access_token(self, *, client_id: str, refresh_token: SecretStr) -> OAuthTokens:
        """POST /oauth/v2/refresh. Clover refresh tokens are single-use: store the new pair at once.
        A lost answer is asked once more with the same token: if the first request never arrived the
        retry succeeds; if it did, the token is spent and the retry's 401 says re-authorize (the pair
        the lost answer carried is unrecoverable either way)."""
        body = self._http.request(
            "POST", "/oauth/v2/refresh",
            json_body={"client_id": client_id, "refresh_token": refresh_token.get_secret_value()},
            headers={"Authorization": ""},
            policy=RetryPolicy(max_attempts=2, timeout=self._http.policy.timeout),
        )
        access = body.get("access_token") if isinstance(body, dict) else None
        new_refresh = body.get("refresh_token") if isinstance(body, dict) else None
        if not isinstance(access, str) or not access or not isinstance(new_refresh, str) or not new_refresh:
            raise ProviderHTTPError("clover token refresh answered without a token pair", status=200,
                                    method="POST", path="/oauth/v2/refresh")
        expires = body.get("access_token_expiration")
        expires_at = (datetime.fromtimestamp(int(expires), UTC).replace(tzinfo=None)
                      if isinstance(expires, int | float) and not isinstance(expires, bool) else None)
        return OAuthTokens(access_token=SecretStr(access), refresh_token=SecretStr(new_refresh),
                           expires_at=expires_at)


def _elements(body: Any) -> list[dict[str, Any]]:
    if not isinstance(body, dict) or not isinstance(body.get("elements", []), list):
        raise ProviderHTTPError("clover answered a list without elements", status=200, method="GET", path="")
    return [e for e in body.get("elements", []) if isinstance(e, dict)]
