"""Concurrent requests on one session, as gunicorn threads would send them."""

from concurrent.futures import ThreadPoolExecutor

from tests.engine.conftest import CONFIG


def test_concurrent_feedback_and_reads_lose_nothing(configured, clock):
    def send_feedback(index: int) -> int:
        return configured.post("/feedback/default/carbonstat", json={"counts": {"high": 1}}).status_code

    def read_schedule(index: int) -> int:
        if index % 10 == 0:
            configured.put("/config/default/carbonstat", json=CONFIG)
        return configured.get("/schedule/default/carbonstat").status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        feedback = list(pool.map(send_feedback, range(200)))
        reads = list(pool.map(read_schedule, range(100)))

    assert set(feedback) == {200}
    assert set(reads) == {200}
    state = configured.get("/schedule/default/carbonstat").get_json()["state"]["ledger"]
    assert state["windowRequests"] == 200
    # Each all-high batch adds 0.1; the balance saturates at creditMax.
    assert state["balance"] == 0.5
