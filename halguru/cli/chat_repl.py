"""The interactive terminal chat: streaming Markdown, slash commands, Ctrl-C handling.

Ctrl-C during an answer stops it (the partial answer is stored); Ctrl-C or
Ctrl-D at the prompt leaves. asyncio.Runner turns the first Ctrl-C of a run
into a cancellation of that run, which the runtime records as ``cancelled``.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from halguru.agents.describe import clip, note, short_args
from halguru.agents.events import ModelResult, RunFinished, Token
from halguru.agents.session import ChatSession
from halguru.cli.markdown_stream import MarkdownStream
from halguru.cli.render import trace_tree
from halguru.cli.table import print_rich_table, stdout_console
from halguru.errors import HalguruError, did_you_mean
from halguru.printable import printable

HELP = """\
/reset           start a new conversation (the old one stays stored)
/history         show this conversation's messages
/tools           list the tools this agent may call
/trace           show the event tree of the last run
/model [NAME]    show or switch the model
/exit            leave (also Ctrl-D, or Ctrl-C at the prompt)
//text           send a message that starts with "/" (the first "/" is dropped)"""


@contextlib.contextmanager
def _quiet_ctrl_c() -> Iterator[None]:
    """While an answer streams, the terminal echoes no keys: the ``^C`` echo moved the cursor past the live
    answer (its full-width last line wrapped), so the last redraw landed a line low and the answer showed
    twice. Keys typed meanwhile still reach the next prompt, which shows them."""
    try:
        import termios
    except ImportError:  # no termios (Windows)
        yield
        return
    try:
        fd = sys.stdin.fileno()
        saved = termios.tcgetattr(fd)
    except (termios.error, OSError, ValueError):  # not a terminal (piped input): termios.error is no OSError
        yield
        return
    quiet = list(saved)
    quiet[3] &= ~(termios.ECHO | termios.ECHOCTL)
    termios.tcsetattr(fd, termios.TCSANOW, quiet)
    try:
        yield
    finally:
        with contextlib.suppress(termios.error):  # the terminal went away (hung up): nothing to restore
            termios.tcsetattr(fd, termios.TCSANOW, saved)


