"""What-if: replay a tenant's transactions under a hypothetical rule, next to what they earned.

One set-based query using the SQL twin `salesarck_points`, so the simulation values a payment
exactly as posting does: net of completed refunds, 0 once voided, nothing for anonymous
customers or accruals made on a frozen wallet. Run with the rule actually in force, it
reproduces actual earnings exactly.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from salesarck.errors import ValidationError
from salesarck.rewards.guard import as_uuid
from salesarck.rewards.rules import RuleConfig
from salesarck.timeutil import parse_time

MAX_ROWS = 2_000_000

COLUMNS = [
    "transaction_id", "transaction_at", "user_id", "currency", "amount_minor_units", "refunded_minor_units",
    "voided", "actual_rule_version", "actual_points", "simulated_points", "delta_points",
    "actual_value_minor_units", "simulated_value_minor_units",
]

_QUERY = """
with tx as (
    select x.id, x.transaction_at, x.user_id, x.currency, x.amount_minor_units, c.exponent,
           coalesce(d.is_voided, false) as voided,
           coalesce((select sum(tr.amount_minor_units) from transaction_refunds tr
                     where tr.transaction_id = x.id and tr.is_completed), 0) as refunded
    from transactions x
    left join currency_minor_units c on c.code = x.currency
    left join transaction_details d on d.transaction_id = x.id
    where x.tenant_id = :t and x.transaction_at >= :start and x.transaction_at < :end
    order by x.transaction_at, x.id
    limit :max_rows
), acc as (
    select distinct on (e.transaction_id) e.transaction_id, e.rule_version_id
    from reward_events e join tx on tx.id = e.transaction_id
    where coalesce(e.points_redeemed, 0) = 0
    order by e.transaction_id, e.created_at, e.id
), earned as (
    select e.transaction_id, sum(coalesce(e.points_earned, 0)) as points
    from reward_events e join tx on tx.id = e.transaction_id
    where coalesce(e.points_redeemed, 0) = 0 group by e.transaction_id
)
select tx.id as transaction_id, tx.transaction_at, tx.user_id, tx.currency, tx.amount_minor_units,
       tx.refunded as refunded_minor_units, tx.voided, rr.version as actual_rule_version,
       coalesce(earned.points, 0)::bigint as actual_points,
       case when tx.user_id is null or tx.voided or tx.exponent is null
                 or (acc.transaction_id is not null and acc.rule_version_id is null) then 0
            else salesarck_points(greatest(tx.amount_minor_units - tx.refunded, 0), tx.exponent,
                                  cast(:cfg as jsonb)) end::bigint as simulated_points,
       coalesce((rr.rule_config ->> 'pointValueMinorUnits')::bigint, 1) as actual_point_value
from tx
left join acc on acc.transaction_id = tx.id
left join earned on earned.transaction_id = tx.id
left join reward_rules rr on rr.id = acc.rule_version_id
order by tx.transaction_at, tx.id
"""


@dataclass(frozen=True)
class SimulationResult:
    """Per-transaction frame (see `COLUMNS`) and totals: points and money earned vs simulated."""

    config: RuleConfig
    start: datetime
    end: datetime
    transactions: pd.DataFrame
    totals: dict[str, Any]


def simulate_rules(conn: Connection, *, tenant_id: uuid.UUID, config: RuleConfig | dict[str, Any],
                   start: datetime | str, end: datetime | str) -> SimulationResult:
    """Replay every transaction with `start <= transaction_at < end` under `config`.

    Money values are points x pointValueMinorUnits (actual: the accrual's rule; simulated: `config`),
    in the tenant's minor units. Read-only.
    """
    tenant_id = as_uuid(tenant_id, "tenant id")
    cfg = config if isinstance(config, RuleConfig) else RuleConfig.parse(config)
    lo, hi = parse_time(start), parse_time(end)
    if hi <= lo:
        raise ValidationError("the simulation window must end after it starts")
    rows = conn.execute(sa.text(_QUERY), {"t": tenant_id, "start": lo, "end": hi, "max_rows": MAX_ROWS,
                                          "cfg": json.dumps(cfg.to_json())}).all()
    frame = pd.DataFrame([r._asdict() for r in rows],
                         columns=[*COLUMNS[:10], "actual_point_value"])
    frame["actual_points"] = frame["actual_points"].astype("int64")
    frame["simulated_points"] = frame["simulated_points"].astype("int64")
    frame["delta_points"] = frame["simulated_points"] - frame["actual_points"]
    frame["actual_value_minor_units"] = frame["actual_points"] * frame["actual_point_value"].astype("int64")
    frame["simulated_value_minor_units"] = frame["simulated_points"] * cfg.point_value_minor_units
    frame = frame[COLUMNS]
    totals = {
        "transactions": len(frame),
        "actual_points": int(frame["actual_points"].sum()),
        "simulated_points": int(frame["simulated_points"].sum()),
        "delta_points": int(frame["delta_points"].sum()),
        "actual_value_minor_units": int(frame["actual_value_minor_units"].sum()),
        "simulated_value_minor_units": int(frame["simulated_value_minor_units"].sum()),
        "truncated": len(frame) >= MAX_ROWS,
    }
    return SimulationResult(cfg, lo, hi, frame, totals)
