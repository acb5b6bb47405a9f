"""``python -m bench.scrape``: what one ``/metrics`` scrape costs with a large history, before
(the aggregates the first release ran over every notification, delivery and answer at each
scrape) and after (one query on the open notifications), side by side on the same database.

A fresh PostgreSQL database on 127.0.0.1:5432, migrated by the product, then N notifications
(1 in 1,000 still open) and N deliveries inserted by ``generate_series``; each scrape is timed
K times, the median printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import time
from typing import Any

import psycopg
from sqlalchemy import case, func, select, text

from notifyflow import metrics
from notifyflow.db.migrate import upgrade_async
from notifyflow.db.seed import seed_demo
from notifyflow.db.session import SessionFactory, create_engine, session_factory
from notifyflow.db.tables import Delivery, Notification, NotificationAnswer

SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


async def _before(db: SessionFactory) -> None:
    """The first release's scrape queries, as they were."""
    async with db() as session:
        await session.execute(
            select(Notification.type, Notification.status, func.count()).group_by(
                Notification.type, Notification.status
            )
        )
        seconds = func.extract("epoch", Notification.answered_at - Notification.created_at)
        await session.execute(
            select(
                func.count(),
                func.coalesce(func.sum(seconds), 0.0),
                *[
                    func.coalesce(func.sum(case((seconds <= b, 1), else_=0)), 0)
                    for b in (30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 86400.0)
                ],
            ).where(Notification.answered_at.is_not(None))
        )
        await session.execute(
            select(Delivery.method, Delivery.status, func.count()).group_by(
                Delivery.method, Delivery.status
            )
        )
        await session.execute(
            select(NotificationAnswer.reason_code, func.count())
            .where(NotificationAnswer.accepted.is_(False))
            .group_by(NotificationAnswer.reason_code)
        )


async def _after(db: SessionFactory) -> None:
    metrics.render(await metrics.collect_snapshot(db))


async def _timed(work: Any, db: SessionFactory, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        await work(db)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


async def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.scrape")
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    name = f"notifyflow_bench_scrape_{secrets.token_hex(4)}"
    with psycopg.connect(SERVER, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    try:
        await upgrade_async(url)
        engine = create_engine(url)
        db = session_factory(engine)
        demo = await seed_demo(db)
        started = time.perf_counter()
        async with db() as session:
            await session.execute(
                text(
                    "INSERT INTO notification (type, status, merchant_id, conversation_id, "
                    "context, answer_schema, allow_multiple_answers, created_at, updated_at, "
                    "answered_at, priority) SELECT 'user_question_request', "
                    "CASE WHEN g % 1000 = 0 THEN 'requested' ELSE 'delivered' END, :m, :c, "
                    "'{}'::jsonb, '{}'::jsonb, false, now() - interval '1 hour', now(), "
                    "CASE WHEN g % 1000 = 0 THEN NULL ELSE now() END, 'normal' "
                    "FROM generate_series(1, :n) AS g"
                ),
                {"m": demo.merchant_id, "c": demo.conversation_id, "n": args.rows},
            )
            await session.execute(
                text(
                    "INSERT INTO delivery (notification_id, idempotency_key, kind, "
                    "recipient_kind, conversation_id, method, channel, to_address, body, "
                    "status, attempts, created_at, updated_at) SELECT n.id, 'bench:' || n.id, "
                    "'answer', 'customer', :c, 'direct', 'whatsapp', '+1', '', 'sent', 1, "
                    "now(), now() FROM notification n"
                ),
                {"c": demo.conversation_id},
            )
            await session.commit()
        async with db() as session:
            await session.execute(text("ANALYZE"))
        loaded = time.perf_counter() - started
        before = await _timed(_before, db, args.repeats)
        after = await _timed(_after, db, args.repeats)
        await engine.dispose()
        print(  # noqa: T201 - the benchmark's output
            json.dumps(
                {
                    "notifications": args.rows,
                    "deliveries": args.rows,
                    "load_seconds": round(loaded, 1),
                    "scrape_before_ms": round(before * 1000, 1),
                    "scrape_after_ms": round(after * 1000, 2),
                    "ratio": round(before / after, 1),
                },
                indent=2,
            )
        )
    finally:
        with psycopg.connect(SERVER, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    asyncio.run(main())
