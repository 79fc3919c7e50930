"""POS tie-out: re-list the provider's payments and refunds for a window (read-only) and compare
them with what is stored: missing, extra, amount and status mismatches, and per-location, per-day
counts and sums in the tenant's time zone. This is the check that proves ingestion complete."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd
import sqlalchemy as sa
from pydantic import SecretStr
from sqlalchemy.engine import Engine

from salesarck.authz import Actor, Permission
from salesarck.config import Settings, load_settings
from salesarck.errors import ValidationError
from salesarck.jsonutil import jsonable
from salesarck.timeutil import parse_time

MAX_WINDOW_DAYS = 400
DIFF_COLUMNS = ["kind", "object", "provider_id", "transaction_id", "location_id", "day", "provider_amount",
                "stored_amount", "provider_status", "stored_status"]
DAILY_COLUMNS = ["location_id", "day", "provider_count", "provider_sum", "stored_count", "stored_sum",
                 "provider_refund_count", "provider_refund_sum", "stored_refund_count", "stored_refund_sum", "ties"]

ClientFactory = Callable[[str, SecretStr], Any]


@dataclass
class TieOutResult:
    summary: dict[str, Any]
    differences: pd.DataFrame
    daily: pd.DataFrame
    ties: bool
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return jsonable({"summary": self.summary, "ties": self.ties,
                         "differences": self.differences.astype(object).where(self.differences.notna(), None)
                         .to_dict("records"),
                         "daily": self.daily.astype(object).where(self.daily.notna(), None).to_dict("records")})


def _zone(profile: Any) -> ZoneInfo:
    name = profile.get("timezone") if isinstance(profile, dict) else None
    if not isinstance(name, str) or not name.strip():
        return ZoneInfo("UTC")
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _day(at: datetime | None, zone: ZoneInfo) -> str | None:
    if at is None:
        return None
    return at.replace(tzinfo=ZoneInfo("UTC")).astimezone(zone).date().isoformat()


def pos_tieout(engine: Engine, *, actor: Actor, connection_id: Any, start: Any, end: Any,
               settings: Settings | None = None, client_factory: ClientFactory | None = None) -> TieOutResult:
    """Tie a Square connection's payments and refunds in [start, end) to stored transactions."""
    from salesarck.crypto import KeyRing
    from salesarck.pos.connections import get_connection, load_tokens, parse_connection_id
    from salesarck.pos.mapping import map_square_payment, map_square_refund
    from salesarck.pos.square import SquareClient

    cid = parse_connection_id(connection_id)
    t0, t1 = parse_time(start), parse_time(end)
    if t1 <= t0:
        raise ValidationError("--to must be after --from")
    if (t1 - t0).days > MAX_WINDOW_DAYS:
        raise ValidationError(f"the window is longer than {MAX_WINDOW_DAYS} days; split it")
    settings = settings or load_settings()
    with engine.connect() as conn:
        info = get_connection(conn, cid)
        actor.require(Permission.VIEW_FINANCE, info.tenant_id)
        if info.provider != "square":
            raise ValidationError(f"tie-out supports Square connections; this one is {info.provider}")
        tokens = load_tokens(conn, cid, KeyRing.from_settings(settings))
        profile = conn.execute(sa.text("select onboarding_profile from tenants where id = :t"),
                               {"t": info.tenant_id}).scalar()
        stored = conn.execute(sa.text(
            "select x.id, x.provider_transaction_id, x.amount_minor_units, x.transaction_at, d.location_id,"
            " d.provider_status, coalesce(d.is_voided, false) as voided from transactions x"
            " left join transaction_details d on d.transaction_id = x.id"
            " where x.tenant_id = :t and x.provider = 'square' and x.transaction_at >= :s and x.transaction_at < :e"),
            {"t": info.tenant_id, "s": t0, "e": t1}).mappings().all()
        stored_refunds = conn.execute(sa.text(
            "select r.provider_refund_id, r.amount_minor_units, r.status, r.is_completed, r.refunded_at,"
            " x.provider_transaction_id, d.location_id from transaction_refunds r"
            " join transactions x on x.id = r.transaction_id left join transaction_details d on d.transaction_id = x.id"
            " where r.tenant_id = :t and r.provider = 'square' and r.refunded_at >= :s and r.refunded_at < :e"),
            {"t": info.tenant_id, "s": t0, "e": t1}).mappings().all()
    zone = _zone(profile)
    factory = client_factory or (lambda url, token: SquareClient(url, token))
    provider: dict[str, Any] = {}
    unreadable = 0
    with factory(settings.square_base_url, tokens.access_token) as client:
        # ListPayments answers for one location (the main one by default): list each location
        pages = (page for loc in client.list_locations() if isinstance(loc.get("id"), str)
                 for page in client.iter_payment_pages(location_id=loc["id"], begin_time=t0, end_time=t1,
                                                       sort_field="CREATED_AT"))
        for page in pages:
            for obj in page.payments:
                try:
                    rec = map_square_payment(obj)
                except ValidationError:
                    unreadable += 1
                    continue
                if t0 <= rec.transaction_at < t1:
                    provider[rec.provider_payment_id] = rec
        prov_refunds: dict[str, Any] = {}
        for obj in client.iter_refunds(begin_time=t0, end_time=t1):
            try:
                ref = map_square_refund(obj)
            except ValidationError:
                unreadable += 1
                continue
            prov_refunds[ref.provider_refund_id] = (ref, obj.get("location_id"))
    diffs: list[dict[str, Any]] = []
    by_id = {r["provider_transaction_id"]: r for r in stored}

    def diff(kind: str, obj: str, pid: str, row: Any, amount: Any, stored_amount: Any, pstatus: Any, sstatus: Any,
             location: Any, at: Any) -> None:
        diffs.append({"kind": kind, "object": obj, "provider_id": pid,
                      "transaction_id": None if row is None else str(row["id"]), "location_id": location,
                      "day": _day(at, zone), "provider_amount": amount, "stored_amount": stored_amount,
                      "provider_status": pstatus, "stored_status": sstatus})

    for pid, rec in provider.items():
        row = by_id.get(pid)
        if row is None:
            if rec.is_completed:
                diff("missing", "payment", pid, None, rec.amount_minor_units, None, rec.status, None, rec.location_id,
                     rec.transaction_at)
            continue
        stored_status = "VOIDED" if row["voided"] else (row["provider_status"] or "COMPLETED")
        if rec.is_completed and row["voided"] or (not rec.is_completed and not row["voided"]):
            diff("status_mismatch", "payment", pid, row, rec.amount_minor_units, row["amount_minor_units"],
                 rec.status, stored_status, rec.location_id, rec.transaction_at)
        if rec.amount_minor_units != row["amount_minor_units"]:
            diff("amount_mismatch", "payment", pid, row, rec.amount_minor_units, row["amount_minor_units"],
                 rec.status, stored_status, rec.location_id, rec.transaction_at)
    for pid, row in by_id.items():
        if pid not in provider:
            diff("extra", "payment", pid, row, None, row["amount_minor_units"], None, row["provider_status"],
                 row["location_id"], row["transaction_at"])
    stored_ref = {r["provider_refund_id"]: r for r in stored_refunds}
    for rid, (ref, loc) in prov_refunds.items():
        srow = stored_ref.get(rid)
        if srow is None:
            if ref.is_completed:
                diff("missing", "refund", rid, None, ref.amount_minor_units, None, ref.status, None, loc,
                     ref.refunded_at)
            continue
        if bool(srow["is_completed"]) != ref.is_completed:
            diff("status_mismatch", "refund", rid, None, ref.amount_minor_units, srow["amount_minor_units"],
                 ref.status, srow["status"], loc, ref.refunded_at)
        if int(srow["amount_minor_units"]) != ref.amount_minor_units:
            diff("amount_mismatch", "refund", rid, None, ref.amount_minor_units, srow["amount_minor_units"],
                 ref.status, srow["status"], loc, ref.refunded_at)
    for rid, srow in stored_ref.items():
        if rid not in prov_refunds:
            diff("extra", "refund", rid, None, None, srow["amount_minor_units"], None, srow["status"],
                 srow["location_id"], srow["refunded_at"])
    daily = _daily(provider, stored, prov_refunds, stored_refunds, zone)
    differences = pd.DataFrame(diffs, columns=DIFF_COLUMNS).sort_values(["kind", "object", "provider_id"]
                                                                        ).reset_index(drop=True)
    ties = differences.empty and unreadable == 0
    summary = {"connection_id": str(cid), "tenant_id": str(info.tenant_id), "from": t0, "to": t1,
               "timezone": str(zone), "provider_payments": len(provider),
               "provider_completed": sum(1 for r in provider.values() if r.is_completed),
               "stored_transactions": len(stored), "provider_refunds": len(prov_refunds),
               "stored_refunds": len(stored_refunds), "unreadable": unreadable,
               **{f"{k}": int((differences["kind"] == k).sum()) for k in
                  ("missing", "extra", "amount_mismatch", "status_mismatch")}, "ties": ties}
    return TieOutResult(jsonable(summary), differences, daily, ties)


