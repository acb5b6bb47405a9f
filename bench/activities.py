"""``python -m bench.activities``: the activity side of a notification alone — the CPU the
worker's own code spends in ``open_notification`` (route, record, fan out to two admins) and
``deliver_answer`` (record, localize, send to the customer, closure notice) — with no Temporal
server: each activity runs in the SDK's ``ActivityEnvironment`` against a fresh PostgreSQL
database migrated by the product's own ``upgrade`` and the tests' fake Twilio.

The figure is the CPU of this process's main thread (the event loop the activities, SQLAlchemy
and psycopg run on), not the fake's server thread, per notification; each round is
``--count`` notifications and the lowest round is the least disturbed. Beside it, each round
times the floor of the database seam on the same thread: one round trip of raw async psycopg
(``SELECT 1`` on a connection of its own, no pool, no SQLAlchemy). The ratio of the two moves
only with the code measured, not with the machine's speed, which moves by a third within an
hour on these machines (docs/performance.md): a change to the activities' statements or their
ORM use shows in one pair of runs where the full benchmark needs many.
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

log = logging.getLogger("bench.activities")

QUESTION = "user_question_request"


FLOOR_ROUND_TRIPS = 500


@dataclass
class Round:
    open_ms: float
    deliver_ms: float
    # One raw psycopg round trip, timed in the same round (None on SQLite).
    floor_ms: float | None

    @property
    def total_ms(self) -> float:
        return self.open_ms + self.deliver_ms

    @property
    def in_round_trips(self) -> float | None:
        return self.total_ms / self.floor_ms if self.floor_ms else None

    def as_dict(self) -> dict[str, float | None]:
        ratio = self.in_round_trips
        return {
            "open_ms": round(self.open_ms, 3),
            "deliver_ms": round(self.deliver_ms, 3),
            "total_ms": round(self.total_ms, 3),
            "floor_round_trip_ms": round(self.floor_ms, 4) if self.floor_ms else None,
            "total_in_round_trips": round(ratio, 2) if ratio is not None else None,
        }


async def floor_ms(url: str) -> float:
    """Main-thread CPU of one raw async psycopg round trip (``SELECT 1``) on its own
    connection, the lowest of three batches."""
    import psycopg
    from sqlalchemy.engine import make_url

    u = make_url(url)
    conn = await psycopg.AsyncConnection.connect(
        host=u.host,
        port=u.port,
        user=u.username,
        password=u.password,
        dbname=u.database,
        autocommit=True,
    )
    try:
        batches = []
        for _ in range(3):
            t0 = time.thread_time()
            for _ in range(FLOOR_ROUND_TRIPS):
                await (await conn.execute("SELECT 1")).fetchall()
            batches.append((time.thread_time() - t0) * 1000 / FLOOR_ROUND_TRIPS)
        return min(batches)
    finally:
        await conn.close()


async def measure(url: str, count: int, rounds: int) -> list[Round]:
    from sqlalchemy import select
    from tests.fakes.twilio_server import FakeTwilio
    from tests.fixtures.lifecycle import make_shop

    from notifyflow.config import Settings
    from notifyflow.db.migrate import upgrade_async
    from notifyflow.db.session import create_engine, session_factory
    from notifyflow.db.tables import CampaignTemplate
    from notifyflow.intake import record_request
    from notifyflow.models.notification import NotificationType
    from notifyflow.models.workflow_io import AnswerSource, DeliverInput, OpenInput
    from notifyflow.providers import build_ai, build_channel
    from notifyflow.worker import build_activities

    postgresql = url.startswith("postgresql")
    await upgrade_async(url)
    fake = FakeTwilio().start()
    engine = create_engine(url)
    try:
        db = session_factory(engine)
        async with db() as session:
            for template in (await session.scalars(select(CampaignTemplate))).all():
                fake.register_template(template.content_sid, template.body)
        settings = Settings(
            DATABASE_URL=url,
            NOTIFYFLOW_AI="offline",
            NOTIFYFLOW_CHANNEL="twilio",
            TWILIO_ACCOUNT_SID=fake.account_sid,
            TWILIO_AUTH_TOKEN=fake.auth_token,
            TWILIO_API_BASE_URL=fake.base_url,
        )
        channel = build_channel(settings)
        lifecycle = build_activities(db, build_ai(settings), channel).lifecycle
        shops = [await make_shop(db) for _ in range(4)]
        kind = NotificationType(QUESTION)
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
            t0 = time.thread_time()
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
            t2 = time.thread_time()
            if r == 0:
                continue
            floor = await floor_ms(url) if postgresql else None
            figures.append(Round((t1 - t0) * 1000 / count, (t2 - t1) * 1000 / count, floor))
            log.info(
                "%d notifications: open %.2f + deliver %.2f = %.2f ms main-thread CPU each%s",
                count,
                figures[-1].open_ms,
                figures[-1].deliver_ms,
                figures[-1].total_ms,
                f" ({figures[-1].in_round_trips:.1f} raw round trips of {floor:.3f} ms)"
                if floor
                else "",
            )
        sent = len(fake.accepted())
        expected = (rounds + 1) * count * 4  # 2 requests + 1 answer + 1 closure notice
        if sent != expected:
            raise RuntimeError(f"the fake accepted {sent} messages, expected {expected}")
        await channel.aclose()
        return figures
    finally:
        await engine.dispose()
        fake.stop()


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
    ratios = [r for r in (f.in_round_trips for f in figures) if r is not None]
    log.info(
        "lowest: open %.2f + deliver %.2f = %.2f ms main-thread CPU per notification%s",
        best.open_ms,
        best.deliver_ms,
        best.total_ms,
        f"; lowest in raw round trips: {min(ratios):.1f}" if ratios else "",
    )
    result = {
        "database": database.dialect,
        "count": args.count,
        "rounds": [f.as_dict() for f in figures],
        "lowest_total_ms": round(best.total_ms, 3),
        "lowest_total_in_round_trips": round(min(ratios), 2) if ratios else None,
    }
    if args.json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("notifyflow").setLevel(logging.WARNING)  # one line per round, not per send
    main()
