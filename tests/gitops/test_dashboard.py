"""The Grafana dashboard imports as is and queries only metrics that exist.

Every metric name in every query must be one the code exports (read from the
prometheus_client definitions in engine/, hooks/, buffer/ and carbonstat/) or
one of the listed RabbitMQ exporter series, so a renamed metric breaks this
test instead of leaving an empty panel.
"""

from __future__ import annotations

import json

import pytest

from tests.gitops.dashboard_metrics import (
    RABBITMQ_EXPORTER_METRICS,
    REPO,
    dashboard_queries,
    exported_metric_names,
    queried_metric_names,
    series_names,
)

DASHBOARDS = sorted((REPO / "grafana").glob("*.json"))
DATASOURCE_REFERENCE = {"type": "prometheus", "uid": "${datasource}"}


@pytest.fixture(scope="module")
def exported() -> set[str]:
    return exported_metric_names()


def load(path):
    return json.loads(path.read_text())


def test_dashboards_exist():
    assert [p.name for p in DASHBOARDS] == ["carbonrouter.json"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_queries_only_exported_metrics(path, exported):
    unknown = {}
    for where, query in dashboard_queries(load(path)):
        names = queried_metric_names(query)
        assert names, f"{where}: no metric in {query!r}"
        missing = names - exported - RABBITMQ_EXPORTER_METRICS
        if missing:
            unknown[where] = sorted(missing)

    assert unknown == {}


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_uses_datasource_variable(path):
    dashboard = load(path)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}

    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE_REFERENCE, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE_REFERENCE, panel["title"]
    assert "__inputs" not in dashboard


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_panels_have_unique_ids_and_positions(path):
    panels = load(path)["panels"]
    ids = [panel["id"] for panel in panels]

    assert len(ids) == len(set(ids))
    for panel in panels:
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"]), panel["title"]


def test_dashboard_covers_every_topic():
    queried = set()
    for _, query in dashboard_queries(load(REPO / "grafana" / "carbonrouter.json")):
        queried |= queried_metric_names(query)
    topics = {
        "traffic share by flavour": {"schedule_flavour_weight", "router_http_requests_total"},
        "carbon intensity now and forecast": {"scheduler_carbon_intensity"},
        "credit balance": {"scheduler_credit_balance"},
        "throttle": {"scheduler_processing_throttle"},
        "replica ceilings": {"scheduler_effective_replica_ceiling"},
        "router latency": {"router_request_duration_seconds_bucket"},
        "router error rate": {"router_ingress_http_requests_total"},
        "queue depth": {"rabbitmq_queue_messages_ready"},
    }

    for topic, metrics in topics.items():
        assert metrics <= queried, topic


def test_unknown_metric_is_reported(exported):
    names = queried_metric_names(
        'sum(rate(router_http_requests_totl{namespace=~"$namespace"}[$__rate_interval]))'
    )

    assert names == {"router_http_requests_totl"}
    assert names - exported == {"router_http_requests_totl"}


def test_label_values_variable_is_parsed():
    assert queried_metric_names("label_values(schedule_flavour_weight, schedule)") == {
        "schedule_flavour_weight"
    }


def test_histogram_and_counter_series_are_expanded():
    assert series_names("Histogram", "router_request_duration_seconds") >= {
        "router_request_duration_seconds_bucket",
        "router_request_duration_seconds_sum",
        "router_request_duration_seconds_count",
    }
    assert "router_http_requests_total" in series_names("Counter", "router_http_requests_total")
    assert "router_http_requests_total" in series_names("Counter", "router_http_requests")


def test_exported_names_include_engine_and_router_metrics(exported):
    assert {
        "schedule_flavour_weight",
        "scheduler_credit_balance",
        "router_http_requests_total",
        "router_request_duration_seconds_bucket",
    } <= exported
