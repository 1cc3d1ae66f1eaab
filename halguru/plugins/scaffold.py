"""``halguru plugins new NAME``: a small, installable plugin package to start from.

It holds a pyproject with the ``halguru`` entry point, one example tool and a test that loads the plugin
without installing it (the ``halguru_plugin`` pytest fixture); ``pip install -e '.[test]'`` makes ``halguru tools``
list the tool and brings pytest, which a plain ``pip install halguru`` does not, so ``pytest`` passes in it.
"""

from __future__ import annotations

import re
from pathlib import Path

from halguru.errors import HalguruError

NAME = re.compile(r"[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*")

PYPROJECT = """\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "{dist}"
version = "0.1.0"
description = "A halguru plugin: the {tool} tool."
requires-python = ">=3.11"
dependencies = ["halguru"]

[project.optional-dependencies]
test = ["pytest>=8"]  # halguru's own install has no pytest: `pip install -e '.[test]'`, then `pytest`

[project.entry-points.halguru]
{name} = "{module}"

[tool.setuptools]
packages = ["{module}"]

[tool.pytest.ini_options]
pythonpath = ["."]
testpaths = ["tests"]
"""

MODULE = '''\
"""The {name} halguru plugin: its hooks (docs/plugins.md in halguru shows every one)."""

from __future__ import annotations

from typing import Any

from halguru import tool
from halguru.plugins import hookimpl


@tool(timeout=10)
def {tool}(text: str) -> str:
    """Reverse a text."""
    return text[::-1]


@hookimpl
def register_tools(register: Any) -> None:
    register({tool})
'''

TEST = '''\
"""The plugin, loaded without installing it by halguru's ``halguru_plugin`` pytest fixture."""

from pathlib import Path

import {module}
from halguru.plugins.manager import plugin_failures
from halguru.tools.registry import plugin_tools


def test_it_registers_its_tool(halguru_plugin):
    halguru_plugin({module}, name="{name}")
    assert plugin_failures() == {{}}
    assert plugin_tools()["{tool}"].function("abc") == "cba"


def test_an_agent_calls_the_tool(halguru_plugin, halguru_agent, halguru_run, scripted_model, tmp_path: Path):
    halguru_plugin({module}, name="{name}")
    (tmp_path / "agent.yaml").write_text("name: tester\\nmodel: scripted\\ntools: [{tool}]\\n")
    model = scripted_model([{{"tool_calls": [{{"name": "{tool}", "arguments": {{"text": "abc"}}}}]}}, "done"])
    result = halguru_run(halguru_agent(tmp_path), "Reverse abc", model=model)
    assert result.ok and result.output == "done"
    assert [e.content for e in result.events if e.type == "tool_result"] == ["cba"]
'''

README = """\
# {dist}

A halguru plugin (entry point `{name}`) giving agents the `{tool}` tool.

```bash
pip install -e '.[test]'  # the plugin and pytest; then: halguru plugins, halguru tools
pytest                    # runs its test (the halguru_plugin fixture loads the plugin)
```

An agent allows the tool with `tools: [{tool}]` in its agent.yaml.
"""


def write_plugin(name: str, parent: Path) -> Path:
    """Write the package ``halguru-NAME`` into ``parent`` and return its folder; an invalid name or a folder
    already there is a one-line error, and nothing is written."""
    if not NAME.fullmatch(name):
        raise HalguruError(f"plugin name {name!r}: use lower-case letters, digits and single - or _ "
                           "(starting with a letter), e.g. weather or my-tools")
    ident = name.replace("-", "_")
    values = {"name": name, "dist": f"halguru-{ident.replace('_', '-')}", "module": f"halguru_{ident}",
              "tool": f"{ident}_reverse"}
    _free(name, values["module"])
    folder = parent / values["dist"]
    if folder.exists():
        raise HalguruError(f"{folder} already exists: choose another NAME or --dir")
    files = {"pyproject.toml": PYPROJECT, "README.md": README, f"{values['module']}/__init__.py": MODULE,
             f"tests/test_{ident}.py": TEST}
    for relative, template in files.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template.format(**values), encoding="utf-8")
    return folder


def _free(name: str, module: str) -> None:
    """Refuse a name whose plugin could never load: an entry point of that name is installed (halguru's own
    ``server``), or a module ``halguru_NAME`` is (``halguru_server``, which the new package would shadow, and
    ``halguru serve`` with it)."""
    from importlib.metadata import entry_points
    from importlib.util import find_spec

    from halguru.plugins.manager import ENTRY_POINT_GROUP

    taken = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if taken:
        owner = taken[0].dist.name if taken[0].dist is not None else "an installed distribution"
        raise HalguruError(f"plugin name {name!r} is taken: {owner} has a plugin of that name; choose another NAME")
    if find_spec(module) is not None:
        raise HalguruError(f"plugin name {name!r}: a module {module} is already installed, and the new package "
                           "would stand in for it; choose another NAME")
