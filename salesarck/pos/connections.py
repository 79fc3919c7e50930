"""POS connections: add, list, disconnect, token encryption, status transitions, token refresh.

Tokens are stored only as `salesarck.crypto` envelopes bound to the row and column; plaintexts
travel as `SecretStr`. Every status change writes a `pos_connection_events` row (no actor for the
system) and, when a person made it, an admin audit row too. Token refresh rotates atomically: the
row is locked while the provider is asked, so two refreshers cannot both spend a single-use
refresh token or overwrite each other's rotation.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from pydantic import SecretStr
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from salesarck import audit
from salesarck.authz import Actor, Permission
from salesarck.crypto import KeyRing, TokenCryptoError, token_aad, validate_token_text
from salesarck.errors import Conflict, NotFound, SalesarckError, ValidationError
from salesarck.pos.http import ProviderHTTPError
from salesarck.pos.sync_runs import ConnectionAuthError
from salesarck.rewards.guard import as_uuid
from salesarck.timeutil import utcnow

PROVIDERS = ("square", "clover")
STATUSES = ("active", "disconnected", "token_expired", "error")
REFRESH_MARGIN = timedelta(minutes=10)  # refresh this long before token_expires_at
REAUTHORIZE = "re-authorize the merchant (salesarck connections add) to store a fresh token pair"
REFRESH_FAILED = "REFRESH_FAILED"  # the error_code of a connection whose refresh token is dead
_MERCHANT = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


@dataclass(frozen=True)
class ConnectionInfo:
    """A connection as listed: never any token, only whether one is stored."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    tenant_name: str | None
    provider: str
    merchant_id: str
    status: str
    token_expires_at: datetime | None
    last_synced_at: datetime | None
    watermark_at: datetime | None
    has_refresh_token: bool
    created_at: datetime | None

    def as_row(self) -> dict[str, Any]:
        return {"id": self.id, "tenant": self.tenant_name or self.tenant_id, "provider": self.provider,
                "merchant_id": self.merchant_id, "status": self.status, "token_expires_at": self.token_expires_at,
                "last_synced_at": self.last_synced_at, "watermark_at": self.watermark_at,
                "refresh_token": "yes" if self.has_refresh_token else "no"}


@dataclass(frozen=True)
class ConnectionTokens:
    access_token: SecretStr
    refresh_token: SecretStr | None
    expires_at: datetime | None


_SELECT = (
    "select c.id, c.tenant_id, t.name as tenant_name, c.pos_type, c.merchant_account_id, c.status,"
    " c.token_expires_at, c.last_synced_at, c.square_payments_watermark_at, c.refresh_token_enc <> '' as has_refresh,"
    " c.created_at from pos_connections c join tenants t on t.id = c.tenant_id"
)


def _info(row: Any) -> ConnectionInfo:
    return ConnectionInfo(row.id, row.tenant_id, row.tenant_name, row.pos_type, row.merchant_account_id, row.status,
                          row.token_expires_at, row.last_synced_at, row.square_payments_watermark_at,
                          bool(row.has_refresh), row.created_at)


def parse_connection_id(value: str | uuid.UUID) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value).strip())
    except ValueError:
        raise ValidationError(f"{str(value)[:40]!r} is not a connection id (a UUID)") from None


def get_connection(conn: Connection, connection_id: uuid.UUID, *, for_update: bool = False) -> ConnectionInfo:
    row = conn.execute(sa.text(_SELECT + " where c.id = :i" + (" for update of c" if for_update else "")),
                       {"i": connection_id}).first()
    if row is None:
        raise NotFound(f"no POS connection {connection_id}")
    return _info(row)


def _validate_merchant(merchant_id: str) -> str:
    text = (merchant_id or "").strip()
    if not _MERCHANT.match(text):
        raise ValidationError("the merchant id must be 1-128 letters, digits, '.', '_', ':' or '-'")
    return text


def encrypt_tokens(keyring: KeyRing, connection_id: uuid.UUID, access: SecretStr,
                   refresh: SecretStr | None) -> tuple[str, str]:
    """Envelopes for both columns; an absent refresh token is stored as '' (the seed's convention)."""
    a = keyring.encrypt(access, aad=token_aad(connection_id, "access_token_enc"))
    r = keyring.encrypt(refresh, aad=token_aad(connection_id, "refresh_token_enc")) if refresh else ""
    return a, r


