"""The ``notifyflow`` command (DESIGN §3). Exit codes: 0 success, 2 invalid input, 1 failure."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, NoReturn, TypeVar

import typer

from notifyflow.config import Settings, SettingsError, get_settings, load_settings

T = TypeVar("T")

# add_completion: `notifyflow --install-completion` (bash, zsh, fish, PowerShell) and
# `--show-completion` to print the script instead.
app = typer.Typer(no_args_is_help=True, add_completion=True, help=__doc__)
db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
seed_app = typer.Typer(no_args_is_help=True, help="Demo data.")
keys_app = typer.Typer(
    no_args_is_help=True,
    help="Merchant API keys (DESIGN §9): a key opens one merchant's data over the HTTP API.",
)


def _print_version(value: bool) -> None:
    if value:
        from notifyflow import __version__

        typer.echo(f"notifyflow {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the installed version (the API's OpenAPI info.version too) and exit.",
        ),
    ] = False,
) -> None:
    """Durable human-in-the-loop notifications for conversational commerce, on Temporal.
    Exit codes: 0 success, 2 invalid input, 1 failure."""


app.add_typer(db_app, name="db")
app.add_typer(seed_app, name="seed")
app.add_typer(keys_app, name="keys")
templates_app = typer.Typer(
    no_args_is_help=True,
    help="Answer templates (canned answers, DESIGN §10): admins answer with #<code>.",
)
app.add_typer(templates_app, name="answer-templates")


JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]
# The long-running commands print logs, not results: --json makes them JSON lines on stderr
# (the default off a terminal) whatever stderr is.
JsonLogsOption = Annotated[
    bool,
    typer.Option(
        "--json", help="Logs as JSON lines on stderr, even on a terminal (readiness on stdout)."
    ),
]


def _settings_or_exit(*, check: bool = True) -> Settings:
    try:
        return get_settings() if check else load_settings(check=False)
    except SettingsError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command()
def dev(as_json: JsonLogsOption = False) -> None:
    """Run the embedded stack: Temporal dev server + UI, worker, API on 127.0.0.1:8000."""
    from notifyflow.devstack import run_dev

    raise typer.Exit(run_dev(json_output=as_json))


@app.command()
def worker(as_json: JsonLogsOption = False) -> None:
    """Run a worker: the notification workflow and its activities."""
    from notifyflow.logs import setup_logging
    from notifyflow.tracing import setup_tracing
    from notifyflow.worker import run_worker

    settings = _settings_or_exit()
    setup_logging(json_lines=True if as_json else None)
    setup_tracing("notifyflow-worker")
    try:
        asyncio.run(run_worker(settings))
    except SettingsError as exc:
        # Found only when the worker starts (a metrics port already in use): one line, exit 2.
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command()
def api(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=1, max=65535, help="TCP port to listen on.")
    ] = 8000,
    as_json: JsonLogsOption = False,
) -> None:
    """Run the HTTP API."""
    import uvicorn

    from notifyflow.api.app import create_app
    from notifyflow.logs import setup_logging
    from notifyflow.tracing import setup_tracing

    settings = _settings_or_exit()
    setup_logging(json_lines=True if as_json else None)
    setup_tracing("notifyflow-api")
    uvicorn.run(create_app(settings), host=host, port=port, log_config=None)


@db_app.command("upgrade")
def db_upgrade(as_json: JsonOption = False) -> None:
    """Apply every migration to DATABASE_URL and provision the default campaign templates;
    prints the migrations applied and the templates provisioned."""
    from notifyflow.db.migrate import upgrade

    # Only DATABASE_URL matters here: a migration runs before providers are configured.
    settings = _settings_or_exit(check=False)

    async def work() -> Any:
        return await asyncio.to_thread(upgrade, settings.database_url)

    result = _run(work, settings, as_json=as_json)
    if as_json:
        _emit(
            {
                "from_revision": result.from_revision,
                "to_revision": result.to_revision,
                "migrations_applied": [
                    {"revision": rev, "description": doc} for rev, doc in result.applied
                ],
                "templates_provisioned": result.templates_provisioned,
            }
        )
        return
    if result.applied:
        typer.echo(
            f"applied {len(result.applied)} migration(s), "
            f"{result.from_revision or 'empty database'} → {result.to_revision}:"
        )
        for rev, doc in result.applied:
            typer.echo(f"  {rev}  {doc}")
    else:
        typer.echo(f"already at the latest migration ({result.to_revision}): nothing to apply")
    typer.echo(
        f"provisioned {result.templates_provisioned} default campaign template(s)"
        + ("" if result.templates_provisioned else " (all present)")
    )


@db_app.command("content-definitions")
def db_content_definitions(as_json: JsonOption = True) -> None:
    """The Twilio Content definitions of the default templates, as JSON (always: it is what
    an operator pastes): what to create (POST /v1/Content) and have approved for WhatsApp once
    per template, with the SID and body `db upgrade` provisions for it (PUT the approved SID
    over it). Needs no settings."""
    from notifyflow.db.seed import DEFAULT_TEMPLATES, content_definition

    _emit(
        [
            {
                "campaign": str(t.campaign),
                "language": t.language,
                "content_sid": t.content_sid,
                "body": t.body,
                "definition": content_definition(t),
            }
            for t in DEFAULT_TEMPLATES.values()
        ]
    )


@seed_app.command("demo")
def seed_demo(as_json: JsonOption = False) -> None:
    """Create the demo merchant once (two admins, sales, returns, a customer conversation)."""
    from dataclasses import asdict

    from notifyflow.db.seed import demo_summary, seed_demo_ids_sync

    settings = _settings_or_exit()

    async def work() -> Any:
        return await asyncio.to_thread(seed_demo_ids_sync, settings.database_url)

    ids = _run(work, settings, as_json=as_json)
    if as_json:
        _emit({**asdict(ids), "created": ids.created, "summary": demo_summary(ids)})
    else:
        typer.echo(demo_summary(ids))


# ---- notifications: request, answer, show, list, close ------------------------------------
# Thin layers over notifyflow.starter. Input is checked before anything connects, so a typo
# exits 2 at once even when Temporal or the database is down.


class _Unreachable(Exception):
    """Temporal or the database did not answer: exit 1 with one line."""


def _fail(message: str, exit_code: int, *, as_json: bool, code: str = "invalid_input") -> NoReturn:
    if as_json:
        typer.echo(json.dumps({"error": {"code": code, "message": message, "details": None}}))
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(exit_code)


def _emit(value: Any) -> None:
    typer.echo(json.dumps(value, ensure_ascii=False, default=str, indent=2))


def _public_id(text: str, *, as_json: bool) -> str:
    from notifyflow.models.errors import NotificationError, parse_id
    from notifyflow.models.ids import format_notification_id

    try:
        return format_notification_id(parse_id(text))
    except NotificationError as exc:
        _fail(exc.message, 2, as_json=as_json, code="malformed_id")


def _json_object(text: str, option: str, *, as_json: bool) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        _fail(f"{option} is not valid JSON: {exc}", 2, as_json=as_json, code="not_json")
    if not isinstance(value, dict):
        _fail(
            f'{option} must be a JSON object, like {{"question": "..."}}',
            2,
            as_json=as_json,
            code="not_json",
        )
    return value


def _check_storable(value: Any, option: str, *, as_json: bool) -> None:
    from notifyflow.models.text import unstorable

    found = unstorable(value, "")
    if found:
        where = found[0]["path"] or "/"
        _fail(f"{option} at {where}: {found[0]['message']}", 2, as_json=as_json)


def _check_id(value: int, what: str, *, as_json: bool) -> None:
    from notifyflow.models.ids import INT32_MAX

    if not 1 <= value <= INT32_MAX:
        _fail(f"{what} must be between 1 and {INT32_MAX}", 2, as_json=as_json)


def _check_choice(value: str | None, choices: Any, what: str, *, as_json: bool) -> None:
    names = [c.value for c in choices]
    if value is not None and value not in names:
        code = "unknown_type" if what == "type" else "invalid_input"
        _fail(
            f"unknown {what} {value!r}; expected one of {', '.join(names)}",
            2,
            as_json=as_json,
            code=code,
        )


def _redacted(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL is shown as its scheme only
        return url.split(":", 1)[0]


@asynccontextmanager
async def _backend(settings: Settings, *, temporal: bool) -> AsyncIterator[tuple[Any, Any]]:
    """The session factory and (when asked) a Temporal client, closed on the way out."""
    from notifyflow.db.session import create_engine, session_factory
    from notifyflow.tracing import setup_tracing

    setup_tracing("notifyflow-cli")  # only with OTEL_EXPORTER_OTLP_ENDPOINT set
    engine = create_engine(
        settings.database_url, ping_after_idle=settings.db_ping_after_idle_seconds
    )
    try:
        client = None
        if temporal:
            from notifyflow.worker import connect

            try:
                client = await asyncio.wait_for(connect(settings), TEMPORAL_CONNECT_TIMEOUT)
            except Exception as exc:
                reason = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
                raise _Unreachable(
                    f"cannot reach Temporal at {settings.temporal_address} "
                    f"(namespace {settings.temporal_namespace}): {reason}"
                ) from None
        yield session_factory(engine), client
    finally:
        await engine.dispose()


TEMPORAL_CONNECT_TIMEOUT = 10.0


def _run(work: Callable[[], Coroutine[Any, Any, T]], settings: Settings, *, as_json: bool) -> T:
    """Run ``work``; every failure becomes one line on stderr and its exit code."""
    from sqlalchemy.exc import DBAPIError, SQLAlchemyError
    from temporalio.service import RPCError

    from notifyflow.models.errors import NotificationError

    try:
        return asyncio.run(work())
    except NotificationError as exc:
        _fail(
            exc.message,
            2 if 400 <= exc.http_status < 500 else 1,
            as_json=as_json,
            code=exc.code.value,
        )
    except _Unreachable as exc:
        _fail(str(exc), 1, as_json=as_json, code="unavailable")
    except RPCError as exc:
        _fail(
            f"Temporal refused the call: {exc.status.name if exc.status else ''} {exc.message}",
            1,
            as_json=as_json,
            code="temporal_error",
        )
    except (DBAPIError, SQLAlchemyError, OSError) as exc:
        detail = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        _fail(
            f"database error at {_redacted(settings.database_url)}: {detail}",
            1,
            as_json=as_json,
            code="database_error",
        )
    except Exception as exc:
        logging.getLogger(__name__).debug("command failed", exc_info=True)
        _fail(
            f"unexpected failure: {exc.__class__.__name__}: {exc}",
            1,
            as_json=as_json,
            code="internal_error",
        )


def _console() -> Any:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False)


def _age(delta: timedelta | None) -> str:
    if delta is None:
        return "—"
    seconds = max(int(delta.total_seconds()), 0)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def _when(at: datetime | None) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if at else "—"


@app.command()
def request(
    type: Annotated[
        str,
        typer.Argument(metavar="TYPE", help="user_question_request | user_support_request"),
    ],
    conversation: Annotated[
        int, typer.Option("--conversation", help="The customer's conversation id.")
    ],
    context: Annotated[str, typer.Option("--context", help='JSON, e.g. {"question": "..."}')],
    idempotency_key: Annotated[
        str | None,
        typer.Option("--idempotency-key", help="The same key returns the same notification."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Open a notification: the merchant's admins (or the classified team) are asked."""
    from notifyflow import starter
    from notifyflow.models.notification import NotificationType

    _check_choice(type, NotificationType, "type", as_json=as_json)
    _check_id(conversation, "--conversation", as_json=as_json)
    payload = _json_object(context, "--context", as_json=as_json)
    _check_storable(payload, "--context", as_json=as_json)
    settings = _settings_or_exit()

    async def work() -> Any:
        async with _backend(settings, temporal=True) as (db, client):
            return await starter.request_notification(
                client,
                db,
                type=type,
                conversation_id=conversation,
                context=payload,
                idempotency_key=idempotency_key,
                settings=settings,
            )

    view = _run(work, settings, as_json=as_json)
    if as_json:
        _emit(view.model_dump(mode="json"))
    else:
        _console().print(
            f"[bold]{view.notification_id}[/] {view.status}: {view.type}, conversation "
            f"{view.conversation_id}, merchant {view.merchant_id}"
        )


