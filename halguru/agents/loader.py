"""Load an agent project (agent.yaml + optional tools.py) into a ready-to-run Agent."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import sys
import traceback
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from halguru.agents.spec import AgentSpec, load_spec
from halguru.errors import AgentSpecError, ToolError, did_you_mean
from halguru.models.base import ToolSpec
from halguru.tools.decorator import Tool
from halguru.yamlfile import not_utf8, yaml_line_for

if TYPE_CHECKING:
    from halguru.agents.driver import Driver, Section

AGENT_FILE = "agent.yaml"
TOOLS_FILE = "tools.py"


class Retriever(Protocol):
    """What runs search an agent's knowledge through (``halguru test`` records and replays it)."""

    top_k: int

    def retrieve(self, query: str, k: int | None = None) -> list[Any]: ...


@dataclass
class Agent:
    """An agent ready to run: its spec, its resolved tools and its instructions."""

    spec: AgentSpec
    tools: dict[str, Tool] = field(default_factory=dict)
    path: Path | None = None
    # Set when agent.yaml has an orchestration section (``team:``, ``workflow:``): it runs the agent instead of
    # the plain loop. None keeps runs free of orchestration.
    driver: Driver | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def team(self) -> Any:
        """The agent's team (``team:``: members and settings), or None."""
        return getattr(self.driver, "team", None) if self.driver is not None and self.driver.kind == "team" else None

    @property
    def workflow(self) -> Any:
        """The agent's workflow (``workflow:``: steps, needs, step agents), or None."""
        if self.driver is None or self.driver.kind != "workflow":
            return None
        return getattr(self.driver, "workflow", None)

    def uses_mcp(self) -> bool:
        """It, a member of its team or the agent of one of its workflow steps has ``mcp:`` servers."""
        return any(a.spec.mcp for a in self.involved())

    def involved(self) -> list[Agent]:
        """This agent and every agent its driver may run (team members, workflow step agents)."""
        if self.driver is None:
            return [self]
        return [self, *(a for a in self.driver.agents() if a is not self)]

    @cached_property
    def tool_specs(self) -> list[ToolSpec]:
        """The tools as models see them (built once per agent)."""
        return [ToolSpec(name=t.name, description=t.description, parameters=t.parameters) for t in self.tools.values()]

    @cached_property
    def knowledge(self) -> Retriever | None:
        """The agent's knowledge bases (resolved, and folders ingested, on the first retrieval)."""
        if not self.spec.knowledge:
            return None
        from halguru.rag.agent import KnowledgeRetriever

        r = self.spec.retrieval
        return KnowledgeRetriever(self.spec.knowledge, self.path, self.spec.name, r.top_k, r.search, r.embedder)

    @property
    def instructions(self) -> str:
        text = self.spec.instructions.strip()
        if self.spec.instructions_file and self.path is not None:
            extra = (self.path / self.spec.instructions_file).read_text(encoding="utf-8").strip()
            text = f"{text}\n\n{extra}" if text else extra
        return text

    @classmethod
    def from_spec(cls, spec: AgentSpec, tools: list[Tool] | None = None) -> Agent:
        """Build an agent in Python; ``tools`` adds tools of your own to the allowed plugin tools."""
        own = {t.name: t for t in tools or []}
        names = list(dict.fromkeys([*spec.tools, *own]))
        resolved = _resolve_tools(_plugin_tool_list(spec.model_copy(update={"tools": names})), own,
                                  lambda name: f"agent {spec.name}: tools: unknown tool {name!r}")
        agent = cls(spec=spec.model_copy(update={"tools": names}), tools=resolved)
        return _with_knowledge_tool(agent)


def project_file(path: Path) -> tuple[Path, Path]:
    """An agent project's folder and its agent.yaml, given either; one line when ``path`` is neither."""
    path = path.expanduser()
    if path.is_dir():
        if not (path / AGENT_FILE).exists() and (inside := _projects_in(path)):
            shown = ", ".join(inside[:8]) + (", …" if len(inside) > 8 else "")
            raise AgentSpecError(f"{path / AGENT_FILE}: no agent.yaml here; name a project folder in it: {shown}")
        return path, path / AGENT_FILE
    if path.name.endswith((".yaml", ".yml")):
        return path.parent, path
    if not path.exists():
        raise AgentSpecError(no_such_project(path))
    raise AgentSpecError(f"{path}: not an agent project; give a folder with agent.yaml or the file itself")


