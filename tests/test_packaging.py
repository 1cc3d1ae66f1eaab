"""What `python -m build` makes: the sdist holds the tracked sources only, and both artifacts carry the licence
and the type markers. Built with hatchling (the build backend, a dev dependency) from a copy of the tracked files
plus what a working tree also holds (npm's packages, deploy/wheelhouse's wheels)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytest.importorskip("hatchling", reason="hatchling is a dev dependency: ./scripts/install installs it")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The sdist and the wheel of a working tree where `npm ci` and deploy/wheelhouse have run."""
    tree = tmp_path_factory.mktemp("tree")
    listed = ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"]  # what git would commit
    tracked = subprocess.run(listed, cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        source = REPO / name
        if source.is_file():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, tree / name)
    for junk in ("clients/typescript/node_modules/typescript/lib/typescript.js",
                 "deploy/wheels/llama_cpp_python-0.3.36-cp311-cp311-linux_x86_64.whl"):
        (tree / junk).parent.mkdir(parents=True, exist_ok=True)
        (tree / junk).write_text("not a source")
    out = tmp_path_factory.mktemp("dist")
    script = ("import sys; from hatchling.build import build_sdist, build_wheel; "
              "print(build_sdist(sys.argv[1])); print(build_wheel(sys.argv[1]))")
    names = subprocess.run([sys.executable, "-c", script, str(out)], cwd=tree, capture_output=True, text=True,
                           check=True, timeout=120).stdout.split()
    return out / names[0], out / names[1]


def test_the_sdist_holds_the_sources_and_the_licence_not_node_modules_or_wheels(built: tuple[Path, Path]) -> None:
    with tarfile.open(built[0]) as tar:
        names = [name.split("/", 1)[1] for name in tar.getnames() if "/" in name]
    assert not [n for n in names if "node_modules" in n or n.endswith(".whl")]
    assert {"LICENSE", "pyproject.toml", "halguru/py.typed", "server/halguru_server/py.typed",
            "deploy/requirements-nodeps.lock", "agents-templates/assistant/agent.yaml"} <= set(names)


def test_the_wheel_carries_the_licence_the_type_markers_and_the_weights_locks(built: tuple[Path, Path]) -> None:
    with zipfile.ZipFile(built[1]) as wheel:
        names = set(wheel.namelist())
        metadata = wheel.read("halguru-0.1.0.dist-info/METADATA").decode()
        lock = wheel.read("halguru/_locks/requirements-nodeps.lock").decode()
    assert "halguru-0.1.0.dist-info/licenses/LICENSE" in names
    assert "License-File: LICENSE" in metadata and "License-Expression: Apache-2.0" in metadata
    assert {"halguru/py.typed", "halguru_server/py.typed", "halguru/_locks/requirements-lead-model.lock"} <= names
    assert lock == (REPO / "deploy" / "requirements-nodeps.lock").read_text()
    assert "Apache License" in (REPO / "LICENSE").read_text()


def test_the_wheel_holds_every_file_of_the_packages_and_the_templates(built: tuple[Path, Path]) -> None:
    """What a `pip install` user runs on: the web chat's, console's and sign-in pages' files, the templates with
    their recordings and tools.py, every module; nothing of halguru/, server/halguru_server/ or agents-templates/
    (which the wheel puts at halguru/_templates) is left out, and the commands, the plugin and pytest's find it."""
    listed = ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "halguru", "server/halguru_server",
              "agents-templates"]
    files = subprocess.run(listed, cwd=REPO, capture_output=True, check=True).stdout.decode().split("\0")
    wanted = {name.removeprefix("server/").replace("agents-templates/", "halguru/_templates/", 1)
              for name in filter(None, files) if (REPO / name).is_file()}
    with zipfile.ZipFile(built[1]) as wheel:
        names = set(wheel.namelist())
        entry_points = wheel.read("halguru-0.1.0.dist-info/entry_points.txt").decode()
    assert {"halguru_server/static/chat.js", "halguru_server/console/templates/console_base.html",
            "halguru_server/identity/templates/login.html", "halguru/_templates/assistant/tools.py"} <= wanted
    assert sorted(wanted - names) == []
    assert "halguru = halguru.cli.app:main" in entry_points  # console_scripts
    assert "server = halguru_server.plugin" in entry_points  # halguru's own plugin: serve, worker, keys...
    assert "halguru = halguru.testing.pytest_plugin" in entry_points
