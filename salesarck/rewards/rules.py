"""Reward rules: the validated `RuleConfig`, the exact points calculation, and rule versions.

`points_for` has a SQL twin, `salesarck_points(amount, exponent, rule_config)`, created by
migration 0004; set-based posting and reconciliation use that one, and a property test keeps
the two identical.
"""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal, InvalidOperation, localcontext
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from salesarck import audit
from salesarck.authz import Actor, Permission
from salesarck.errors import NotFound, ValidationError
from salesarck.jsonutil import dumps
from salesarck.rewards.currency import currency_exponent
from salesarck.timeutil import to_naive_utc, utcnow

MAX_INT32 = 2_147_483_647
MAX_POINTS = MAX_INT32  # points never exceed the integer columns; both twins clamp here
MAX_CONVERSION_RATE = Decimal(1000)
ROUNDING_POLICIES = ("floor", "round", "ceil")
_ROUNDING = {"floor": ROUND_FLOOR, "round": ROUND_HALF_UP, "ceil": ROUND_CEILING}
KNOWN_KEYS = (
    "conversionRate", "minSpendMinorUnits", "maxPointsPerTransaction", "minBalanceToRedeem",
    "maxRedemptionPercentage", "roundingPolicy", "pointValueMinorUnits",
)
MAX_CONFIG_CHARS = 20_000


