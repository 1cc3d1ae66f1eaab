"""What `halguru validate` checks beyond loading an agent: that its model, knowledge, channels, MCP servers,
metadata and secrets will work when a run needs them; and the narrower checks `run`, `chat`, `dev` and `serve`
make before a run (the model, the knowledge folders, the knowledge bases' embedders)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from halguru.agents.loader import AGENT_FILE, TOOLS_FILE, Agent, load_agent, untagged_functions
from halguru.errors import AgentSpecError, did_you_mean
from halguru.yamlfile import yaml_line_for

if TYPE_CHECKING:
    from halguru.models.base import ModelEntry


@dataclass
class ProjectReport:
    """What ``halguru validate`` found: the loaded agent, the tools each MCP server offers, and warnings."""

    agent: Agent
    mcp_tools: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # (agent, server) -> its tools
    warnings: list[str] = field(default_factory=list)


def validate_project(path: str | Path) -> Agent:
    """Load the agent and check what a run will need; raise on the first problem."""
    return check_project(path).agent


def check_project(path: str | Path) -> ProjectReport:
    """Load the agent and check, for it and every agent it may run (team members, workflow step agents),
    what a run will need: the model (a GGUF file whole, a script readable), the knowledge folders or bases,
    the MCP servers (started, each within its timeout) and tools.py; and the agent's metadata as serve and
    the worker read it. Raises on the first problem."""
    agent = load_agent(path)
    report = ProjectReport(agent)
    report.warnings += _check_metadata(agent)
    for one in agent.involved():
        assert one.path is not None
        agent_file = one.path / AGENT_FILE
        text = agent_file.read_text(encoding="utf-8")
        if not (one is agent and agent.workflow is not None):  # a workflow has no model of its own
            report.warnings += _check_model(one, agent_file, text)
        _check_knowledge(one, agent_file, text)
        _check_channels(one, agent_file, text)
        if one.spec.mcp:
            team = agent.team.members.get(one.name) if agent.team is not None else None
            team_tools = [t.name for t in team.team_tool_specs] if team is not None else []
            offered, crowded = _check_mcp(one, agent_file, text, team_tools)
            report.mcp_tools.update(offered)
            report.warnings += crowded
        if agent.spec.team is None and _offers_no_tool(one) and one.spec.tool_choice == "required":
            report.warnings.append(f"{agent_file}:{yaml_line_for(text, ('tool_choice',))}: tool_choice: required "
                                   "but this agent has no tools, so the model just answers; list some in tools: "
                                   "or use auto")
        report.warnings += _unset_secrets(one, agent_file, text)
        tools_file = one.path / TOOLS_FILE
        report.warnings += [f"{tools_file}:{line}: {name}() looks like a tool but has no @tool, so no agent can "
                            f"call it; add @tool (or name it _{name} if it is a helper)"
                            for name, line in untagged_functions(tools_file)]
    return report


def _check_metadata(agent: Agent) -> list[str]:
    """``metadata:`` as ``serve`` and the worker read it (web_chat, embed_origins, retention_days): refused
    here with the words they would use, at the key's line. Only the agent itself: a team member's or a step
    agent's metadata is not served."""
    from halguru.agents.metadata import MetadataError, check_metadata

    assert agent.path is not None
    agent_file = agent.path / AGENT_FILE
    text = agent_file.read_text(encoding="utf-8")
    try:
        warnings = check_metadata(agent.spec.metadata)
    except MetadataError as exc:
        line = yaml_line_for(text, ("metadata", exc.key)) or yaml_line_for(text, ("metadata",)) or 1
        raise AgentSpecError(f"{agent_file}:{line}: {exc}") from None
    return [f"{agent_file}:{yaml_line_for(text, ('metadata', 'embed_origins')) or 1}: {w}" for w in warnings]


