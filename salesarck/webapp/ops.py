"""The app's calls into the domain packages (reconciliation, sync, webhooks, rules, connections).

Each function takes the Actor and passes it on: the package checks permissions and tenant scope;
the app only hides what it would refuse. Actions clear the cached reads. A domain module not
present in this build answers None, and the page says so instead of failing.
"""

from __future__ import annotations

import importlib
import uuid
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

import pandas as pd
from pydantic import SecretStr

from salesarck.authz import Actor, Permission
from salesarck.errors import ValidationError
from salesarck.webapp.resources import get_engine, invalidate


def module(name: str) -> Any | None:
    """Import a domain module, or None when this build does not have it yet."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


# --- reconciliation ------------------------------------------------------------------------


def list_recon_runs(actor: Actor, *, limit: int = 50) -> pd.DataFrame | None:
    runs = module("salesarck.reconcile.runs")
    if runs is None or not actor.can(Permission.VIEW_FINANCE):
        return None
    return runs.list_runs(get_engine(), actor=actor, limit=limit)


def last_reconciliation(actor: Actor) -> dict[str, Any] | None:
    """The newest recorded reconciliation run the actor may see, or None."""
    df = list_recon_runs(actor, limit=1)
    if df is None or df.empty:
        return None
    row = df.iloc[0].to_dict()
    return {"run_id": row["run_id"], "started_at": row["started_at"], "drifted_wallets": int(row["drift_count"]),
            "findings": int(row["error_count"]) + int(row["warning_count"]) - int(row["drift_count"])}


def run_results(actor: Actor, run_id: Any) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """Drift and findings of a recorded run, limited to the actor's tenants."""
    runs = module("salesarck.reconcile.runs")
    report = module("salesarck.reconcile.report")
    if runs is None or report is None:
        return None
    with get_engine().connect() as conn:
        drift, findings = runs.load_results(conn, uuid.UUID(str(run_id)))
    scope = actor.tenant_scope(Permission.VIEW_FINANCE)
    if scope is not None:
        allowed = {str(t) for t in scope}
        drift = [d for d in drift if d.get("tenant_id") in allowed]
        findings = [f for f in findings if f.get("tenant_id") in allowed]
    return report.drift_frame(drift), report.findings_frame(findings)


def drifted_wallets(actor: Actor, *, limit: int = 200) -> pd.DataFrame | None:
    """Drifted wallets of the newest run (wallet_id, drift), or None when unavailable."""
    last = last_reconciliation(actor)
    if last is None:
        return None
    res = run_results(actor, last["run_id"])
    if res is None or res[0].empty:
        return None
    drift = res[0]
    return pd.DataFrame({"wallet_id": drift["wallet_id"], "drift": drift["drift_points"]}).head(limit)


def run_reconciliation(actor: Actor, *, tenant_id: uuid.UUID | None, backend: str, checks: list[str] | None,
                       progress: Callable[[str, int, int], None] | None) -> Any:
    """Run and record a reconciliation (the package checks RUN_RECONCILIATION and scope)."""
    recon = module("salesarck.reconcile")
    if recon is None or not hasattr(recon, "reconcile"):
        raise ValidationError("the reconciliation engine is not installed in this build")
    actor.require(Permission.RUN_RECONCILIATION, tenant_id)
    report = recon.reconcile(get_engine(), tenant_id=tenant_id, backend=backend, checks=checks or None,
                             actor=actor, progress=progress)
    invalidate()
    return report


def compare_runs(actor: Actor, run_a: Any, run_b: Any) -> dict[str, pd.DataFrame] | None:
    runs = module("salesarck.reconcile.runs")
    if runs is None:
        return None
    return runs.compare_runs(get_engine(), run_a, run_b, actor=actor)


def liability_rollforward(actor: Actor, *, tenant_id: uuid.UUID, start: datetime, end: datetime) -> pd.DataFrame | None:
    """The monthly roll-forward table for one tenant, or None when the reconcile engine is absent."""
    lia = module("salesarck.reconcile.liability")
    if lia is None:
        return None
    actor.require(Permission.VIEW_FINANCE, tenant_id)
    return lia.liability_rollforward(get_engine(), tenant_id=tenant_id, start=start, end=end, period="month",
                                     actor=actor)


def repair_module() -> Any | None:
    return module("salesarck.reconcile.repair")


def _repair() -> Any:
    rep = repair_module()
    if rep is None:
        raise ValidationError("repair is not installed in this build")
    return rep


def repair(actor: Actor, *, wallet_ids: list[Any], reason: str) -> Any:
    """Repair drifted wallets now, or file a request when the approval policy is on (status `pending`)."""
    try:
        return _repair().repair_wallets(get_engine(), actor=actor, wallet_ids=wallet_ids, reason=reason)
    finally:
        invalidate()


