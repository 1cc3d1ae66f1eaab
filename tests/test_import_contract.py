"""The import contract of DESIGN.md ("Layout", "Dependencies point down").

- ``halguru`` never imports ``halguru_server``, ``fastapi`` or ``uvicorn``;
- ``halguru.agents`` never imports ``halguru.orchestration``;
- dependencies point down the layers below, never up;
- no module imports a private name (``_name``, or a ``_module``) of another package.

It is an AST walk over every module rather than import-linter contracts: one
of the rules (private names across packages) is not something import-linter
checks, an AST walk sees imports inside functions and under ``TYPE_CHECKING``
and can label them, each message names file:line, and it needs no extra tool.
The checker is tested on a small synthetic tree too, so it cannot pass by
seeing nothing.

Imports under ``if TYPE_CHECKING:`` count: a type-only import up the layers is
still a dependency pointing up (the types belong lower down).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = [(REPO / "halguru", "halguru"), (REPO / "server" / "halguru_server", "halguru_server")]

# Top to bottom: a component may import from its own layer and the layers below.
# A component is ``halguru_server`` or the first part under ``halguru`` (``halguru.agents`` -> "agents").
LAYERS: list[set[str]] = [
    {"halguru_server"},
    {"__main__", "cli"},
    {"tui", "mcp_server", "mcp_draining", "scaffold", "client", "client_errors", "deploy", "login"},
    {"testing"},
    {"jobs"},
    {"orchestration"},
    {"agents"},
    {"channels"},
    {"audit"},
    {"store"},
    {"rag"},
    {"tools"},
    {"models"},
    {"plugins", "config", "errors", "blocking", "yamlfile", "listen", "api_schemas", "names", "durations", "atomic",
     "printable", "storable", "templating", "hangup", "markdown_rows"},
]
# Upward imports the design allows: the store records the typed events of a run.
ALLOWED_UP = {("store", "halguru.agents.events")}
FORBIDDEN_IN_LIBRARY = ("halguru_server", "fastapi", "uvicorn")


@dataclass(frozen=True)
class Import:
    importer: str  # dotted module name
    path: Path
    line: int
    target: str  # dotted module imported from (or imported)
    name: str | None  # the name imported from ``target``; None for a module import
    type_checking: bool


def module_names(packages: list[tuple[Path, str]]) -> dict[str, Path]:
    modules: dict[str, Path] = {}
    for root, name in packages:
        for path in sorted(root.rglob("*.py")):
            parts = [name, *path.relative_to(root).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST, type_checking: bool = False) -> Iterator[tuple[ast.AST, bool]]:
    for child in ast.iter_child_nodes(node):
        yield child, type_checking
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for stmt in child.body:
                yield stmt, True
                yield from _walk(stmt, True)
            for stmt in child.orelse:
                yield stmt, type_checking
                yield from _walk(stmt, type_checking)
        else:
            yield from _walk(child, type_checking)


def resolve(node: ast.ImportFrom, package: str) -> str:
    """The absolute module a ``from ... import`` reads from (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    base = package.split(".")[: len(package.split(".")) - node.level + 1]
    return ".".join([*base, node.module] if node.module else base)


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> list[Import]:
    """Every import in one module (module level, in functions, under TYPE_CHECKING)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[Import] = []
    for node, type_checking in _walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append(Import(module, path, node.lineno, alias.name, None, type_checking))
        elif isinstance(node, ast.ImportFrom):
            source = resolve(node, package)
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                if submodule in modules:  # ``from halguru import rag`` imports the module halguru.rag
                    found.append(Import(module, path, node.lineno, submodule, None, type_checking))
                else:
                    found.append(Import(module, path, node.lineno, source, alias.name, type_checking))
    return found


def private_attribute_uses(module: str, path: Path, modules: dict[str, Path]) -> list[Import]:
    """``alias._name`` or ``pkg.mod._name`` where the module belongs to another package."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    aliases: dict[str, str] = {}  # a local name bound to a module by an import
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases.update({alias.asname: alias.name for alias in node.names if alias.asname})
        elif isinstance(node, ast.ImportFrom):
            source = resolve(node, package)
            for alias in node.names:
                if f"{source}.{alias.name}" in modules:
                    aliases[alias.asname or alias.name] = f"{source}.{alias.name}"
    uses: list[Import] = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and is_private(node.attr)):
            continue
        owner = ast.unparse(node.value)
        target = aliases.get(owner, owner)
        if target in modules and package_of(target) != package_of(module):
            uses.append(Import(module, path, node.lineno, target, node.attr, False))
    return uses


