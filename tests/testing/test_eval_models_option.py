"""`halguru eval` takes its models as `halguru test` and `halguru run` take one: `-m NAME`, repeated; `-m a -m b`
was "No such option: -m", and only `--models a,b` worked."""

from __future__ import annotations

TEST_FILE = "tests:\n  - name: hello\n    turns:\n      - user: Hi\n        expect: {contains: Hi}\n"


def test_eval_takes_m_repeated_and_models_comma_separated(cli, write_agent, tmp_path) -> None:
    agent = write_agent("name: echo\nmodel: scripted\n")
    (agent / "tests").mkdir()
    (agent / "tests" / "test_hello.yaml").write_text(TEST_FILE)
    script = tmp_path / "other.yaml"
    script.write_text("- Hi there\n")
    repeated = cli("eval", str(agent), "-m", "scripted", "-m", f"scripted:{script}").stdout
    rows = [line.split()[:3] for line in repeated.splitlines()[-2:]]
    assert rows == [["scripted", "100%", "(1/1)"], [f"scripted:{script}", "100%", "(1/1)"]]
    combined = cli("eval", str(agent), "--models", f"scripted,scripted:{script}").stdout
    assert [line.split()[:3] for line in combined.splitlines()[-2:]] == rows
    assert cli("eval", str(agent), "--model", "scripted").stdout.splitlines()[-1].split()[:2] == ["scripted", "100%"]