def decrypt_tokens(keyring: KeyRing, connection_id: uuid.UUID, access_enc: str, refresh_enc: str,
                   expires_at: datetime | None = None) -> ConnectionTokens:
    """Both tokens of a row; errors name the connection, never the token."""
    if not access_enc:
        raise TokenCryptoError(f"connection {connection_id} has no access token stored (disconnected?); "
                               "reconnect the merchant")
    access = keyring.decrypt(access_enc, aad=token_aad(connection_id, "access_token_enc"),
                             what=f"access token of connection {connection_id}")
    refresh = keyring.decrypt(refresh_enc, aad=token_aad(connection_id, "refresh_token_enc"),
                              what=f"refresh token of connection {connection_id}") if refresh_enc else None
    return ConnectionTokens(access, refresh, expires_at)


def load_tokens(conn: Connection, connection_id: uuid.UUID, keyring: KeyRing) -> ConnectionTokens:
    row = conn.execute(sa.text("select access_token_enc, refresh_token_enc, token_expires_at from pos_connections "
                               "where id = :i"), {"i": connection_id}).first()
    if row is None:
        raise NotFound(f"no POS connection {connection_id}")
    return decrypt_tokens(keyring, connection_id, row.access_token_enc, row.refresh_token_enc, row.token_expires_at)


def record_event(conn: Connection, *, connection_id: uuid.UUID, tenant_id: uuid.UUID, event: str,
                 from_status: str | None = None, to_status: str | None = None, reason: str | None = None,
                 error_code: str | None = None, actor: Actor | None = None) -> None:
    conn.execute(sa.text(
        "insert into pos_connection_events (connection_id, tenant_id, event, from_status, to_status, reason,"
        " error_code, actor_user_id, created_at) values (:c, :t, :e, :f, :to, :r, :code, :a, now() at time zone 'utc')"
    ), {"c": connection_id, "t": tenant_id, "e": event, "f": from_status, "to": to_status,
        "r": (reason or None) and reason[:1000], "code": error_code, "a": actor.user_id if actor else None})


def set_status(conn: Connection, connection_id: uuid.UUID, to_status: str, *, reason: str,
               error_code: str | None = None, actor: Actor | None = None) -> ConnectionInfo:
    """Change the status (in the caller's transaction) and record the event; no-op if unchanged."""
    if to_status not in STATUSES:
        raise ValidationError(f"unknown connection status {to_status!r}")
    info = get_connection(conn, connection_id, for_update=True)
    if info.status == to_status:
        return info
    conn.execute(sa.text("update pos_connections set status = :s where id = :i"), {"s": to_status, "i": connection_id})
    record_event(conn, connection_id=connection_id, tenant_id=info.tenant_id, event="status_changed",
                 from_status=info.status, to_status=to_status, reason=reason, error_code=error_code, actor=actor)
    if actor is not None:
        audit.record(conn, actor=actor, action="pos_connection.status", target_type="pos_connection",
                     target_id=connection_id, before={"status": info.status}, after={"status": to_status},
                     reason=reason)
    return get_connection(conn, connection_id)


def add_connection(
    engine: Engine,
    *,
    actor: Actor,
    tenant_id: uuid.UUID,
    provider: str,
    merchant_id: str,
    access_token: SecretStr | str,
    refresh_token: SecretStr | str | None = None,
    expires_at: datetime | None = None,
    keyring: KeyRing,
) -> ConnectionInfo:
    """Connect a merchant to a tenant, storing encrypted tokens. Reconnecting a disconnected (or
    expired) connection of the same tenant replaces its tokens; another tenant's merchant is refused."""
    if provider not in PROVIDERS:
        raise ValidationError(f"unknown provider {str(provider)[:20]!r}; use square or clover")
    merchant = _validate_merchant(merchant_id)
    access = validate_token_text(access_token, what="access token")
    refresh = validate_token_text(refresh_token, what="refresh token") if refresh_token else None
    actor.require(Permission.MANAGE_CONNECTIONS, tenant_id)
    with engine.begin() as conn:
        if conn.execute(sa.text("select 1 from tenants where id = :t"), {"t": tenant_id}).first() is None:
            raise NotFound(f"no tenant {tenant_id}")
        existing = conn.execute(sa.text(
            "select id, tenant_id, status from pos_connections where pos_type = :p and merchant_account_id = :m"
            " for update"), {"p": provider, "m": merchant}).first()
        if existing is not None:
            if existing.tenant_id != tenant_id:
                raise Conflict(f"{provider} merchant {merchant} is already connected to another tenant; "
                               "one merchant account belongs to one tenant")
            if existing.status == "active":
                raise Conflict(f"{provider} merchant {merchant} is already connected (connection {existing.id}); "
                               "disconnect it first to replace its tokens")
            cid = existing.id
            a_enc, r_enc = encrypt_tokens(keyring, cid, access, refresh)
            conn.execute(sa.text(
                "update pos_connections set access_token_enc = :a, refresh_token_enc = :r, token_expires_at = :x,"
                " status = 'active' where id = :i"), {"a": a_enc, "r": r_enc, "x": expires_at, "i": cid})
            record_event(conn, connection_id=cid, tenant_id=tenant_id, event="reconnected",
                         from_status=existing.status, to_status="active", reason="reconnected by an operator",
                         actor=actor)
        else:
            cid = uuid.uuid4()
            a_enc, r_enc = encrypt_tokens(keyring, cid, access, refresh)
            try:
                with conn.begin_nested():
                    conn.execute(sa.text(
                        "insert into pos_connections (id, tenant_id, pos_type, access_token_enc, refresh_token_enc,"
                        " merchant_account_id, status, token_expires_at, created_at)"
                        " values (:i, :t, :p, :a, :r, :m, 'active', :x, now() at time zone 'utc')"),
                        {"i": cid, "t": tenant_id, "p": provider, "a": a_enc, "r": r_enc, "m": merchant,
                         "x": expires_at})
            except IntegrityError:
                raise Conflict(f"{provider} merchant {merchant} was connected by someone else just now") from None
            record_event(conn, connection_id=cid, tenant_id=tenant_id, event="connected", to_status="active",
                         reason="connected by an operator", actor=actor)
        audit.record(conn, actor=actor, action="pos_connection.connect", target_type="pos_connection",
                     target_id=cid, after={"provider": provider, "merchant_id": merchant, "tenant_id": tenant_id,
                                           "refresh_token": refresh is not None, "token_expires_at": expires_at})
        return get_connection(conn, cid)


