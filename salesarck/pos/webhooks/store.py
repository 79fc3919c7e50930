"""Storing accepted webhook deliveries: one `pos_webhook_events_raw` row per event (Square) or per
merchant (Clover), the exact body bytes beside it, and one delivery key per provider event.

Duplicates are stored once because the delivery keys' primary key says so: a row whose keys were all
taken by an earlier (or concurrent) delivery is removed again inside the same transaction, so the
database, not this process's memory, decides.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from salesarck.errors import ValidationError

MAX_BODY_BYTES = 1024 * 1024
MAX_ID_CHARS = 200
CLOVER_EVENT_TYPES = frozenset({"CREATE", "UPDATE", "DELETE"})
CLOVER_OBJECT_KINDS = {"P": "payment", "O": "order", "C": "customer"}
MAX_CLOVER_EVENTS = 10_000


@dataclass
class NewEvent:
    """One row to store, with the provider delivery keys that identify what it carries."""

    tenant_id: uuid.UUID
    provider: str
    merchant_id: str
    event_type: str
    payload: dict[str, Any]
    raw_body: bytes
    signature: str | None
    keys: list[str]
    # Clover: the events of this merchant, in the same order as `keys`
    clover_events: list[dict[str, Any]] = field(default_factory=list)
    event_id: uuid.UUID = field(default_factory=uuid.uuid4)


@dataclass(frozen=True)
class StoreResult:
    stored: int  # rows written
    duplicates: int  # rows (or Clover events) already stored
    event_ids: tuple[uuid.UUID, ...]


# --- parsing and validation ---------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json_body(body: bytes) -> Any:
    """Parse a request body as strict JSON that PostgreSQL's jsonb can hold, or raise ValidationError."""
    try:
        payload = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ValidationError("body is not valid JSON") from exc
    try:
        text = json.dumps(payload, ensure_ascii=False)
        text.encode("utf-8")
    except (UnicodeEncodeError, RecursionError, ValueError) as exc:
        raise ValidationError("body holds text that cannot be stored (unpaired surrogate)") from exc
    if "\\u0000" in text:
        raise ValidationError("body holds a NUL character")
    return payload


