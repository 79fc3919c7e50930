"""A small retrying JSON-over-HTTP helper shared by the POS clients (Square, Clover).

Every call has a timeout; 408, 409, 429 and 5xx (and connection failures) are retried a bounded
number of times, waiting `Retry-After` when the server names it, else exponential backoff with full
jitter. A success whose body is not JSON (cut short or mangled on the way) is retried too, but
only for idempotent requests (GET, or a read the caller marks idempotent). Error bodies are parsed
into `ApiErrorDetail`s (Square's `{"errors": [...]}`, Clover's `{"message": ...}`). Logs name the
method and path only: never headers, query strings or bodies, so tokens cannot leak through them.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from salesarck.errors import SalesarckError

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
MAX_RESPONSE_BYTES = 32 * 1024 * 1024
MAX_DETAIL_CHARS = 300


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: attempts in all (first try included) and the backoff envelope in seconds."""

    max_attempts: int = 5
    base_delay: float = 0.25
    max_delay: float = 30.0
    timeout: httpx.Timeout = field(default_factory=lambda: httpx.Timeout(20.0, connect=5.0))
    retry_transport_errors: bool = True

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Full-jitter exponential backoff for retry number `attempt` (1-based)."""
        cap = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return (rng or random).uniform(0, cap)


@dataclass(frozen=True)
class ApiErrorDetail:
    """One error a provider reported; `detail` is the provider's text, trimmed."""

    code: str
    category: str | None = None
    detail: str | None = None
    field: str | None = None


class ProviderHTTPError(SalesarckError):
    """A provider call failed for good (after retries). Carries the status and parsed error codes."""

    def __init__(self, message: str, *, status: int | None, errors: tuple[ApiErrorDetail, ...] = (),
                 method: str = "", path: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.errors = errors
        self.method = method
        self.path = path

    @property
    def codes(self) -> set[str]:
        return {e.code for e in self.errors}


class UnreadableBody(ProviderHTTPError):
    """A success status whose body is not JSON (truncated, corrupted, a proxy's page)."""


def parse_error_body(body: bytes) -> tuple[ApiErrorDetail, ...]:
    """Provider error bodies as details; unknown shapes give an empty tuple, never an exception."""
    try:
        data = json.loads(body[:65536]) if body else None
    except (ValueError, UnicodeDecodeError):
        return ()
    out: list[ApiErrorDetail] = []
    if isinstance(data, dict) and isinstance(data.get("errors"), list):
        for item in data["errors"][:20]:
            if isinstance(item, dict):
                out.append(ApiErrorDetail(
                    code=_short(item.get("code")) or "UNKNOWN",
                    category=_short(item.get("category")),
                    detail=_short(item.get("detail")),
                    field=_short(item.get("field")),
                ))
    elif isinstance(data, dict) and isinstance(data.get("message"), str):
        out.append(ApiErrorDetail(code=_short(data.get("code")) or "ERROR", detail=_short(data["message"])))
    return tuple(out)


def _short(value: object) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text if len(text) <= MAX_DETAIL_CHARS else text[:MAX_DETAIL_CHARS] + "..."


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """`Retry-After` as seconds: delta-seconds or an HTTP date; None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class JsonHttp:
    """JSON requests against one base URL with retries. Owns its httpx.Client unless given one."""

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        policy: RetryPolicy | None = None,
        client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
        provider: str = "provider",
    ) -> None:
        self.policy = policy or RetryPolicy()
        self.provider = provider
        self._sleep = sleep
        self._own = client is None
        self._client = client or httpx.Client(
            base_url=base_url.rstrip("/"), timeout=self.policy.timeout, follow_redirects=False,
            # no Nagle: a POST's body goes out at once instead of waiting for the headers' ACK
            transport=httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]),
        )
        if client is not None:
            self._client.base_url = httpx.URL(base_url.rstrip("/"))
        self._headers = dict(headers or {})
        self.calls = 0  # requests sent, retries included (for benchmarks and tests)
        self.retries = 0

    def __repr__(self) -> str:  # headers hold the bearer token: never show them
        return f"JsonHttp(base_url={str(self._client.base_url)!r}, provider={self.provider!r})"

    def set_header(self, name: str, value: str) -> None:
        self._headers[name] = value

    def close(self) -> None:
        if self._own:
            self._client.close()

    def __enter__(self) -> JsonHttp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        policy: RetryPolicy | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
    ) -> Any:
        """Send, retrying transient failures; return the decoded JSON body (a dict or list).
        `idempotent` (default: GET) also retries a success whose body cannot be read."""
        pol = policy or self.policy
        reread = method == "GET" if idempotent is None else idempotent
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        # a header given as "" is dropped (e.g. no bearer token on an OAuth call)
        hdrs = {k: v for k, v in {**self._headers, **(headers or {}), "Accept": "application/json"}.items() if v}
        last_exc: ProviderHTTPError | None = None
        for attempt in range(1, pol.max_attempts + 1):
            self.calls += 1
            try:
                resp = self._client.request(method, path, params=clean, json=json_body, headers=hdrs,
                                            timeout=pol.timeout)
            except httpx.TransportError as exc:
                last_exc = ProviderHTTPError(
                    f"{self.provider} {method} {path} failed: {type(exc).__name__}", status=None,
                    method=method, path=path,
                )
                if not pol.retry_transport_errors or attempt == pol.max_attempts:
                    raise last_exc from None
                self._wait(pol, attempt, None, method, path, "transport error")
                continue
            if resp.status_code < 400:
                try:
                    return self._decode(resp, method, path)
                except UnreadableBody as exc:
                    if not reread or attempt == pol.max_attempts:
                        raise
                    last_exc = exc
                    self._wait(pol, attempt, None, method, path, "unreadable body")
                    continue
            errors = parse_error_body(resp.content)
            last_exc = ProviderHTTPError(
                _describe(self.provider, method, path, resp.status_code, errors),
                status=resp.status_code, errors=errors, method=method, path=path,
            )
            if resp.status_code not in RETRY_STATUSES or attempt == pol.max_attempts:
                raise last_exc
            self._wait(pol, attempt, retry_after_seconds(resp.headers.get("Retry-After")), method, path,
                       str(resp.status_code))
        assert last_exc is not None  # the loop always returns or raises
        raise last_exc

    def _wait(self, pol: RetryPolicy, attempt: int, retry_after: float | None, method: str, path: str,
              why: str) -> None:
        delay = min(pol.max_delay, retry_after) if retry_after is not None else pol.backoff(attempt)
        self.retries += 1
        log.info("%s %s %s: %s, retry %d in %.2fs", self.provider, method, path, why, attempt, delay)
        if delay > 0:
            self._sleep(delay)

    def _decode(self, resp: httpx.Response, method: str, path: str) -> Any:
        if len(resp.content) > MAX_RESPONSE_BYTES:
            raise ProviderHTTPError(f"{self.provider} {method} {path} answered more than "
                                    f"{MAX_RESPONSE_BYTES // (1024 * 1024)} MiB", status=resp.status_code,
                                    method=method, path=path)
        if not resp.content:
            return {}
        try:
            return resp.json()
        except (ValueError, UnicodeDecodeError):
            raise UnreadableBody(f"{self.provider} {method} {path} answered malformed JSON",
                                 status=resp.status_code, method=method, path=path) from None


def _describe(provider: str, method: str, path: str, status: int, errors: tuple[ApiErrorDetail, ...]) -> str:
    if errors:
        first = errors[0]
        text = f"{first.code}" + (f": {first.detail}" if first.detail else "")
    else:
        text = "no error details"
    return f"{provider} {method} {path} answered HTTP {status} ({text})"