def list_connections(engine: Engine, *, actor: Actor, tenant_id: uuid.UUID | None = None,
                     provider: str | None = None) -> list[ConnectionInfo]:
    """Connections the actor may see (VIEW_SYNC), without tokens."""
    tenant_id = None if tenant_id is None else as_uuid(tenant_id, "tenant id")  # clear error, not a DataError
    if provider is not None and not isinstance(provider, str):
        raise ValidationError("provider must be text")
    scope = actor.tenant_scope(Permission.VIEW_SYNC)
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            _SELECT + " where (cast(:t as uuid) is null or c.tenant_id = :t)"
            " and (cast(:p as text) is null or c.pos_type = :p)"
            " and (cast(:all_tenants as boolean) or c.tenant_id = any(cast(:scope as uuid[])))"
            " order by t.name, c.created_at"),
            {"t": tenant_id, "p": provider, "all_tenants": scope is None, "scope": scope or []}).all()
    return [_info(r) for r in rows]


def disconnect_connection(engine: Engine, *, actor: Actor, connection_id: uuid.UUID,
                          reason: str = "disconnected by an operator") -> ConnectionInfo:
    """Mark disconnected and wipe the stored tokens (a reconnect stores fresh ones)."""
    with engine.begin() as conn:
        info = get_connection(conn, connection_id, for_update=True)
        actor.require(Permission.MANAGE_CONNECTIONS, info.tenant_id)
        if info.status == "disconnected":
            raise Conflict(f"connection {connection_id} is already disconnected")
        conn.execute(sa.text("update pos_connections set access_token_enc = '', refresh_token_enc = ''"
                             " where id = :i"), {"i": connection_id})
        return set_status(conn, connection_id, "disconnected", reason=reason, actor=actor)


def connection_events(engine: Engine, *, actor: Actor, connection_id: uuid.UUID, limit: int = 100
                      ) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        info = get_connection(conn, connection_id)
        if not actor.can(Permission.VIEW_SYNC, info.tenant_id):
            raise NotFound(f"no POS connection {connection_id}")
        rows = conn.execute(sa.text(
            "select e.created_at, e.event, e.from_status, e.to_status, e.reason, e.error_code, u.email as actor"
            " from pos_connection_events e left join users u on u.id = e.actor_user_id"
            " where e.connection_id = :c order by e.created_at desc, e.id limit :n"),
            {"c": connection_id, "n": limit}).mappings().all()
    return [dict(r) for r in rows]


Refresher = Callable[[SecretStr], "RefreshedTokens"]


@dataclass(frozen=True)
class RefreshedTokens:
    access_token: SecretStr
    refresh_token: SecretStr | None
    expires_at: datetime | None


def needs_refresh(tokens: ConnectionTokens, *, now: datetime | None = None) -> bool:
    return (tokens.refresh_token is not None and tokens.expires_at is not None
            and tokens.expires_at - (now or utcnow()) <= REFRESH_MARGIN)


