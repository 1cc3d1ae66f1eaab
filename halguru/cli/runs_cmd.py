"""`halguru runs`: list runs by status, decide the ones paused for approval, resume interrupted ones, stop running
ones."""

from __future__ import annotations

import json

import typer

app = typer.Typer(help="Runs: list by status, approve or reject paused ones, resume interrupted ones, cancel "
                       "running ones.",
                  no_args_is_help=True)


@app.command("list")
def list_(
    status: str | None = typer.Option(None, "--status", help="running, interrupted, paused, failed, limited, "
                                      "cancelled or ok."),
    limit: int = typer.Option(20, "--limit", "-n", min=1, help="How many (newest first)."),
    json_output: bool = typer.Option(False, "--json", help="Machine-readable output."),
    all_runs: bool = typer.Option(False, "--all", help="Also the runs `halguru test` made (as `halguru logs`)."),
) -> None:
    """List runs, newest first, with each team or workflow run's last checkpoint (and the job that started it)."""
    from halguru.orchestration.durable import list_runs

    rows = list_runs(status, limit, test_runs=all_runs)
    if json_output:  # run_id too: the name `runs pending --json` and the API give it
        typer.echo(json.dumps([{"run_id": r["id"], **r} for r in rows], indent=2, ensure_ascii=False))
        return
    if not rows:
        hidden = " (runs made by `halguru test` show with --all)" if not all_runs and list_runs(
            status, 1, test_runs=True) else ""
        typer.echo((f"No {status} runs" if status else "No runs yet") + f"{hidden}.")
        return
    from halguru.cli.table import print_table

    store, table = None, []
    jobs = any(r["job_id"] for r in rows)  # the job column only where a job started one of these runs
    for r in rows:
        where = f"  at {r['checkpoint']}" if r.get("checkpoint") and r["status"] != "ok" else ""
        after = f"  → resumed as {r['resumed_by']}" if r.get("resumed_by") else ""
        if r["status"] == "paused":  # a decided approval leaves the run `paused`: say it is not waiting
            from halguru.orchestration.approvals import stalled
            from halguru.store import open_store

            store = store or open_store()
            approval = store.find_approval(r["id"])
            if approval is not None and stalled(approval):  # its deciding process died before continuing it
                after = f"  → {approval['status']}, never continued (`halguru runs resume {r['id']}`)"
            elif approval is not None and approval["status"] != "pending":
                after = f"  → {approval['status']}" + (f", continued as {approval['continued_by']}"
                                                       if approval["continued_by"] else "")
            elif approval is not None:
                after = "  → waiting for approval (`halguru runs pending`)"
        job = [r["job_id"] or "-"] if jobs else []
        table.append((r["id"], r["status"], r["agent"], *job, r["input"], f"{where}{after}".strip()))
    # a table as `halguru logs` prints it: a header row, and piped, every input whole
    print_table(["run", "status", "agent", *(["job"] if jobs else []), "input", "state"], table, ("input", "state"))


@app.command()
def resume(
    run_id: str = typer.Argument(..., help="An interrupted or failed team or workflow run (id or unique prefix)."),
    model: str | None = typer.Option(None, "--model", "-m", help="Continue with another model."),
    json_output: bool = typer.Option(False, "--json", help="Print the continuation's events as JSON lines."),
) -> None:
    """Continue a team or workflow run from its last checkpoint; finished tool calls and steps are not redone."""
    from halguru.cli.run_once import stream_run
    from halguru.models.references import option_reference
    from halguru.orchestration.durable import resume_events

    stream = resume_events(run_id, model=option_reference(model))
    raise typer.Exit(stream_run(lambda: stream, json_output=json_output))


@app.command()
def pending(json_output: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """List paused runs and the tool call each waits on."""
    from halguru.agents.describe import short_args
    from halguru.orchestration.approvals import list_pending

    rows = list_pending()
    if json_output:
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not rows:
        typer.echo("No runs are waiting for approval.")
        return
    from halguru.cli.table import print_table

    print_table(["run", "agent", "call"], [(r["run_id"], r["agent"], f"{r['tool']}({short_args(r['arguments'])})")
                                           for r in rows], ("call",))


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
    stream = resume_events(run_id, args)  # a channel's conversation gets the answer too
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


@app.command()
def cancel(
    run_id: str = typer.Argument(..., help="A running run (id or unique prefix), in this process's store: on this "
                                           "machine, or on any serve replica sharing its database."),
) -> None:
    """Stop a running run wherever it runs: it ends cancelled, keeping its answer so far."""
    from halguru import audit
    from halguru.orchestration.durable import cancel as cancel_run
    from halguru.store import open_store

    full_id, status = cancel_run(run_id)
    run = open_store().get_run(full_id)  # as serve audits a cancel: who asked, whose run
    audit.record(None, None, "run.cancel", full_id, {"agent": run["agent"], "owner": run["owner"]})
    typer.echo(f"Run {full_id} cancelled." if status == "cancelled" else
               f"Asked run {full_id} to stop; it reads {status} (its process stops it within a second, unless it is "
               "stuck).")
