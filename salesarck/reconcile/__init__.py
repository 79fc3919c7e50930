"""Reconciliation: every wallet balance recomputed from the ledger, every inconsistency found and
explained, liability rolled forward, repairs audited. Entry point: `reconcile()`."""

from salesarck.reconcile.engine import reconcile
from salesarck.reconcile.report import ReconciliationReport

__all__ = ["ReconciliationReport", "reconcile"]
