"""Drift explanations: why a wallet's snapshot differs from its ledger, in a sentence finance can read.

Codes, in the order tried: `admin_set` (an audited admin action set the snapshot to its value),
`snapshot_as_of` (the snapshot equals the ledger balance as of an earlier moment; the later entries
are missing from it), `single_entry` (the drift equals one entry exactly), `unexplained`.
Only the drifted wallets' entries are read (set-based, in chunks), never the whole ledger.
"""

# ruff: noqa: S608  (SQL is composed only from fixed fragments, validated table names and UUID literals)

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from salesarck.timeutil import iso_utc

CHUNK = 5000
MAX_NAMED = 5
LEDGER_BACKED = {"wallet.adjust", "wallet.snapshot_repair", "wallet.redeem", "redemption"}

Fetch = Callable[[str], list[dict[str, Any]]]


def _in_list(ids: Sequence[str]) -> str:
    return ", ".join(f"'{i}'" for i in ids)


def entries_sql(wallet_ids: Sequence[str]) -> str:
    return (
        "select cast(l.wallet_id as text) as wallet_id, cast(l.id as text) as id, l.entry_type, l.points,"
        " l.description, l.created_at from wallet_ledger l"
        f" where l.wallet_id in ({_in_list(wallet_ids)})"
    )


def audit_sql(wallet_ids: Sequence[str]) -> str:
    return (
        "select a.target_entity_id as wallet_id, a.action, cast(a.after_state as text) as after_state,"
        " cast(a.before_state as text) as before_state,"
        " a.created_at, cast(a.id as text) as id from admin_audit_logs a"
        f" where a.target_entity_type = 'wallet' and a.target_entity_id in ({_in_list(wallet_ids)})"
    )


def _set_balance(after: Any) -> int | None:
    if isinstance(after, str):
        try:
            after = json.loads(after)
        except ValueError:
            return None
    if not isinstance(after, Mapping):
        return None
    for key in ("points_balance", "pointsBalance"):
        value = after.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def _describe(e: Mapping[str, Any]) -> str:
    what = f"{e['entry_type']} {int(e['points'])}"
    if e.get("description"):
        what += f" '{str(e['description'])[:40]}'"
    return f"{e['id']} ({what} at {iso_utc(e['created_at'])})"


def explain_one(snapshot: int, ledger: int, entries: Sequence[Mapping[str, Any]],
                audits: Sequence[Mapping[str, Any]]) -> tuple[str, str]:
    """(code, sentence) for one drifted wallet; `entries` in any order."""
    drift = snapshot - ledger
    for a in sorted(audits, key=lambda a: (a["created_at"], a["id"]), reverse=True):
        value = _set_balance(a["after_state"])
        # only actions that moved the snapshot without a ledger entry of their own count
        if value is None or a["action"] in LEDGER_BACKED or value == _set_balance(a.get("before_state")):
            continue
        if value == snapshot:
            return "admin_set", (f"admin action {a['action']} at {iso_utc(a['created_at'])} set the snapshot to "
                                 f"{snapshot} points; the ledger says {ledger}")
        break  # the latest admin-set value is not the snapshot: something else moved it
    ordered = sorted(entries, key=lambda e: (e["created_at"], e["id"]))
    running = [0]
    for e in ordered:
        signed = int(e["points"]) if e["entry_type"] == "credit" else -int(e["points"])
        running.append(running[-1] + signed)
    for k in range(len(ordered) - 1, -1, -1):  # latest moment first
        if running[k] == snapshot:
            later = ordered[k:]
            moment = (f"as of {iso_utc(ordered[k - 1]['created_at'])} (after entry {ordered[k - 1]['id']})"
                      if k > 0 else "before any entry")
            named = ", ".join(_describe(e) for e in later[:MAX_NAMED])
            more = f" and {len(later) - MAX_NAMED} more" if len(later) > MAX_NAMED else ""
            return "snapshot_as_of", (f"the snapshot equals the ledger balance {moment}; {len(later)} later "
                                      f"entries totalling {ledger - snapshot:+d} points are missing from it: "
                                      f"{named}{more}")
    for e in ordered:
        signed = int(e["points"]) if e["entry_type"] == "credit" else -int(e["points"])
        if drift == signed:
            return "single_entry", f"the drift of {drift:+d} points equals entry {_describe(e)}: it is counted twice"
        if drift == -signed:
            return "single_entry", f"the drift of {drift:+d} points equals entry {_describe(e)}: it is missing"
    return "unexplained", (f"no earlier balance, single entry or admin action explains a drift of {drift:+d} "
                           f"points ({len(ordered)} ledger entries)")


def explain(drift: list[dict[str, Any]], fetch: Fetch) -> None:
    """Fill `explanation_code` and `explanation` of each drift row in place; `fetch(sql)` runs a
    query on the backend and returns dict rows."""
    ids = [d["wallet_id"] for d in drift]
    entries: dict[str, list[dict[str, Any]]] = defaultdict(list)
    audits: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for i in range(0, len(ids), CHUNK):
        chunk = ids[i:i + CHUNK]
        for r in fetch(entries_sql(chunk)):
            entries[str(r["wallet_id"])].append(r)
        for r in fetch(audit_sql(chunk)):
            audits[str(r["wallet_id"])].append(r)
    for d in drift:
        code, text = explain_one(d["snapshot_points"], d["ledger_points"], entries.get(d["wallet_id"], []),
                                 audits.get(d["wallet_id"], []))
        d["explanation_code"], d["explanation"] = code, text
