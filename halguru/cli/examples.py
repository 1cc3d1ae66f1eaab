"""The examples at the end of each command's ``--help`` (the README's tour, a few lines a command).

Kept in one table, keyed by the command's path (``""``: ``halguru`` itself, ``"logs"``, ``"kb search"``), and
put on the commands once they are all registered (``add_examples``), those of the built-in server plugin too:
tests/test_help_examples.py checks that every example names a command there and options it has.
"""

from __future__ import annotations

from typing import Any

EXAMPLES: dict[str, tuple[tuple[str, str], ...]] = {
    "": (
        ("halguru new my-agent --template assistant", "create ./my-agent"),
        ('halguru run my-agent "What is 17*23?"', "stream its answer"),
        ("halguru chat my-agent", "chat in the terminal"),
        ("halguru logs show last", "the trace of the latest run"),
        ("halguru serve my-agent --dev", "API and web chat on loopback"),
        ("halguru COMMAND --help", "a command's options, examples"),
    ),
    "new": (
        ("halguru new my-agent --template assistant", "creates ./my-agent (`halguru templates` lists them)"),
        ("halguru new cafe --template knowledge --dir agents", "creates ./agents/cafe"),
    ),
    "templates": (("halguru templates", ""), ("halguru templates --json", "")),
    "schema": (
        ("halguru schema -o agent.schema.json", "for your editor's YAML language server"),
        ("halguru schema --tests -o tests.schema.json", "the schema of tests/test_*.yaml"),
    ),
    "validate": (("halguru validate my-agent", "agent.yaml, tools.py, the model, knowledge, MCP servers"),),
    "run": (
        ('halguru run my-agent "What is 17*23?"', "tool calls shown on stderr"),
        ('halguru run my-agent "Hi" --json', "the event stream as JSON lines"),
        ('halguru run my-agent "And times 2?" -c last', "continue its latest conversation"),
        ('halguru run my-agent "Hi" --model scripted -t 0 --max-tokens 64 --seed 1', "this run's model and sampling"),
        ("echo 'Summarise this' | halguru run my-agent -", "the message from stdin"),
    ),
    "chat": (
        ("halguru chat my-agent", "/help lists the slash commands"),
        ("halguru chat my-agent -c last", "resume its latest conversation"),
    ),
    "test": (
        ("halguru test my-agent", "replays recordings where they exist, else live"),
        ("halguru test my-agent --record", "run live, record answers and tool results"),
        ("halguru test my-agent -k tokyo --live --repeat 5 --min-pass-rate 0.8 --junit junit.xml", ""),
        ("halguru test my-agent --failed", "only the tests that failed when they last ran"),
    ),
    "eval": (
        ("halguru eval my-agent --models smollm2,scripted", "compare models on its tests"),
        ("halguru eval my-agent -m qwen -m openai:gpt-4o-mini -j 8 --json", ""),
    ),
    "dev": (
        ("halguru dev my-agent", "the TUI debugger"),
        ("halguru dev my-agent --run last", "open with the latest run's trace"),
    ),
    "tools": (
        ("halguru tools", "built-in and plugin tools"),
        ("halguru tools my-agent --json", "an agent's own tools, with their JSON schemas"),
    ),
    "build": (("halguru build my-agent --tag registry.example.com/my-agent:1", "an image serving the agent"),),
    "push": (("halguru push registry.example.com/my-agent:1", ""),),
    "login": (("halguru login https://halguru.example.com", "then `halguru publish my-agent`"),),
    "logout": (("halguru logout https://halguru.example.com", ""),),
    "publish": (
        ("halguru publish my-agent", "to the server you logged in to"),
        ("halguru publish my-agent --to https://halguru.example.com", "in CI, with HALGURU_TOKEN set"),
    ),
    "serve": (
        ("halguru serve my-agent --dev", "loopback only, no API keys"),
        ("halguru serve agents --host 0.0.0.0 --port 8000 --workers 2", "every project in the folder; keys"),
    ),
    "worker": (("halguru worker agents --concurrency 4", "queued jobs, schedules and channels"),),
    "models": (
        ("halguru models list", "models you can name, and where they come from"),
        ("halguru models add qwen --gguf ~/models/qwen2.5-1.5b-instruct-q4_k_m.gguf", ""),
        ("halguru models add local --openai-base-url http://127.0.0.1:8080/v1 --api-key-env LOCAL_KEY", ""),
        ("halguru models default qwen", "what `model: default` names"),
    ),
    "logs": (
        ("halguru logs", "recent runs"),
        ("halguru logs --status failed --agent my-agent --since 2d", ""),
        ("halguru logs -f", "then each run as it finishes"),
        ("halguru logs show last", "the event tree of the latest run"),
        ("halguru logs replay RUN_ID", "re-run it from its records"),
        ("halguru logs export RUN_ID -o my-agent/tests/test_from_run.yaml", "a run as a test case"),
    ),
    "kb": (
        ("halguru kb create docs", "a knowledge base (embedder minilm)"),
        ("halguru kb ingest docs ./docs", "read a folder's documents"),
        ('halguru kb search docs "How do I reset my password?" -k 3', ""),
        ("halguru kb list", ""),
    ),
    "runs": (
        ("halguru runs pending", "runs waiting for a human to approve a tool call"),
        ("halguru runs approve RUN_ID", "or: halguru runs reject RUN_ID --reason '...'"),
        ("halguru runs list --status interrupted", "team and workflow runs a crash stopped"),
        ("halguru runs resume RUN_ID", "go on from the last checkpoint"),
    ),
    "jobs": (
        ("halguru jobs list --status dead", "jobs that failed for good"),
        ("halguru jobs retry JOB_ID", ""),
    ),
    "channels": (
        ("halguru channels opt-outs", "senders who texted STOP"),
        ("halguru channels clear-opt-out +15551234567 --agent my-agent", ""),
        ("halguru channels telegram-webhook my-agent --url https://bot.example.com", "where Telegram posts updates"),
    ),
    "mcp": (
        ("halguru mcp serve my-agent", "the agent as a tool for any MCP client (stdio)"),
        ("halguru mcp serve my-agent --http --port 8765", "over streamable HTTP"),
    ),
    "config": (
        ("halguru config show", "every setting and where it comes from"),
        ("halguru config set llama_n_ctx 8192", "saved in $HALGURU_HOME/config.toml"),
        ("halguru config unset llama_n_ctx", ""),
    ),
    "db": (
        ("halguru db status", "the store's migrations: applied or pending"),
        ("halguru db copy --from sqlite:~/.halguru/halguru.db --to postgresql://halguru:secret@db:5432/halguru", ""),
    ),
    "plugins": (
        ("halguru plugins", "loaded plugins, their hooks, what each registers; skipped ones and why"),
        ("halguru plugins new acme --dir ~/src", "a plugin package to start from"),
    ),
    "deployments": (
        ("halguru deployments list my-agent", "published versions on the server"),
        ("halguru deployments rollback my-agent 3", ""),
        ("halguru deployments unpublish my-agent", "stop serving it; `rollback` serves it again"),
    ),
    "keys": (
        ("halguru keys create my-app --agents basic --expires 30d", "prints the key once"),
        ("halguru keys create ci --user dev@example.com", "a key that acts as that person"),
        ("halguru keys list", ""),
    ),
    "users": (
        ("halguru users create you@example.com --role admin", "asks for a password"),
        ("halguru users invite ann@example.com --role developer", "a sign-up link"),
        ("halguru users list", ""),
    ),
    "audit": (("halguru audit list --since 7d", ""), ("halguru audit verify", "the hash chain is intact")),
}


