"""Redeeming points against a purchase: checked against the rule in force, atomic, idempotent."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from salesarck.authz import Actor, Permission
from salesarck.errors import Conflict, NotFound, ValidationError
from salesarck.rewards.guard import as_int, as_uuid, lock_wallet, require
from salesarck.rewards.rules import rule_in_force
from salesarck.timeutil import utcnow

HANDLER = "redemption"
KEY_TTL = timedelta(days=30)  # the seed's default lifetime of an idempotency key
MAX_KEY_CHARS = 200


@dataclass(frozen=True)
class Redemption:
    """The outcome of `redeem`; `replayed` is True when the idempotency key had already redeemed."""

    reward_event_id: uuid.UUID
    wallet_id: uuid.UUID
    points: int
    balance_after: int
    value_minor_units: int
    replayed: bool = False


def redeem(
    conn: Connection,
    *,
    wallet_id: uuid.UUID,
    points: int,
    purchase_amount_minor_units: int,
    actor: Actor,
    idempotency_key: str,
    transaction_id: uuid.UUID | None = None,
) -> Redemption:
    """Redeem `points` from a wallet against a purchase, in the caller's transaction.

    Refused (Conflict/ValidationError, nothing written) for a frozen wallet, a balance below the
    rule's `minBalanceToRedeem`, more points than the balance, or points worth more than
    `maxRedemptionPercentage` of the purchase. The wallet row lock serialises concurrent
    redemptions (no overspend); the same idempotency key on the same wallet redeems once.
    """
    wallet_id = as_uuid(wallet_id, "wallet id")
    points = as_int(points, "points", minimum=1)
    purchase = as_int(purchase_amount_minor_units, "purchase amount", minimum=0)
    if not isinstance(idempotency_key, str) or not idempotency_key.strip() or len(idempotency_key) > MAX_KEY_CHARS \
            or "\x00" in idempotency_key:
        raise ValidationError(f"an idempotency key of 1 to {MAX_KEY_CHARS} characters is required")
    tid = conn.execute(sa.text("select tenant_id from wallets where id = :w"), {"w": wallet_id}).scalar()
    if tid is None:
        raise NotFound(f"no wallet {wallet_id}")
    require(conn, actor, Permission.ADJUST_WALLETS, tid)
    if transaction_id is not None:
        transaction_id = as_uuid(transaction_id, "transaction id")
        owner = conn.execute(sa.text("select tenant_id from transactions where id = :t"), {"t": transaction_id}).scalar()
        if owner != tid:
            raise NotFound(f"no transaction {transaction_id} in this wallet's tenant")
    wallet = lock_wallet(conn, wallet_id)
    key = f"{HANDLER}:{wallet_id}:{idempotency_key}"
    stored = conn.execute(sa.text("select result_snapshot from idempotency_keys where key = :k"), {"k": key}).first()
    if stored is not None:
        snap: dict[str, Any] = stored.result_snapshot or {}
        if snap.get("points") != points or snap.get("purchase_amount_minor_units") != purchase:
            raise Conflict("this idempotency key was already used for a different redemption")
        return Redemption(uuid.UUID(snap["reward_event_id"]), wallet_id, points, int(snap["balance_after"]),
                          int(snap["value_minor_units"]), replayed=True)
    if wallet.status == "frozen":
        raise Conflict(f"wallet {wallet_id} is frozen; points cannot be redeemed")
    rule = rule_in_force(conn, tid, utcnow())
    if rule is None:
        raise Conflict("the tenant has no reward rule in force; points cannot be redeemed")
    cfg = rule.config
    if wallet.points_balance < cfg.min_balance_to_redeem:
        raise Conflict(f"balance {wallet.points_balance} is below the minimum of {cfg.min_balance_to_redeem} "
                       "points needed to redeem")
    if points > wallet.points_balance:
        raise Conflict(f"cannot redeem {points} points: the balance is {wallet.points_balance}")
    value = points * cfg.point_value_minor_units
    if Decimal(value) * 100 > cfg.max_redemption_percentage * purchase:
        raise Conflict(f"{points} points are worth {value} minor units, more than "
                       f"{cfg.max_redemption_percentage}% of the purchase ({purchase})")
    event_id = uuid.uuid4()
    conn.execute(sa.text("insert into reward_events (id, wallet_id, transaction_id, rule_version_id, points_earned,"
                         " points_redeemed, created_at) values (:id, :w, :t, null, 0, :p, now() at time zone 'utc')"),
                 {"id": event_id, "w": wallet_id, "t": transaction_id, "p": points})
    conn.execute(sa.text("insert into wallet_ledger (wallet_id, entry_type, points, description, source_transaction_id,"
                         " created_at) values (:w, 'debit', :p, 'redemption', :t, now() at time zone 'utc')"),
                 {"w": wallet_id, "p": points, "t": transaction_id})
    balance = conn.execute(sa.text("update wallets set points_balance = points_balance - :p, "
                                   "updated_at = now() at time zone 'utc' where id = :w returning points_balance"),
                           {"w": wallet_id, "p": points}).scalar_one()
    snapshot = {"reward_event_id": str(event_id), "points": points, "purchase_amount_minor_units": purchase,
                "balance_after": balance, "value_minor_units": value, "actor": str(actor.user_id)}
    conn.execute(sa.text("insert into idempotency_keys (key, tenant_id, handler, result_snapshot, expires_at, created_at)"
                         " values (:k, :t, :h, cast(:s as jsonb), :exp, now() at time zone 'utc')"),
                 {"k": key, "t": tid, "h": HANDLER, "s": json.dumps(snapshot), "exp": utcnow() + KEY_TTL})
    return Redemption(event_id, wallet_id, points, balance, value)