def _projects_in(folder: Path) -> list[str]:
    """The agent projects directly inside ``folder`` (the first 1000 entries: a home folder can be huge)."""
    from itertools import islice

    try:
        return sorted(p.name for p in islice(folder.iterdir(), 1000) if (p / AGENT_FILE).is_file())
    except OSError:
        return []


def no_such_project(path: Path) -> str:
    """The line for a project path that does not exist (run, serve, build...), with what to type instead."""
    return f"{path}: no such agent project (a folder with agent.yaml){_missing_hint(path)}"


def _missing_hint(path: Path) -> str:
    """Why a project path is missing: a typo of a project beside it, or a template not made yet.

    The README's ``agents-templates/NAME`` exists only in a checkout; elsewhere ``halguru new`` makes it.
    """
    import shlex

    from halguru.config import templates_root

    parent = path.parent
    if hint := did_you_mean(path.name, _projects_in(parent)):
        return hint
    if (templates_root() / path.name / AGENT_FILE).is_file():
        where = f" --dir {shlex.quote(str(parent))}" if parent != Path(".") else ""
        return f"; `halguru new {path.name} --template {path.name}{where}` makes it from the template"
    return ""


_TOOLS_MODULE = "halguru_agent_tools_"


@contextmanager
def _folder_importable(folder: Path) -> Iterator[None]:
    """tools.py may import the modules beside it (``from helpers import fetch``) from whatever folder halguru
    runs in: the folder leads sys.path while tools.py is imported. Those modules are imported afresh each load
    and not left in sys.modules, so a reload reads an edited one, and two agents' ``helpers.py`` do not mix."""
    root = folder.resolve()
    prefix = os.path.join(str(root), "")

    def ours() -> list[str]:  # agents' tools modules (a member's folder may sit inside) keep their entries,
        # and so do installed packages, of a virtual environment inside the folder too (numpy imports once)
        return [name for name, mod in list(sys.modules.items()) if not name.startswith(_TOOLS_MODULE)
                and _beside(getattr(mod, "__file__", None) or "", prefix)]

    for name in ours():
        del sys.modules[name]
    sys.path.insert(0, str(root))
    try:
        yield
    finally:
        with suppress(ValueError):
            sys.path.remove(str(root))
        for name in ours():
            del sys.modules[name]


def _beside(file: str, prefix: str) -> bool:
    """Whether ``file`` is the agent's own code under ``prefix``, not an installed package there."""
    if not file.startswith(prefix) or file.startswith(os.path.join(sys.prefix, "")):
        return False
    parts = Path(file[len(prefix):]).parts
    return "site-packages" not in parts and "dist-packages" not in parts


def _import_hint(exc: BaseException) -> str:
    """`` (did you mean 'tool'?)`` for ``from halguru import tol`` (Python 3.11 suggests nothing there), naming
    the close public name of the module it was imported from."""
    from halguru.errors import did_you_mean

    found = re.match(r"cannot import name '([^']+)' from '([^']+)'", str(exc)) if type(exc) is ImportError else None
    module = sys.modules.get(found[2]) if found else None
    if found is None or module is None:
        return ""
    names = {*getattr(module, "__all__", ()), *dir(module)}  # __all__: a lazy module's names (halguru's `tool`)
    return did_you_mean(found[1], [name for name in names if isinstance(name, str) and not name.startswith("_")])


def load_project_tools(tools_file: Path) -> dict[str, Tool]:
    """Import tools.py under a module name unique to its path and collect its @tool functions."""
    if not tools_file.exists():
        return {}
    digest = hashlib.sha1(str(tools_file.resolve()).encode()).hexdigest()[:10]
    module_name = f"{_TOOLS_MODULE}{digest}"
    spec = importlib.util.spec_from_file_location(module_name, tools_file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered while executing so dataclasses/pydantic can resolve the module's annotations.
    sys.modules[module_name] = module
    try:
        with _folder_importable(tools_file.parent):
            spec.loader.exec_module(module)
    except SyntaxError as exc:
        sys.modules.pop(module_name, None)
        raise AgentSpecError(f"{tools_file}:{exc.lineno}: syntax error: {exc.msg}") from None
    except (Exception, SystemExit) as exc:  # sys.exit() at import would end halguru with its code, silently
        sys.modules.pop(module_name, None)
        # spec.origin: the file made absolute, as the traceback names it (a relative project path had no line)
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename in (str(tools_file), spec.origin)]
        line = f":{frames[-1].lineno}" if frames else ""
        if isinstance(exc, SystemExit):
            raise AgentSpecError(f"{tools_file}{line}: exits when imported (sys.exit({exc.code!r})); a tools "
                                 "file only defines tools") from None
        raise AgentSpecError(f"{tools_file}{line}: {type(exc).__name__}: {exc}{_import_hint(exc)}") from None
    tools = {obj.name: obj for obj in vars(module).values() if isinstance(obj, Tool)}
    for tool in tools.values():  # @tool builds its arguments model when first used: a type without a JSON
        try:  # schema is said here, at the decorator's line, as an error at import was
            tool.arguments_model  # noqa: B018
        except ToolError as exc:
            code = getattr(tool.function, "__code__", None)
            line = f":{code.co_firstlineno}" if code is not None and code.co_filename == spec.origin else ""
            raise AgentSpecError(f"{tools_file}{line}: ToolError: {exc}") from None
    return tools


