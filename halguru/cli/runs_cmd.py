"""`halguru runs`: runs paused for approval (human in the loop), and deciding them."""

from __future__ import annotations

import json

import typer

app = typer.Typer(help="Runs waiting for approval: list, approve, reject.", no_args_is_help=True)


@app.command()
def pending(json_output: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """List paused runs and the tool call each waits on."""
    from halguru.cli.render import short_args
    from halguru.orchestration.approvals import list_pending

    rows = list_pending()
    if json_output:
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not rows:
        typer.echo("No runs are waiting for approval.")
        return
    for r in rows:
        typer.echo(f"{r['run_id']}  {r['agent']}  {r['tool']}({short_args(r['arguments'])})")


@app.command()
def approve(
    run_id: str = typer.Argument(..., help="A paused run id (or unique prefix) from `halguru runs pending`."),
    edit_args: str | None = typer.Option(None, "--edit-args", help="JSON object to run the call with instead."),
    json_output: bool = typer.Option(False, "--json", help="Print the continuation's events as JSON lines."),
) -> None:
    """Run the pending tool call and continue the run to its answer."""
    from halguru.cli.run_once import stream_run
    from halguru.errors import HalguruError
    from halguru.orchestration.approvals import resume_events

    args = None
    if edit_args is not None:
        try:
            args = json.loads(edit_args)
        except json.JSONDecodeError as exc:
            raise HalguruError(f"--edit-args is not valid JSON: {exc.msg}") from None
        if not isinstance(args, dict):
            raise HalguruError("--edit-args must be a JSON object, e.g. '{\"to\": \"a@b.c\"}'")
    stream = resume_events(run_id, args)
    raise typer.Exit(stream_run(lambda: stream, json_output=json_output))


@app.command()
def reject(
    run_id: str = typer.Argument(..., help="A paused run id (or unique prefix) from `halguru runs pending`."),
    reason: str = typer.Option(..., "--reason", help="Why: the model is told."),
    json_output: bool = typer.Option(False, "--json", help="Print the continuation's events as JSON lines."),
) -> None:
    """Refuse the pending tool call; the model is told why and the run continues."""
    from halguru.cli.run_once import stream_run
    from halguru.orchestration.approvals import resume_events

    stream = resume_events(run_id, reject=reason)
    raise typer.Exit(stream_run(lambda: stream, json_output=json_output))
