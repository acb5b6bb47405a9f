"""``GET /metrics`` against the real stack: the product metrics move with real traffic through
the API and the workflow, and the Temporal SDK's worker metrics are served by a worker with
``NOTIFYFLOW_WORKER_METRICS_ADDRESS`` and appended by the API when it has the same setting."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from temporalio.testing import WorkflowEnvironment

from notifyflow import metrics
from notifyflow.api.app import create_app
from notifyflow.config import Settings, SettingsError, load_settings
from notifyflow.db.session import SessionFactory
from notifyflow.worker import build_activities, build_worker, connect, metrics_runtime
from tests.api.conftest import client_for
from tests.fixtures.lifecycle import (
    FakeTwilioChannel,
    RecordingChannel,
    Shop,
    settings_for,
)

Samples = dict[str, list[tuple[dict[str, str], float]]]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def samples(text: str) -> Samples:
    """Parsing the whole exposition also proves it is valid Prometheus text."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def value(found: Samples, name: str, **labels: str) -> float:
    return sum(v for l_, v in found.get(name, []) if all(l_.get(k) == x for k, x in labels.items()))


def with_env(settings: Settings, **env: Any) -> Settings:
    return Settings(
        **{
            "TEMPORAL_TASK_QUEUE": settings.temporal_task_queue,
            "NOTIFYFLOW_REMIND_AFTER": settings.remind_after,
            "NOTIFYFLOW_ESCALATE_AFTER": settings.escalate_after,
            "NOTIFYFLOW_AUTO_CLOSE_AFTER": settings.auto_close_after,
            **env,
        }
    )


