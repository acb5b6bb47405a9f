"""The ``notifyflow`` command (DESIGN §3). Exit codes: 0 success, 2 invalid input, 1 failure."""

from __future__ import annotations

import asyncio
import logging
import sys

import typer

from notifyflow.config import SettingsError, get_settings

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
seed_app = typer.Typer(no_args_is_help=True, help="Demo data.")
app.add_typer(db_app, name="db")
app.add_typer(seed_app, name="seed")


def _settings_or_exit():  # type: ignore[no-untyped-def]
    try:
        return get_settings()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None


@app.command()
def dev() -> None:
    """Run the embedded stack: Temporal dev server + UI, worker, API on 127.0.0.1:8000."""
    from notifyflow.devstack import run_dev

    raise typer.Exit(run_dev())


@app.command()
def worker() -> None:
    """Run a worker: the notification workflow and its activities."""
    from notifyflow.logs import setup_logging
    from notifyflow.worker import run_worker

    settings = _settings_or_exit()
    setup_logging()
    asyncio.run(run_worker(settings))


@app.command()
def api(host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the HTTP API."""
    import uvicorn

    from notifyflow.api.app import create_app
    from notifyflow.logs import setup_logging

    settings = _settings_or_exit()
    setup_logging()
    uvicorn.run(create_app(settings), host=host, port=port, log_config=None)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every migration to DATABASE_URL."""
    from notifyflow.db.migrate import upgrade

    settings = _settings_or_exit()
    upgrade(settings.database_url)
    logging.getLogger(__name__).info("database is at the latest migration")


@seed_app.command("demo")
def seed_demo() -> None:
    """Create the demo merchant once (two admins, sales, returns, a customer conversation)."""
    from notifyflow.db.seed import seed_demo_sync

    settings = _settings_or_exit()
    print(seed_demo_sync(settings.database_url))


def main() -> None:
    app()
