"""Prometheus metrics: names, labels from configured schedules only, and label removal."""

import copy

from tests.engine.conftest import CONFIG


def metrics_text(client) -> str:
    response = client.get("/metrics")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_decision_metrics_published(configured):
    text = metrics_text(configured)
    assert 'scheduler_processing_throttle{schedule="default/carbonstat"}' in text
    assert 'scheduler_effective_replica_ceiling{component="target",schedule="default/carbonstat"} 3.0' in text
    assert 'schedule_flavour_weight{flavour="high",schedule="default/carbonstat"}' in text
    assert 'scheduler_credit_balance{schedule="default/carbonstat"} 0.0' in text
    assert 'scheduler_carbon_intensity{schedule="default/carbonstat",slot="now"} 200.0' in text
    assert 'scheduler_decisions_total{policy="credit-greedy",schedule="default/carbonstat"} 1.0' in text


def test_flavour_labels_removed_when_flavours_change(configured):
    body = copy.deepcopy(CONFIG)
    body["flavours"] = [flavour for flavour in body["flavours"] if flavour["name"] != "mid"]
    configured.put("/config/default/carbonstat", json=body)
    text = metrics_text(configured)
    assert 'flavour="mid"' not in text
    assert 'schedule_flavour_weight{flavour="low",schedule="default/carbonstat"}' in text


def test_component_labels_removed_when_bounds_change(configured):
    body = copy.deepcopy(CONFIG)
    del body["componentBounds"]["target"]
    body["componentBounds"]["worker"] = {"min": 1, "max": 4}
    configured.put("/config/default/carbonstat", json=body)
    text = metrics_text(configured)
    assert 'component="worker"' in text
    # "target" stays because missing components default to 1..1.
    assert 'scheduler_effective_replica_ceiling{component="target",schedule="default/carbonstat"} 1.0' in text


def test_unknown_paths_do_not_create_labels(client):
    client.get("/schedule/default/ghost")
    client.get("/no/such/path")
    text = metrics_text(client)
    assert "ghost" not in text
    assert "/no/such/path" not in text
    assert 'route="unmatched"' in text


def test_feedback_updates_balance_gauge(configured):
    configured.post("/feedback/default/carbonstat", json={"counts": {"high": 10}})
    assert 'scheduler_credit_balance{schedule="default/carbonstat"} 0.1' in metrics_text(configured)


def test_deleted_schedule_leaves_no_labels(configured):
    configured.post("/feedback/default/carbonstat", json={"counts": {"high": 10}})
    response = configured.delete("/config/default/carbonstat")
    assert response.status_code == 200
    assert response.get_json() == {"deleted": "default/carbonstat"}
    assert "default/carbonstat" not in metrics_text(configured)
    assert configured.get("/schedule/default/carbonstat").status_code == 404
    assert configured.delete("/config/default/carbonstat").status_code == 404