class ChatRepl:
    def __init__(self, session: ChatSession, console: Console | None = None):
        self.session = session
        self.console = console or stdout_console(highlight=False)
        self.stopped_ingests: list[str] = []  # what Ctrl-C stopped indexing during the last answer

    @classmethod
    def open(cls, path: Path, conversation: str | None, model: str | None,
             sampling: dict[str, Any] | None = None) -> ChatRepl:
        return cls(ChatSession.open(path, conversation_id=conversation, model=model, sampling=sampling))

    def loop(self) -> int:
        with contextlib.suppress(ImportError):  # line editing and history for input(), where available
            import readline  # noqa: F401
        s = self.session
        resumed = f", conversation {s.conversation_id}" if s.conversation_id else ""
        self.console.print(f"[bold]{escape(s.agent.name)}[/] · {escape(s.model_name)}{resumed}  "
                           "[dim](/help for commands, Ctrl-C stops an answer, Ctrl-D quits)[/]")
        with asyncio.Runner() as runner:
            try:
                return self._turns(runner)
            finally:
                runner.run(self.session.close())

    def _turns(self, runner: asyncio.Runner) -> int:
        """Read and answer messages until the user leaves (one event loop for the whole chat)."""
        while True:
            try:
                text = _read_message().strip()
            except (EOFError, KeyboardInterrupt):
                self.console.print()
                return 0
            if not text:
                continue
            if text.startswith("//"):  # a message that starts with "/" (a path, a regex): sent, less one "/"
                text = text[1:]
            elif text.startswith("/"):
                if self.command(text) == "exit":
                    return 0
                continue
            self.reload()
            self.stopped_ingests = []
            try:
                runner.run(self.answer(text))
            except KeyboardInterrupt:
                for line in self.stopped_ingests:
                    self.console.print(f"\n[yellow]{escape(line[:1].upper() + line[1:])}.[/]")
                self.console.print("\n[yellow]Stopped.[/] [dim]Partial answer kept; Ctrl-C again to quit.[/]")
                from halguru.cli.app import terminated

                if terminated():  # SIGTERM: the chat ends, not only this answer
                    return 130
            except HalguruError as exc:
                self.console.print(f"[red]Error:[/] {escape(printable(str(exc)))}")

    def reload(self) -> None:
        """Before a message: the project's edits since the last one take effect, and the chat says so."""
        try:
            done = self.session.reload()
        except OSError as exc:  # the folder gone or unreadable: the previous version answers
            self.console.print(f"[yellow]Cannot read the project ({escape(printable(str(exc)))}); the previous "
                               "version answers.[/]")
            return
        if done is None:
            return
        files = ", ".join(done.files[:3]) + (f" and {len(done.files) - 3} more" if len(done.files) > 3 else "")
        if done.error is not None:
            self.console.print(f"[yellow]Changed ({escape(printable(files))}) but does not load; the previous "
                               f"version answers until it is fixed:[/] {escape(printable(done.error))}")
            return
        self.console.print(f"[dim]Reloaded {escape(self.session.agent.name)} ({escape(printable(files))}"
                           f" changed).[/]")
        if done.new_conversation:
            self.console.print("[dim]Its name changed: new conversation (the old one stays stored).[/]")

    async def answer(self, text: str) -> None:
        from halguru.cli.run_once import ingest_scope

        scope = ingest_scope()  # the knowledge ingests this answer starts (an agent's first retrieval)
        try:
            with _quiet_ctrl_c():
                await self._answer(text)
        except asyncio.CancelledError:  # Ctrl-C: such an ingest stops too, and says how far it got
            self.stopped_ingests = scope.stop(wait=5.0)
            raise

    async def _answer(self, text: str) -> None:
        stream: MarkdownStream | None = None
        streamed = False  # piped: whether the raw answer was written (it ends with a line break)
        interactive = self.console.is_terminal

        def close_stream() -> None:
            nonlocal stream, streamed
            if stream is not None:
                stream.close()
                stream = None
            elif streamed:
                self.console.file.write("\n")
            streamed = False

        try:
            async for event in self.session.send(text):
                if isinstance(event, Token):
                    if interactive:
                        if stream is None:
                            stream = MarkdownStream(self.console)
                        stream.write(printable(event.text))  # no escape reaches a terminal
                    else:
                        self.console.file.write(event.text)
                        self.console.file.flush()
                        streamed = streamed or bool(event.text)
                elif isinstance(event, ModelResult | RunFinished):
                    close_stream()
                    if (line := note(event)) is not None:  # an answer cut at max_tokens says so
                        self.console.print(line)
                    if isinstance(event, RunFinished) and event.status == "paused":
                        self.console.print(f"[yellow]Decide it from another terminal: `halguru runs approve "
                                           f"{event.run_id}` or `halguru runs reject {event.run_id} --reason "
                                           "TEXT`; this conversation waits until then.[/]")
                elif (line := note(event)) is not None:
                    close_stream()
                    self.console.print(line)
        finally:
            close_stream()

    def command(self, line: str) -> str | None:
        name, _, arg = line.partition(" ")
        arg = arg.strip()
        s = self.session
        if name in ("/exit", "/quit"):
            return "exit"
        if name == "/help":
            self.console.print(HELP)
        elif name == "/reset":
            s.reset()
            self.console.print("[dim]New conversation.[/]")
        elif name == "/history":
            messages = s.history()
            if not messages:
                self.console.print("[dim]No messages yet.[/]")
            for m in messages:
                detail = m.content or ", ".join(f"{c.name}({short_args(c.arguments)})" for c in m.tool_calls)
                self.console.print(f"[bold]{m.role}[/] {escape(clip(detail, 200))}")
            if s.conversation_id:
                self.console.print(f"[dim]conversation {s.conversation_id}[/]")
        elif name == "/tools":
            from halguru.cli.tools_cmd import arguments_text

            # as `halguru tools` lists them (it gave ["expression"], a JSON list of the names alone)
            table = Table("tool", "arguments", "description", box=None, header_style="bold")
            for t in s.agent.tools.values():
                description = clip(t.description, 60) if self.console.is_terminal else printable(t.description)
                table.add_row(escape(printable(t.name)),  # plugins' and MCP servers' text
                              escape(printable(arguments_text(t.parameters))), escape(description))
            if s.agent.tools:
                print_rich_table(table, self.console)
            else:
                self.console.print("[dim]This agent has no tools.[/]")
        elif name == "/trace":
            trace = s.last_trace()
            self.console.print(trace_tree(*trace) if trace else "[dim]No run yet.[/]")
        elif name == "/model":
            if not arg:
                self.console.print(f"model: {escape(s.model_name)}")
            else:
                from halguru.models.references import check_model, option_reference

                reference = option_reference(arg) or arg  # a relative file path: from where the chat was started
                try:
                    check_model(reference)  # a missing .gguf or script too, as `--model` checks it
                except HalguruError as exc:
                    self.console.print(f"[red]Error:[/] {escape(printable(str(exc)))}")
                else:
                    s.model = reference
                    self.console.print(f"[dim]Model is now {escape(printable(arg))}.[/]")
        else:
            known = ["/help", *(line.split()[0] for line in HELP.splitlines() if not line.startswith("//")), "/quit"]
            self.console.print(f"[red]Unknown command {escape(printable(name))}{escape(did_you_mean(name, known))}."
                               "[/] /help lists them; //... sends a message starting with /.")
        return None


def _read_message(pasted_within: float = 0.03) -> str:
    """One message from the terminal: a line, and the lines pasted with it (already waiting when it ends). A
    pasted paragraph was several messages, each answered on its own; piped input stays one message a line."""
    import select
    import sys

    lines = [input("you> ")]
    if sys.stdin.isatty():
        while select.select([sys.stdin], [], [], pasted_within)[0]:
            try:
                lines.append(input(""))
            except EOFError:
                break
    return "\n".join(lines)
