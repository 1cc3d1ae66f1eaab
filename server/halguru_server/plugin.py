"""Serve mode as a halguru plugin: adds `halguru serve` and `halguru keys`.

Only typer is imported here: the CLI loads plugins on every start (`--help`
too), so FastAPI, uvicorn and prometheus load inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from halguru.plugins import hookimpl

keys_app = typer.Typer(help="API keys for `halguru serve` (shown once, stored hashed).", no_args_is_help=True)


@hookimpl
def register_commands(cli: Any) -> None:
    if any(c.name == "serve" for c in cli.registered_commands):
        return  # already added (the CLI app is a module global; tests load plugins more than once)
    cli.command(name="serve")(serve)
    cli.command(name="worker")(worker)
    cli.add_typer(keys_app, name="keys")


def serve(
    paths: list[Path] = typer.Argument(None, help="Agent projects, or folders holding them.", show_default=False),
    host: str = typer.Option(None, help="Address to listen on [default: 127.0.0.1]."),
    port: int = typer.Option(None, help="Port [default: 8000; 0 picks a free one]."),
    workers: int = typer.Option(None, help="Worker processes [default: 1]."),
    dev: bool = typer.Option(False, "--dev", help="No API keys (loopback only)."),
    no_worker: bool = typer.Option(False, "--no-worker", help="Only the API: jobs, schedules and channel "
                                   "replies are left to `halguru worker` processes."),
    config: Path = typer.Option(None, help="YAML file of serve settings (or HALGURU_SERVE_CONFIG)."),
) -> None:
    """Serve agents: REST API (/v1, docs at /swagger), OpenAI-compatible API, web chat (/chat/), channel
    webhooks (/channels/) and a worker for queued jobs."""
    from halguru_server.cli import run_server

    run_server(config=config, agents=paths or None, host=host, port=port, workers=workers, dev=dev or None,
               worker=False if no_worker else None)


def worker(
    paths: list[Path] = typer.Argument(None, help="Agent projects, or folders holding them.", show_default=False),
    concurrency: int = typer.Option(None, help="Jobs at once [default: 2]."),
    config: Path = typer.Option(None, help="YAML file of serve settings (or HALGURU_SERVE_CONFIG)."),
) -> None:
    """Run queued jobs, schedules and fetched channels (email) for these agents, without the API. Any number
    of workers (and `halguru serve` processes) can share one store."""
    from halguru_server.worker import run_worker_process

    run_worker_process(config, agents=paths or None, worker_concurrency=concurrency)


@keys_app.command("create")
def keys_create(
    name: str = typer.Argument(..., help="Who or what uses the key."),
    agents: str = typer.Option(None, help="Comma-separated agents the key may use [default: all]."),
    expires: str = typer.Option(None, help="Lifetime, e.g. 12h, 30d, 8w [default: never]."),
    admin: bool = typer.Option(False, "--admin", help="Operator scope: sees and acts on every principal's "
                               "conversations, runs and approvals."),
    config: Path = typer.Option(None, help="The serve config whose agents --agents is checked against."),
) -> None:
    """Create a key and print it (the only time it is shown)."""
    from halguru_server.cli import create

    create(name, agents, expires, admin, config)


@keys_app.command("list")
def keys_list() -> None:
    """Keys with their prefix, agents, expiry and state (never the key itself)."""
    from halguru_server.cli import show

    show()


@keys_app.command("revoke")
def keys_revoke(name_or_id: str = typer.Argument(..., help="A key's id, or a name (revokes all its keys).")) -> None:
    """Revoke a key at once."""
    from halguru_server.cli import revoke

    revoke(name_or_id)