def untagged_functions(tools_file: Path) -> list[tuple[str, int]]:
    """(name, line) of each top-level function in tools.py that looks like a tool but lacks ``@tool``: public,
    undecorated, with a docstring, and not used by the module's other code (a helper)."""
    import ast

    try:
        tree = ast.parse(tools_file.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return []
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    return [(node.name, node.lineno) for node in tree.body
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not node.name.startswith("_")
            and not node.decorator_list and ast.get_docstring(node) and node.name not in used]


def _resolve_tools(names: list[str], own: dict[str, Tool], unknown: Callable[[str], str]) -> dict[str, Tool]:
    from halguru.tools.registry import plugin_tools

    available = {**plugin_tools(), **own}
    missing = [n for n in names if n not in available]
    if missing:
        raise AgentSpecError(unknown(missing[0]))
    return {n: available[n] for n in names}


def load_agent(path: str | Path, *, with_team: bool = True) -> Agent:
    """Load an agent project from its folder (or its agent.yaml), and its team when it has one."""
    folder, agent_file = project_file(Path(path))
    spec = _with_model_resolved(load_spec(agent_file), folder)
    own = load_project_tools(folder / TOOLS_FILE)

    def unknown(name: str) -> str:
        text = agent_file.read_text(encoding="utf-8")
        line = yaml_line_for(text, ("tools", spec.tools.index(name)))
        available = sorted({*own, *_plugin_tool_names()})
        if name in dict(untagged_functions(folder / TOOLS_FILE)):
            return (f"{agent_file}:{line}: tools: {name!r} is a function in {TOOLS_FILE} without @tool; "
                    "add @tool above it")
        return (f"{agent_file}:{line}: tools: unknown tool {name!r}{did_you_mean(name, available)} "
                f"(available: {', '.join(available)})")

    tools = _resolve_tools(_plugin_tool_list(spec), own, unknown)
    if spec.http_tools:  # declared, so allowed: they need not be listed in tools: (approvals: may name them)
        from halguru.tools.http_tools import http_tools

        for index, (name, http_tool) in enumerate(http_tools(spec.http_tools, folder, agent_file).items()):
            if name in tools:
                line = yaml_line_for(agent_file.read_text(encoding="utf-8"), ("http_tools", index, "name"))
                raise AgentSpecError(f"{agent_file}:{line}: http_tools.{index}.name: {name!r} is already a tool "
                                     "from tools:; choose another name")
            tools[name] = http_tool
    if spec.instructions_file:
        _check_instructions_file(folder / spec.instructions_file, agent_file, spec.instructions_file)
    for index, name in enumerate(spec.approvals):
        # An MCP server's tools are known only when it runs: its allow-list (or no allow-list) may name them.
        if name not in tools and not any(server.tools is None or name in server.tools for server in spec.mcp):
            line = yaml_line_for(agent_file.read_text(encoding="utf-8"), ("approvals", index))
            raise AgentSpecError(f"{agent_file}:{line}: approvals.{index}: {name!r} is not one of this agent's "
                                 f"tools{did_you_mean(name, tools)} ({', '.join(tools) or 'none'})")
    agent = _with_knowledge_tool(Agent(spec=spec, tools=tools, path=folder))
    _load_driver(agent, agent_file, skip=() if with_team else ("team",))
    _LOADED[id(agent)] = agent
    return agent


_LOADED: weakref.WeakValueDictionary[int, Agent] = weakref.WeakValueDictionary()  # those loaded and still held


def folders_in_use() -> list[Path]:
    """The folders of the agents loaded in this process that are still held (served, or a run in flight on one):
    a server removing a deleted version's folder spares these (a run may still read its files)."""
    return [agent.path.resolve() for agent in list(_LOADED.values()) if agent.path is not None]


def _check_instructions_file(path: Path, agent_file: Path, named: str) -> None:
    """The file is there and is UTF-8 text (as the run reads it): else one line naming agent.yaml's line."""
    problem = "does not exist" if not path.exists() else "is not a file" if not path.is_file() else None
    if problem is None:
        try:
            path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            problem = "is " + not_utf8(path, exc).removeprefix(f"{path}: ").replace("; save it", ", save it")
        except OSError as exc:
            problem = f"cannot be read ({exc.strerror})"
    if problem is not None:
        line = yaml_line_for(agent_file.read_text(encoding="utf-8"), ("instructions_file",))
        raise AgentSpecError(f"{agent_file}:{line}: instructions_file: {named} {problem}")


def _with_model_resolved(spec: AgentSpec, folder: Path) -> AgentSpec:
    """A relative path in ``model:`` (a .gguf file, ``scripted:s.yaml``) is relative to the agent folder."""
    from halguru.models.references import resolve_reference

    model = resolve_reference(spec.model, folder)
    return spec if model == spec.model else spec.model_copy(update={"model": model})


_LOADING: ContextVar[tuple[Path, ...]] = ContextVar("halguru_loading_drivers", default=())  # folders, outermost first


def _load_driver(agent: Agent, agent_file: Path, skip: tuple[str, ...]) -> None:
    """The driver of the agent's orchestration section, from the loader its plugin registered."""
    from halguru.agents.driver import sections

    registered = sections()
    used = [name for name in registered if name not in skip and agent.spec.section(name) is not None]
    if len(used) > 1:
        line = yaml_line_for(agent_file.read_text(encoding="utf-8"), (used[1],))
        raise AgentSpecError(f"{agent_file}:{line}: {used[1]}: an agent has one of {' or '.join(used)}, not both")
    if used:
        # A workflow's step or a team's member may be a folder whose own section leads back here: one line
        # naming the loop, not a RecursionError
        loading = _LOADING.get()
        folder = agent_file.resolve().parent
        if folder in loading:
            chain = " → ".join(str(f.name) for f in (*loading[loading.index(folder):], folder))
            raise AgentSpecError(f"{agent_file}: {used[0]}: agents lead back to one another in a loop ({chain})")
        token = _LOADING.set((*loading, folder))
        try:
            agent.driver = _driver_of(agent, agent_file, used[0], registered[used[0]])
        finally:
            _LOADING.reset(token)


def _driver_of(agent: Agent, agent_file: Path, name: str, section: Section) -> Driver:
    """``section``'s loader on the agent. A plugin's loader that raises or returns no driver is one line naming
    the agent's file, the section and the plugin (a traceback from the plugin's code told neither)."""
    from halguru.errors import HalguruError, exception_line

    where = f"{agent_file}:{yaml_line_for(agent_file.read_text(encoding='utf-8'), (name,))}: {name}"
    try:
        driver = section.loader(agent)
    except HalguruError as exc:
        if section.builtin:  # team:, workflow: say where, in this agent.yaml or a member's
            raise
        raise AgentSpecError(f"{where}: {exc} (plugin {section.plugin!r})") from None
    except Exception as exc:
        raise AgentSpecError(f"{where}: plugin {section.plugin!r} failed to load agent {agent.name}'s section "
                             f"({exception_line(exc)})") from None
    if not callable(getattr(driver, "drive", None)):
        raise AgentSpecError(f"{where}: plugin {section.plugin!r} gave agent {agent.name} a "
                             f"{type(driver).__name__}, not a driver (halguru.agents.driver.Driver)")
    return driver


def _plugin_tool_list(spec: AgentSpec) -> list[str]:
    """``tools:`` less search_knowledge, which an agent with knowledge gets from its knowledge bases."""
    return [n for n in spec.tools if not (spec.knowledge and n == "search_knowledge")]


def _with_knowledge_tool(agent: Agent) -> Agent:
    """In tool mode, an agent with knowledge gets ``search_knowledge`` (the runtime traces its retrievals)."""
    spec = agent.spec
    if spec.knowledge and (spec.retrieval.mode in ("tool", "both") or "search_knowledge" in spec.tools):
        from halguru.rag.agent import TOOL_NAME, knowledge_tool

        agent.tools.setdefault(TOOL_NAME, knowledge_tool(agent))
    return agent


def _plugin_tool_names() -> set[str]:
    from halguru.tools.registry import plugin_tools

    return set(plugin_tools())
