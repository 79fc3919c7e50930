"""Rewards side tables (currency exponents, transaction details, provider refunds), the SQL twin
of the points calculation, and the indexes posting and reconciliation read by.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# The SQL twin of salesarck.rewards.rules.points_for_exponent (a property test keeps them equal):
# amount / 10^exponent x conversionRate, rounded by roundingPolicy (round = half up; amounts are
# never negative), 0 below minSpendMinorUnits, capped at maxPointsPerTransaction and at 2^31-1.
POINTS_FUNCTION = """
create or replace function salesarck_points(amount_minor_units bigint, currency_exponent int, rule_config jsonb)
returns integer
language sql immutable parallel safe
as $$
    select case
        when amount_minor_units is null or currency_exponent is null or rule_config is null
          or (rule_config ->> 'conversionRate') is null then null
        when amount_minor_units <= 0
          or amount_minor_units < coalesce((rule_config ->> 'minSpendMinorUnits')::numeric, 0) then 0
        else least(
            case coalesce(rule_config ->> 'roundingPolicy', 'floor')
                when 'ceil' then ceil(v)
                when 'round' then round(v)
                else floor(v)
            end,
            coalesce((rule_config ->> 'maxPointsPerTransaction')::numeric, 2147483647),
            2147483647
        )::integer
    end
    from (select amount_minor_units::numeric * (rule_config ->> 'conversionRate')::numeric
                 * power(10::numeric, -currency_exponent) as v) as s
$$
"""

# The rule version in force for a tenant at a time: greatest effective_from <= at, ties to the
# higher version (the same choice as salesarck.rewards.rules.rule_in_force).
RULE_IN_FORCE_FUNCTION = """
create or replace function salesarck_rule_in_force(p_tenant_id uuid, p_at timestamp)
returns uuid
language sql stable parallel safe
as $$
    select id from reward_rules
    where tenant_id = p_tenant_id and effective_from <= p_at
    order by effective_from desc, version desc
    limit 1
$$
"""


def _fk(table: str, column: str, target: str) -> sa.ForeignKey:
    ref_table, ref_col = target.split(".")
    return sa.ForeignKey(target, name=f"{table}_{column}_{ref_table}_{ref_col}_fk")


def upgrade() -> None:
    from salesarck.rewards.currency import exponent_table

    table = op.create_table(
        "currency_minor_units",
        sa.Column("code", sa.Text(), primary_key=True),
        sa.Column("exponent", sa.Integer(), nullable=False),
        sa.CheckConstraint("exponent between 0 and 6", name="currency_minor_units_exponent_check"),
    )
    op.bulk_insert(table, [{"code": c, "exponent": e} for c, e in sorted(exponent_table().items())])
    op.create_table(
        "transaction_details",
        sa.Column("transaction_id", UUID(as_uuid=True), _fk("transaction_details", "transaction_id", "transactions.id"), primary_key=True),
        sa.Column("location_id", sa.Text()),
        sa.Column("provider_status", sa.Text()),
        sa.Column("provider_updated_at", sa.DateTime()),
        sa.Column("is_voided", sa.Boolean(), nullable=False, server_default=sa.text("false")),
        sa.Column("voided_at", sa.DateTime()),
        sa.Column("arrival", sa.Text(), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(), nullable=False, server_default=sa.func.now()),
        sa.Column("last_seen_at", sa.DateTime(), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("arrival in ('file', 'poll', 'webhook')", name="transaction_details_arrival_check"),
    )
    op.create_table(
        "transaction_refunds",
        sa.Column("id", UUID(as_uuid=True), primary_key=True, server_default=sa.text("gen_random_uuid()")),
        sa.Column("tenant_id", UUID(as_uuid=True), _fk("transaction_refunds", "tenant_id", "tenants.id"), nullable=False),
        sa.Column("provider", sa.Text(), nullable=False),
        sa.Column("provider_refund_id", sa.Text(), nullable=False),
        sa.Column("transaction_id", UUID(as_uuid=True), _fk("transaction_refunds", "transaction_id", "transactions.id"),
                  nullable=False),
        sa.Column("amount_minor_units", sa.Integer(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("is_completed", sa.Boolean(), nullable=False),
        sa.Column("refunded_at", sa.DateTime()),
        sa.Column("created_at", sa.DateTime(), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime()),
        sa.UniqueConstraint("tenant_id", "provider", "provider_refund_id",
                            name="transaction_refunds_provider_refund_unique"),
        sa.CheckConstraint("amount_minor_units >= 0", name="transaction_refunds_amount_check"),
    )
    op.create_index("transaction_refunds_transaction_idx", "transaction_refunds", ["transaction_id"])
    op.create_index("reward_events_transaction_idx", "reward_events", ["transaction_id"])
    op.create_index("reward_events_wallet_idx", "reward_events", ["wallet_id"])
    op.create_index("wallet_ledger_source_transaction_idx", "wallet_ledger", ["source_transaction_id"])
    op.create_index("reward_rules_tenant_effective_idx", "reward_rules", ["tenant_id", "effective_from", "version"])
    op.execute(POINTS_FUNCTION)
    op.execute(RULE_IN_FORCE_FUNCTION)


def downgrade() -> None:
    op.execute("drop function if exists salesarck_rule_in_force(uuid, timestamp)")
    op.execute("drop function if exists salesarck_points(bigint, int, jsonb)")
    op.drop_index("reward_rules_tenant_effective_idx", table_name="reward_rules")
    op.drop_index("wallet_ledger_source_transaction_idx", table_name="wallet_ledger")
    op.drop_index("reward_events_wallet_idx", table_name="reward_events")
    op.drop_index("reward_events_transaction_idx", table_name="reward_events")
    op.drop_index("transaction_refunds_transaction_idx", table_name="transaction_refunds")
    op.drop_table("transaction_refunds")
    op.drop_table("transaction_details")
    op.drop_table("currency_minor_units")
