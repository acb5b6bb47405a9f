"""``python -m bench.sse``: what N live-event listeners cost one API process.

A fresh SQLite database (migrated by the product), the demo merchant, and N listeners on
``GET /v1/notifications/{id}/events`` through the real app over ASGI, spread over K
notifications that change once a second for the run. It prints the process CPU per second of
wall time, the database polls per second, and the events delivered — with 1 listener and with
N, side by side in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import tempfile
import time
from pathlib import Path

import httpx
import uvicorn
from sqlalchemy import update

from notifyflow.api.app import create_app
from notifyflow.api.event_stream import TimelineHub
from notifyflow.config import Settings
from notifyflow.db.migrate import upgrade_async
from notifyflow.db.seed import seed_demo
from notifyflow.db.session import create_engine, session_factory
from notifyflow.db.tables import Delivery, Notification
from notifyflow.db.types import utcnow


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _listen(
    api: httpx.AsyncClient, public: str, stop: asyncio.Event, counter: list[int]
) -> None:
    async with api.stream("GET", f"/v1/notifications/{public}/events") as response:
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                counter[0] += 1
            if stop.is_set():
                return


async def _phase(url: str, listeners: int, notifications: int, seconds: float) -> dict[str, float]:
    engine = create_engine(url)
    db = session_factory(engine)
    demo = await seed_demo(db)
    ids: list[int] = []
    async with db() as session:
        for i in range(notifications):
            row = Notification(
                type="user_question_request",
                status="requested",
                merchant_id=demo.merchant_id,
                conversation_id=demo.conversation_id,
                context={"question": f"q{i}"},
                answer_schema={},
            )
            session.add(row)
            await session.flush()
            ids.append(row.id)
        await session.commit()
    app = create_app(Settings(DATABASE_URL=url, TEMPORAL_ADDRESS="127.0.0.1:1"), session_factory=db)
    hub = TimelineHub(db)
    app.state.timeline_hub = hub
    stop = asyncio.Event()
    counter = [0]
    # A real server in this process: ASGITransport would buffer a stream that never ends.
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    limits = httpx.Limits(max_connections=listeners + 10)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", timeout=None, limits=limits
    ) as api:
        tasks = [
            asyncio.create_task(_listen(api, f"NOTIF_{ids[i % len(ids)]}", stop, counter))
            for i in range(listeners)
        ]
        # Warm: every listener has its first event before the clock starts.
        while counter[0] < listeners:
            await asyncio.sleep(0.05)
        cpu0, wall0, polls0, events0 = _cpu(), time.perf_counter(), hub.polls, counter[0]
        end = wall0 + seconds
        n = 0
        while time.perf_counter() < end:
            async with db() as session:
                for nid in ids:
                    session.add(
                        Delivery(
                            notification_id=nid,
                            idempotency_key=f"bench:{nid}:{n}:{time.time_ns()}",
                            kind="reminder",
                            recipient_kind="merchant_user",
                            channel="console",
                            method="direct",
                            status="sent",
                            body="-",
                            conversation_id=demo.conversation_id,
                            to_address="+15550000001",
                        )
                    )
                    await session.execute(
                        update(Notification)
                        .where(Notification.id == nid)
                        .values(updated_at=utcnow())
                    )
                await session.commit()
            n += 1
            await asyncio.sleep(1.0)
        wall = time.perf_counter() - wall0
        cpu = _cpu() - cpu0
        polls = hub.polls - polls0
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    server.should_exit = True
    await serving
    await engine.dispose()
    return {
        "listeners": listeners,
        "notifications": notifications,
        "cpu_per_wall_second": round(cpu / wall, 4),
        "db_polls_per_second": round(polls / wall, 2),
        "events_delivered": counter[0] - events0,
    }


async def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.sse")
    p.add_argument("--listeners", type=int, default=200)
    p.add_argument("--notifications", type=int, default=20)
    p.add_argument("--seconds", type=float, default=10.0)
    args = p.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for listeners in (1, args.listeners):
            url = f"sqlite+aiosqlite:///{Path(tmp) / f'sse-{listeners}.db'}"
            await upgrade_async(url)
            results.append(await _phase(url, listeners, args.notifications, args.seconds))
    print(json.dumps(results, indent=2))  # noqa: T201 - the benchmark's output


if __name__ == "__main__":
    asyncio.run(main())
