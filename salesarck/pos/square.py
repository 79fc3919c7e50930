"""Square API client: the few endpoints the sync needs, over the shared retrying JSON helper.

Base URL from settings (`SALESARCK_SQUARE_BASE_URL`), bearer auth, a pinned `Square-Version`.
ListPayments pages with `limit` 100 and stops hard on a cursor it has already seen (a server bug or
a proxy replaying a page would otherwise loop forever).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

from pydantic import SecretStr

from salesarck.errors import ValidationError
from salesarck.pos.http import JsonHttp, ProviderHTTPError, RetryPolicy
from salesarck.timeutil import iso_utc, parse_time

SQUARE_VERSION = "2026-09-16"  # the version the installed official SDK pins
PAGE_LIMIT = 100
ORDERS_BATCH_LIMIT = 100
MAX_PAGES = 1_000_000  # a second safety net beside the repeated-cursor stop
_ID = re.compile(r"^[A-Za-z0-9_:.-]{1,192}$")

# 401 codes that decide a connection's status
TOKEN_EXPIRED = "ACCESS_TOKEN_EXPIRED"
TOKEN_REVOKED = "ACCESS_TOKEN_REVOKED"


class CursorLoopError(ProviderHTTPError):
    """The server handed back a cursor it had already given: stop instead of looping."""


@dataclass(frozen=True)
class PaymentPage:
    """One ListPayments page: the raw payment objects (mapped later) and the next cursor."""

    payments: list[dict[str, Any]]
    cursor: str | None
    location_id: str | None


@dataclass(frozen=True)
class OAuthTokens:
    """The result of a token refresh; tokens stay secret in repr."""

    access_token: SecretStr
    refresh_token: SecretStr | None
    expires_at: datetime | None
    merchant_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)


def _check_id(value: str, what: str) -> str:
    if not isinstance(value, str) or not _ID.match(value):
        raise ValidationError(f"{what} {str(value)[:40]!r} is not a valid Square id")
    return value


class SquareClient:
    """Square endpoints used by the sync and the webhook processor."""

    def __init__(
        self,
        base_url: str,
        access_token: SecretStr | str,
        *,
        policy: RetryPolicy | None = None,
        http: JsonHttp | None = None,
        version: str = SQUARE_VERSION,
    ) -> None:
        token = access_token.get_secret_value() if isinstance(access_token, SecretStr) else access_token
        self.base_url = base_url.rstrip("/")
        self.version = version
        self.http = http or JsonHttp(self.base_url, policy=policy, provider="Square")
        self.http.set_header("Square-Version", version)
        self.set_access_token(SecretStr(token))

    def __repr__(self) -> str:
        return f"SquareClient(base_url={self.base_url!r}, version={self.version!r})"

    def set_access_token(self, token: SecretStr) -> None:
        self.http.set_header("Authorization", f"Bearer {token.get_secret_value()}")

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> SquareClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- locations ----------------------------------------------------------------------------
    def list_locations(self) -> list[dict[str, Any]]:
        body = self.http.request("GET", "/v2/locations")
        return [loc for loc in _list(body, "locations") if isinstance(loc, dict)]

    # --- payments -----------------------------------------------------------------------------
    def iter_payment_pages(
        self,
        *,
        location_id: str | None = None,
        updated_at_begin_time: datetime | None = None,
        updated_at_end_time: datetime | None = None,
        begin_time: datetime | None = None,
        end_time: datetime | None = None,
        sort_field: str = "UPDATED_AT",
        sort_order: str = "ASC",
        limit: int = PAGE_LIMIT,
        cursor: str | None = None,
    ) -> Iterator[PaymentPage]:
        """ListPayments, page by page, following `cursor` until it is absent; stops hard on a repeat."""
        kwargs: dict[str, Any] = {
            "location_id": location_id, "updated_at_begin_time": updated_at_begin_time,
            "updated_at_end_time": updated_at_end_time, "begin_time": begin_time, "end_time": end_time,
            "sort_field": sort_field, "sort_order": sort_order, "limit": limit,
        }
        self._payment_params(**kwargs)  # validate before the first request
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            page = self.list_payments_page(cursor=cursor, **kwargs)
            yield page
            if page.cursor is None:
                return
            if page.cursor in seen or page.cursor == cursor:
                raise CursorLoopError("Square ListPayments returned a cursor it had already returned; "
                                      "stopped to avoid an endless loop", status=200, method="GET",
                                      path="/v2/payments")
            seen.add(page.cursor)
            cursor = page.cursor
        raise CursorLoopError(f"Square ListPayments exceeded {MAX_PAGES} pages", status=200)

    @staticmethod
    def _payment_params(
        *,
        location_id: str | None = None,
        updated_at_begin_time: datetime | None = None,
        updated_at_end_time: datetime | None = None,
        begin_time: datetime | None = None,
        end_time: datetime | None = None,
        sort_field: str = "UPDATED_AT",
        sort_order: str = "ASC",
        limit: int = PAGE_LIMIT,
    ) -> dict[str, Any]:
        if sort_field not in {"CREATED_AT", "UPDATED_AT", "OFFLINE_CREATED_AT"}:
            raise ValidationError(f"unknown Square sort_field {sort_field!r}")
        if sort_order not in {"ASC", "DESC"}:
            raise ValidationError(f"unknown Square sort_order {sort_order!r}")
        if not 1 <= limit <= PAGE_LIMIT:
            raise ValidationError(f"limit must be between 1 and {PAGE_LIMIT}")
        params: dict[str, Any] = {
            "location_id": _check_id(location_id, "location id") if location_id else None,
            "updated_at_begin_time": iso_utc(updated_at_begin_time),
            "updated_at_end_time": iso_utc(updated_at_end_time),
            "begin_time": iso_utc(begin_time),
            "end_time": iso_utc(end_time),
            "sort_field": sort_field,
            "sort_order": sort_order,
            "limit": limit,
        }
        return params

    def list_payments_page(self, *, cursor: str | None = None, location_id: str | None = None,
                           **kwargs: Any) -> PaymentPage:
        """One ListPayments request (see `iter_payment_pages` for the parameters)."""
        params = self._payment_params(location_id=location_id, **kwargs)
        body = self.http.request("GET", "/v2/payments", params={**params, "cursor": cursor})
        nxt = body.get("cursor") if isinstance(body, dict) else None
        return PaymentPage(_list(body, "payments"), nxt if isinstance(nxt, str) and nxt else None, location_id)

    # --- refunds ------------------------------------------------------------------------------
    def get_refund(self, refund_id: str) -> dict[str, Any]:
        body = self.http.request("GET", f"/v2/refunds/{quote(_check_id(refund_id, 'refund id'), safe='')}")
        refund = body.get("refund") if isinstance(body, dict) else None
        if not isinstance(refund, dict):
            raise ProviderHTTPError(f"Square GET /v2/refunds/{refund_id} answered without a refund", status=200)
        return refund

    def iter_refunds(
        self,
        *,
        begin_time: datetime | None = None,
        end_time: datetime | None = None,
        location_id: str | None = None,
        status: str | None = None,
        sort_order: str = "ASC",
        limit: int = PAGE_LIMIT,
    ) -> Iterator[dict[str, Any]]:
        """ListPaymentRefunds, all pages, one refund at a time."""
        params: dict[str, Any] = {
            "begin_time": iso_utc(begin_time), "end_time": iso_utc(end_time),
            "location_id": _check_id(location_id, "location id") if location_id else None,
            "status": status, "sort_order": sort_order, "limit": limit,
        }
        cursor: str | None = None
        seen: set[str] = set()
        while True:
            body = self.http.request("GET", "/v2/refunds", params={**params, "cursor": cursor})
            yield from (r for r in _list(body, "refunds") if isinstance(r, dict))
            nxt = body.get("cursor") if isinstance(body, dict) else None
            if not isinstance(nxt, str) or not nxt:
                return
            if nxt in seen:
                raise CursorLoopError("Square ListPaymentRefunds repeated a cursor; stopped", status=200)
            seen.add(nxt)
            cursor = nxt

    # --- orders and customers -----------------------------------------------------------------
    def batch_retrieve_orders(self, order_ids: Sequence[str], *, location_id: str | None = None
                              ) -> dict[str, dict[str, Any]]:
        """Orders by id (in chunks of 100); ids Square does not return are simply absent."""
        ids = list(dict.fromkeys(_check_id(i, "order id") for i in order_ids))
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(ids), ORDERS_BATCH_LIMIT):
            chunk = ids[start:start + ORDERS_BATCH_LIMIT]
            payload: dict[str, Any] = {"order_ids": chunk}
            if location_id:
                payload["location_id"] = location_id
            body = self.http.request("POST", "/v2/orders/batch-retrieve", json_body=payload, idempotent=True)
            for order in _list(body, "orders"):
                if isinstance(order, dict) and isinstance(order.get("id"), str):
                    found[order["id"]] = order
        return found

    def get_customer(self, customer_id: str) -> dict[str, Any] | None:
        """A customer, or None when Square says NOT_FOUND (deleted customers are common)."""
        try:
            body = self.http.request("GET", f"/v2/customers/{quote(_check_id(customer_id, 'customer id'), safe='')}")
        except ProviderHTTPError as exc:
            if exc.status == 404:
                return None
            raise
        customer = body.get("customer") if isinstance(body, dict) else None
        return customer if isinstance(customer, dict) else None

    # --- OAuth --------------------------------------------------------------------------------
    def refresh_access_token(self, *, client_id: str, client_secret: SecretStr, refresh_token: SecretStr
                             ) -> OAuthTokens:
        """POST /oauth2/token with grant_type=refresh_token. A lost answer is asked again with the same
        token: if the first request never arrived, the retry succeeds; if it arrived, a single-use
        (PKCE) token is spent and the retry's 401 says re-authorize. The pair the lost answer carried
        is unrecoverable either way, so the retry risks nothing."""
        body = self.http.request(
            "POST", "/oauth2/token",
            json_body={"client_id": client_id, "client_secret": client_secret.get_secret_value(),
                       "grant_type": "refresh_token", "refresh_token": refresh_token.get_secret_value()},
            policy=RetryPolicy(max_attempts=3, timeout=self.http.policy.timeout),
            headers={"Authorization": ""},
        )
        access = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(access, str) or not access:
            raise ProviderHTTPError("Square OAuth refresh answered without an access token", status=200,
                                    method="POST", path="/oauth2/token")
        new_refresh = body.get("refresh_token")
        expires: datetime | None = None
        if isinstance(body.get("expires_at"), str):
            try:
                expires = parse_time(body["expires_at"])
            except ValidationError:
                expires = None
        return OAuthTokens(
            access_token=SecretStr(access),
            refresh_token=SecretStr(new_refresh) if isinstance(new_refresh, str) and new_refresh else None,
            expires_at=expires,
            merchant_id=body.get("merchant_id") if isinstance(body.get("merchant_id"), str) else None,
        )


def _list(body: Any, key: str) -> list[Any]:
    value = body.get(key) if isinstance(body, dict) else None
    return value if isinstance(value, list) else []
