"""The worker: builds dependencies once, registers the workflow and its activities."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.envconfig import ClientConfigProfile
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Worker

from notifyflow import payload_passes, starter, workflow_code_cache
from notifyflow.activities.admin_reply import AdminReplyActivities
from notifyflow.activities.corrections import CorrectionActivities
from notifyflow.activities.fallback import FallbackActivities
from notifyflow.activities.follow_ups import FollowUpActivities
from notifyflow.activities.notification import NotificationActivities
from notifyflow.activities.satisfaction import SatisfactionActivities
from notifyflow.activities.webhooks import WebhookActivities
from notifyflow.ai.base import AIProvider
from notifyflow.channels.base import Channel
from notifyflow.config import Settings, SettingsError
from notifyflow.db.session import SessionFactory, create_engine, session_factory
from notifyflow.nexus_handler import NotificationServiceHandler
from notifyflow.outreach.ledger import Sender
from notifyflow.outreach.replies import Replies
from notifyflow.outreach.service import Outreach
from notifyflow.sweeper import run_sweeper
from notifyflow.webhooks.dispatch import run_dispatcher
from notifyflow.workflows.admin_reply import AdminReplyWorkflow
from notifyflow.workflows.correction import CorrectionWorkflow
from notifyflow.workflows.fallback import FallbackDeliveryWorkflow
from notifyflow.workflows.notification import NotificationWorkflow
from notifyflow.workflows.webhook_delivery import WebhookDeliveryWorkflow

log = logging.getLogger(__name__)

WORKFLOWS: Sequence[type] = (
    NotificationWorkflow,
    AdminReplyWorkflow,
    FallbackDeliveryWorkflow,
    WebhookDeliveryWorkflow,
    CorrectionWorkflow,
)
GRACEFUL_SHUTDOWN = timedelta(seconds=15)


async def connect(settings: Settings, *, runtime: Runtime | None = None) -> Client:
    """A Temporal client with the pydantic converter, connected by Temporal's own client
    configuration (``temporalio.envconfig``: a ``TEMPORAL_PROFILE`` in ``TEMPORAL_CONFIG_FILE``
    or the default ``temporal.toml``, and the ``TEMPORAL_*`` variables — TLS, mTLS client
    certificates, gRPC metadata), with notifyflow's settings for the address, namespace and
    API key on top; the tracing interceptor when tracing is on (notifyflow.tracing).
    ``runtime``: the SDK runtime its workers report metrics through (default: the SDK's)."""
    from notifyflow.tracing import temporal_interceptors

    options = temporal_connect_options(settings)
    return await Client.connect(
        data_converter=pydantic_data_converter,
        runtime=runtime,
        # With tracing on, the TracingInterceptor: workers built from this client inherit it,
        # so the workflow's and activities' spans join the caller's trace. None otherwise.
        interceptors=temporal_interceptors(),
        **options,
    )


def temporal_connect_options(settings: Settings) -> dict[str, Any]:
    """Connect options: the envconfig profile, then notifyflow's own settings (which read the
    same TEMPORAL_ADDRESS / TEMPORAL_NAMESPACE / TEMPORAL_API_KEY, with defaults). TLS comes
    from the profile (e.g. ``TEMPORAL_TLS_CLIENT_CERT_PATH`` for mTLS), and is on whenever an
    API key is used."""
    try:
        profile = ClientConfigProfile.load(profile=os.environ.get("TEMPORAL_PROFILE") or None)
    except Exception as exc:  # a malformed temporal.toml: one line naming it
        raise SettingsError(
            f"TEMPORAL_CONFIG_FILE: cannot read the client profile: {exc}"
        ) from None
    options: dict[str, Any] = dict(profile.to_client_connect_config())
    # The profile's address and namespace stand unless notifyflow's settings name them (their
    # defaults, 127.0.0.1:7233 and default, apply only when the profile has none either).
    given = settings.model_fields_set
    if "temporal_address" in given or "target_host" not in options:
        options["target_host"] = settings.temporal_address
    if "temporal_namespace" in given or "namespace" not in options:
        options["namespace"] = settings.temporal_namespace
    if settings.temporal_api_key is not None:
        options["api_key"] = settings.temporal_api_key.get_secret_value()
    if options.get("api_key") and not options.get("tls"):
        options["tls"] = True
    return options


def metrics_runtime(settings: Settings) -> Runtime | None:
    """An SDK runtime serving the worker's Temporal metrics (task slots, pollers, latencies)
    in Prometheus text at ``http://NOTIFYFLOW_WORKER_METRICS_ADDRESS/metrics``; ``None`` when
    the variable is unset."""
    address = settings.worker_metrics_address
    if address is None:
        return None
    try:
        return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=address)))
    except ValueError as exc:  # not an IP:PORT, or the port is taken
        raise SettingsError(
            f"NOTIFYFLOW_WORKER_METRICS_ADDRESS: cannot serve metrics on {address}: {exc}"
        ) from None