def package_of(module: str) -> str:
    """The top-level package a module belongs to: ``halguru_server`` or ``halguru.<first part>``."""
    parts = module.split(".")
    if parts[0] == "halguru" and len(parts) > 1:
        return ".".join(parts[:2])
    return parts[0]


def component(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] == "halguru_server":
        return "halguru_server"
    if parts[0] == "halguru" and len(parts) > 1:
        return parts[1]
    return None  # the ``halguru`` facade itself, or a third-party module


def layer(name: str) -> int:
    for index, members in enumerate(LAYERS):
        if name in members:
            return index
    raise AssertionError(f"component {name!r} is in no layer of tests/test_import_contract.py: add it to LAYERS")


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def all_imports(packages: list[tuple[Path, str]] = PACKAGES) -> tuple[dict[str, Path], list[Import]]:
    modules = module_names(packages)
    return modules, [imp for module, path in modules.items() for imp in imports_of(module, path, modules)]


def serve_mode_imports(imports: list[Import]) -> list[Import]:
    return [
        imp
        for imp in imports
        if imp.importer.split(".")[0] == "halguru" and imp.target.split(".")[0] in FORBIDDEN_IN_LIBRARY
    ]


def upward_imports(imports: list[Import]) -> list[Import]:
    bad = []
    for imp in imports:
        source, target = component(imp.importer), component(imp.target)
        if imp.target == "halguru" and imp.importer.startswith("halguru.") and imp.importer != "halguru.__main__":
            # the facade re-exports the top of the library: below it, import from the defining module
            if imp.name is None or not (imp.name.startswith("__") and imp.name.endswith("__")):
                bad.append(imp)
            continue
        if source is None or target is None or source == target:
            continue
        if any(source == s and (imp.target == t or imp.target.startswith(t + ".")) for s, t in ALLOWED_UP):
            continue
        if layer(target) < layer(source):
            bad.append(imp)
    return bad


def private_imports(modules: dict[str, Path], imports: list[Import]) -> list[Import]:
    bad = []
    for imp in imports:
        if imp.target.split(".")[0] not in ("halguru", "halguru_server"):
            continue
        if package_of(imp.importer) == package_of(imp.target):
            continue
        names = [*imp.target.split("."), *([imp.name] if imp.name else [])]
        if any(is_private(part) for part in names):
            bad.append(imp)
    for module, path in modules.items():
        bad.extend(private_attribute_uses(module, path, modules))
    return bad


def report(rule: str, bad: list[Import]) -> str:
    """One line per import statement, names joined: ``path:line: from x import a, b [TYPE_CHECKING]``."""
    grouped: dict[tuple[str, int, str, bool], set[str]] = {}
    for imp in bad:
        key = (str(imp.path.relative_to(REPO)), imp.line, imp.target, imp.type_checking)
        grouped.setdefault(key, set()).update([imp.name] if imp.name else [])
    lines = []
    for (path, line, target, type_checking), names in sorted(grouped.items()):
        what = f"from {target} import {', '.join(sorted(names))}" if names else f"import {target}"
        lines.append(f"{path}:{line}: {what}" + (" [TYPE_CHECKING]" if type_checking else ""))
    return f"{rule} ({len(lines)}):\n  " + "\n  ".join(lines)


