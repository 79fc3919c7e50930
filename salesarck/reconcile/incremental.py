"""Incremental runs: recompute only the wallets and transactions touched since the last recorded
run of the same scope, and carry that run's other results forward.

What "touched" means is decided by transaction ids, not timestamps: triggers (revision 0007) log
each writing transaction's id with the wallets and transactions it wrote, and every run stores
`pg_current_snapshot()`. Changes not visible in the checkpoint's snapshot are exactly those the
checkpoint did not see, including rows of a long transaction that committed after it although
their `created_at` is earlier. The result equals a full run (tested).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from salesarck.reconcile import runs
from salesarck.reconcile.checks import Scope

# beyond this many touched ids a full run is cheaper than long IN lists
MAX_TOUCHED = 200_000


@dataclass
class IncrementalPlan:
    base_run_id: uuid.UUID
    base_ledger_entries: int
    tenants: tuple[uuid.UUID, ...] | None
    wallets: set[str]
    transactions: set[str]
    new_ledger_rows: int
    base_drift: list[dict[str, Any]] = field(default_factory=list)
    base_findings: list[dict[str, Any]] = field(default_factory=list)

    @property
    def scope(self) -> Scope:
        return Scope(tenants=self.tenants, wallets=tuple(uuid.UUID(w) for w in sorted(self.wallets)),
                     transactions=tuple(uuid.UUID(t) for t in sorted(self.transactions)))

    def merge(self, drift: list[dict[str, Any]], findings: list[dict[str, Any]]
              ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Base results for untouched entities + fresh results for touched ones."""
        kept_drift = [d for d in self.base_drift if d["wallet_id"] not in self.wallets]
        kept = [f for f in self.base_findings
                if (f["transaction_id"] not in self.transactions
                    if f["entity_type"] == "transaction" or f["check"] == "cross_tenant"
                    else f["wallet_id"] not in self.wallets)]
        return kept_drift + drift, kept + findings

    def totals(self, conn: Connection) -> dict[str, int]:
        where = "" if self.tenants is None else "where tenant_id = any(:t)"
        wallets = conn.execute(sa.text(f"select count(*) from wallets {where}"),  # noqa: S608
                               {"t": list(self.tenants or [])}).scalar_one()
        return {"wallets_checked": int(wallets), "ledger_entries": self.base_ledger_entries + self.new_ledger_rows}


def plan(conn: Connection, *, key: str, tenants: tuple[uuid.UUID, ...] | None) -> IncrementalPlan | None:
    """What to recompute since the latest recorded run of this scope; None: a full run is needed
    (no checkpoint, a rule changed, or too much changed)."""
    base = conn.execute(sa.text(
        "select id, db_snapshot, ledger_entries from reconcile_runs where scope_key = :k and status = 'completed'"
        " and db_snapshot is not null order by started_at desc, id limit 1"), {"k": key}).first()
    if base is None:
        return None
    rows = conn.execute(sa.text(
        "select kind, entity_id, sum(ledger_rows) as ledger_rows from reconcile_changes"
        " where txid >= pg_snapshot_xmin(cast(:snap as pg_snapshot))::text::bigint"
        " and not pg_visible_in_snapshot(txid::text::xid8, cast(:snap as pg_snapshot))"
        " group by kind, entity_id"), {"snap": base.db_snapshot}).all()
    if any(r.kind == "all" for r in rows):
        return None
    wallets = {str(r.entity_id) for r in rows if r.kind == "wallet" and r.entity_id is not None}
    txns = {str(r.entity_id) for r in rows if r.kind == "transaction" and r.entity_id is not None}
    if len(wallets) + len(txns) > MAX_TOUCHED:
        return None
    if txns:
        # a touched transaction can change findings filed under its entries' wallets (cross-tenant)
        ids = [uuid.UUID(t) for t in txns]
        wallets |= {str(w) for (w,) in conn.execute(sa.text(
            "select wallet_id from wallet_ledger where source_transaction_id = any(:ids)"
            " union select wallet_id from reward_events where transaction_id = any(:ids)"), {"ids": ids})}
    ledger_by_wallet = {str(r.entity_id): int(r.ledger_rows) for r in rows if r.kind == "wallet" and r.ledger_rows}
    new_rows = 0
    if ledger_by_wallet:
        if tenants is None:
            new_rows = sum(ledger_by_wallet.values())
        else:
            inside = {str(w) for (w,) in conn.execute(sa.text(
                "select id from wallets where id = any(:ids) and tenant_id = any(:t)"),
                {"ids": [uuid.UUID(w) for w in ledger_by_wallet], "t": list(tenants)})}
            new_rows = sum(n for w, n in ledger_by_wallet.items() if w in inside)
    drift, findings = runs.load_results(conn, base.id)
    return IncrementalPlan(base_run_id=base.id, base_ledger_entries=int(base.ledger_entries or 0), tenants=tenants,
                           wallets=wallets, transactions=txns, new_ledger_rows=new_rows, base_drift=drift,
                           base_findings=findings)
