"""Every command's `--help` ends with examples, and every example is a command line halguru takes: `halguru run
--help` had none (nor had `halguru --help`, or any group's), so a newcomer went back to the README for each; nor
had any group's commands (`halguru models add --help`, `halguru mcp serve --help`: 57 of them)."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = """
import json, shlex
import typer
from halguru.cli.app import _add_plugin_commands, app
from halguru.cli.examples import EXAMPLES, add_examples

_add_plugin_commands()
add_examples(app)
root = typer.main.get_command(app)
problems = []


def walk(command, path):
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from walk(sub, f"{path} {name}".strip())


for name, command in walk(root, ""):  # every command and group, their commands and the server's too
    if "Examples:" not in (command.epilog or ""):
        problems.append(f"halguru {name} --help has no examples")
for path, examples in EXAMPLES.items():
    for line, _note in examples:
        words = shlex.split(line.split("|")[-1])
        assert words[0] == "halguru", line
        command, at = root, 1
        while hasattr(command, "commands") and at < len(words) and words[at] in command.commands:
            command, at = command.commands[words[at]], at + 1
        if words[1:at][:len(path.split())] != path.split():  # a group's examples are of its commands
            problems.append(f"{line!r} is not an example of `halguru {path}`")
        options = {"--help"} | {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
        problems += [f"{line!r}: {w} is no option of halguru {' '.join(words[1:at])}" for w in words[at:]
                     if w.startswith("-") and w != "-" and w.split("=")[0] not in options]
print(json.dumps(problems))
"""


def test_every_command_has_examples_and_each_is_a_command_halguru_takes(subprocess_env) -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=subprocess_env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1]) == []


def test_help_shows_the_examples(halguru_cmd, subprocess_env) -> None:
    for args, example in ((["--help"], 'halguru run my-agent "What is 17*23?"'),
                          (["run", "--help"], 'halguru run my-agent "And times 2?" -c last'),
                          (["logs", "--help"], "halguru logs show last"),
                          (["keys", "--help"], "halguru keys create my-app --agents basic --expires 30d"),
                          (["mcp", "serve", "--help"], "halguru mcp serve my-agent"),
                          (["models", "add", "--help"], "halguru models add qwen --gguf ~/models/qwen2.5")):
        out = subprocess.run([*halguru_cmd, *args], env=subprocess_env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and "\nExamples:\n" in out.stdout.replace("  Examples:", "Examples:"), out.stdout
        assert f"    {example}" in out.stdout, out.stdout


def test_the_command_list_says_what_each_command_does_without_cutting_it(halguru_cmd, subprocess_env) -> None:
    """22 of the 31 commands of `halguru --help` ended in '...' mid-sentence (`Check an agent project as a run
    will need it: agent.yaml,...`): click cuts a command's help to one line."""
    env = {**subprocess_env, "COLUMNS": "80"}
    out = subprocess.run([*halguru_cmd, "--help"], env=env, capture_output=True, text=True, timeout=60).stdout
    commands = out.split("\nCommands:\n")[1].split("\n\n")[0]
    assert not [line for line in commands.splitlines() if line.rstrip().endswith("...")], commands
    assert max(len(line) for line in out.splitlines()) <= 80
    rows = " ".join(commands.split())  # a description wraps onto a second line
    for said in ("validate Check an agent project as a run will need it: agent.yaml, tools.py, the model,",
                 "eval Run the conversation tests against several models and compare them.",
                 "serve Serve agents: REST API (/swagger), OpenAI-compatible API, web chat (/chat/), webhooks,"):
        assert said in rows, commands