def refresh_connection_tokens(engine: Engine, connection_id: uuid.UUID, *, keyring: KeyRing,
                              used_access_token: SecretStr, refresher: Refresher) -> ConnectionTokens:
    """Refresh and store atomically. The row is locked while the provider answers; if another
    process rotated the tokens since `used_access_token` was read, its tokens are returned instead
    of spending the refresh token again. A provider that omits a new refresh token keeps the old one."""
    with engine.begin() as conn:
        row = conn.execute(sa.text(
            "select tenant_id, access_token_enc, refresh_token_enc, token_expires_at from pos_connections"
            " where id = :i for update"), {"i": connection_id}).first()
        if row is None:
            raise NotFound(f"no POS connection {connection_id}")
        current = decrypt_tokens(keyring, connection_id, row.access_token_enc, row.refresh_token_enc,
                                 row.token_expires_at)
        if current.access_token.get_secret_value() != used_access_token.get_secret_value():
            return current  # someone else refreshed while we waited for the lock
        if current.refresh_token is None:
            raise TokenCryptoError(f"connection {connection_id} has no refresh token; reconnect the merchant")
        fresh = refresher(current.refresh_token)
        new_refresh = fresh.refresh_token or current.refresh_token
        a_enc, r_enc = encrypt_tokens(keyring, connection_id, fresh.access_token, new_refresh)
        conn.execute(sa.text(
            "update pos_connections set access_token_enc = :a, refresh_token_enc = :r, token_expires_at = :x"
            " where id = :i"), {"a": a_enc, "r": r_enc, "x": fresh.expires_at, "i": connection_id})
        record_event(conn, connection_id=connection_id, tenant_id=row.tenant_id, event="tokens_refreshed",
                     reason="access token refreshed" + (" (refresh token rotated)" if fresh.refresh_token else ""))
        return ConnectionTokens(fresh.access_token, new_refresh, fresh.expires_at)


def refresh_failure(exc: ProviderHTTPError, *, what: str) -> SalesarckError:
    """What a failed token refresh ends the work with (`what` names the token, never its value).

    The provider answered and refused, or answered success unreadably: the stored refresh token is
    dead (single-use tokens are spent by a refresh whose answer was lost), so the connection needs
    re-authorizing (ConnectionAuthError -> token_expired). No answer at all or a server error: the
    stored token may still be good, so a plain failure that the next sync retries."""
    status = exc.status
    if status is not None and (status < 300 or status in (400, 401, 403)):
        why = (f"HTTP {status}: the refresh token was refused (revoked, or already used, as by a refresh "
               "whose answer was lost in transit)" if status >= 400 else
               f"HTTP {status} with an unreadable answer: the refresh token is spent")
        return ConnectionAuthError(f"{what} and the refresh failed ({why}); {REAUTHORIZE}",
                                   to_status="token_expired", code=REFRESH_FAILED)
    got = f"HTTP {status}" if status is not None else "no answer"
    return ProviderHTTPError(f"{what} and the refresh failed ({got}); the stored refresh token may still be "
                             f"good: the next sync tries again (if it keeps failing, {REAUTHORIZE})",
                             status=status, errors=exc.errors, method=exc.method, path=exc.path)


def rotate_keys(engine: Engine, *, actor: Actor, keyring: KeyRing) -> dict[str, int]:
    """Re-encrypt every stored token under the current key, in one transaction (admins only).
    Any token that cannot be decrypted aborts the whole rotation with the connection named."""
    actor.require_admin()
    with engine.begin() as conn:
        rows = conn.execute(sa.text(
            "select id, access_token_enc, refresh_token_enc from pos_connections order by id for update"
        )).all()
        ids: list[uuid.UUID] = []
        access: list[str] = []
        refresh: list[str] = []
        changed = 0
        for row in rows:
            a_new, r_new = row.access_token_enc, row.refresh_token_enc
            if row.access_token_enc or row.refresh_token_enc:
                tokens = decrypt_tokens(keyring, row.id, row.access_token_enc, row.refresh_token_enc)
                if any(keyring.needs_rotation(e) for e in (row.access_token_enc, row.refresh_token_enc) if e):
                    a_new, r_new = encrypt_tokens(keyring, row.id, tokens.access_token, tokens.refresh_token)
                    changed += 1
            ids.append(row.id)
            access.append(a_new)
            refresh.append(r_new)
        if changed:
            conn.execute(sa.text(
                "update pos_connections c set access_token_enc = v.a, refresh_token_enc = v.r"
                " from unnest(cast(:ids as uuid[]), cast(:a as text[]), cast(:r as text[])) as v(id, a, r)"
                " where c.id = v.id"), {"ids": ids, "a": access, "r": refresh})
        audit.record(conn, actor=actor, action="pos_connection.rotate_keys", target_type="pos_connection",
                     target_id=None, after={"current_kid": keyring.current_kid, "connections": len(rows),
                                            "re_encrypted": changed})
    return {"connections": len(rows), "re_encrypted": changed}