def _daily(provider: dict[str, Any], stored: Any, prov_refunds: dict[str, Any], stored_refunds: Any,
           zone: ZoneInfo) -> pd.DataFrame:
    cells: dict[tuple[str, str], dict[str, int]] = {}

    def cell(loc: Any, at: Any) -> dict[str, int]:
        key = (str(loc or ""), _day(at, zone) or "")
        return cells.setdefault(key, dict.fromkeys(DAILY_COLUMNS[2:-1], 0))

    for rec in provider.values():
        if rec.is_completed:
            c = cell(rec.location_id, rec.transaction_at)
            c["provider_count"] += 1
            c["provider_sum"] += rec.amount_minor_units
    for row in stored:
        if not row["voided"]:
            c = cell(row["location_id"], row["transaction_at"])
            c["stored_count"] += 1
            c["stored_sum"] += int(row["amount_minor_units"])
    for ref, loc in prov_refunds.values():
        if ref.is_completed:
            c = cell(loc, ref.refunded_at)
            c["provider_refund_count"] += 1
            c["provider_refund_sum"] += ref.amount_minor_units
    for r in stored_refunds:
        if r["is_completed"]:
            c = cell(r["location_id"], r["refunded_at"])
            c["stored_refund_count"] += 1
            c["stored_refund_sum"] += int(r["amount_minor_units"])
    rows = []
    for (loc, day), c in sorted(cells.items()):
        ties = (c["provider_count"], c["provider_sum"], c["provider_refund_count"], c["provider_refund_sum"]) == (
            c["stored_count"], c["stored_sum"], c["stored_refund_count"], c["stored_refund_sum"])
        rows.append({"location_id": loc or None, "day": day, **c, "ties": ties})
    return pd.DataFrame(rows, columns=DAILY_COLUMNS)


