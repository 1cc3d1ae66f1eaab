"""`halguru dev`: open the Textual debugger (textual is imported only when the command runs)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def dev(
        path: Path = typer.Argument(Path("."), help="Agent project folder (with agent.yaml)."),
        run: str | None = typer.Option(None, "--run", help="Open this stored run (id, prefix or 'last')."),
        model: str | None = typer.Option(None, "--model", "-m", help="Override the agent's model."),
        no_watch: bool = typer.Option(False, "--no-watch", help="Do not reload the agent when files change."),
    ) -> None:
        """Debug an agent in the terminal: chat, live trace, breakpoints, replay, hot reload."""
        from halguru.models.references import check_model_option, option_reference

        check_model_option(model)  # a typo is one line here, not a TUI whose every run fails
        model = option_reference(model)
        from halguru.tui.app import DevApp

        project: Path | None = path
        if run is not None and not (path / "agent.yaml").exists() and path == Path("."):
            project = None  # a stored run opens without a project (replay needs none)
        app = DevApp(project, run_id=run, model=model, watch=not no_watch)  # the project's and run's errors first
        if not (sys.stdin.isatty() and sys.stdout.isatty()):  # piped: Textual wrote screens into the pipe, forever
            from halguru.errors import HalguruError

            raise HalguruError("halguru dev needs a terminal (its input or output is a pipe or a file): run it in "
                               "one, or script the agent with `halguru run` or `halguru chat`")
        from halguru.hangup import end_on_hangup

        end_on_hangup()  # a closed terminal ends the debugger (it spun on the dead input, forever)
        app.run()
