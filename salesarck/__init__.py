"""SalesArck Recon: ingest POS data, post loyalty rewards, reconcile wallet balances."""

from __future__ import annotations

__version__ = "0.1.0"
