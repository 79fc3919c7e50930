"""POS tie-out against the fake Square over HTTP: clean after a sync; planted missing/extra found."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from salesarck.errors import PermissionDenied, ValidationError
from salesarck.pos.sync import sync_connection
from salesarck.reconcile.tieout import pos_tieout
from tests.factories import make_transaction
from tests.test_sync_support import (  # noqa: F401  (fixtures)
    World,
    fake_fixture,
    fake_server_fixture,
    fast_client_factory,
    world_fixture,
)


def _window() -> tuple[str, str]:
    now = datetime.now(UTC)
    return (now - timedelta(days=40)).isoformat(), (now + timedelta(days=1)).isoformat()


def _tie(w: World, **kw):  # type: ignore[no-untyped-def]
    start, end = _window()
    return pos_tieout(w.engine, actor=kw.pop("actor", w.client_user), connection_id=w.connection.id, start=start,
                      end=end, settings=w.settings, client_factory=fast_client_factory(), **kw)


def test_tieout_is_clean_after_a_sync_and_finds_missing_and_extra(world: World) -> None:
    w = world
    assert sync_connection(w.engine, w.connection.id, actor=w.operator, settings=w.settings,
                           client_factory=fast_client_factory()).ok
    clean = _tie(w)
    assert clean.ties, clean.differences.to_string()
    assert clean.summary["provider_completed"] == clean.summary["stored_transactions"] > 0
    assert clean.daily["ties"].all() and clean.daily["provider_count"].sum() == clean.summary["provider_completed"]
    missing = w.fake.add_payment(created_at=datetime.now(UTC) - timedelta(days=2), amount=1234)
    with w.engine.begin() as conn:
        extra = make_transaction(conn, w.tenant_id, provider="square", provider_transaction_id="NOT-AT-SQUARE",
                                 transaction_at=datetime.now(UTC).replace(tzinfo=None) - timedelta(days=3))
    found = _tie(w)
    assert not found.ties
    kinds = {(r.kind, r.provider_id) for r in found.differences.itertuples()}
    assert ("missing", missing["id"]) in kinds and ("extra", "NOT-AT-SQUARE") in kinds
    assert len(kinds) == 2
    assert str(extra["id"]) in set(found.differences["transaction_id"].dropna())
    assert not found.daily["ties"].all()


def test_tieout_refuses_bad_input_and_outsiders(world: World) -> None:
    w = world
    with pytest.raises(ValidationError):
        pos_tieout(w.engine, actor=w.admin, connection_id="nope", start="2025-01-01", end="2025-02-01",
                   settings=w.settings)
    with pytest.raises(ValidationError):
        pos_tieout(w.engine, actor=w.admin, connection_id=w.connection.id, start="2025-02-01", end="2025-01-01",
                   settings=w.settings)
    with pytest.raises(ValidationError):
        pos_tieout(w.engine, actor=w.admin, connection_id=w.connection.id, start="2020-01-01", end="2025-01-01",
                   settings=w.settings)
    with pytest.raises(PermissionDenied):
        _tie(w, actor=w.operator)