def approval_required() -> bool | None:
    rep = repair_module()
    if rep is None:
        return None
    with get_engine().connect() as conn:
        return bool(rep.approval_required(conn))


def set_approval_policy(actor: Actor, *, required: bool, reason: str) -> bool:
    try:
        return bool(_repair().set_approval_policy(get_engine(), actor=actor, required=required, reason=reason))
    finally:
        invalidate()


def repair_requests(actor: Actor, *, status: str | None = "pending") -> pd.DataFrame | None:
    rep = repair_module()
    if rep is None:
        return None
    return rep.list_requests(get_engine(), actor=actor, status=status)


def decide_repair(actor: Actor, *, request_id: Any, approve: bool, reason: str) -> Any:
    """Approve (and apply) or reject a pending repair request; a different admin than the requester."""
    rep = _repair()
    try:
        if approve:
            return rep.approve_repair(get_engine(), actor=actor, request_id=request_id, reason=reason)
        return rep.reject_repair(get_engine(), actor=actor, request_id=request_id, reason=reason)
    finally:
        invalidate()


# --- rules ---------------------------------------------------------------------------------


def rule_preview(config: dict[str, Any], *, currency: str, amounts_minor: list[int]) -> list[tuple[int, int]]:
    """(amount, points) for sample purchases under `config`, exactly as posting would price them."""
    from salesarck.rewards.rules import RuleConfig, points_for

    parsed = RuleConfig.parse(config)
    return [(a, points_for(a, currency, parsed)) for a in amounts_minor]


def simulate(actor: Actor, *, tenant_id: uuid.UUID, config: dict[str, Any], start: datetime, end: datetime) -> Any:
    sim = module("salesarck.rewards.simulate")
    if sim is None:
        return None
    actor.require(Permission.VIEW_FINANCE, tenant_id)
    with get_engine().connect() as conn:
        return sim.simulate_rules(conn, tenant_id=tenant_id, config=config, start=start, end=end)


def create_rule(actor: Actor, *, tenant_id: uuid.UUID, config: dict[str, Any], effective_from: datetime | None,
                reason: str) -> Any:
    from salesarck.rewards.rules import create_rule as create

    with get_engine().begin() as conn:
        created = create(conn, actor=actor, tenant_id=tenant_id, config=config, effective_from=effective_from,
                         reason=reason)
    invalidate()
    return created


def rule_config_from_form(*, conversion_rate: str, min_spend_minor_units: int, max_points: int | None,
                          min_balance_to_redeem: int, max_redemption_percentage: str, rounding_policy: str,
                          point_value_minor_units: int) -> dict[str, Any]:
    """The camelCase rule_config a form describes (Decimal strings kept exact)."""
    try:
        rate = Decimal(conversion_rate.strip())
        pct = Decimal(max_redemption_percentage.strip())
    except ArithmeticError:
        raise ValidationError("conversion rate and redemption percentage must be numbers") from None
    cfg: dict[str, Any] = {"conversionRate": rate, "minSpendMinorUnits": min_spend_minor_units,
                           "minBalanceToRedeem": min_balance_to_redeem, "maxRedemptionPercentage": pct,
                           "roundingPolicy": rounding_policy, "pointValueMinorUnits": point_value_minor_units}
    if max_points is not None:
        cfg["maxPointsPerTransaction"] = max_points
    return cfg


# --- connections ---------------------------------------------------------------------------


def add_connection(actor: Actor, *, tenant_id: uuid.UUID, provider: str, merchant_id: str, access_token: str,
                   refresh_token: str | None, expires_at: datetime | None) -> Any:
    """Store a POS connection; the tokens go straight into encryption and are never shown again."""
    from salesarck.config import current_settings
    from salesarck.crypto import KeyRing
    from salesarck.pos.connections import add_connection as add

    info = add(get_engine(), actor=actor, tenant_id=tenant_id, provider=provider, merchant_id=merchant_id,
               access_token=SecretStr(access_token), refresh_token=SecretStr(refresh_token) if refresh_token else None,
               expires_at=expires_at, keyring=KeyRing.from_settings(current_settings()))
    invalidate()
    return info


def disconnect(actor: Actor, *, connection_id: uuid.UUID, reason: str) -> Any:
    from salesarck.pos.connections import disconnect_connection

    info = disconnect_connection(get_engine(), actor=actor, connection_id=connection_id, reason=reason)
    invalidate()
    return info


def connection_events(actor: Actor, *, connection_id: uuid.UUID) -> pd.DataFrame:
    conns = module("salesarck.pos.connections")
    if conns is None:
        return pd.DataFrame()
    return pd.DataFrame(conns.connection_events(get_engine(), actor=actor, connection_id=connection_id, limit=50))