def test_halguru_never_imports_serve_mode() -> None:
    _, imports = all_imports()
    bad = serve_mode_imports(imports)
    assert not bad, report("halguru imports serve mode (halguru_server, fastapi, uvicorn)", bad)


def test_agents_never_import_orchestration() -> None:
    _, imports = all_imports()
    bad = [
        imp
        for imp in imports
        if component(imp.importer) == "agents" and component(imp.target) == "orchestration"
    ]
    assert not bad, report("halguru.agents imports halguru.orchestration (orchestration wraps the loop)", bad)


def test_dependencies_point_down() -> None:
    _, imports = all_imports()
    bad = upward_imports(imports)
    order = " > ".join("|".join(sorted(members)) for members in LAYERS)
    assert not bad, report(f"imports pointing up the layers {order}", bad)


def test_no_private_names_across_packages() -> None:
    modules, imports = all_imports()
    bad = private_imports(modules, imports)
    assert not bad, report("private names imported from another package", bad)


def test_every_module_is_in_a_layer_and_the_walk_sees_imports() -> None:
    modules, imports = all_imports()
    assert "halguru.agents.runtime" in modules and "halguru_server.app" in modules
    for module in modules:
        name = component(module)
        if name is not None:
            layer(name)
    assert any(imp.importer == "halguru_server.app" and imp.target.startswith("halguru.store") for imp in imports)


def test_the_checker_finds_each_kind_of_violation(tmp_path: Path) -> None:
    """A synthetic tree with one violation per rule: the checks above cannot pass by seeing nothing."""
    lib, server = tmp_path / "halguru", tmp_path / "server" / "halguru_server"
    files = {
        lib / "__init__.py": "__version__ = '0'\n",
        lib / "agents" / "__init__.py": "",
        lib / "agents" / "events.py": "class BaseEvent: ...\n",
        lib / "agents" / "loop.py": (
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n"
            "    from halguru.orchestration.team import Team\n"
            "def f():\n"
            "    import fastapi\n"
        ),
        lib / "orchestration" / "__init__.py": "",
        lib / "orchestration" / "team.py": "from ..agents.loop import f\nfrom halguru import __version__\n",
        lib / "store" / "__init__.py": "",
        lib / "store" / "sqlite.py": "from halguru.agents.events import BaseEvent\ndef _mark(): ...\n",
        lib / "tools" / "__init__.py": "",
        lib / "tools" / "mcp.py": "from halguru.store import sqlite\nx = sqlite._mark\n",
        server / "__init__.py": "",
        server / "runs.py": "from halguru.store.sqlite import _mark\nfrom halguru_server import app\n",
        server / "app.py": "from halguru.orchestration import team\n",
    }
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    modules, imports = all_imports([(lib, "halguru"), (server, "halguru_server")])

    def lines(bad: list[Import]) -> set[tuple[str, int, bool]]:
        return {(imp.importer, imp.line, imp.type_checking) for imp in bad}

    assert lines(serve_mode_imports(imports)) == {("halguru.agents.loop", 5, False)}
    assert lines(upward_imports(imports)) == {
        ("halguru.agents.loop", 3, True),  # agents -> orchestration, type-only still counts
        ("halguru.tools.mcp", 1, False),  # tools -> store
    }
    assert lines(private_imports(modules, imports)) == {
        ("halguru_server.runs", 1, False),  # from halguru.store.sqlite import _mark
        ("halguru.tools.mcp", 2, False),  # sqlite._mark
    }


def test_the_openai_modules_share_only_public_names() -> None:
    """openai_responses imported openai_api's private ``_finish`` and ``_paused``: what the OpenAI-compatible
    modules share is public, so a change to one sees who relies on it."""
    _, imports = all_imports()
    bad = [imp for imp in imports if imp.importer.startswith("halguru_server.openai")
           and imp.target.startswith("halguru_server.openai") and imp.name is not None and is_private(imp.name)]
    assert not bad, report("private names shared between the openai modules", bad)