def epilog(path: str) -> str | None:
    """The ``Examples:`` block of the command at ``path``, laid out as typed (``\\b``: click keeps the lines)."""
    examples = EXAMPLES.get(path)
    if not examples:
        return None
    # notes in a column after the lines, or each above its line where a column would not fit in 80 (click
    # indents the block by 2)
    noted = [(line, note) for line, note in examples if note]
    pad = max((len(line) for line, _ in noted), default=0)
    beside = all(pad + len(note) + 7 <= WIDTH for _, note in noted)
    lines: list[str] = []
    for line, note in examples:
        if not note:
            lines.append(f"  {line}")
        else:
            lines += [f"  {line:<{pad}}   # {note}"] if beside else [f"  # {note}", f"  {line}"]
    return "\b\nExamples:\n" + "\n".join(lines)


WIDTH = 78


def add_examples(app: Any, path: str = "") -> None:
    """Set the epilog of each command of the typer ``app`` (and of ``app``) that has examples and none of its
    own; a plugin's command of the same path as none here gets none."""
    if path == "" and _unset(app.info.epilog):
        app.info.epilog = epilog("")
    for info in app.registered_commands:
        name = info.name or (info.callback.__name__.replace("_", "-") if info.callback else "")
        if _unset(info.epilog):
            info.epilog = epilog(f"{path} {name}".strip())
    for group in app.registered_groups:
        sub = group.typer_instance
        name = getattr(sub.info.name, "value", sub.info.name) if _unset(group.name) else group.name
        full = f"{path} {name}".strip()
        if _unset(group.epilog) and _unset(sub.info.epilog):
            sub.info.epilog = epilog(full)
        add_examples(sub, full)


def _unset(value: Any) -> bool:
    """None, or typer's placeholder for a value not given (``Default(None)``)."""
    return getattr(value, "value", value) is None
