"""Shared fixtures for carbon-source tests: trace files, the bundled trace and source cleanup."""

from __future__ import annotations

import csv
from datetime import datetime

import pytest

from engine.carbon import close_sources
from engine.carbon.base import parse_time
from engine.carbon.trace import DEFAULT_ACTUAL, DEFAULT_FORECAST


@pytest.fixture(autouse=True)
def _fresh_shared_sources():
    """Each test builds its own sources, so a cached one from another test never leaks in."""
    close_sources()
    yield
    close_sources()


@pytest.fixture(scope="session")
def bundled_actuals() -> dict[datetime, float]:
    with DEFAULT_ACTUAL.open(newline="") as handle:
        return {parse_time(row["from"]): float(row["actual"]) for row in csv.DictReader(handle)}


@pytest.fixture(scope="session")
def bundled_forecasts() -> dict[datetime, dict[datetime, float]]:
    snapshots: dict[datetime, dict[datetime, float]] = {}
    with DEFAULT_FORECAST.open(newline="") as handle:
        for row in csv.DictReader(handle):
            snapshots.setdefault(parse_time(row["issued_at"]), {})[parse_time(row["from"])] = float(
                row["forecast"]
            )
    return snapshots