def _unset_secrets(agent: Agent, agent_file: Path, text: str) -> list[str]:
    """An HTTP tool whose secret is neither in the environment nor in the keyring: said now, not at its first
    call (a warning: the server that runs it may have it where this shell does not)."""
    import os

    from halguru.models.secrets import lookup_secret

    found = []
    for i, tool in enumerate(agent.spec.http_tools):
        secret = tool.auth.secret if tool.auth is not None else None
        if secret and not (os.environ.get(secret) or lookup_secret(secret)):
            line = yaml_line_for(text, ("http_tools", i, "auth", "secret")) or 1
            found.append(f"{agent_file}:{line}: http_tools.{i}.auth.secret: {secret} is not set, so {tool.name} "
                         f"will fail when called; export {secret}=... or `keyring set halguru {secret}`")
    return found


def _offers_no_tool(agent: Agent) -> bool:
    """Whether the model is offered no tool at all: none listed, declared (HTTP, MCP) or for knowledge."""
    spec = agent.spec
    searches = bool(spec.knowledge) and spec.retrieval.mode != "auto"  # search_knowledge
    return not (spec.tools or spec.http_tools or spec.mcp or searches)


def check_agent_model(agent: Agent) -> None:
    """Refuse the agent's own model before a run starts, in the words of `halguru validate`
    (``my-agent/agent.yaml:4: model: unknown model 'smolm2' (did you mean 'smollm2'?)...``): a typo made
    `halguru run` store a failed run, and `halguru chat` fail at every message. A workflow has no model of its
    own; team members' and step agents' models are checked as they run."""
    if agent.workflow is not None or agent.path is None:
        return
    agent_file = agent.path / AGENT_FILE
    _model_entry(agent, agent_file, agent_file.read_text(encoding="utf-8"))  # no keyring look-up: no warning


def check_agent_knowledge(agent: Agent) -> None:
    """Refuse a ``knowledge:`` entry that is neither a folder nor a base before a run starts, in the words of
    `halguru validate` (``agent.yaml:21: knowledge.0: 'knowlege' is neither a folder ... (did you mean
    'knowledge'?)``): `halguru run` stored a failed run saying less, and `halguru chat` failed at every message."""
    if agent.path is None or not agent.spec.knowledge:
        return
    agent_file = agent.path / AGENT_FILE
    _check_knowledge(agent, agent_file, agent_file.read_text(encoding="utf-8"))


def _model_entry(agent: Agent, agent_file: Path, text: str) -> ModelEntry:
    """The agent's model entry once it checks out; else the error at agent.yaml's ``model:`` line."""
    from halguru.errors import ModelError
    from halguru.models.references import check_model

    try:
        return check_model(agent.spec.model)
    except ModelError as exc:
        raise AgentSpecError(f"{agent_file}:{yaml_line_for(text, ('model',))}: model: {exc}") from None


def _check_model(agent: Agent, agent_file: Path, text: str) -> list[str]:
    """Raise on a model that cannot load; warn about a hosted endpoint with no API key (a local server such as
    llama-server or Ollama needs none, so that is not an error)."""
    from urllib.parse import urlparse

    from halguru.errors import ModelError
    from halguru.models.secrets import resolve_api_key

    entry = _model_entry(agent, agent_file, text)
    line = yaml_line_for(text, ("model",))
    try:
        keyless = entry.provider == "openai" and resolve_api_key(entry) is None
    except ModelError as exc:
        raise AgentSpecError(f"{agent_file}:{line}: model: {exc}") from None
    host = urlparse(str(entry.options.get("base_url", ""))).hostname or ""
    if keyless and host not in ("localhost", "127.0.0.1", "::1"):
        variable = entry.options.get("api_key_env") or "an API key"
        return [f"{agent_file}:{line}: model: {entry.name} has no API key ({variable} is not set; or "
                f"`halguru models set-key {entry.name}`): its endpoint {host} will likely refuse the run"]
    return []


def _check_channels(agent: Agent, agent_file: Path, text: str) -> None:
    """Each ``channels:`` entry is a known channel whose settings (and named secrets) check out."""
    if not agent.spec.channels:
        return
    from halguru.channels.base import load_channels
    from halguru.errors import HalguruError

    try:
        load_channels(agent.name, agent.spec.channels, agent.path or agent_file.parent)
    except HalguruError as exc:
        raise AgentSpecError(f"{agent_file}:{yaml_line_for(text, ('channels',))}: {exc}") from None


