"""Text from outside cannot drive the operator's terminal: a visitor's message, a model's answer or a key's name
holding escape sequences or bidi overrides is printed with those characters shown, not obeyed."""

from __future__ import annotations

import json
import subprocess

from halguru.printable import printable

HOSTILE = "hi \x1b[31mred\x1b[0m \x1b]0;pwned\x07 \u202eevil\u202c \x9b2J done"


def test_control_characters_and_bidi_overrides_are_shown_tabs_and_line_breaks_kept() -> None:
    assert printable(HOSTILE) == "hi \\x1b[31mred\\x1b[0m \\x1b]0;pwned\\x07 \\u202eevil\\u202c \\x9b2J done"
    assert printable("a\tb\r\nc\nd") == "a\tb\nc\nd" and printable("plain ünïcode ✓") == "plain ünïcode ✓"


def test_logs_runs_and_the_event_tree_show_a_hostile_message_inert(cli, write_agent, halguru_cmd,
                                                                   subprocess_env) -> None:
    folder = write_agent("name: echoer\nmodel: scripted\n")  # echoes the message: the answer carries it too
    cli("run", str(folder), HOSTILE)
    run_id = json.loads(cli("logs", "--json").stdout)[0]["id"]
    outputs = [cli("logs").stdout, cli("logs", "show", run_id).stdout, cli("runs", "list").stdout]
    piped = subprocess.run([*halguru_cmd, "logs", "show", run_id], env=subprocess_env, capture_output=True,
                           text=True, check=True).stdout
    for out in [*outputs, piped]:
        assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out and "\x9b" not in out, out
    assert "\\x1b]0;pwned" in piped and "\\u202eevil" in piped
    assert json.loads(cli("logs", "--json").stdout)[0]["input"] == HOSTILE  # stored and exported as it came


def test_a_key_name_chosen_by_an_api_client_is_listed_inert(halguru_cmd, subprocess_env) -> None:
    from halguru_server.keys import create_key

    from halguru.store import open_store

    create_key(open_store(), "app\x1b[2J\u202etxt.exe")  # what POST /v1/keys accepts as a name
    listing = subprocess.run([*halguru_cmd, "keys", "list"], env=subprocess_env, capture_output=True, text=True,
                             check=True).stdout
    assert "\x1b" not in listing and "\u202e" not in listing and "app\\x1b[2J\\u202etxt.exe" in listing


def test_a_test_name_and_a_file_name_are_printed_inert(write_agent, halguru_cmd, subprocess_env, tmp_path) -> None:
    """`halguru test`'s progress lines name each test, and `kb ingest -v` each file: either is anyone's text."""
    folder = write_agent("name: t\nmodel: scripted\n")
    (folder / "tests").mkdir()
    (folder / "tests" / "test_x.yaml").write_text(
        'tests:\n  - name: "x\\e[2J\\e]0;pwned\\ahi"\n    turns: [{user: hi, expect: {contains: hi}}]\n')
    done = subprocess.run([*halguru_cmd, "test", str(folder), "--live"], env=subprocess_env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stderr + done.stdout and "\\x1b[2J" in done.stderr, done.stderr
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "odd\x1b[31mname\nline.txt").write_text("some text about parcels")
    subprocess.run([*halguru_cmd, "kb", "create", "notes", "--embedder", "wordllama"], env=subprocess_env,
                   check=True, capture_output=True, timeout=120)
    ingested = subprocess.run([*halguru_cmd, "kb", "ingest", "notes", str(docs), "-v"], env=subprocess_env,
                              capture_output=True, text=True, timeout=300)
    assert ingested.returncode == 0, ingested.stderr
    assert "\x1b" not in ingested.stdout and "odd\\x1b[31mname" in ingested.stdout, ingested.stdout


def test_a_hostile_file_name_and_heading_are_shown_inert_by_kb_search_and_kb_show(cli, tmp_path) -> None:
    """A search's citation line names the file and its heading path: both are the document author's text."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "esc\x1b[31mname.md").write_text("# Head \x1b]0;PWNED\x07 \u202eevil\n\nParcels ship on Mondays.\n")
    cli("kb", "create", "notes", "--embedder", "wordllama")
    cli("kb", "ingest", "notes", str(docs))
    found = cli("kb", "search", "notes", "parcels mondays", "--mode", "fts", "-k", "1").stdout
    shown = cli("kb", "show", "notes").stdout
    for out in (found, shown):
        assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out, out
    assert "esc\\x1b[31mname.md" in shown and "esc\\x1b[31mname.md" in found and "\\x1b]0;PWNED" in found, found
    hits = json.loads(cli("kb", "search", "notes", "parcels", "--json").stdout)  # --json: as stored, one array
    assert hits[0]["source"].endswith("esc\x1b[31mname.md")
    assert json.loads(cli("kb", "search", "notes", "zzzqqq", "--mode", "fts", "--json").stdout) == []


def test_error_lines_and_chat_tool_descriptions_are_printed_inert(write_agent, halguru_cmd, subprocess_env,
                                                                 tmp_path) -> None:
    """Error text is often someone else's: a model endpoint's reply, an HTTP tool's body, an MCP server's
    stderr. The `Error:` line of `halguru run`, a failed command's one line and chat's `/tools` (a plugin's or
    MCP server's description, which Rich read as markup: `[/nope]` crashed the chat) show it inert."""
    script = tmp_path / "s.yaml"
    script.write_text(f"- {{error: {json.dumps('upstream said ' + HOSTILE)}}}\n")
    folder = write_agent(f"name: fe\nmodel: scripted:{script}\ntools: [shout]\n",
                         tools_py='from halguru import tool\n\n@tool\ndef shout(text: str) -> str:\n'
                                  '    """Shout [bold]it[/] \\x1b[2J [/nope]."""\n    return text\n')
    ran = subprocess.run([*halguru_cmd, "run", str(folder), "hi"], env=subprocess_env, capture_output=True,
                         text=True, timeout=60)
    assert ran.returncode == 1 and "upstream said hi \\x1b[31mred" in ran.stderr, ran.stderr
    missing = subprocess.run([*halguru_cmd, "logs", "show", "run_\x1b]0;pwned\x07"], env=subprocess_env,
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1 and "run_\\x1b]0;pwned\\x07" in missing.stderr, missing.stderr
    chat = subprocess.run([*halguru_cmd, "chat", str(folder)], input="/tools\n/exit\n", capture_output=True,
                          text=True, env=subprocess_env, timeout=60, start_new_session=True)
    assert chat.returncode == 0 and "Shout [bold]it[/] \\x1b[2J [/nope]." in chat.stdout, chat.stdout + chat.stderr
    for out in (ran.stdout, ran.stderr, missing.stderr, chat.stdout, chat.stderr):
        assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out, out