async def until(predicate: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await predicate()
        if result:
            return result
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


# ---- the Temporal SDK's worker metrics -------------------------------------------------------


async def test_worker_serves_sdk_metrics_and_the_api_appends_them(
    dev_env: WorkflowEnvironment,
    db: SessionFactory,
    task_queue: str,
) -> None:
    address = f"127.0.0.1:{free_port()}"
    settings = with_env(
        settings_for(task_queue),
        TEMPORAL_ADDRESS=dev_env.client.service_client.config.target_host,
        NOTIFYFLOW_WORKER_METRICS_ADDRESS=address,
    )
    assert settings.worker_metrics_address == address
    # What run_worker does: a client on the metrics runtime, the real worker on it.
    client = await connect(settings, runtime=metrics_runtime(settings))
    # Nothing is sent here (only the worker's metrics are read): no provider needed.
    worker = build_worker(client, task_queue, build_activities(db, _offline(), RecordingChannel()))
    async with worker:

        async def worker_metrics() -> Samples | None:
            async with httpx.AsyncClient(timeout=5) as http:
                response = await http.get(f"http://{address}/metrics")
            assert response.status_code == 200
            found = samples(response.text)
            polled = value(found, "temporal_num_pollers", task_queue=task_queue)
            return found if polled > 0 else None

        direct = await until(worker_metrics)
        assert value(direct, "temporal_worker_task_slots_available", task_queue=task_queue) > 0

        app = create_app(settings, temporal_client=dev_env.client, session_factory=db)
        async with client_for(app) as api:
            response = await api.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        scraped = samples(response.text)
        assert scraped["notifyflow_worker_metrics_up"] == [({}, 1.0)]
        assert scraped["notifyflow_database_up"] == [({}, 1.0)]
        assert "notifyflow_notifications_open" in scraped or scraped["notifyflow_database_up"]
        for name in ("temporal_worker_task_slots_available", "temporal_num_pollers"):
            assert value(scraped, name, task_queue=task_queue) > 0, name


async def test_an_unreachable_worker_endpoint_still_answers_the_scrape(db: SessionFactory) -> None:
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    app = create_app(
        Settings(TEMPORAL_ADDRESS="127.0.0.1:1", NOTIFYFLOW_WORKER_METRICS_ADDRESS=address),
        session_factory=db,
    )
    async with client_for(app) as api:
        response = await api.get("/metrics")
    assert response.status_code == 200
    scraped = samples(response.text)
    assert scraped["notifyflow_worker_metrics_up"] == [({}, 0.0)]
    assert scraped["notifyflow_database_up"] == [({}, 1.0)]
    assert not any(name.startswith("temporal_") for name in scraped)


async def test_without_the_setting_there_are_no_worker_metrics(db: SessionFactory) -> None:
    app = create_app(Settings(TEMPORAL_ADDRESS="127.0.0.1:1"), session_factory=db)
    async with client_for(app) as api:
        text = (await api.get("/metrics")).text
    assert "notifyflow_worker_metrics_up" not in text and "temporal_" not in text


def test_worker_metrics_address_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    for bad in ("9464", "localhost", "http://127.0.0.1:9464", "127.0.0.1:99999", "a b:1"):
        monkeypatch.setenv("NOTIFYFLOW_WORKER_METRICS_ADDRESS", bad)
        with pytest.raises(SettingsError, match=r"^NOTIFYFLOW_WORKER_METRICS_ADDRESS: "):
            load_settings(check=False)
    for good in ("127.0.0.1:9464", "0.0.0.0:9464", "[::1]:9464", "worker:9464"):
        monkeypatch.setenv("NOTIFYFLOW_WORKER_METRICS_ADDRESS", good)
        assert load_settings(check=False).worker_metrics_address == good
    monkeypatch.setenv("NOTIFYFLOW_WORKER_METRICS_ADDRESS", "")
    assert load_settings(check=False).worker_metrics_address is None


def test_worker_refuses_an_address_it_cannot_serve_on() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = Settings(NOTIFYFLOW_WORKER_METRICS_ADDRESS=f"127.0.0.1:{port}")
        with pytest.raises(SettingsError, match=r"^NOTIFYFLOW_WORKER_METRICS_ADDRESS: .*in use"):
            metrics_runtime(settings)
    # A host name is fine for the API to fetch from, but the SDK binds IP addresses only.
    with pytest.raises(SettingsError, match=r"^NOTIFYFLOW_WORKER_METRICS_ADDRESS: "):
        metrics_runtime(Settings(NOTIFYFLOW_WORKER_METRICS_ADDRESS="worker:9464"))
    assert metrics_runtime(Settings()) is None


def test_wildcard_bind_addresses_are_fetched_on_this_host() -> None:
    assert metrics.worker_metrics_url("0.0.0.0:9464") == "http://127.0.0.1:9464/metrics"
    assert metrics.worker_metrics_url("[::]:9464") == "http://[::1]:9464/metrics"
    assert metrics.worker_metrics_url("worker:9464") == "http://worker:9464/metrics"


# ---- the product metrics, moved by real traffic ---------------------------------------------


async def test_product_metrics_move_with_real_traffic(
    dev_env: WorkflowEnvironment,
    db: SessionFactory,
    task_queue: str,
    channel: FakeTwilioChannel,
    shop_factory: Callable[..., Any],
) -> None:
    """Counted at the event: the API's own counters, and the worker's (through the SDK's meter,
    appended to the API's scrape); the scrape itself asks only for the open notifications."""
    shop: Shop = await shop_factory()
    address = f"127.0.0.1:{free_port()}"
    settings = with_env(
        settings_for(task_queue),
        TEMPORAL_ADDRESS=dev_env.client.service_client.config.target_host,
        NOTIFYFLOW_WORKER_METRICS_ADDRESS=address,
    )
    client = await connect(settings, runtime=metrics_runtime(settings))
    worker = build_worker(client, task_queue, build_activities(db, _offline(), channel))
    app = create_app(settings, temporal_client=dev_env.client, session_factory=db)
    async with worker, client_for(app) as api:
        before = samples((await api.get("/metrics")).text)

        async def request(type_: str, context: dict[str, str]) -> str:
            body = {"type": type_, "conversation_id": shop.conversation_id, "context": context}
            response = await api.post("/v1/notifications", json=body)
            assert response.status_code == 202, response.text
            public: str = response.json()["notification_id"]
            return public

        async def status_of(public: str, statuses: set[str]) -> dict[str, Any] | None:
            body: dict[str, Any] = (await api.get(f"/v1/notifications/{public}")).json()
            return body if body["status"] in statuses and body["recipients"] else None

        question = await request("user_question_request", {"question": "Open on Sunday?"})
        support = await request("user_support_request", {"support_request_reason": "Refund?"})
        await until(lambda: status_of(question, {"requested"}))
        await until(lambda: status_of(support, {"requested"}))
        during = samples((await api.get("/metrics")).text)

        # Refused: a stranger, then an answer that does not match the schema.
        url = f"/v1/notifications/{question}/answer"
        stranger = await api.post(url, json={"answered_by": 2147483000, "answer": {"answer": "x"}})
        assert stranger.status_code == 403, stranger.text
        wrong = await api.post(url, json={"answered_by": shop.admins[0].id, "answer": {"a": 1}})
        assert wrong.status_code == 422, wrong.text
        refused_as = wrong.json()["error"]["code"]

        accepted = await api.post(
            url, json={"answered_by": shop.admins[0].id, "answer": {"answer": "10 to 4."}}
        )
        assert accepted.status_code == 200, accepted.text
        done = await until(lambda: status_of(question, {"delivered", "delivery_failed"}))
        assert done["status"] == "delivered"

        closed = await api.post(f"/v1/notifications/{support}/close", json={"reason": "dup"})
        assert closed.status_code == 200, closed.text
        await until(lambda: status_of(support, {"closed"}))

        async def worker_counted() -> Samples | None:
            found = samples((await api.get("/metrics")).text)
            ended = value(found, "notifyflow_notifications_ended_total", status="closed")
            return (
                found
                if ended > value(before, "notifyflow_notifications_ended_total", status="closed")
                else None
            )

        after = await until(worker_counted)

    def grew(
        name: str, since: Samples = before, now: Samples | None = None, **labels: str
    ) -> float:
        return value(now or after, name, **labels) - value(since, name, **labels)

    # The API's own, counted as the requests came.
    kinds = ("user_question_request", "user_support_request")
    for kind in kinds:
        assert grew("notifyflow_notifications_requested_total", type=kind, priority="normal") == 1
    assert grew("notifyflow_answers_refused_total", reason="not_allowed") == 1
    assert grew("notifyflow_answers_refused_total", reason=refused_as) == 1
    assert (
        grew(
            "notifyflow_http_requests_total", method="POST", route="/v1/notifications", status="202"
        )
        == 2
    )
    assert (
        grew(
            "notifyflow_http_request_duration_seconds_count",
            method="GET",
            route="/v1/notifications/{notification_id}",
        )
        >= 2
    )
    # The scrape's one query: both open while waiting, neither once ended.
    assert grew("notifyflow_notifications_open", now=during, status="requested") == 2
    assert grew("notifyflow_notifications_open", status="requested") == 0
    # The worker's, through the SDK's meter: sends, the answer's latency, the two ends.
    assert grew("notifyflow_deliveries_total", outcome="accepted", method="direct") >= 1
    assert grew("notifyflow_deliveries_total", outcome="accepted", method="campaign") >= 2
    assert grew("notifyflow_time_to_first_answer_seconds_count", type=kinds[0]) == 1
    assert grew("notifyflow_notifications_ended_total", status="delivered") == 1
    assert grew("notifyflow_notifications_ended_total", status="closed") == 1
    assert grew("notifyflow_first_answers_total", within_target="true") == 1


def _offline() -> Any:
    from notifyflow.ai.offline import OfflineProvider

    return OfflineProvider()
