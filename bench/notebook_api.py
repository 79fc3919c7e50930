"""Benchmark the notebook API's large reads: typed frames, chunks, and DuckDB over Arrow.

Creates and drops its own database `salesarck_bench_notebook` on SALESARCK_BENCH_DATABASE_URL
(default postgresql://postgres@127.0.0.1:5432/postgres), fills it with the generator, and times:
the row-limit refusal, `db.ledger(all=True)`, `db.chunks("ledger")`, the first `db.sql()` over the
ledger (ADBC load into Arrow) and a second one (cached). Peak RSS is reported per step.

    .venv/bin/python bench/notebook_api.py --ledger-entries 1000000
"""

from __future__ import annotations

import argparse
import resource
import time
from collections.abc import Callable
from typing import Any

from benchdb import create_database, drop_database

import salesarck
from salesarck.db import migrate
from salesarck.db.engine import make_engine
from salesarck.frames import RowLimitExceeded
from salesarck.reconcile.generate import generate

NAME = "salesarck_bench_notebook"


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timed(label: str, fn: Callable[[], Any]) -> Any:
    t0 = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t0
    print(f"{label:48s} {seconds:8.2f} s   peak RSS {_rss_mb():7.0f} MB", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ledger-entries", type=int, default=1_000_000)
    parser.add_argument("--wallets", type=int, default=100_000)
    args = parser.parse_args()
    url = create_database(NAME)
    try:
        engine = make_engine(url)
        migrate.upgrade(engine)
        summary = _timed("generate", lambda: generate(engine, tenants=4, wallets=args.wallets,
                                                       ledger_entries=args.ledger_entries, seed=3))
        engine.dispose()
        print(f"  {summary.ledger_entries:,} ledger rows, {summary.wallets:,} wallets")
        with salesarck.connect(url.render_as_string(hide_password=False)) as db:
            def refused() -> None:
                try:
                    db.ledger()
                except RowLimitExceeded:
                    return
                raise AssertionError("the default limit did not apply")

            _timed("db.ledger() refused past 100,000 rows", refused)
            frame = _timed("db.ledger(all=True)", lambda: db.ledger(all=True))
            print(f"  {len(frame):,} rows, {frame.memory_usage(deep=True).sum() / 2**20:,.0f} MB in pandas")
            del frame
            rows = _timed("db.chunks('ledger', chunksize=200_000)",
                          lambda: sum(len(c) for c in db.chunks("ledger", chunksize=200_000)))
            print(f"  {rows:,} rows streamed")
            first = _timed("db.sql() first (ADBC load of wallet_ledger)", lambda: db.sql(
                "select entry_type, count(*) as n, sum(points) as points from wallet_ledger group by 1"))
            _timed("db.sql() again (cached Arrow)", lambda: db.sql(
                "select entry_type, count(*) as n, sum(points) as points from wallet_ledger group by 1"))
            _timed("db.sql() join wallets (loads wallets)", lambda: db.sql(
                "select w.tenant_id, sum(case when l.entry_type = 'credit' then l.points else -l.points end)"
                " as ledger from wallet_ledger l join wallets w on w.id = l.wallet_id group by 1"))
            print(first.to_string(index=False))
    finally:
        drop_database(NAME)


if __name__ == "__main__":
    main()
