"""Agent project templates: list them and create a project from one."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from halguru.agents.spec import NAME_PATTERN, agent_json_schema
from halguru.config import templates_root
from halguru.errors import HalguruError, did_you_mean
from halguru.names import NAME_RULE, name_too_long

SCHEMA_FILE = "agent.schema.json"
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", ".halguru")


@dataclass(frozen=True)
class Template:
    name: str
    description: str
    path: Path


def list_templates() -> list[Template]:
    found = []
    for folder in sorted(templates_root().iterdir()):
        agent_file = folder / "agent.yaml"
        if agent_file.is_file():
            data = yaml.safe_load(agent_file.read_text(encoding="utf-8")) or {}
            found.append(Template(folder.name, data.get("description", ""), folder))
    return found


def create_project(name: str, template: str = "basic", parent: Path = Path(".")) -> Path:
    """Copy a template to ``parent/name`` and name the agent; all or nothing."""
    if not re.fullmatch(NAME_PATTERN, name):
        raise HalguruError(f"invalid agent name {name!r}: {NAME_RULE}")
    if too_long := name_too_long(name):
        raise HalguruError(f"invalid agent name {name[:20] + '…'!r}: {too_long}")
    templates = {t.name: t for t in list_templates()}
    if template not in templates:
        raise HalguruError(f"unknown template {template!r}{did_you_mean(template, templates)}; choose one of: "
                           f"{', '.join(templates)}")
    target = parent / name
    if parent.exists() and not parent.is_dir():
        raise HalguruError(f"--dir {parent}: not a folder (the project is created inside it)")
    if target.exists():
        raise HalguruError(f"{target} already exists; choose another name or remove it")
    try:  # a folder that cannot be written (read-only): named as given, not as the hidden staging folder
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=parent))
    except OSError as exc:
        raise HalguruError(f"cannot create {target}: {exc.strerror or exc}; nothing was created") from None
    try:
        project = staging / name
        shutil.copytree(templates[template].path, project, ignore=_IGNORE)
        agent_file = project / "agent.yaml"
        text = agent_file.read_text(encoding="utf-8")
        # quoted where YAML would read another thing than the name: `name: 2024` is a number, `yes` true, `null`
        # nothing, and the project `halguru new 2024` made did not load
        value = name if yaml.safe_load(name) == name else f"'{name}'"
        text = re.sub(r"^name:.*$", lambda _: f"name: {value}", text, count=1, flags=re.MULTILINE)
        agent_file.write_text(text, encoding="utf-8")
        (project / SCHEMA_FILE).write_text(json.dumps(agent_json_schema(), indent=2) + "\n", encoding="utf-8")
        project.rename(target)
    except OSError as exc:  # a full disk; shutil.Error (an OSError) lists each file copytree failed on, as a repr
        why = exc.strerror or (str(exc.args[0][0][2]) if isinstance(exc, shutil.Error) and exc.args[0] else str(exc))
        why = re.sub(r"^\[Errno \d+\] |: '.*$", "", why)  # without the paths of the staging copy, gone below
        raise HalguruError(f"cannot create {target}: {why}; nothing was created") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
