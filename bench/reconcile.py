"""Reconciliation benchmark: bare GROUP BY baseline vs the checks on both backends, incremental, CLI memory.

    .venv/bin/python bench/reconcile.py                # 1M wallets / 10M ledger rows
    .venv/bin/python bench/reconcile.py --scale 0.1    # quick: 100k wallets / 1M rows

Creates and drops its own database `salesarck_bench_reconcile` on SALESARCK_BENCH_DATABASE_URL
(default postgresql://postgres@127.0.0.1:5432/postgres).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchdb import create_database, drop_database, server_url  # noqa: E402

from salesarck.authz import load_actor  # noqa: E402
from salesarck.db import migrate  # noqa: E402
from salesarck.db.arrow import export_parquet  # noqa: E402
from salesarck.db.engine import make_engine  # noqa: E402
from salesarck.reconcile import reconcile  # noqa: E402
from salesarck.reconcile.generate import generate  # noqa: E402

DB = "salesarck_bench_reconcile"
BASELINE = ("select count(*), sum(bal) from (select w.id, sum(case when l.entry_type = 'credit' then l.points"
            " else -l.points end) as bal from wallet_ledger l join wallets w on w.id = l.wallet_id group by w.id) s")


def _timed(fn: Any) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0, help="1.0 = 1M wallets / 10M ledger rows")
    ap.add_argument("--tenants", type=int, default=20)
    ap.add_argument("--keep", action="store_true", help="keep the database afterwards")
    ap.add_argument("--reuse", action="store_true", help="reuse an existing bench database (skip generation)")
    args = ap.parse_args()
    wallets, ledger = int(1_000_000 * args.scale), int(10_000_000 * args.scale)
    results: dict[str, Any] = {"wallets": wallets, "ledger_target": ledger, "cores": os.cpu_count()}
    url = server_url().set(database=DB) if args.reuse else create_database(DB)
    engine = make_engine(url)
    try:
        if not args.reuse:
            migrate.upgrade(engine)
            secs, summary = _timed(lambda: generate(engine, tenants=args.tenants, wallets=wallets,
                                                    ledger_entries=ledger, drift_rate=0.001, plant_faults=True))
            results["generate_s"] = round(secs, 2)
            results["ledger_entries"] = summary.ledger_entries
            results["generate_rows_per_s"] = round(summary.ledger_entries / secs)
        with engine.connect() as conn:
            admin = load_actor(conn, "admin-0@gen.salesarck.test")
            conn.execute(sa.text("select count(*) from wallet_ledger")).scalar()  # warm the cache
            results["baseline_s"] = round(_timed(lambda: conn.execute(sa.text(BASELINE)).one())[0], 3)
            results["baseline_s_2"] = round(_timed(lambda: conn.execute(sa.text(BASELINE)).one())[0], 3)
        base_s = min(results["baseline_s"], results["baseline_s_2"])
        secs, rep = _timed(lambda: reconcile(engine, checks="snapshot_drift"))
        results["pg_snapshot_drift_s"] = round(secs, 3)
        results["pg_snapshot_drift_throughput_vs_baseline"] = round(base_s / secs, 2)
        secs, full = _timed(lambda: reconcile(engine, actor=admin))
        results["pg_all_checks_s"] = round(secs, 3)
        results["pg_all_checks_x_baseline"] = round(secs / base_s, 2)
        results["pg_all_checks_step_s"] = {k: round(v, 2) for k, v in full.timings.items()}
        results["drift_rows"], results["findings"] = len(full.drift), len(full.findings)
        secs, duck = _timed(lambda: reconcile(engine, backend="duckdb"))
        results["duckdb_arrow_all_checks_s"] = round(secs, 3)
        results["duckdb_arrow_step_s"] = {k: round(v, 2) for k, v in duck.timings.items()}
        results["backends_agree"] = bool(full.drift.equals(duck.drift) and full.findings.equals(duck.findings))
        with tempfile.TemporaryDirectory() as tmp:
            secs, _ = _timed(lambda: export_parquet(engine, Path(tmp) / "export"))
            results["parquet_export_s"] = round(secs, 2)
            secs, pq_drift = _timed(lambda: reconcile(Path(tmp) / "export", backend="duckdb", checks="snapshot_drift"))
            results["duckdb_parquet_snapshot_drift_s"] = round(secs, 3)
            secs, pq_all = _timed(lambda: reconcile(Path(tmp) / "export", backend="duckdb"))
            results["duckdb_parquet_all_checks_s"] = round(secs, 3)
            results["parquet_agrees"] = bool(full.drift.equals(pq_all.drift) and full.findings.equals(pq_all.findings))
        # incremental after 1% of wallets changed (an audited adjustment each: ledger + snapshot)
        with engine.begin() as conn:
            conn.execute(sa.text(
                "with w as (select id from wallets where (('x' || substr(md5(id::text), 1, 8))::bit(32)::int % 100) = 0),"
                " l as (insert into wallet_ledger (wallet_id, entry_type, points, description, created_by_admin)"
                "   select id, 'credit', 3, 'adjustment', :admin from w returning wallet_id),"
                " a as (insert into admin_audit_logs (actor_user_id, action, target_entity_id, target_entity_type,"
                "   after_state, reason) select :admin, 'wallet.adjust', id::text, 'wallet', '{}'::jsonb, 'bench' from w)"
                " update wallets set points_balance = points_balance + 3 where id in (select id from w)"),
                {"admin": admin.user_id})
            results["changed_wallets"] = conn.execute(sa.text(
                "select count(distinct entity_id) from reconcile_changes where kind = 'wallet'")).scalar()
        secs, inc = _timed(lambda: reconcile(engine, actor=admin, incremental=True))
        results["incremental_s"] = round(secs, 3)
        results["incremental_was_incremental"] = inc.incremental
        secs, full2 = _timed(lambda: reconcile(engine))
        results["full_after_change_s"] = round(secs, 3)
        results["incremental_pct_of_full"] = round(100 * results["incremental_s"] / secs, 1)
        results["incremental_equals_full"] = bool(inc.drift.equals(full2.drift) and inc.findings.equals(full2.findings))
        # the CLI's peak memory (postgres backend): a child process, ru_maxrss of children
        env = {**os.environ, "DATABASE_URL": url.render_as_string(hide_password=False),
               "SALESARCK_LOCAL_USER": "admin-0@gen.salesarck.test"}
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            # a small wrapper reports its child's peak RSS (measuring from this big process would count
            # the pre-exec fork's pages)
            wrapper = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]);"
                       " print('maxrss_kb', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr);"
                       " sys.exit(r.returncode)")
            proc = subprocess.run([sys.executable, "-c", wrapper, sys.executable, "-m", "salesarck", "reconcile",
                                   "--format", "json", "--output", str(Path(tmp) / "r.json")],
                                  env=env, capture_output=True, text=True, cwd=ROOT)
            results["cli_s"] = round(time.perf_counter() - t, 2)
            results["cli_exit"] = proc.returncode
            if proc.returncode not in (0, 1):
                results["cli_error"] = proc.stderr[-500:]
            kb = [int(line.split()[1]) for line in proc.stderr.splitlines() if line.startswith("maxrss_kb")]
            results["cli_peak_rss_mb"] = round(kb[-1] / 1024, 1) if kb else None
    finally:
        engine.dispose()
        if not args.keep:
            drop_database(DB)
    print(json.dumps(results, indent=2, default=str))
    flat = {k: v for k, v in results.items() if not isinstance(v, dict)}
    print(pd.Series(flat).to_string(), file=sys.stderr)


if __name__ == "__main__":
    main()
