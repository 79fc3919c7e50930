"""salesarck.analytics: exact numbers on a known world, tenant scoping, time zones, and hostile input."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pandas as pd
import pytest
from sqlalchemy.engine import Engine

from salesarck import analytics, charts
from salesarck.authz import Actor, load_actor
from salesarck.errors import NotFound, PermissionDenied, ValidationError
from tests import app_seed


@pytest.fixture
def world(engine: Engine) -> app_seed.World:
    return app_seed.build(engine)


def actor(engine: Engine, world: app_seed.World, role: str) -> Actor:
    with engine.connect() as conn:
        return load_actor(conn, world.emails[role])


def test_overview_kpis_are_scoped(engine: Engine, world: app_seed.World) -> None:
    with engine.connect() as conn:
        admin = analytics.overview_kpis(conn, actor=actor(engine, world, "admin"))
        client = analytics.overview_kpis(conn, actor=actor(engine, world, "client"))
        with pytest.raises(PermissionDenied):
            analytics.overview_kpis(conn, actor=actor(engine, world, "pos_operator"))
        with pytest.raises(PermissionDenied):
            analytics.overview_kpis(conn, actor=actor(engine, world, "suspended"))
    assert (admin["tenants"], admin["wallets"], admin["points_outstanding"], admin["webhook_backlog"]) == (2, 2, 170, 1)
    assert (client["tenants"], client["wallets"], client["points_outstanding"]) == (1, 1, 130)


def test_another_tenant_is_refused_not_widened(engine: Engine, world: app_seed.World) -> None:
    client = actor(engine, world, "client")
    with engine.connect() as conn:
        for call in (
            lambda: analytics.transactions_timeline(conn, actor=client, tenant_id=world.tenant_b),
            lambda: analytics.rewards_timeline(conn, actor=client, tenant_id=world.tenant_b),
            lambda: analytics.liability_timeline(conn, actor=client, tenant_id=world.tenant_b),
            lambda: analytics.transactions_page(conn, actor=client, tenant_id=str(world.tenant_b)),
        ):
            with pytest.raises(PermissionDenied):
                call()
        with pytest.raises(NotFound):
            analytics.wallet_summary(conn, actor=client, wallet_id=world.wallet_b)
        found = analytics.find_wallets(conn, actor=client, query="example.test")
        assert list(found["email"]) == ["carol@example.test"]
        page = analytics.audit_page(conn, actor=client)
        assert list(page.frame["target_entity_id"]) == [str(world.wallet_a)]


def test_transactions_timeline_counts_and_groups(engine: Engine, world: app_seed.World) -> None:
    admin = actor(engine, world, "admin")
    with engine.connect() as conn:
        by_provider = analytics.transactions_timeline(conn, actor=admin, by="provider")
        by_tenant = analytics.transactions_timeline(conn, actor=admin, by="tenant", freq="month")
        page = analytics.transactions_page(conn, actor=admin, page=1, page_size=2)
    assert by_provider.groupby("group")["transactions"].sum().to_dict() == {"clover": 1, "square": 3}
    assert int(by_tenant["amount_minor_units"].sum()) == 10000 + 5000 + 4000 + 999
    assert by_tenant.groupby("group")["transactions"].sum().to_dict() == {"Acme Coffee": 2, "Blue Bakery": 2}
    assert (page.total, len(page.frame), page.pages) == (4, 2, 2)
    assert list(page.frame["transaction_at"]) == sorted(page.frame["transaction_at"], reverse=True)


def test_buckets_follow_the_tenant_time_zone(engine: Engine, world: app_seed.World) -> None:
    admin = actor(engine, world, "admin")
    with engine.connect() as conn:
        tz = analytics.display_timezone(conn, actor=admin, tenant_id=world.tenant_a)
        assert tz == "America/New_York"
        assert analytics.display_timezone(conn, actor=admin, tenant_id=None) == "UTC"
        utc = analytics.transactions_timeline(conn, actor=admin, tenant_id=world.tenant_a, freq="hour")
        local = analytics.transactions_timeline(conn, actor=admin, tenant_id=world.tenant_a, freq="hour", tz=tz)
    shift = (utc["bucket"].reset_index(drop=True) - local["bucket"].reset_index(drop=True)).dt.total_seconds() / 3600
    assert set(shift) <= {4.0, 5.0}  # New York is 4 or 5 hours behind UTC


def test_rewards_and_liability_from_the_ledger(engine: Engine, world: app_seed.World) -> None:
    admin = actor(engine, world, "admin")
    now = world.extra["now"]
    with engine.connect() as conn:
        rw = analytics.rewards_timeline(conn, actor=admin)
        lia = analytics.liability_timeline(conn, actor=admin, tenant_id=world.tenant_a,
                                           start=now - timedelta(days=6), end=now + timedelta(days=1))
    assert (int(rw["earned"].sum()), int(rw["redeemed"].sum()), int(rw["reversed"].sum())) == (190, 30, 0)
    # the opening balance (100 points, 10 days ago) carries into a window that starts later
    assert list(lia["liability_points"]) == [150, 120]
    assert list(lia["net_points"]) == [50, -30]
    assert list(lia["liability_minor_units"]) == [150, 120]  # default point value: 1 minor unit


def test_wallet_detail(engine: Engine, world: app_seed.World) -> None:
    client = actor(engine, world, "client")
    with engine.connect() as conn:
        w = analytics.wallet_summary(conn, actor=client, wallet_id=str(world.wallet_a))
        series = analytics.wallet_balance_series(conn, actor=client, wallet_id=world.wallet_a)
        ledger = analytics.wallet_ledger_page(conn, actor=client, wallet_id=world.wallet_a)
        events = analytics.wallet_reward_events(conn, actor=client, wallet_id=world.wallet_a)
        txs = analytics.wallet_transactions(conn, actor=client, wallet_id=world.wallet_a)
        audit = analytics.wallet_audit(conn, actor=client, wallet_id=world.wallet_a)
    assert (w["points_balance"], w["ledger_balance"], w["drift"], w["entries"]) == (130, 120, 10, 3)
    assert list(series["balance"]) == [100, 150, 120]
    assert list(ledger.frame["balance_after"]) == [120, 150, 100]
    assert len(events) == 3 and len(txs) == 2 and list(audit["action"]) == ["wallet.freeze"]


def test_audit_diff_is_readable() -> None:
    diff = analytics.audit_diff({"status": "active", "limits": {"daily": 5}, "gone": 1},
                                {"status": "frozen", "limits": {"daily": 5, "weekly": 9}})
    assert diff.to_dict("records") == [
        {"field": "gone", "change": "removed", "before": "1", "after": None},
        {"field": "limits.weekly", "change": "added", "before": None, "after": "9"},
        {"field": "status", "change": "changed", "before": '"active"', "after": '"frozen"'},
    ]
    assert analytics.audit_diff(None, None).empty


@pytest.mark.parametrize("kwargs, message", [
    ({"freq": "fortnight"}, "freq must be one of"),
    ({"freq": "hour", "start": datetime(2000, 1, 1)}, "coarser freq"),
    ({"start": datetime(2026, 2, 1), "end": datetime(2026, 1, 1)}, "start must be before"),
    ({"tz": "Mars/Olympus_Mons"}, "unknown time zone"),
    ({"tz": "x" * 500}, "too long"),
    ({"tenant_id": "not-a-uuid"}, "not a valid UUID"),
    ({"tenant_id": "1" * 10_000}, "too long"),
    ({"by": "customer; drop table transactions"}, "group by must be one of"),
])
def test_hostile_timeline_input_is_refused(engine: Engine, world: app_seed.World, kwargs: dict[str, object],
                                           message: str) -> None:
    admin = actor(engine, world, "admin")
    with engine.connect() as conn, pytest.raises(ValidationError, match=message):
        analytics.transactions_timeline(conn, actor=admin, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("kwargs, message", [
    ({"page": 0}, "page must be"), ({"page_size": 0}, "page size"), ({"page_size": 10_000}, "page size"),
    ({"provider": "x" * 100}, "provider"),
])
def test_hostile_paging_is_refused(engine: Engine, world: app_seed.World, kwargs: dict[str, object],
                                   message: str) -> None:
    admin = actor(engine, world, "admin")
    with engine.connect() as conn, pytest.raises(ValidationError, match=message):
        analytics.transactions_page(conn, actor=admin, **kwargs)  # type: ignore[arg-type]


def test_hostile_search_and_filters_match_literally(engine: Engine, world: app_seed.World) -> None:
    admin = actor(engine, world, "admin")
    with engine.connect() as conn:
        assert analytics.find_wallets(conn, actor=admin, query="%").empty
        assert analytics.find_wallets(conn, actor=admin, query="' or '1'='1").empty
        assert analytics.audit_page(conn, actor=admin, actor_email="%").total == 0
        assert analytics.audit_page(conn, actor=admin, action="wallet.freeze' or 'a'='a").total == 0
        with pytest.raises(ValidationError):
            analytics.find_wallets(conn, actor=admin, query="a" * 201)
        with pytest.raises(ValidationError):
            analytics.audit_page(conn, actor=admin, target="t" * 201)
        with pytest.raises(ValidationError):
            analytics.wallet_summary(conn, actor=admin, wallet_id="\x00")
        with pytest.raises(NotFound):
            analytics.wallet_summary(conn, actor=admin, wallet_id=uuid.uuid4())


def test_charts_have_titles_units_zone_and_webgl_beyond_threshold() -> None:
    days = pd.date_range("2026-01-01", periods=charts.WEBGL_THRESHOLD + 10, freq="h")
    series = pd.DataFrame({"at": days, "entry_type": "credit", "points": 1, "balance": range(len(days))})
    fig = charts.wallet_balance_chart(series, snapshot=5, tz="Europe/Berlin")
    assert fig.layout.title.text and fig.layout.xaxis.title.text == "Time (Europe/Berlin)"
    assert fig.layout.yaxis.title.text == "Points"
    assert fig.data[0].type == "scattergl"
    empty = charts.transactions_chart(pd.DataFrame(), tz="UTC")
    assert "sync a connection" in empty.layout.annotations[0].text
    tx = pd.DataFrame({"bucket": [datetime(2026, 1, 1)], "group": ["a"], "currency": ["JPY"], "transactions": [1],
                       "amount_minor_units": [1500]})
    fig = charts.transactions_chart(tx, tz="UTC", metric="amount")
    assert fig.layout.yaxis.title.text == "Amount (JPY)" and list(fig.data[0].y) == [1500.0]  # JPY: no minor unit
    assert charts.COLORS["credit"] != charts.COLORS["debit"] != charts.COLORS["drift"]


@pytest.mark.parametrize("freq", ["day", "week", "month"])
def test_rollups_give_the_same_numbers_as_the_direct_queries(engine: Engine, world: app_seed.World,
                                                             freq: str) -> None:
    admin = actor(engine, world, "admin")
    now = world.extra["now"]
    start = datetime(now.year, now.month, now.day) - timedelta(days=70)
    end = datetime(now.year, now.month, now.day) + timedelta(days=1)
    with engine.connect() as conn:
        for tenant, tz in ((None, "UTC"), (world.tenant_a, "America/New_York")):
            direct = analytics.liability_timeline(conn, actor=admin, tenant_id=tenant, tz=tz, freq=freq,
                                                  start=start, end=end)
            flows = analytics.ledger_daily_flows(conn, actor=admin, tenant_id=tenant, tz=tz)
            values = analytics.point_values(conn, actor=admin, tenant_id=tenant)
            derived = analytics.liability_from_flows(flows, values, start=start, end=end, freq=freq)
            # the rollup's buckets are the same calendar buckets; compare closing balances per tenant
            last_direct = direct.groupby("tenant_id")["liability_points"].last().to_dict()
            last_derived = derived.groupby("tenant_id")["liability_points"].last().to_dict()
            assert last_direct == last_derived
            assert int(direct["net_points"].sum()) == int(derived["net_points"].sum())

            rw = analytics.rewards_timeline(conn, actor=admin, tenant_id=tenant, tz=tz, freq="day",
                                            start=start, end=end)
            daily = analytics.reward_daily(conn, actor=admin, tenant_id=tenant, tz=tz)
            rd = analytics.rewards_from_daily(daily, start=start, end=end, freq=freq)
            assert [int(rw[c].sum()) for c in ("earned", "redeemed", "reversed")] == \
                   [int(rd[c].sum()) for c in ("earned", "redeemed", "reversed")]
    with pytest.raises(ValidationError):
        analytics.liability_from_flows(flows, values, start=start, end=end, freq="hour")


def test_shared_rollup_is_cut_to_the_actor_scope(engine: Engine, world: app_seed.World) -> None:
    admin, client = actor(engine, world, "admin"), actor(engine, world, "client")
    with engine.connect() as conn:
        flows = analytics.ledger_daily_flows(conn, actor=admin)
    assert set(flows["tenant_id"]) == {world.tenant_a, world.tenant_b}
    mine = analytics.restrict_to_scope(flows, actor=client)
    assert set(mine["tenant_id"]) == {world.tenant_a}
    assert int(mine["net_points"].sum()) == 120
    with pytest.raises(PermissionDenied):
        analytics.restrict_to_scope(flows, actor=client, tenant_id=world.tenant_b)
    with pytest.raises(PermissionDenied):
        analytics.restrict_to_scope(flows, actor=actor(engine, world, "pos_operator"))


@pytest.mark.parametrize("by", ["none", "tenant", "provider"])
def test_transaction_rollup_matches_the_direct_timeline(engine: Engine, world: app_seed.World, by: str) -> None:
    admin = actor(engine, world, "admin")
    now = world.extra["now"]
    start, end = datetime(now.year, now.month, now.day) - timedelta(days=40), datetime(now.year, now.month, now.day)
    with engine.connect() as conn:
        direct = analytics.transactions_timeline(conn, actor=admin, freq="day", by=by, start=start, end=end)
        daily = analytics.transaction_daily(conn, actor=admin)
        page = analytics.transactions_page(conn, actor=admin, start=start, end=end, page=2, page_size=1)
    derived = analytics.transactions_from_daily(daily, start=start, end=end, freq="day", by=by)
    key = ["bucket", "group", "currency"]
    assert direct.sort_values(key).reset_index(drop=True).equals(derived.sort_values(key).reset_index(drop=True))
    assert page.total == 4 and len(page.frame) == 1
    assert page.frame.iloc[0]["amount_minor_units"] == 4000  # newest first: 999 (1 day ago), then 4000


def test_rollup_store_computes_once_and_cuts_to_scope(engine: Engine, world: app_seed.World,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from salesarck.webapp import rollups

    calls: list[str] = []
    original = rollups.ROLLUPS["ledger_daily_flows"]

    def counting(conn: object, **kw: object) -> pd.DataFrame:
        calls.append(str(kw.get("tz")))
        return original(conn, **kw)  # type: ignore[arg-type]

    monkeypatch.setitem(rollups.ROLLUPS, "ledger_daily_flows", counting)
    monkeypatch.setattr(rollups.RollupStore, "_loop", lambda self: None)  # no background warm-up here
    store = rollups.RollupStore(engine)
    client = actor(engine, world, "client")
    results: list[pd.DataFrame] = []
    threads = [threading.Thread(target=lambda: results.append(store.get(client, "ledger_daily_flows")[0]))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == ["UTC"]  # four concurrent requests, one computation
    assert all(set(r["tenant_id"]) == {world.tenant_a} for r in results)
    admin_rows, _ = store.get(actor(engine, world, "admin"), "ledger_daily_flows")
    assert set(admin_rows["tenant_id"]) == {world.tenant_a, world.tenant_b} and calls == ["UTC"]
    with pytest.raises(PermissionDenied):
        store.get(client, "ledger_daily_flows", tenant_id=world.tenant_b)
    with pytest.raises(PermissionDenied):
        store.get(actor(engine, world, "pos_operator"), "ledger_daily_flows")
    store.close()
