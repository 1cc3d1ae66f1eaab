"""`halguru run` and `halguru chat`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

TEMPERATURE = typer.Option(None, "--temperature", "-t", min=0.0, max=2.0,
                           help="Sampling temperature for this run (the agent's sampling.temperature otherwise).")
MAX_TOKENS = typer.Option(None, "--max-tokens", min=1, help="Tokens the model may generate per call "
                          "(the agent's limits.max_tokens otherwise).")


def _int64(value: int | None) -> int | None:
    """An int64, as SamplingSettings' SEED_MIN/SEED_MAX (halguru.models.base: not imported at start-up, for
    `logs`). Checked here, not by min/max: --help printed their range, wrapped mid-number
    (``[-9 223372036854775808<=x<=9223372036854775807]``)."""
    if value is not None and not -(2**63) <= value < 2**63:
        raise typer.BadParameter(f"{value} is not a 64-bit integer (from -2**63 to 2**63-1)")
    return value


SEED = typer.Option(None, "--seed", callback=_int64, help="Sampling seed, for answers that repeat (a 64-bit integer).")


def sampling(temperature: float | None, max_tokens: int | None, seed: int | None) -> dict[str, Any] | None:
    """The sampling settings given on the command line, over the agent's own."""
    given = {"temperature": temperature, "max_tokens": max_tokens, "seed": seed}
    return {name: value for name, value in given.items() if value is not None} or None


def _check_order(path: Path, input: str) -> None:
    """`halguru run "Hi" my-agent`: name the swap instead of "Hi: no such agent project"."""
    if path.exists() or len(input) > 1000 or "\n" in input:
        return
    given = Path(input).expanduser()
    if (given / "agent.yaml").is_file() or (given.suffix in (".yaml", ".yml") and given.is_file()):
        import shlex

        from halguru.errors import HalguruError

        raise HalguruError(f"{path}: no such agent project, but {input} is one: the project comes first "
                           f"(halguru run {shlex.quote(input)} {shlex.quote(str(path))})")


class _RunCommand(typer.core.TyperCommand):
    """`halguru run "Hello"` typed inside a project (as `chat`, `validate` and `test` take it): the message was
    read as PATH, and click said only "Missing argument 'INPUT'"; it now says to name the project `.`."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # a click Context (typer vendors click)
        try:
            return super().parse_args(ctx, args)
        except typer.BadParameter as exc:  # MissingParameter, in click or the click typer vendors
            path = ctx.params.get("path")
            missing_input = getattr(exc.param, "name", None) == "input" and path is not None
            if missing_input and not Path(path).exists() and Path("agent.yaml").is_file():
                import shlex

                exc.message = f"Here, in an agent project, name it `.`: halguru run . {shlex.quote(str(path))}"
            raise


def register(app: typer.Typer) -> None:
    @app.command(cls=_RunCommand)
    def run(
        path: Path = typer.Argument(..., help="Agent project folder or its agent.yaml."),
        input: str = typer.Argument(..., help="The message to send ('-' reads stdin)."),
        json_output: bool = typer.Option(False, "--json", help="Print the event stream as JSON lines."),
        model: str | None = typer.Option(None, "--model", "-m", help="Override the agent's model."),
        conversation: str | None = typer.Option(None, "--conversation", "-c", help="Continue a conversation: "
                                                "its id, or 'last' (this agent's latest)."),
        temperature: float | None = TEMPERATURE,
        max_tokens: int | None = MAX_TOKENS,
        seed: int | None = SEED,
    ) -> None:
        """Run an agent once on INPUT and stream its answer.

        Exit codes: 0 done (an answer cut at max_tokens too: it says so), 1 failed or stopped at max_steps or
        the timeout, 3 paused for an approval (`halguru runs approve|reject RUN`), 130 stopped with Ctrl-C or
        SIGTERM.
        """
        from halguru.cli.run_once import run_once
        from halguru.printable import is_blank

        _check_order(path, input)
        text = sys.stdin.read() if input == "-" else input
        if is_blank(text):  # `cat missing.txt | halguru run AGENT -` or `run AGENT ""`: say so, ask nothing
            from halguru.errors import HalguruError

            raise HalguruError("no input on stdin ('-' reads the message from stdin)" if input == "-"
                               else "the message is empty; give the agent something to answer")
        from halguru.models.references import option_reference

        raise typer.Exit(run_once(path, text, json_output=json_output, model=option_reference(model),
                                  conversation=conversation, sampling=sampling(temperature, max_tokens, seed)))

    @app.command()
    def chat(
        path: Path = typer.Argument(Path("."), help="Agent project folder or its agent.yaml."),
        model: str | None = typer.Option(None, "--model", "-m", help="Override the agent's model."),
        conversation: str | None = typer.Option(None, "--conversation", "-c", help="Resume a conversation: "
                                                "its id, or 'last' (this agent's latest)."),
        temperature: float | None = TEMPERATURE,
        max_tokens: int | None = MAX_TOKENS,
        seed: int | None = SEED,
    ) -> None:
        """Chat with an agent in the terminal (/help lists the slash commands)."""
        from halguru.cli.chat_repl import ChatRepl
        from halguru.hangup import end_on_hangup
        from halguru.models.references import check_model_option, option_reference

        check_model_option(model)  # a typo is one line here, not a chat whose every answer fails
        end_on_hangup()  # a closed terminal ends the chat (an answer went on generating for nobody)
        raise typer.Exit(ChatRepl.open(path, conversation=conversation, model=option_reference(model),
                                      sampling=sampling(temperature, max_tokens, seed)).loop())
