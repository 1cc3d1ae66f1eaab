"""`halguru channels`: the senders who told a channel to stop (SMS STOP), listed and cleared; a Telegram bot's
webhook set."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import typer

app = typer.Typer(help="Messaging channels: the senders who opted out (SMS STOP): list them, clear one; set a "
                       "Telegram bot's webhook.",
                  no_args_is_help=True)


@app.command("opt-outs")
def opt_outs(
    channel: str | None = typer.Option(None, "--channel", help="Only this channel's (twilio, ...)."),
    agent: str | None = typer.Option(None, "--agent", help="Only this agent's."),
    limit: int = typer.Option(100, "--limit", "-n", min=1, max=1000, help="How many (newest first)."),
    json_output: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """List the senders who opted out, newest first: nothing is sent to them from the number they wrote to."""
    from halguru.cli.table import print_table
    from halguru.jobs.opt_outs import list_opt_outs
    from halguru.store import open_store

    rows = list_opt_outs(open_store(), channel, agent, limit)
    if json_output:
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not rows:
        typer.echo("Nobody has opted out" + (" of what matches these filters." if channel or agent else "."))
        return
    print_table(["CHANNEL", "AGENT", "SENDER", "OUR NUMBER", "REASON", "SINCE"],
                [[r["channel"], r["agent"], r["sender"], r["ours"], r["reason"],
                  dt.datetime.fromtimestamp(r["since"]).strftime("%Y-%m-%d %H:%M:%S")] for r in rows],
                flexible=["SENDER", "REASON"])


@app.command("clear-opt-out")
def clear_opt_out(
    sender: str = typer.Argument(..., help="Who opted out, as `halguru channels opt-outs` lists them."),
    agent: str = typer.Option(..., "--agent", help="The agent they opted out of."),
    channel: str = typer.Option("twilio", "--channel", help="The channel."),
    number: str | None = typer.Option(None, "--number", help="Only from this number of ours (default: all)."),
) -> None:
    """Let the agent answer a sender who opted out again (a STOP sent by mistake, a number that changed hands);
    audited."""
    from halguru.jobs.opt_outs import PROVIDER_NOTE, clear_opt_out
    from halguru.store import open_store

    for row in clear_opt_out(open_store(), channel, agent, sender, number):
        typer.echo(f"Cleared: {row['sender']} ({row['reason']}) may be answered from {row['ours']} again.")
    if channel in PROVIDER_NOTE:
        typer.echo(f"Note: {PROVIDER_NOTE[channel]}.")


@app.command("telegram-webhook")
def telegram_webhook(
    path: Path = typer.Argument(Path("."), help="The agent's project folder (or its agent.yaml)."),
    url: str = typer.Option(..., "--url", help="Where `halguru serve` is reached from the internet "
                                               "(https://bot.example.com): the webhook is under it."),
) -> None:
    """Tell Telegram to post the agent's bot updates to its webhook (setWebhook, with the secret token each
    update must carry): once, and again when the URL or the secret changes."""
    import asyncio

    from halguru.agents.loader import project_file
    from halguru.agents.spec import load_spec
    from halguru.channels.telegram import TelegramChannel
    from halguru.errors import HalguruError

    folder, agent_file = project_file(path)
    spec = load_spec(agent_file)
    if "telegram" not in spec.channels:
        raise HalguruError(f"{agent_file}: agent {spec.name} has no telegram channel (channels: telegram: in "
                           "agent.yaml)")
    channel = TelegramChannel(spec.name, spec.channels["telegram"] or {}, folder)
    try:
        webhook = asyncio.run(channel.set_webhook(url))
    except ValueError as exc:  # the URL
        raise HalguruError(f"--url: {exc}") from None
    typer.echo(f"Telegram posts {spec.name}'s updates to {webhook} now (with its secret token).")
