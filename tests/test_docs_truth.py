"""docs/ says what the code does: the names the docs list (audit actions, hooks, routes, module paths) are
read from the docs and checked against the code, so a renamed route or a new action cannot leave them stale."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from halguru import audit

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
SOURCES = [REPO / "halguru", REPO / "server" / "halguru_server"]


def _recorded_actions() -> set[str]:
    """Every action name written as a literal in a call of an audit ``record`` (direct or through to_thread)."""
    found: set[str] = set()
    for root in SOURCES:
        for path in root.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not isinstance(node, ast.Call):
                    continue
                callees = [node.func, *node.args[:1]]
                if not any(ast.unparse(c).endswith("record") for c in callees):
                    continue
                found |= {a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)
                          and audit._NAME.match(a.value)}
    return found


def test_the_audit_doc_lists_every_action_the_code_records() -> None:
    table = re.findall(r"^\| (`[a-z0-9_.]+`(?:, `[a-z0-9_.]+`)*) \|", (DOCS / "audit.md").read_text(), re.M)
    documented = {name for cell in table for name in re.findall(r"`([a-z0-9_.]+)`", cell)}
    recorded = _recorded_actions()
    assert len(recorded) > 20, recorded  # the scan finds the calls
    assert recorded <= audit.ACTIONS, f"recorded but not in audit.ACTIONS: {sorted(recorded - audit.ACTIONS)}"
    assert documented == audit.ACTIONS, (f"missing in docs/audit.md: {sorted(audit.ACTIONS - documented)}; "
                                         f"not recorded: {sorted(documented - audit.ACTIONS)}")


def test_every_hook_has_its_section_in_the_plugin_guide() -> None:
    from halguru.plugins import hookspecs

    hooks = [name for name in dir(hookspecs) if name.startswith("register_")]
    guide = (DOCS / "plugins.md").read_text()
    assert len(hooks) >= 7
    assert [h for h in hooks if f"## `{h}`" not in guide] == []


def test_the_module_map_names_paths_that_exist_and_every_package() -> None:
    text = (DOCS / "architecture.md").read_text()
    named = set(re.findall(r"(?<![\w/])((?:halguru|server/halguru_server)/[\w/]*\w(?:\.py)?)", text))
    assert [p for p in sorted(named) if not (REPO / p).exists()] == []
    packages = [f"{root.relative_to(REPO)}/{d.name}/" for root in SOURCES for d in sorted(root.iterdir())
                if (d / "__init__.py").exists()]
    assert [p for p in packages if p not in text and p.removeprefix("server/halguru_server/") + " " not in text] == []


def _serves(route: str, want: str) -> bool:
    """Whether ``route`` (parameters as ``{}``) serves ``want`` or paths below it: a parameter matches any segment."""
    have, asked = route.split("/"), want.split("/")
    return len(have) >= len(asked) and all(h in (a, "{}") for h, a in zip(have, asked, strict=False))


def test_every_route_the_docs_name_is_served() -> None:
    from fastapi.routing import iter_route_contexts
    from halguru_server.app import create_app
    from halguru_server.settings import ServerSettings

    app = create_app(ServerSettings(dev=True, worker=False))
    served = {re.sub(r"\{[^}]*\}", "{}", r.path) for r in iter_route_contexts(app.routes)}
    missing = []
    for doc in sorted(DOCS.glob("*.md")):
        for path in re.findall(r"`(?:[A-Z]+ )?(/(?:v1|admin|auth|chat|channels)/[^`\s?]*)", doc.read_text()):
            base, _, last = path.rstrip(".,").replace("…", "").replace("\\|", "|").rpartition("/")
            for alt in last.split("|"):  # /v1/runs/{id}/approve|reject (`\|` inside a table)
                want = re.sub(r"\{[^}]*\}|\b[A-Z]+\b", "{}", f"{base}/{alt}").replace("[/{}]", "").rstrip("/*")
                if not any(_serves(s, want) for s in served):
                    missing.append(f"{doc.name}: {path}")
    assert missing == []


def test_every_per_process_setting_is_named_where_the_replicas_are() -> None:
    """A cap counted in each process's memory (its description says "per process") lets a client behind N replicas
    have N times it: the operator setting up replicas must read so in "Several replicas", with what to set."""
    from halguru_server.settings import ServerSettings

    section = (REPO / "README.md").read_text().split("### Several replicas", 1)[1].split("\n## ", 1)[0]
    per_process = [name for name, field in ServerSettings.model_fields.items()
                   if "per process" in (field.description or "")]
    assert "max_followers" in per_process
    assert [name for name in per_process if f"`{name}`" not in section] == []