@app.command()
def answer(
    notification_id: Annotated[str, typer.Argument(metavar="NOTIF_ID", help="NOTIF_<n>")],
    by: Annotated[int, typer.Option("--by", help="The answering merchant user's id.")],
    answer_json: Annotated[str, typer.Option("--answer", help='JSON, e.g. {"answer": "..."}')],
    as_json: JsonOption = False,
) -> None:
    """Answer a notification as a merchant user; returns once the answer is accepted."""
    from notifyflow import starter
    from notifyflow.models.workflow_io import AnswerSource

    public = _public_id(notification_id, as_json=as_json)
    _check_id(by, "--by", as_json=as_json)
    parsed = _json_object(answer_json, "--answer", as_json=as_json)
    _check_storable(parsed, "--answer", as_json=as_json)
    settings = _settings_or_exit()

    async def work() -> Any:
        from notifyflow.directory import check_active_answerer

        async with _backend(settings, temporal=True) as (db, client):
            await check_active_answerer(db, by)
            # The text as typed: it is what the answer history records.
            return await starter.answer_notification(
                client,
                db,
                public,
                answered_by=by,
                answer=answer_json,
                source=AnswerSource.cli,
                settings=settings,
            )

    accepted = _run(work, settings, as_json=as_json)
    if as_json:
        _emit(accepted.model_dump(mode="json"))
    else:
        _console().print(
            f"[bold]{accepted.notification_id}[/] answer accepted; status {accepted.status}"
        )


