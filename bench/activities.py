"""``python -m bench.activities``: the activity side of a notification alone — the CPU the
worker's own code spends in ``open_notification`` (route, record, fan out to two admins) and
``deliver_answer`` (record, localize, send to the customer, closure notice) — with no Temporal
server: each activity runs in the SDK's ``ActivityEnvironment`` against a fresh PostgreSQL
database (or ``--database-url``) migrated by the product's own ``upgrade`` and the tests' fake
Twilio. On SQLite, aiosqlite runs the statements in a thread of its own, which the figure
leaves out.

The figure is the CPU of this process's main thread (the event loop the activities, SQLAlchemy
and psycopg run on) per notification — the fake runs in a process of its own, as it does for
the worker; each round is
``--count`` notifications and the lowest round is the least disturbed. No Temporal
server, workflow or other process shares the CPU's work with it, so it moves much less than
the full benchmark's worker figure (about ±10 % between rounds against ±30 %): a change to the
activities' statements or their ORM use shows in a few alternating runs where the full
benchmark needs many (docs/performance.md). A reference workload timed beside it (a raw
psycopg round trip, a pure-Python loop) moved more than the figure itself on these shared
machines, so none is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from temporalio.testing import ActivityEnvironment

from bench.fake_process import FakeTwilioProcess
from notifyflow.db.session import SessionFactory

log = logging.getLogger("bench.activities")


@dataclass
class Round:
    open_ms: float
    deliver_ms: float
    # Wall-clock time per notification: its CPU plus the waits for the database and the fake.
    wall_ms: float

    @property
    def total_ms(self) -> float:
        return self.open_ms + self.deliver_ms

    def as_dict(self) -> dict[str, float]:
        return {
            "open_ms": round(self.open_ms, 3),
            "deliver_ms": round(self.deliver_ms, 3),
            "total_ms": round(self.total_ms, 3),
            "wall_ms": round(self.wall_ms, 3),
        }


async def measure(url: str, count: int, rounds: int) -> list[Round]:
    """``rounds`` rounds of ``count`` notifications, after one unreported warm-up round."""
    from sqlalchemy import select

    from notifyflow.db.migrate import upgrade_async
    from notifyflow.db.session import create_engine, session_factory
    from notifyflow.db.tables import CampaignTemplate
    from notifyflow.outreach.templates import clear_template_cache

    await upgrade_async(url)
    # The template cache is per process and keyed by merchant id, not by database: a caller
    # (the smoke test) may have cached another database's merchant of the same id.
    clear_template_cache()
    engine = create_engine(url)
    try:
        db = session_factory(engine)
        async with db() as session:
            rows = (await session.scalars(select(CampaignTemplate))).all()
        fake = FakeTwilioProcess([(t.content_sid, t.body) for t in rows])
        try:
            return await _rounds(db, fake, url, count, rounds)
        finally:
            fake.stop()
    finally:
        await engine.dispose()
        clear_template_cache()


async def _rounds(
    db: SessionFactory, fake: FakeTwilioProcess, url: str, count: int, rounds: int
) -> list[Round]:
    from tests.fixtures.lifecycle import make_shop

    from bench.runner import QUESTION_TYPE
    from notifyflow.config import Settings
    from notifyflow.intake import record_request
    from notifyflow.models.notification import NotificationType
    from notifyflow.models.workflow_io import AnswerSource, DeliverInput, OpenInput
    from notifyflow.providers import build_ai, build_channel
    from notifyflow.worker import build_activities

    settings = Settings(
        DATABASE_URL=url,
        NOTIFYFLOW_AI="offline",
        NOTIFYFLOW_CHANNEL="twilio",
        TWILIO_ACCOUNT_SID=fake.account_sid,
        TWILIO_AUTH_TOKEN=fake.auth_token,
        TWILIO_API_BASE_URL=fake.base_url,
    )
    channel = build_channel(settings)
    try:
        lifecycle = build_activities(db, build_ai(settings), channel).lifecycle
        shops = [await make_shop(db) for _ in range(4)]
        kind = NotificationType(QUESTION_TYPE)
        env = ActivityEnvironment()
        figures: list[Round] = []
        for r in range(rounds + 1):  # the first round warms caches and pools: not reported
            ids = []
            for i in range(count):
                shop = shops[i % len(shops)]
                row, _admins, _new = await record_request(
                    db,
                    kind,
                    {"question": f"Are you open on Saturday? (round {r} #{i})"},
                    shop.conversation_id,
                    None,
                    settings=settings,
                )
                ids.append((row.id, shop))
            w0, t0 = time.perf_counter(), time.thread_time()
            opened = [
                await env.run(lifecycle.open_notification, OpenInput(notification_id=n))
                for n, _ in ids
            ]
            t1 = time.thread_time()
            for (n, shop), result in zip(ids, opened, strict=True):
                await env.run(
                    lifecycle.deliver_answer,
                    DeliverInput(
                        notification_id=n,
                        answer={"answer": f"We open at 9 (NOTIF_{n})."},
                        answered_by=shop.admins[0].id,
                        answered_at=datetime.now(UTC),
                        source=AnswerSource.api,
                        recipients=result.recipients,
                        customer_field="answer",
                    ),
                )
            t2, w2 = time.thread_time(), time.perf_counter()
            if r == 0:
                continue
            figures.append(
                Round(
                    (t1 - t0) * 1000 / count,
                    (t2 - t1) * 1000 / count,
                    (w2 - w0) * 1000 / count,
                )
            )
            log.info(
                "%d notifications: open %.2f + deliver %.2f = %.2f ms main-thread CPU each"
                " (%.2f ms wall)",
                count,
                figures[-1].open_ms,
                figures[-1].deliver_ms,
                figures[-1].total_ms,
                figures[-1].wall_ms,
            )
    finally:
        await channel.aclose()
    sent = fake.accepted()
    expected = (rounds + 1) * count * 4  # 2 requests + 1 answer + 1 closure notice
    if sent != expected:
        raise RuntimeError(f"the fake accepted {sent} messages, expected {expected}")
    return figures


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from bench.infra import Database

    parser = argparse.ArgumentParser(prog="python -m bench.activities", description=__doc__)
    parser.add_argument("--count", type=int, default=200, help="notifications per round (200)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (5)")
    parser.add_argument("--database-url", default=None, help="default: a fresh PostgreSQL db")
    parser.add_argument("--json", action="store_true", help="print the rounds as one JSON object")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as workdir:
        database = Database.create(args.database_url, Path(workdir))
        log.info("%s", database.note)
        try:
            figures = asyncio.run(measure(database.url, args.count, args.rounds))
        finally:
            database.drop()
    best = min(figures, key=lambda f: f.total_ms)
    log.info(
        "lowest: open %.2f + deliver %.2f = %.2f ms main-thread CPU per notification",
        best.open_ms,
        best.deliver_ms,
        best.total_ms,
    )
    result = {
        "database": database.dialect,
        "count": args.count,
        "rounds": [f.as_dict() for f in figures],
        "lowest_total_ms": round(best.total_ms, 3),
    }
    if args.json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("notifyflow").setLevel(logging.WARNING)  # one line per round, not per send
    main()
