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
    # a group's commands: each its own few lines (`halguru models add --help` had none)
    "models list": (("halguru models list", ""), ("halguru models list --json", "with each model's options")),
    "models add": (
        ("halguru models add qwen --gguf ~/models/qwen2.5-1.5b-instruct-q4_k_m.gguf", "a GGUF file"),
        ("halguru models add local --openai-base-url http://127.0.0.1:8080/v1 --api-key-env LOCAL_KEY", ""),
        ("halguru models add gpt --openai-base-url https://api.openai.com/v1 --model-id gpt-4o-mini --keyring", ""),
    ),
    "models remove": (("halguru models remove qwen", "the default goes back to smollm2 if it was qwen"),),
    "models default": (("halguru models default", "print it"), ("halguru models default qwen", "set it")),
    "models set-key": (
        ("halguru models set-key local", "asks for the key"),
        ("printenv LOCAL_KEY | halguru models set-key local", "piped: one line"),
    ),
    "logs show": (("halguru logs show last", "the latest run"), ("halguru logs show RUN_ID --json", "")),
    "logs replay": (("halguru logs replay last", "exit 0 if it is reproduced"),
                    ("halguru logs replay RUN_ID --json", "")),
    "logs conversation": (("halguru logs conversation last", "the newest conversation"),
                          ("halguru logs conversation CONV_ID --json", "")),
    "logs export": (
        ("halguru logs export last -o my-agent/tests/test_from_run.yaml", "the latest run as a test case"),
        ("halguru logs export RUN_ID -o my-agent/tests/test_from_run.yaml --force", "replace the file"),
    ),
    "logs prune": (("halguru logs prune --older-than 30d", "not runs waiting for approval or interrupted"),),
    "kb create": (
        ("halguru kb create docs", "embedder minilm"),
        ("halguru kb create docs-fr --embedder e5 --chunk-size 400 --chunk-overlap 40", ""),
    ),
    "kb install-weights": (("halguru kb install-weights", "minilm's and the lead model's weights"),),
    "kb ingest": (
        ("halguru kb ingest docs ./docs", "new and changed files only"),
        ("halguru kb ingest docs ./docs --prune -v", "also forget files gone from ./docs"),
    ),
    "kb search": (
        ('halguru kb search docs "How do I reset my password?" -k 3', ""),
        ('halguru kb search docs "reset password" --mode fts --where "source LIKE \'%guide%\'" --json', ""),
    ),
    "kb list": (("halguru kb list", ""), ("halguru kb list --json", "")),
    "kb show": (("halguru kb show docs", "its settings and documents"), ("halguru kb show docs --json", "")),
    "kb drop": (("halguru kb drop docs", "asks first"), ("halguru kb drop docs --yes", "in a script")),
    "kb optimize": (("halguru kb optimize docs", "after many ingests"),),
    "kb reindex": (("halguru kb reindex docs", "read and chunked again"),
                   ("halguru kb reindex docs --embedder e5", "with another embedder")),
    "runs list": (("halguru runs list --status interrupted", "team and workflow runs a crash stopped"),
                  ("halguru runs list -n 50 --json", "")),
    "runs resume": (("halguru runs resume RUN_ID", "go on from the last checkpoint"),
                    ("halguru runs resume RUN_ID --model qwen", "with another model")),
    "runs pending": (("halguru runs pending", "and the tool call each waits on"),),
    "runs approve": (
        ("halguru runs approve RUN_ID", "run the call as the model asked"),
        ("""halguru runs approve RUN_ID --edit-args '{"to": "ann@example.com"}'""", "with these arguments"),
    ),
    "runs reject": (("halguru runs reject RUN_ID --reason 'not to customers'", "the model is told why"),),
    "runs cancel": (("halguru runs cancel RUN_ID", "in whichever process or replica runs it"),),
    "jobs list": (("halguru jobs list", ""), ("halguru jobs list --status dead --agent my-agent", "")),
    "jobs show": (("halguru jobs show JOB_ID", "its attempts, error and runs"),),
    "jobs retry": (("halguru jobs retry JOB_ID", ""), ("halguru jobs retry --dead --agent my-agent", "every dead one")),
    "jobs cancel": (("halguru jobs cancel JOB_ID", ""),),
    "channels opt-outs": (("halguru channels opt-outs", "senders who texted STOP"),
                          ("halguru channels opt-outs --agent my-agent --json", "")),
    "channels clear-opt-out": (("halguru channels clear-opt-out +15551234567 --agent my-agent", ""),),
    "channels telegram-webhook": (
        ("halguru channels telegram-webhook my-agent --url https://bot.example.com", "where Telegram posts updates"),
    ),
    "mcp serve": (
        ("halguru mcp serve my-agent", "stdio, for a client that starts it"),
        ("halguru mcp serve my-agent other-agent --http --port 8765", "over streamable HTTP at /mcp"),
    ),
    "config show": (("halguru config show", "every setting and where it comes from"),
                    ("halguru config show --json", "")),
    "config set": (("halguru config set llama_n_ctx 8192", "saved in $HALGURU_HOME/config.toml"),
                   ("halguru config set default_model qwen", "")),
    "config unset": (("halguru config unset llama_n_ctx", "back to its default"),),
    "config path": (("halguru config path", ""),),
    "db status": (("halguru db status", "applied and pending migrations"),
                  ("halguru db status --url postgresql://halguru:secret@db:5432/halguru", "")),
    "db migrate": (("halguru db migrate", "the store HALGURU_DATABASE_URL (or SQLite) names"),),
    "db copy": (
        ("halguru db copy --from sqlite:~/.halguru/halguru.db --to postgresql://halguru:secret@db:5432/halguru", ""),
    ),
    "plugins new": (("halguru plugins new acme", "writes ./halguru-acme"),
                    ("halguru plugins new acme --dir ~/src", "")),
    "deployments list": (("halguru deployments list my-agent", "* marks the version served"),),
    "deployments rollback": (("halguru deployments rollback my-agent 3", "serve version 3"),),
    "deployments unpublish": (("halguru deployments unpublish my-agent", "`rollback` serves it again"),),
    "deployments delete": (("halguru deployments delete my-agent 2", "a version published by mistake"),),
    "keys create": (
        ("halguru keys create my-app --agents basic --expires 30d", "prints the key once"),
        ("halguru keys create ci --user dev@example.com", "a key that acts as that person"),
    ),
    "keys list": (("halguru keys list", "never the keys themselves"), ("halguru keys list --json", "")),
    "keys revoke": (("halguru keys revoke my-app", "by name or id"),),
    "users create": (
        ("halguru users create you@example.com --role admin", "asks for a password"),
        ("printenv PASSWORD | halguru users create ann@example.com --password-stdin", ""),
    ),
    "users invite": (("halguru users invite ann@example.com --role developer --days 3", "a sign-up link"),),
    "users list": (("halguru users list", ""), ("halguru users list --json", "")),
    "users set-role": (("halguru users set-role ann@example.com operator", ""),),
    "users disable": (("halguru users disable ann@example.com", "signed out everywhere"),
                      ("halguru users disable ann@example.com --enable", "let them in again")),
    "users unlock": (("halguru users unlock ann@example.com", "after too many failed sign-ins"),),
    "users reset-2fa": (("halguru users reset-2fa ann@example.com", "a lost phone"),),
    "audit list": (("halguru audit list --since 7d", ""), ("halguru audit list --action auth. --json", "")),
    "audit verify": (("halguru audit verify", "exit 0 when the hash chain is intact"),),
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
