"""A third newcomer's pass through the README: a mistyped, swapped or not-yet-made project path says what to type."""

from __future__ import annotations

from pathlib import Path


def test_a_misspelt_project_folder_gets_a_did_you_mean(cli_error, write_agent, tmp_path: Path):
    write_agent("name: my-agent\nmodel: scripted\n", name="my-agent")
    line = cli_error("run", str(tmp_path / "my-agnet"), "Hi")
    assert line.endswith("no such agent project (a folder with agent.yaml) (did you mean 'my-agent'?)")


def test_a_readme_template_path_outside_a_checkout_says_how_to_make_it(cli_error, tmp_path: Path):
    missing = tmp_path / "agents-templates" / "assistant"
    line = cli_error("validate", str(missing))
    assert line.endswith(f"`halguru new assistant --template assistant --dir {missing.parent}` makes it from "
                         "the template")


def test_the_message_before_the_project_names_the_swap(cli_error, write_agent, tmp_path: Path):
    agent = write_agent("name: my-agent\nmodel: scripted\n", name="my-agent")
    line = cli_error("run", "Hi there", str(agent))
    assert line == (f"Error: Hi there: no such agent project, but {agent} is one: the project comes first "
                    f"(halguru run {agent} 'Hi there')")


def test_a_folder_of_projects_names_them(cli_error, write_agent, tmp_path: Path):
    write_agent("name: my-agent\nmodel: scripted\n", name="my-agent")
    write_agent("name: my-team\nmodel: scripted\n", name="my-team")
    line = cli_error("validate", str(tmp_path))
    assert line == (f"Error: {tmp_path / 'agent.yaml'}: no agent.yaml here; name a project folder in it: "
                    "my-agent, my-team")


def test_serve_and_build_of_a_readme_template_path_outside_a_checkout_say_how_to_make_it(cli_error, tmp_path: Path):
    """`halguru serve agents-templates/basic ... --dev` is the README's first serve command; after `pip install` that
    folder is not there, and serve (and build) said only "no such agent project", where run and validate say what
    to type."""
    missing = tmp_path / "agents-templates" / "basic"
    make = f"`halguru new basic --template basic --dir {missing.parent}` makes it from the template"
    assert cli_error("serve", str(missing), "--dev").endswith(make)
    assert cli_error("build", str(missing), "--tag", "example.com/basic:1").endswith(make)
