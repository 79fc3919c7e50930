"""Chart functions take the package's own frames as they come (app and notebooks draw the same)."""

from __future__ import annotations

import pandas as pd

from salesarck import charts


def test_drift_histogram_draws_the_reports_drift_points() -> None:
    drift = pd.DataFrame({"wallet_id": ["a", "b", "c"], "drift_points": [5, -3, 5]})
    fig = charts.drift_histogram(drift)
    assert list(fig.data[0].x) == [5, -3, 5]
    assert fig.layout.xaxis.title.text == "Drift (points)"


def test_drift_histogram_empty_says_so() -> None:
    fig = charts.drift_histogram(pd.DataFrame({"drift_points": []}))
    assert not fig.data
    assert "No drift" in fig.layout.annotations[0].text