@dataclass(frozen=True)
class Activities:
    """Every activity class, each holding only what it needs."""

    lifecycle: NotificationActivities
    admin_reply: AdminReplyActivities
    fallback: FallbackActivities
    follow_ups: FollowUpActivities
    corrections: CorrectionActivities
    satisfaction: SatisfactionActivities

    def all(self) -> list[Callable[..., Any]]:
        return [
            *self.lifecycle.all(),
            *self.admin_reply.all(),
            *self.fallback.all(),
            *self.follow_ups.all(),
            *self.corrections.all(),
            *self.satisfaction.all(),
        ]


def build_activities(
    db: SessionFactory,
    ai: AIProvider,
    whatsapp: Channel,
    instagram: Channel | None = None,
) -> Activities:
    """The outreach service (ledger, templates, channels) is built once and shared."""
    sender = Sender(db, whatsapp, instagram)
    outreach = Outreach(db, sender)
    return Activities(
        lifecycle=NotificationActivities(db, ai, outreach),
        admin_reply=AdminReplyActivities(
            db, ai, Replies(db, sender, whatsapp), starter.answer_notification
        ),
        fallback=FallbackActivities(db, outreach),
        follow_ups=FollowUpActivities(db, outreach),
        corrections=CorrectionActivities(db, ai, outreach),
        satisfaction=SatisfactionActivities(db, sender, outreach),
    )


def build_worker(
    client: Client,
    task_queue: str,
    activities: Activities,
    *,
    max_concurrent_activities: int = 200,
    max_cached_workflows: int = 600,
    nexus_handlers: Sequence[object] = (),
    webhooks: WebhookActivities | None = None,
) -> Worker:
    # The sandbox imports each workflow's module afresh per workflow run: compile it once.
    workflow_code_cache.install(WORKFLOWS)
    # No payload codec or external storage: the SDK's six walks per workflow task change nothing.
    payload_passes.install()
    return Worker(
        client,
        task_queue=task_queue,
        workflows=list(WORKFLOWS),
        # The SDK's sandbox, without recompiling its own code strings per activation.
        workflow_runner=workflow_code_cache.sandboxed_runner(),
        activities=[*activities.all(), *(webhooks.all() if webhooks is not None else [])],
        # The Nexus NotificationService (Voyager workflows call it through the endpoint
        # NOTIFYFLOW_NEXUS_ENDPOINT, which targets this task queue).
        nexus_service_handlers=list(nexus_handlers),
        max_concurrent_activities=max_concurrent_activities,
        # NOTIFYFLOW_WORKER_CACHED_WORKFLOWS (config.py): memory against replays.
        max_cached_workflows=max_cached_workflows,
        # On SIGTERM, let in-flight sends finish (their ledger rows stay consistent) before
        # cancelling; below compose's stop_grace_period and the dev stack's stop timeout.
        graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
    )


async def log_template_gaps(db: SessionFactory) -> list[str]:
    """One line per campaign the product sends that has no default template (a database that
    `notifyflow db upgrade` has not provisioned): those sends would fail as configuration
    errors. Returns the campaigns missing."""
    from sqlalchemy import select

    from notifyflow.db.tables import CampaignTemplate
    from notifyflow.models.notification import Campaign

    async with db() as session:
        present = set(
            (
                await session.scalars(
                    select(CampaignTemplate.campaign)
                    .where(CampaignTemplate.merchant_scope == 0)
                    .distinct()
                )
            ).all()
        )
    missing = [c.value for c in Campaign if c.value not in present]
    for campaign in missing:
        log.error(
            "campaign %s has no default template: its sends will fail until "
            "`notifyflow db upgrade` runs or an operator PUTs one",
            campaign,
        )
    return missing


async def run_worker(settings: Settings) -> None:
    """Run until SIGINT/SIGTERM, then finish in-flight work and stop."""
    from notifyflow.providers import build_ai, build_channel, build_instagram

    engine = create_engine(
        settings.database_url, ping_after_idle=settings.db_ping_after_idle_seconds
    )
    db = session_factory(engine)
    client = await connect(settings, runtime=metrics_runtime(settings))
    ai = build_ai(settings)
    whatsapp = build_channel(settings)
    instagram = build_instagram(settings)
    activities = build_activities(db, ai, whatsapp, instagram)
    webhooks = WebhookActivities(db, allow_private=settings.webhook_allow_private)
    worker = build_worker(
        client,
        settings.temporal_task_queue,
        activities,
        max_cached_workflows=settings.worker_cached_workflows,
        nexus_handlers=[NotificationServiceHandler(db, settings)],
        webhooks=webhooks,
    )

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info(
        "worker started: task queue %s, AI %s, channel %s",
        settings.temporal_task_queue,
        ai.name,
        whatsapp.name,
    )
    await log_template_gaps(db)
    async with worker:
        loops = [
            asyncio.create_task(run_sweeper(client, db, settings, stop)),
            asyncio.create_task(run_dispatcher(client, db, settings.temporal_task_queue, stop)),
        ]
        await stop.wait()
        log.info("worker stopping")
        await asyncio.gather(*loops)
    await whatsapp.aclose()
    if instagram is not None:
        await instagram.aclose()
    await ai.aclose()
    await webhooks.aclose()
    await engine.dispose()
