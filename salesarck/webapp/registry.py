"""The app's pages and who may open each: derived from the permission matrix in `salesarck.authz`."""

from __future__ import annotations

from dataclasses import dataclass

from salesarck.authz import Actor, Permission

P = Permission


@dataclass(frozen=True)
class PageSpec:
    """One page: its script, title, sidebar section and the permission that opens it."""

    key: str
    path: str
    title: str
    icon: str
    section: str
    permission: Permission

    def allowed(self, actor: Actor | None) -> bool:
        return actor is not None and actor.can(self.permission)


PAGES: tuple[PageSpec, ...] = (
    PageSpec("overview", "pages/overview.py", "Overview", ":material/dashboard:", "Finance", P.VIEW_FINANCE),
    PageSpec("reconciliation", "pages/reconciliation.py", "Reconciliation", ":material/balance:", "Finance",
             P.VIEW_FINANCE),
    PageSpec("wallet", "pages/wallet.py", "Wallet detail", ":material/account_balance_wallet:", "Finance",
             P.VIEW_FINANCE),
    PageSpec("rewards", "pages/rewards.py", "Rewards timeline", ":material/loyalty:", "Finance", P.VIEW_FINANCE),
    PageSpec("transactions", "pages/transactions.py", "Transactions", ":material/receipt_long:", "Operations",
             P.VIEW_TRANSACTIONS),
    PageSpec("sync", "pages/sync.py", "Sync & webhooks", ":material/sync:", "Operations", P.VIEW_SYNC),
    PageSpec("audit", "pages/audit.py", "Audit timeline", ":material/history:", "Administration", P.VIEW_AUDIT),
    PageSpec("connections", "pages/connections.py", "POS connections", ":material/point_of_sale:",
             "Administration", P.MANAGE_CONNECTIONS),
    PageSpec("rules", "pages/rules.py", "Reward rules", ":material/rule:", "Administration", P.MANAGE_RULES),
)
BY_KEY = {p.key: p for p in PAGES}


def visible_pages(actor: Actor | None) -> list[PageSpec]:
    """Pages this actor may open, in sidebar order; empty for anyone refused."""
    return [p for p in PAGES if p.allowed(actor)]
