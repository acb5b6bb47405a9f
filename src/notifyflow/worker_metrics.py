"""Metrics counted where the thing happens, inside the worker's activities, through the
Temporal SDK's meter (``activity.metric_meter()``): they reach the worker's Prometheus endpoint
(NOTIFYFLOW_WORKER_METRICS_ADDRESS) next to the SDK's own, and cost nothing at scrape time.
Outside an activity (a unit test, the API process) they are not counted.

- ``notifyflow_deliveries_total{kind, method, outcome}``: sends accepted or refused by the
  provider (retries of an accepted send are not counted again: the ledger answers them).
- ``notifyflow_notifications_ended_total{status}``: terminal states reached.
- ``notifyflow_time_to_first_answer_seconds{type, priority, merchant}``: request to accepted answer.
- ``notifyflow_first_answers_total{merchant, priority, within_target}`` and
  ``notifyflow_sla_breaches_total{merchant, priority}``: the service level (DESIGN §10).
"""

from __future__ import annotations

from collections.abc import Mapping

from temporalio import activity
from temporalio.common import MetricMeter


def _meter() -> MetricMeter | None:
    return activity.metric_meter() if activity.in_activity() else None


def count(name: str, description: str, labels: Mapping[str, str], value: int = 1) -> None:
    meter = _meter()
    if meter is not None:
        meter.create_counter(name, description).add(value, dict(labels))


def observe_seconds(name: str, description: str, seconds: float, labels: Mapping[str, str]) -> None:
    meter = _meter()
    if meter is not None:
        meter.create_histogram_float(name, description, unit="seconds").record(
            max(seconds, 0.0), dict(labels)
        )