# --- sync and webhooks ---------------------------------------------------------------------


def sync_runs(actor: Actor, *, connection_id: uuid.UUID | None = None, limit: int = 20) -> pd.DataFrame | None:
    runs = module("salesarck.pos.sync_runs")
    if runs is None:
        return None
    return pd.DataFrame(runs.list_runs(get_engine(), actor=actor, connection_id=connection_id, limit=limit))


def sync_now(actor: Actor, *, connection_id: uuid.UUID, progress: Callable[[Any], None] | None) -> Any:
    """Run one sync of a connection with a progress callback (the package checks SYNC for its tenant).

    `salesarck.pos.sync.sync_connection` dispatches to the provider's sync (Square, Clover).
    """
    from salesarck.pos.connections import get_connection

    with get_engine().connect() as conn:
        info = get_connection(conn, connection_id)
    actor.require(Permission.SYNC, info.tenant_id)
    sync = module("salesarck.pos.sync")
    if sync is None:
        raise ValidationError("POS sync is not installed in this build")
    try:
        return sync.sync_connection(get_engine(), connection_id, actor=actor, progress=progress)
    finally:
        invalidate()


def webhook_processor() -> Any | None:
    return module("salesarck.pos.webhooks.processor")


def worker_heartbeat() -> pd.DataFrame | None:
    """The scheduled worker's heartbeats, newest first, each with `alive`; None if not installed."""
    worker = module("salesarck.worker")
    if worker is None or not hasattr(worker, "worker_status"):
        return None
    return pd.DataFrame(worker.worker_status(get_engine()))


def webhook_backlog(actor: Actor) -> dict[str, Any] | None:
    """Pending, retrying and dead-lettered webhook events in the actor's tenants (processor's view)."""
    proc = webhook_processor()
    if proc is None or not hasattr(proc, "backlog"):
        return None
    return dict(proc.backlog(get_engine(), actor=actor))


def process_webhooks(actor: Actor) -> dict[str, Any]:
    """Process the webhook backlog now (PROCESS_WEBHOOKS); returns the batch summary."""
    proc = webhook_processor()
    if proc is None:
        raise ValidationError("the webhook processor is not installed in this build")
    actor.require(Permission.PROCESS_WEBHOOKS)
    try:
        out = proc.process_pending(get_engine(), actor=actor, limit=50_000)
    finally:
        invalidate()
    return dict(out.as_dict()) if hasattr(out, "as_dict") else {"result": str(out)}


def dead_letters(actor: Actor, *, limit: int = 200) -> pd.DataFrame | None:
    proc = webhook_processor()
    if proc is None or not hasattr(proc, "list_events"):
        return None
    return pd.DataFrame(proc.list_events(get_engine(), actor=actor, state="dead", limit=limit))


def replay_webhooks(actor: Actor, *, event_ids: list[uuid.UUID], since: datetime) -> dict[str, Any]:
    """Re-verify and re-process the chosen events (dead letters); posting is idempotent."""
    from salesarck.config import current_settings

    proc = webhook_processor()
    if proc is None:
        raise ValidationError("the webhook processor is not installed in this build")
    actor.require(Permission.PROCESS_WEBHOOKS)
    if not event_ids:
        raise ValidationError("pick at least one event to replay")
    try:
        out = proc.replay(get_engine(), actor=actor, since=since, settings=current_settings(), event_ids=event_ids)
    finally:
        invalidate()
    return dict(out.as_dict())


def tieout(actor: Actor, *, connection_id: Any, start: Any, end: Any) -> Any:
    """POS tie-out for a window: the provider's payments vs stored transactions (read-only)."""
    from salesarck.config import current_settings

    tie = module("salesarck.reconcile.tieout")
    if tie is None:
        raise ValidationError("the POS tie-out is not installed in this build")
    return tie.pos_tieout(get_engine(), actor=actor, connection_id=connection_id, start=start, end=end,
                          settings=current_settings())


# --- wallet tables (row-level reads from salesarck.frames, the notebooks' typed readers) -------------


def wallet_reward_events(actor: Actor, *, wallet_id: Any, limit: int = 2000) -> pd.DataFrame:
    """The wallet's reward events, newest first, typed by `salesarck.frames` (scope checked there)."""
    frames = module("salesarck.frames")
    if frames is None:
        from salesarck import analytics

        with get_engine().connect() as conn:
            return analytics.wallet_reward_events(conn, actor=actor, wallet_id=wallet_id)
    try:
        df = frames.reward_events(get_engine(), actor=actor, wallet=wallet_id, limit=limit)
    except frames.RowLimitExceeded:
        df = frames.reward_events(get_engine(), actor=actor, wallet=wallet_id, head=limit)
    return df.iloc[::-1].reset_index(drop=True)