def _check_knowledge(agent: Agent, agent_file: Path, text: str) -> None:
    """Each ``knowledge:`` entry is a folder next to agent.yaml or an existing base (nothing is ingested)."""
    if not agent.spec.knowledge:
        return
    from halguru.rag.agent import KnowledgeRetriever
    from halguru.rag.errors import KnowledgeError
    from halguru.rag.store import list_names

    retriever = KnowledgeRetriever(agent.spec.knowledge, agent.path, agent.spec.name,
                                   embedder=agent.spec.retrieval.embedder)
    for index, entry in enumerate(agent.spec.knowledge):
        try:
            missing = retriever.missing_embedder(entry)
        except KnowledgeError:
            assert agent.path is not None
            where = Path(entry).expanduser()
            looked = where if where.is_absolute() else agent.path / where
            line = yaml_line_for(text, ("knowledge", index))
            near = [*list_names(), *(p.name for p in agent.path.iterdir() if p.is_dir())]
            there = "is a file" if looked.is_file() else "does not exist"
            raise AgentSpecError(f"{agent_file}:{line}: knowledge.{index}: {entry!r} is neither a folder ({looked} "
                                 f"{there}) nor a knowledge base{did_you_mean(entry, near)} (see `halguru kb "
                                 "list`)") from None
        if missing is not None:  # as a model whose provider is gone: every retrieval would fail
            raise AgentSpecError(f"{agent_file}:{yaml_line_for(text, ('knowledge', index))}: knowledge.{index}: "
                                 f"{missing}")


def check_knowledge_embedders(agent: Agent) -> None:
    """`serve`'s start-up check that every knowledge base the agent (or an agent it runs) searches has its
    embedder registered, as `validate` checks (a base made with a plugin's embedder, that plugin not loaded,
    failed every request). An entry that names no base yet is left to the run, as before."""
    from halguru.rag.agent import KnowledgeRetriever
    from halguru.rag.errors import KnowledgeError

    for one in agent.involved():
        spec = one.spec
        retriever = KnowledgeRetriever(spec.knowledge, one.path, spec.name, embedder=spec.retrieval.embedder)
        for index, entry in enumerate(spec.knowledge):
            try:
                missing = retriever.missing_embedder(entry)
            except KnowledgeError:
                continue
            if missing is not None:
                agent_file = (one.path or Path.cwd()) / AGENT_FILE
                line = yaml_line_for(agent_file.read_text(encoding="utf-8"), ("knowledge", index))
                raise AgentSpecError(f"{agent_file}:{line}: knowledge.{index}: {missing}")


def _check_mcp(agent: Agent, agent_file: Path, text: str,
               team_tools: list[str]) -> tuple[dict[tuple[str, str], list[str]], list[str]]:
    """Start the agent's MCP servers as a run would (each within its timeout); their tools, or an error (a tool
    named like one of the agent's own or its team tools, ``team_tools``, is one); and the warnings (a server
    whose many tools flood every model call)."""
    import asyncio

    from halguru.tools.mcp import open_mcp_tools, taken_names

    async def start() -> tuple[list[str], dict[str, list[str]], list[str]]:
        toolbox = await open_mcp_tools(agent.spec.mcp, agent.path, taken=taken_names(agent.tools, team_tools))
        try:
            offered: dict[str, list[str]] = {}
            for server in toolbox.servers:
                try:
                    listing = await server.started()
                except Exception:
                    continue
                offered[server.name] = [t.name for t in listing if t.name in toolbox.tools]
            return toolbox.errors, offered, toolbox.warnings
        finally:
            await toolbox.close()

    errors, offered, warnings = asyncio.run(start())

    def at(problem: str) -> str:
        index = next((i for i, s in enumerate(agent.spec.mcp) if problem.startswith(f"mcp server '{s.name}'")), 0)
        return f"{agent_file}:{yaml_line_for(text, ('mcp', index))}: mcp.{index}: {problem}"

    for problem in errors:
        raise AgentSpecError(at(problem))
    return {(agent.name, name): tools for name, tools in offered.items()}, [at(w) for w in warnings]
