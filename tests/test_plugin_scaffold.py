"""`halguru plugins new` writes a plugin package whose own test passes and which installs; the `halguru_plugin`
fixture loads a plugin that is not installed; reset_plugin_manager() forgets what halguru kept of plugins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from halguru.plugins.manager import plugin_failures, reset_plugin_manager
from tests.feedback_plugins import on_path


def test_plugins_new_writes_a_package_whose_test_passes_and_that_installs(tmp_path, halguru_cmd, subprocess_env):
    env = on_path(tmp_path / "nothing-installed", subprocess_env)
    made = subprocess.run([*halguru_cmd, "plugins", "new", "my-tools", "--dir", str(tmp_path)], capture_output=True,
                          text=True, env=env, timeout=60)
    folder = tmp_path / "halguru-my-tools"
    assert made.returncode == 0 and str(folder) in made.stdout, made.stderr
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) == [
        "README.md", "halguru_my_tools/__init__.py", "pyproject.toml", "tests/test_my_tools.py"]
    again = subprocess.run([*halguru_cmd, "plugins", "new", "my-tools", "--dir", str(tmp_path)], capture_output=True,
                           text=True, env=env, timeout=60)
    assert again.returncode == 1 and again.stderr == f"Error: {folder} already exists: choose another NAME or --dir\n"
    bad = subprocess.run([*halguru_cmd, "plugins", "new", "My Tools", "--dir", str(tmp_path)], capture_output=True,
                         text=True, env=env, timeout=60)
    assert bad.returncode == 1 and bad.stderr.startswith("Error: plugin name 'My Tools': use lower-case")

    tested = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=folder,
                            capture_output=True, text=True, env=env, timeout=120)
    assert tested.returncode == 0 and "2 passed" in tested.stdout, tested.stdout + tested.stderr

    site = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-cache-dir", "--disable-pip-version-check",
           "--target", str(site)]
    installed = subprocess.run([*pip, "--no-build-isolation", "--no-index", str(folder)], capture_output=True,
                               text=True, timeout=300)
    if installed.returncode != 0:  # no offline bdist_wheel here: pip builds in an isolated environment
        installed = subprocess.run([*pip, str(folder)], capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    tools = subprocess.run([*halguru_cmd, "tools", "--json"], capture_output=True, text=True,
                           env=on_path(site, subprocess_env), timeout=60)
    rows = {row["name"]: row for row in json.loads(tools.stdout)}
    assert rows["my_tools_reverse"]["plugin"] == "my-tools" and "warning" not in tools.stderr


def _plugin(name: str, source: str) -> types.ModuleType:
    module = types.ModuleType(name)
    exec(compile(source, name, "exec"), module.__dict__)
    return module


EMBEDDER_AND_SECTION = '''
from halguru.plugins import hookimpl


class Embedder:
    dimension = {dimension}

    def embed(self, texts):
        return [[0.0] * self.dimension for _ in texts]


def load_relay(agent):
    return {dimension}


@hookimpl
def register_embedders(register):
    register("flat", Embedder)


@hookimpl
def register_sections(register):
    register("relay", load_relay)
'''


def test_reset_plugin_manager_forgets_the_embedders_and_sections_built_from_plugins(halguru_plugin):
    """get_embedder and the sections registry kept the first plugin's, after reset_plugin_manager()."""
    from halguru.agents.driver import sections
    from halguru.rag.embedders import get_embedder

    halguru_plugin(_plugin("halguru_flat_one", EMBEDDER_AND_SECTION.format(dimension=3)), name="flat")
    assert get_embedder("flat").dimension == 3 and sections()["relay"].loader(None) == 3
    reset_plugin_manager()
    halguru_plugin(_plugin("halguru_flat_two", EMBEDDER_AND_SECTION.format(dimension=5)), name="flat")
    assert get_embedder("flat").dimension == 5 and sections()["relay"].loader(None) == 5