def _number(raw: dict[str, Any], key: str, default: Decimal | None) -> Decimal | None:
    value = raw.get(key)
    if value is None:
        if default is None and key == "conversionRate":
            raise ValidationError("rule config: conversionRate is required")
        return default
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise ValidationError(f"rule config: {key} must be a number, got {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValidationError(f"rule config: {key} must be a finite number")
    try:
        dec = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    except InvalidOperation as exc:  # pragma: no cover - guarded above
        raise ValidationError(f"rule config: {key} is not a number") from exc
    if not dec.is_finite():
        raise ValidationError(f"rule config: {key} must be a finite number")
    return dec


def _integer(raw: dict[str, Any], key: str, default: int | None, minimum: int = 0) -> int | None:
    dec = _number(raw, key, None if default is None else Decimal(default))
    if dec is None:
        return None
    if dec != dec.to_integral_value():
        raise ValidationError(f"rule config: {key} must be a whole number, got {dec}")
    if not minimum <= dec <= MAX_INT32:
        raise ValidationError(f"rule config: {key} must be between {minimum} and {MAX_INT32}, got {dec}")
    return int(dec)


@dataclass(frozen=True)
class RuleConfig:
    """A reward rule's settings (camelCase in the stored JSONB). Build with `RuleConfig.parse`."""

    conversion_rate: Decimal  # points per major currency unit, > 0
    min_spend_minor_units: int = 0
    max_points_per_transaction: int | None = None  # None: no cap
    min_balance_to_redeem: int = 0
    max_redemption_percentage: Decimal = Decimal(100)
    rounding_policy: str = "floor"
    point_value_minor_units: int = 1  # what one redeemed point is worth, in the tenant's currency
    extra: dict[str, Any] = field(default_factory=dict, compare=False)  # unknown keys, kept as given

    @property
    def unknown_keys(self) -> list[str]:
        """Keys not in the schema: kept (JSONB is for extensibility) but reported to the user."""
        return sorted(self.extra)

    @classmethod
    def parse(cls, raw: Any) -> RuleConfig:
        """Validate a stored or user-given config; a bad one raises ValidationError naming the field."""
        if isinstance(raw, str | bytes):
            if len(raw) > MAX_CONFIG_CHARS:
                raise ValidationError("rule config is too large")
            try:
                raw = json.loads(raw, parse_float=Decimal)
            except (ValueError, RecursionError) as exc:
                raise ValidationError(f"rule config is not valid JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise ValidationError("rule config must be a JSON object")
        try:
            size = len(dumps(raw))
        except RecursionError:  # a deeply nested object (from a dict, not text) is refused, not a crash
            raise ValidationError("rule config is nested too deeply") from None
        except (TypeError, ValueError) as exc:
            raise ValidationError(f"rule config is not JSON-serialisable: {str(exc)[:80]}") from None
        if size > MAX_CONFIG_CHARS:
            raise ValidationError("rule config is too large")
        rate = _number(raw, "conversionRate", None)
        assert rate is not None
        if not Decimal(0) < rate <= MAX_CONVERSION_RATE:
            raise ValidationError(f"rule config: conversionRate must be > 0 and <= {MAX_CONVERSION_RATE}, got {rate}")
        if len(rate.as_tuple().digits) > 15:
            raise ValidationError("rule config: conversionRate has more than 15 significant digits")
        pct = _number(raw, "maxRedemptionPercentage", Decimal(100))
        assert pct is not None
        if not Decimal(0) <= pct <= Decimal(100):
            raise ValidationError(f"rule config: maxRedemptionPercentage must be between 0 and 100, got {pct}")
        policy = raw.get("roundingPolicy", "floor")
        if policy is None:
            policy = "floor"
        if policy not in ROUNDING_POLICIES:
            raise ValidationError(
                f"rule config: roundingPolicy must be one of {', '.join(ROUNDING_POLICIES)}, got {str(policy)[:40]!r}")
        min_spend = _integer(raw, "minSpendMinorUnits", 0)
        min_balance = _integer(raw, "minBalanceToRedeem", 0)
        point_value = _integer(raw, "pointValueMinorUnits", 1, minimum=1)
        assert min_spend is not None and min_balance is not None and point_value is not None
        return cls(
            conversion_rate=rate,
            min_spend_minor_units=min_spend,
            max_points_per_transaction=_integer(raw, "maxPointsPerTransaction", None),
            min_balance_to_redeem=min_balance,
            max_redemption_percentage=pct,
            rounding_policy=policy,
            point_value_minor_units=point_value,
            extra={k: v for k, v in raw.items() if k not in KNOWN_KEYS},
        )

    def to_json(self) -> dict[str, Any]:
        """The JSONB to store: camelCase keys, plain JSON numbers, unknown keys kept."""

        def num(d: Decimal) -> int | float:
            if d == d.to_integral_value():
                return int(d)
            return float(d)  # <= 15 significant digits: the float's repr is the same decimal

        out: dict[str, Any] = dict(_plain(self.extra))
        out.update({
            "conversionRate": num(self.conversion_rate),
            "minSpendMinorUnits": self.min_spend_minor_units,
            "minBalanceToRedeem": self.min_balance_to_redeem,
            "maxRedemptionPercentage": num(self.max_redemption_percentage),
            "roundingPolicy": self.rounding_policy,
            "pointValueMinorUnits": self.point_value_minor_units,
        })
        if self.max_points_per_transaction is not None:
            out["maxPointsPerTransaction"] = self.max_points_per_transaction
        return out


def _plain(value: Any) -> Any:
    """Unknown keys may hold Decimals (parsed exactly): turn them into JSON numbers."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def points_for(amount_minor_units: int, currency: str, config: RuleConfig) -> int:
    """Points a purchase earns: amount / 10^exponent x rate, rounded by policy, 0 below min spend, capped.

    Exact decimal arithmetic throughout (never float). Negative amounts earn nothing.
    """
    if isinstance(amount_minor_units, bool) or not isinstance(amount_minor_units, int):
        raise ValidationError("amount must be an integer number of minor units")
    exponent = currency_exponent(currency)
    return points_for_exponent(amount_minor_units, exponent, config)


def points_for_exponent(amount_minor_units: int, exponent: int, config: RuleConfig) -> int:
    """`points_for` with the currency's exponent already known (the shape of the SQL twin)."""
    if amount_minor_units <= 0 or amount_minor_units < config.min_spend_minor_units:
        return 0
    with localcontext() as ctx:
        ctx.prec = 100
        value = (Decimal(amount_minor_units) * config.conversion_rate).scaleb(-exponent)
        points = int(value.to_integral_value(rounding=_ROUNDING[config.rounding_policy]))
    if config.max_points_per_transaction is not None:
        points = min(points, config.max_points_per_transaction)
    return min(points, MAX_POINTS)


@dataclass(frozen=True)
class RuleVersion:
    """One stored version of a tenant's reward rule."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    version: int
    is_active: bool
    config: RuleConfig
    raw_config: dict[str, Any]
    effective_from: datetime
    created_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "tenant_id": self.tenant_id, "version": self.version, "is_active": self.is_active,
                "rule_config": _plain(self.raw_config), "effective_from": self.effective_from,
                "created_at": self.created_at}


_RULES_Q = ("select r.* from (select id, tenant_id, version, coalesce(is_active, false) as is_active,"
            " rule_config::text as cfg, effective_from, created_at from reward_rules) r")


def _version(row: Any) -> RuleVersion:
    raw = json.loads(row.cfg, parse_float=Decimal)
    return RuleVersion(row.id, row.tenant_id, row.version, bool(row.is_active), RuleConfig.parse(raw), raw,
                       row.effective_from, row.created_at)


def rule_in_force(conn: Connection, tenant_id: uuid.UUID, at: datetime) -> RuleVersion | None:
    """The version in force at `at`: greatest effective_from <= at, ties to the higher version.

    Considers every version of the tenant, active or not (a late offline payment is valued under
    the rule in force when it happened).
    """
    row = conn.execute(
        sa.text(_RULES_Q + " where r.tenant_id = :t and r.effective_from <= :at order by r.effective_from desc, r.version desc limit 1"),
        {"t": tenant_id, "at": to_naive_utc(at)},
    ).first()
    return None if row is None else _version(row)


def list_rules(conn: Connection, tenant_id: uuid.UUID) -> list[RuleVersion]:
    """Every version of the tenant's rule, newest first."""
    rows = conn.execute(sa.text(_RULES_Q + " where r.tenant_id = :t order by r.version desc"),
                        {"t": tenant_id}).all()
    return [_version(r) for r in rows]


def get_rule(conn: Connection, rule_id: uuid.UUID) -> RuleVersion:
    row = conn.execute(sa.text(_RULES_Q + " where r.id = :i"), {"i": rule_id}).first()
    if row is None:
        raise NotFound(f"no reward rule {rule_id}")
    return _version(row)


def create_rule(
    conn: Connection,
    *,
    actor: Actor,
    tenant_id: uuid.UUID,
    config: dict[str, Any] | RuleConfig,
    effective_from: datetime | None,
    reason: str | None,
) -> RuleVersion:
    """Store a new rule version (previous + 1) as the tenant's one active version, with a `rule.create` audit row.

    Runs in the caller's transaction (`engine.begin()`); concurrent creators are serialised by a
    lock on the tenant row, and the unique (tenant, version) index is the backstop.
    """
    actor.require(Permission.MANAGE_RULES, tenant_id)
    parsed = config if isinstance(config, RuleConfig) else RuleConfig.parse(config)
    when = to_naive_utc(effective_from) if effective_from is not None else utcnow()
    if not datetime(1970, 1, 1) <= when <= datetime(9999, 1, 1):
        raise ValidationError("effective_from is out of range")
    if conn.execute(sa.text("select id from tenants where id = :t for update"), {"t": tenant_id}).first() is None:
        raise NotFound(f"no tenant {tenant_id}")
    previous = conn.execute(sa.text(_RULES_Q + " where r.tenant_id = :t and r.is_active"),
                            {"t": tenant_id}).first()
    before = _version(previous).as_dict() if previous is not None else None
    conn.execute(sa.text("update reward_rules set is_active = false where tenant_id = :t and is_active"),
                 {"t": tenant_id})
    row = conn.execute(
        sa.text("insert into reward_rules (tenant_id, version, is_active, rule_config, effective_from, created_at) "
                "select :t, coalesce(max(version), 0) + 1, true, cast(:cfg as jsonb), :ef, now() at time zone 'utc' "
                "from reward_rules where tenant_id = :t returning id"),
        {"t": tenant_id, "cfg": json.dumps(parsed.to_json()), "ef": when},
    ).one()
    created = get_rule(conn, row.id)
    audit.record(conn, actor=actor, action="rule.create", target_type="reward_rule", target_id=created.id,
                 before=before, after=created.as_dict(), reason=audit.require_reason(reason) if reason and reason.strip() else "new rule version")
    return created