def _short_id(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_ID_CHARS:
        raise ValidationError(f"{what} is missing or not a short string")
    return value


def square_fields(payload: Any) -> tuple[str, str, str]:
    """(merchant_id, event_id, type) of a Square notification, validated."""
    if not isinstance(payload, dict):
        raise ValidationError("body is not a JSON object")
    merchant = _short_id(payload.get("merchant_id"), "merchant_id")
    event_id = _short_id(payload.get("event_id"), "event_id")
    event_type = _short_id(payload.get("type"), "type")
    data = payload.get("data")
    if data is not None and not isinstance(data, dict):
        raise ValidationError("data is not a JSON object")
    return merchant, event_id, event_type


def clover_merchant_events(payload: Any) -> tuple[str | None, dict[str, list[dict[str, Any]]]]:
    """(appId, {merchant id: [events]}) of a Clover notification, every event validated."""
    if not isinstance(payload, dict):
        raise ValidationError("body is not a JSON object")
    merchants = payload.get("merchants")
    if not isinstance(merchants, dict) or not merchants:
        raise ValidationError("merchants is missing or empty")
    app_id = payload.get("appId")
    if app_id is not None and (not isinstance(app_id, str) or len(app_id) > MAX_ID_CHARS):
        raise ValidationError("appId is not a short string")
    out: dict[str, list[dict[str, Any]]] = {}
    total = 0
    for merchant, events in merchants.items():
        _short_id(merchant, "merchant id")
        if not isinstance(events, list) or not events:
            raise ValidationError(f"events of merchant {merchant[:40]!r} are not a non-empty list")
        clean = []
        for ev in events:
            if not isinstance(ev, dict):
                raise ValidationError("an event is not a JSON object")
            object_id = _short_id(ev.get("objectId"), "objectId")
            ev_type = ev.get("type")
            if ev_type not in CLOVER_EVENT_TYPES:
                raise ValidationError("an event type is not CREATE, UPDATE or DELETE")
            ts = ev.get("ts")
            if not isinstance(ts, int) or isinstance(ts, bool) or not 0 < ts < 10**14:
                raise ValidationError("an event ts is not epoch milliseconds")
            clean.append({"objectId": object_id, "type": ev_type, "ts": ts})
        total += len(clean)
        out[merchant] = clean
    if total > MAX_CLOVER_EVENTS:
        raise ValidationError(f"more than {MAX_CLOVER_EVENTS} events in one delivery")
    return app_id, out


def clover_key(merchant: str, event: dict[str, Any]) -> str:
    return f"{merchant}|{event['objectId']}|{event['type']}|{event['ts']}"


def clover_event_type(events: Iterable[dict[str, Any]]) -> str:
    """E.g. `payment.update` or `order.create,payment.update`: what the merchant's row carries."""
    kinds = set()
    for ev in events:
        prefix = ev["objectId"].split(":", 1)[0] if ":" in ev["objectId"] else ""
        kinds.add(f"{CLOVER_OBJECT_KINDS.get(prefix, 'object')}.{ev['type'].lower()}")
    return ",".join(sorted(kinds))


# --- lookups ------------------------------------------------------------------------------------


def merchant_tenants(conn: Connection, provider: str, merchant_ids: Sequence[str]) -> dict[str, uuid.UUID]:
    """Tenant of each connected merchant (disconnected connections do not receive events)."""
    if not merchant_ids:
        return {}
    rows = conn.execute(
        sa.text(
            "select merchant_account_id, tenant_id from pos_connections"
            " where pos_type = :p and merchant_account_id = any(:m) and status <> 'disconnected'"
            " order by created_at"
        ),
        {"p": provider, "m": list(merchant_ids)},
    ).all()
    return {r.merchant_account_id: r.tenant_id for r in rows}


# --- storing ------------------------------------------------------------------------------------


def store_events(engine: Engine, events: Sequence[NewEvent]) -> StoreResult:
    """Store events not seen before, in one transaction; see the module docstring for duplicates."""
    if not events:
        return StoreResult(0, 0, ())
    with engine.begin() as conn:
        return store_events_in(conn, events)


def store_events_in(conn: Connection, events: Sequence[NewEvent]) -> StoreResult:
    provider = events[0].provider
    assert all(e.provider == provider for e in events)
    if all(len(e.keys) == 1 for e in events) and len({e.keys[0] for e in events}) == len(events):
        return _store_single_key(conn, events)
    all_keys = [k for e in events for k in e.keys]
    seen = set(
        conn.execute(
            sa.text("select dedup_key from pos_webhook_event_keys where provider = :p and dedup_key = any(:k)"),
            {"p": provider, "k": all_keys},
        ).scalars()
    )
    duplicates = 0
    fresh: list[NewEvent] = []
    for ev in events:
        new_keys = [k for k in ev.keys if k not in seen]
        duplicates += len(ev.keys) - len(new_keys)
        if not new_keys:
            continue
        if len(new_keys) != len(ev.keys):
            ev = _narrow_clover(ev, set(new_keys))
        fresh.append(ev)
        seen.update(new_keys)  # a key twice in one delivery is stored once
    if not fresh:
        return StoreResult(0, duplicates, ())
    _insert_rows(conn, fresh)
    won = conn.execute(
        sa.text(
            "insert into pos_webhook_event_keys (provider, dedup_key, event_id)"
            " select :p, k, e from unnest(cast(:keys as text[]), cast(:eids as uuid[])) as t(k, e)"
            " order by k on conflict do nothing returning dedup_key"
        ),
        {"p": provider, "keys": [k for e in fresh for k in e.keys],
         "eids": [e.event_id for e in fresh for _ in e.keys]},
    ).scalars().all()
    won_set = set(won)
    kept: list[NewEvent] = []
    for ev in fresh:
        mine = [k for k in ev.keys if k in won_set]
        duplicates += len(ev.keys) - len(mine)
        if not mine:  # a concurrent delivery stored it first
            conn.execute(sa.text("delete from pos_webhook_events_raw where id = :i"), {"i": ev.event_id})
            continue
        if len(mine) != len(ev.keys):
            narrowed = _narrow_clover(ev, set(mine))
            conn.execute(
                sa.text("update pos_webhook_events_raw set raw_payload = cast(:pl as jsonb), event_type = :et"
                        " where id = :i"),
                {"pl": json.dumps(narrowed.payload), "et": narrowed.event_type, "i": ev.event_id},
            )
        kept.append(ev)
    return StoreResult(len(kept), duplicates, tuple(e.event_id for e in kept))


_SINGLE_KEY = """
with k as (
    insert into pos_webhook_event_keys (provider, dedup_key, event_id)
    select :p, u.k, u.i from unnest(cast(:keys as text[]), cast(:ids as uuid[])) as u(k, i) order by u.k
    on conflict do nothing
    returning event_id),
r as (
    insert into pos_webhook_events_raw (id, tenant_id, provider, event_type, raw_payload, signature_header, processed)
    select u.i, u.t, :p, u.et, cast(u.pl as jsonb), u.sig, false
    from unnest(cast(:ids as uuid[]), cast(:tids as uuid[]), cast(:ets as text[]), cast(:pls as text[]),
                cast(:sigs as text[])) as u(i, t, et, pl, sig)
    where u.i in (select event_id from k)
    returning id),
b as (
    insert into pos_webhook_event_bodies (event_id, merchant_id, raw_body)
    select u.i, u.m, u.b from unnest(cast(:ids as uuid[]), cast(:ms as text[]), cast(:bs as bytea[])) as u(i, m, b)
    where u.i in (select id from r)
    returning event_id)
select event_id from b
"""


def _store_single_key(conn: Connection, events: Sequence[NewEvent]) -> StoreResult:
    """One statement for events with one key each (Square): the key insert decides, in the database,
    which rows are new; the raw row and its body follow only for those (the key's foreign key to the
    raw row is checked at the end of the statement)."""
    stored = conn.execute(sa.text(_SINGLE_KEY), {
        "p": events[0].provider,
        "keys": [e.keys[0] for e in events],
        "ids": [e.event_id for e in events],
        "tids": [e.tenant_id for e in events],
        "ets": [e.event_type for e in events],
        "pls": [json.dumps(e.payload, ensure_ascii=False) for e in events],
        "sigs": [e.signature for e in events],
        "ms": [e.merchant_id for e in events],
        "bs": [e.raw_body for e in events],
    }).scalars().all()
    return StoreResult(len(stored), len(events) - len(stored), tuple(stored))


def _narrow_clover(ev: NewEvent, keep: set[str]) -> NewEvent:
    """The same Clover merchant row carrying only the events whose keys are in `keep`."""
    pairs = [(k, e) for k, e in zip(ev.keys, ev.clover_events, strict=True) if k in keep]
    events = [e for _, e in pairs]
    payload = {**ev.payload, "merchants": {ev.merchant_id: events}}
    return NewEvent(
        tenant_id=ev.tenant_id, provider=ev.provider, merchant_id=ev.merchant_id,
        event_type=clover_event_type(events), payload=payload, raw_body=ev.raw_body, signature=ev.signature,
        keys=[k for k, _ in pairs], clover_events=events, event_id=ev.event_id,
    )


def _insert_rows(conn: Connection, rows: Sequence[NewEvent]) -> None:
    conn.execute(
        sa.text(
            "insert into pos_webhook_events_raw (id, tenant_id, provider, event_type, raw_payload,"
            " signature_header, processed)"
            " select i, t, :p, et, cast(pl as jsonb), sig, false from unnest(cast(:ids as uuid[]),"
            " cast(:tids as uuid[]), cast(:ets as text[]), cast(:pls as text[]), cast(:sigs as text[]))"
            " as u(i, t, et, pl, sig)"
        ),
        {
            "p": rows[0].provider,
            "ids": [r.event_id for r in rows],
            "tids": [r.tenant_id for r in rows],
            "ets": [r.event_type for r in rows],
            "pls": [json.dumps(r.payload, ensure_ascii=False) for r in rows],
            "sigs": [r.signature for r in rows],
        },
    )
    conn.execute(
        sa.text(
            "insert into pos_webhook_event_bodies (event_id, merchant_id, raw_body)"
            " select i, m, b from unnest(cast(:ids as uuid[]), cast(:ms as text[]), cast(:bs as bytea[]))"
            " as u(i, m, b)"
        ),
        {"ids": [r.event_id for r in rows], "ms": [r.merchant_id for r in rows], "bs": [r.raw_body for r in rows]},
    )


def build_square_event(*, tenant_id: uuid.UUID, payload: dict[str, Any], raw_body: bytes,
                       signature: str) -> NewEvent:
    merchant, event_id, event_type = square_fields(payload)
    return NewEvent(tenant_id=tenant_id, provider="square", merchant_id=merchant, event_type=event_type,
                    payload=payload, raw_body=raw_body, signature=signature, keys=[event_id])


def build_clover_events(*, app_id: str | None, merchant_events: dict[str, list[dict[str, Any]]],
                        tenants: dict[str, uuid.UUID], raw_body: bytes) -> list[NewEvent]:
    """One row per known merchant, carrying that merchant's events in Clover's own shape."""
    out = []
    for merchant, events in merchant_events.items():
        tenant = tenants.get(merchant)
        if tenant is None:
            continue
        keys: list[str] = []
        uniq: list[dict[str, Any]] = []
        for ev in events:
            key = clover_key(merchant, ev)
            if key not in keys:
                keys.append(key)
                uniq.append(ev)
        payload: dict[str, Any] = {"merchants": {merchant: uniq}}
        if app_id is not None:
            payload["appId"] = app_id
        out.append(NewEvent(tenant_id=tenant, provider="clover", merchant_id=merchant,
                            event_type=clover_event_type(uniq), payload=payload, raw_body=raw_body,
                            signature=None, keys=keys, clover_events=uniq))
    return out