def test_the_fixture_checks_a_plugin_as_an_installed_one_is_and_keeps_installed_ones_out(
        halguru_plugin, tmp_path, monkeypatch, capsys):
    from tests.feedback_plugins import install_cut

    monkeypatch.syspath_prepend(str(install_cut(tmp_path / "site")))  # installed: left out under the fixture
    name = halguru_plugin(_plugin("halguru_untyped", "from halguru.plugins import hookimpl\n\n@hookimpl\n"
                                                    "def register_tools(register):\n    register(len)\n"))
    assert name == "untyped"
    assert plugin_failures() == {"untyped": "register_tools expects a Tool, got the function len (decorate len "
                                            "with @tool)"}
    from halguru.models.registry import providers

    assert "cut" not in providers() and os.environ["HALGURU_LOAD_PLUGINS"] == ""
    assert "plugin 'untyped' skipped" in capsys.readouterr().err


@pytest.fixture(autouse=True)
def _no_leftover_modules():
    yield
    for name in ("halguru_flat_one", "halguru_flat_two", "halguru_untyped"):
        sys.modules.pop(name, None)


def test_docs_show_the_fixture_and_the_scaffold(tmp_path):
    """docs/plugins.md showed a package of one module, halguru_weather.py, and a pyproject without its build
    system, where `halguru plugins new weather` writes halguru_weather/__init__.py, tests and a README."""
    import re

    from halguru.plugins.scaffold import write_plugin

    guide = (Path(__file__).resolve().parents[1] / "docs" / "plugins.md").read_text(encoding="utf-8")
    assert "halguru plugins new" in guide and "halguru_plugin(" in guide
    folder = write_plugin("weather", tmp_path)
    written = sorted(str(f.relative_to(folder)) for f in folder.rglob("*") if f.is_file())
    shown = guide.split("What `halguru plugins new weather` writes:", 1)[1].split("```toml", 1)[0]
    assert sorted(re.findall(r"^  (\S+)", shown, re.MULTILINE)) == written
    pyproject = (folder / "pyproject.toml").read_text(encoding="utf-8")
    toml = guide.split("# pyproject.toml", 1)[1].split("```", 1)[0]
    for line in filter(None, (line.split("#", 1)[0].strip() for line in toml.splitlines())):
        assert line in pyproject, line


@pytest.mark.parametrize(("name", "said"), [
    ("server", "plugin name 'server' is taken: halguru has a plugin of that name; choose another NAME"),
    ("json-tools", "plugin name 'json-tools': a module halguru_json_tools is already installed, and the new "
                   "package would stand in for it; choose another NAME"),
])
def test_plugins_new_refuses_a_name_whose_plugin_could_never_load(tmp_path, monkeypatch, name, said):
    """`halguru plugins new server` wrote a package `halguru_server` with the entry point `server`: installed,
    it was skipped for halguru's own plugin's name and its module stood in for halguru's server package."""
    from halguru.errors import HalguruError
    from halguru.plugins.scaffold import write_plugin

    installed = tmp_path / "site"
    installed.mkdir()
    (installed / "halguru_json_tools.py").write_text("", encoding="utf-8")  # another distribution's module
    monkeypatch.syspath_prepend(str(installed))
    with pytest.raises(HalguruError) as refused:
        write_plugin(name, tmp_path)
    assert str(refused.value) == said and [p.name for p in tmp_path.iterdir()] == ["site"]


def test_plugins_new_says_how_to_get_pytest_which_halguru_does_not_bring(cli, tmp_path: Path) -> None:
    """A newcomer with `pip install halguru` ran `pytest` in the new plugin as it said: there is no pytest in
    that venv (command not found, or another Python's pytest, which cannot import halguru). The package now has
    a `test` extra with pytest, and what it prints and its README install that extra before `pytest`."""
    import tomllib

    said = " ".join(cli("plugins", "new", "weather", "--dir", str(tmp_path)).stdout.split())
    folder = tmp_path / "halguru-weather"
    assert f"`pip install -e '{folder}[test]'` installs it and pytest" in said
    extras = tomllib.loads((folder / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert [req.split(">")[0] for req in extras["test"]] == ["pytest"]
    readme = (folder / "README.md").read_text()
    assert readme.index("pip install -e '.[test]'") < readme.index("\npytest ")