@app.command()
def correct(
    notification_id: Annotated[str, typer.Argument(metavar="NOTIF_ID", help="NOTIF_<n>")],
    by: Annotated[int, typer.Option("--by", help="The correcting merchant user's id.")],
    answer_json: Annotated[str, typer.Option("--answer", help='JSON, e.g. {"answer": "..."}')],
    correction_id: Annotated[
        str | None, typer.Option("--correction-id", help="Sending it again is the same one.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Correct a delivered answer: a new version, sent to the customer by the 24 h rule."""
    from notifyflow import corrections
    from notifyflow.models.workflow_io import AnswerSource

    public = _public_id(notification_id, as_json=as_json)
    _check_id(by, "--by", as_json=as_json)
    parsed = _json_object(answer_json, "--answer", as_json=as_json)
    _check_storable(parsed, "--answer", as_json=as_json)
    settings = _settings_or_exit()

    async def work() -> Any:
        async with _backend(settings, temporal=True) as (db, client):
            return await corrections.correct_notification(
                client,
                db,
                public,
                answered_by=by,
                answer=parsed,
                source=AnswerSource.cli,
                correction_id=correction_id,
                settings=settings,
            )

    accepted = _run(work, settings, as_json=as_json)
    if as_json:
        _emit(accepted.model_dump(mode="json"))
    else:
        again = " (the same correction again: nothing more sent)" if accepted.duplicate else ""
        _console().print(
            f"[bold]{accepted.notification_id}[/] correction v{accepted.version} "
            f"{accepted.status}{again}"
        )


@app.command()
def show(
    notification_id: Annotated[str, typer.Argument(metavar="NOTIF_ID", help="NOTIF_<n>")],
    as_json: JsonOption = False,
) -> None:
    """A notification and its whole timeline: sends, reminders, answers, delivery."""
    from notifyflow import starter

    public = _public_id(notification_id, as_json=as_json)
    settings = _settings_or_exit()

    async def work() -> Any:
        async with _backend(settings, temporal=False) as (db, _):
            view = await starter.get_notification(db, public)
            timeline = await starter.notification_timeline(db, public)
            return view, timeline

    view, timeline = _run(work, settings, as_json=as_json)
    if as_json:
        _emit(
            {
                "notification": view.model_dump(mode="json"),
                "timeline": [entry.model_dump(mode="json") for entry in timeline],
            }
        )
        return
    _print_notification(view, timeline)


def _print_notification(view: Any, timeline: list[Any]) -> None:
    from rich.table import Table

    console = _console()
    summary = Table(show_header=False, box=None, pad_edge=False)
    summary.add_column(style="bold")
    summary.add_column()
    summary.add_row("notification", view.notification_id)
    summary.add_row("type", view.type)
    summary.add_row("status", view.status)
    summary.add_row("merchant", str(view.merchant_id))
    summary.add_row("conversation", str(view.conversation_id))
    for key, value in view.context.items():
        summary.add_row(f"context.{key}", str(value))
    summary.add_row("created", _when(view.created_at))
    if view.answered_at:
        summary.add_row(
            "answered",
            f"{_when(view.answered_at)} "
            f"({_age(view.answered_at - view.created_at)} after the request)",
        )
    if view.closed_at:
        summary.add_row("closed", _when(view.closed_at))
    if view.close_reason:
        summary.add_row("close reason", view.close_reason)
    delivery = view.delivery
    if delivery.method or delivery.status:
        summary.add_row(
            "delivery",
            " ".join(
                str(part)
                for part in (
                    delivery.method,
                    delivery.channel,
                    delivery.status,
                    delivery.provider_message_id,
                )
                if part
            ),
        )
    if delivery.failure_reason:
        summary.add_row("failure", delivery.failure_reason)
    rating = getattr(view, "csat", None)
    if rating is not None:
        scored = (
            f"rated {rating.score}/5 at {_when(rating.answered_at)}"
            if rating.score
            else "no rating yet"
        )
        summary.add_row("csat", f"asked {_when(rating.asked_at)} by {rating.method}; {scored}")
    console.print(summary)

    if view.recipients:
        recipients = Table(title="recipients", title_justify="left")
        for column in ("user", "name", "type", "why"):
            recipients.add_column(column)
        for r in view.recipients:
            recipients.add_row(str(r.merchant_user_id), r.name, r.user_type, r.reason)
        console.print(recipients)

    if view.answers:
        answers = Table(title="answers", title_justify="left")
        for column in ("at", "by", "source", "accepted", "version", "answer / reason"):
            answers.add_column(column)
        for a in view.answers:
            # Corrections (DESIGN §10) say so, with their version and their send's status.
            version = "" if a.version is None else f"v{a.version}"
            if a.kind == "correction":
                version = f"correction {version} ({a.delivery_status})"
            answers.add_row(
                _when(a.created_at),
                str(a.answered_by or "?"),
                a.source + (f" #{a.template}" if a.template else ""),
                "yes" if a.accepted else "no",
                version,
                a.answer if a.accepted else f"{a.reason_code}: {a.reason}",
            )
        console.print(answers)

    events = Table(title="timeline", title_justify="left")
    for column in ("at", "event", "detail"):
        events.add_column(column)
    for entry in timeline:
        events.add_row(_when(entry.at), entry.event, entry.detail)
    console.print(events)


@app.command("list")
def list_(
    status: Annotated[str | None, typer.Option("--status", help="requested, answered, …")] = None,
    merchant: Annotated[int | None, typer.Option("--merchant", help="Merchant id.")] = None,
    type: Annotated[str | None, typer.Option("--type", help="Notification type.")] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=1000, help="At most this many, newest first.")
    ] = 100,
    as_json: JsonOption = False,
) -> None:
    """Notifications, newest first."""
    from notifyflow import starter
    from notifyflow.models.notification import NotificationStatus, NotificationType

    _check_choice(status, NotificationStatus, "status", as_json=as_json)
    _check_choice(type, NotificationType, "type", as_json=as_json)
    if merchant is not None:
        _check_id(merchant, "--merchant", as_json=as_json)
    settings = _settings_or_exit()

    async def work() -> Any:
        async with _backend(settings, temporal=False) as (db, _):
            return await starter.list_notifications(
                db, status=status, type=type, merchant_id=merchant, limit=limit
            )

    views = _run(work, settings, as_json=as_json)
    if as_json:
        _emit([view.model_dump(mode="json") for view in views])
        return
    from rich.table import Table

    now = datetime.now(UTC)
    table = Table()
    # The id is what a reader copies into the next command: it never wraps or shrinks; the
    # long type names fold instead on a narrow terminal.
    id_width = max([len(v.notification_id) for v in views] + [2])
    table.add_column("id", no_wrap=True, min_width=id_width)
    table.add_column("type", overflow="fold")
    table.add_column("status", no_wrap=True, min_width=max([len(v.status) for v in views] + [6]))
    for column in ("merchant", "age", "time to answer"):
        table.add_column(column)
    for view in views:
        table.add_row(
            view.notification_id,
            view.type,
            view.status,
            str(view.merchant_id),
            _age(now - view.created_at),
            _age(view.answered_at - view.created_at) if view.answered_at else "—",
        )
    console = _console()
    console.print(table)
    if not views:
        console.print("no notifications match")


@app.command()
def close(
    notification_id: Annotated[str, typer.Argument(metavar="NOTIF_ID", help="NOTIF_<n>")],
    reason: Annotated[str | None, typer.Option("--reason", help="Why it is closed.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Close an unanswered notification; the recipients are told."""
    from notifyflow import starter

    public = _public_id(notification_id, as_json=as_json)
    if reason is not None and len(reason) > 1000:
        _fail("--reason must be at most 1000 characters", 2, as_json=as_json)
    settings = _settings_or_exit()

    async def work() -> Any:
        async with _backend(settings, temporal=True) as (db, client):
            return await starter.close_notification(
                client, db, public, reason=reason, closed_by="cli", settings=settings
            )

    view = _run(work, settings, as_json=as_json)
    if as_json:
        _emit(view.model_dump(mode="json"))
    else:
        _console().print(f"[bold]{view.notification_id}[/] {view.status}")


# ---- merchant API keys: create, list, revoke ------------------------------------------------
# An operator tool, like the rest of the CLI: it talks to the database directly.


@keys_app.command("create")
def keys_create(
    merchant: Annotated[int, typer.Option("--merchant", help="Merchant id.")],
    as_json: JsonOption = False,
) -> None:
    """Create a key for a merchant. The key is printed once and stored only as a hash."""
    from notifyflow import api_keys

    _check_id(merchant, "--merchant", as_json=as_json)
    settings = _settings_or_exit(check=False)

    async def work() -> Any:
        async with _backend(settings, temporal=False) as (db, _):
            return await api_keys.create_key(db, merchant)

    created = _run(work, settings, as_json=as_json)
    if as_json:
        _emit(created.model_dump(mode="json"))
        return
    typer.echo(created.key)
    typer.echo(
        f"key {created.id} ({created.prefix}) for merchant {created.merchant_id}: shown once, "
        "store it now",
        file=sys.stderr,
    )


@keys_app.command("list")
def keys_list(
    merchant: Annotated[int, typer.Option("--merchant", help="Merchant id.")],
    as_json: JsonOption = False,
) -> None:
    """A merchant's keys (never the keys themselves): prefix, created, last used, revoked."""
    from notifyflow import api_keys

    _check_id(merchant, "--merchant", as_json=as_json)
    settings = _settings_or_exit(check=False)

    async def work() -> Any:
        async with _backend(settings, temporal=False) as (db, _):
            return await api_keys.list_keys(db, merchant)

    views = _run(work, settings, as_json=as_json)
    if as_json:
        _emit([view.model_dump(mode="json") for view in views])
        return
    from rich.table import Table

    table = Table()
    for column in ("id", "prefix", "created", "last used", "revoked"):
        table.add_column(column, no_wrap=True)
    for view in views:
        table.add_row(
            str(view.id),
            view.prefix,
            _when(view.created_at),
            _when(view.last_used_at),
            _when(view.revoked_at),
        )
    console = _console()
    console.print(table)
    if not views:
        console.print(f"merchant {merchant} has no API keys")


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[int, typer.Argument(metavar="KEY_ID", help="The key's id (keys list).")],
    as_json: JsonOption = False,
) -> None:
    """Revoke a key at once: every API process refuses it from its next request."""
    from notifyflow import api_keys

    _check_id(key_id, "KEY_ID", as_json=as_json)
    settings = _settings_or_exit(check=False)

    async def work() -> Any:
        async with _backend(settings, temporal=False) as (db, _):
            return await api_keys.revoke_key(db, key_id)

    view = _run(work, settings, as_json=as_json)
    if as_json:
        _emit(view.model_dump(mode="json"))
    else:
        _console().print(f"key {view.id} ({view.prefix}) revoked at {_when(view.revoked_at)}")


# ---- answer templates: list, create, delete -------------------------------------------------
# The same operations as /v1/merchants/{id}/answer-templates, on the database directly.


@templates_app.command("list")
def templates_list(
    merchant: Annotated[int, typer.Option("--merchant", help="Merchant id.")],
    type: Annotated[str | None, typer.Option("--type", help="Only this notification type.")] = None,
    as_json: JsonOption = False,
) -> None:
    """A merchant's answer templates: code, type, uses, answer (the first 500)."""
    from notifyflow import answer_templates
    from notifyflow.models.notification import NotificationType

    _check_id(merchant, "--merchant", as_json=as_json)
    _check_choice(type, NotificationType, "type", as_json=as_json)
    settings = _settings_or_exit(check=False)

    async def work() -> Any:
        async with _backend(settings, temporal=False) as (db, _):
            kind = NotificationType(type) if type else None
            return await answer_templates.list_page(db, merchant, kind, limit=500)

    page = _run(work, settings, as_json=as_json)
    if as_json:
        _emit([view.model_dump(mode="json") for view in page.items])
        return
    from rich.table import Table

    table = Table()
    for column in ("code", "type", "uses", "answer"):
        table.add_column(column)
    for view in page.items:
        table.add_row(
            f"#{view.code}",
            view.type,
            str(view.use_count),
            json.dumps(view.answer, ensure_ascii=False),
        )
    console = _console()
    console.print(table)
    if not page.items:
        console.print(f"merchant {merchant} has no answer templates")


@templates_app.command("create")
def templates_create(
    merchant: Annotated[int, typer.Option("--merchant", help="Merchant id.")],
    code: Annotated[str, typer.Option("--code", help="A short lower-case code, like hours.")],
    type: Annotated[str, typer.Option("--type", help="The notification type it answers.")],
    answer_json: Annotated[str, typer.Option("--answer", help='JSON, e.g. {"answer": "..."}')],
    as_json: JsonOption = False,
) -> None:
    """Store a canned answer, validated against the type's answer schema."""
    from pydantic import ValidationError

    from notifyflow import answer_templates
    from notifyflow.models.answer_templates import AnswerTemplateCreate
    from notifyflow.models.notification import NotificationType

    _check_id(merchant, "--merchant", as_json=as_json)
    _check_choice(type, NotificationType, "type", as_json=as_json)
    parsed = _json_object(answer_json, "--answer", as_json=as_json)
    try:
        body = AnswerTemplateCreate(code=code, type=NotificationType(type), answer=parsed)
    except ValidationError as exc:
        _fail(f"--code: {exc.errors()[0]['msg'].removeprefix('Value error, ')}", 2, as_json=as_json)
    settings = _settings_or_exit(check=False)

    async def work() -> Any:
        async with _backend(settings, temporal=False) as (db, _):
            return await answer_templates.create(db, merchant, body)

    view = _run(work, settings, as_json=as_json)
    if as_json:
        _emit(view.model_dump(mode="json"))
    else:
        _console().print(f"answer template #{view.code} ({view.type}) stored")


@templates_app.command("delete")
def templates_delete(
    code: Annotated[str, typer.Argument(metavar="CODE", help="The template's code.")],
    merchant: Annotated[int, typer.Option("--merchant", help="Merchant id.")],
    as_json: JsonOption = False,
) -> None:
    """Delete a template; answers that used it keep its code and what it said."""
    from notifyflow import answer_templates

    _check_id(merchant, "--merchant", as_json=as_json)
    settings = _settings_or_exit(check=False)

    async def work() -> None:
        async with _backend(settings, temporal=False) as (db, _):
            await answer_templates.remove(db, merchant, code.lstrip("#"))

    _run(work, settings, as_json=as_json)
    if as_json:
        _emit({"deleted": code.lstrip("#"), "merchant_id": merchant})
    else:
        _console().print(f"answer template #{code.lstrip('#')} deleted")


def main() -> None:
    app()
