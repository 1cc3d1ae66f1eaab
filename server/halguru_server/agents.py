"""The agents a server serves: found once at start-up from the paths given to `halguru serve`."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from halguru.agents import metadata
from halguru.agents.checks import check_knowledge_embedders
from halguru.agents.loader import AGENT_FILE, Agent, load_agent, no_such_project
from halguru.errors import HalguruError


@dataclass
class ServedAgent:
    agent: Agent
    web_chat: str  # "public", or "key": signed-in users and API keys only
    slots: int | None  # runs its model generates at once (llama.cpp: its slots); None: no limit of its own
    embed_origins: tuple[str, ...] = ()  # sites whose pages may embed its chat (the widget); none: no embedding
    context: int | None = None  # tokens its model holds per generation, prompt and answer (llama.cpp: n_ctx)
    sampling: frozenset[str] = frozenset()  # optional sampling settings its model applies (its provider's)
    check_schema: Callable[[dict[str, Any]], None] | None = None  # ValueError: a response schema it cannot follow
    check_schema_size: Callable[[dict[str, Any]], None] | None = None  # the same, cheap: one too large

    @property
    def name(self) -> str:
        return self.agent.name

    @property
    def model(self) -> str:
        return self.agent.spec.model


def find_projects(paths: list[Path]) -> list[Path]:
    """Each path is an agent project, or a folder whose sub-folders (one level) are projects."""
    found: list[Path] = []
    for path in paths:
        path = path.expanduser()
        if (path / AGENT_FILE).is_file() or path.name.endswith((".yaml", ".yml")):
            found.append(path)
        elif path.is_dir():
            subs = sorted(p for p in path.iterdir() if (p / AGENT_FILE).is_file())
            if not subs:
                raise HalguruError(f"{path}: no agent project here (a folder with {AGENT_FILE}, or folders of them)")
            found += subs
        else:
            raise HalguruError(no_such_project(path))
    return found


def load_agents(paths: list[Path], default_web_chat: str) -> dict[str, ServedAgent]:
    served: dict[str, ServedAgent] = {}
    for project in find_projects(paths):
        try:
            one = serve_agent(load_agent(project), default_web_chat)
        except HalguruError as exc:
            raise _naming(project, exc) from None
        first = served[one.name].agent.path if one.name in served else None
        if first is not None and one.agent.path is not None and first.resolve() == one.agent.path.resolve():
            continue  # one project named twice (`agents agents/helper`): served once
        if one.name in served:
            raise HalguruError(f"two agents are named {one.name!r} ({served[one.name].agent.path} and "
                               f"{project}); rename one")
        served[one.name] = one
    return served


def serve_agent(agent: Agent, default_web_chat: str) -> ServedAgent:
    """A loaded agent as the server serves it: its web chat access, model slots and embedding origins
    (metadata checked as `halguru validate` checks it: halguru.agents.metadata)."""
    from halguru.models.registry import model_context, model_sampling, model_schema_check, model_slots

    web_chat = metadata.web_chat(agent.spec.metadata, default_web_chat)
    check_knowledge_embedders(agent)  # a base whose embedder's plugin is not loaded: refused, as validate does
    # A workflow has no model of its own (its steps' providers queue their own calls).
    own_model = agent.workflow is None
    slots = model_slots(agent.spec.model) if own_model else None
    context = model_context(agent.spec.model) if own_model else None
    sampling = model_sampling(agent.spec.model) if own_model else frozenset()
    check_schema = model_schema_check(agent.spec.model) if own_model else None
    check_size = model_schema_check(agent.spec.model, "check_schema_size") if own_model else None
    origins = metadata.embed_origins(agent.spec.metadata, web_chat)
    return ServedAgent(agent, web_chat, slots=slots, embed_origins=origins, context=context, sampling=sampling,
                       check_schema=check_schema, check_schema_size=check_size)


def _naming(project: Path, exc: HalguruError) -> HalguruError:
    """``exc`` with the project it came from in front, unless its message already starts with the project's
    path (``emb/agent.yaml:3: ...``). A path as a bare substring is not enough: project ``emb`` is "in"
    ``metadata.embed_origins ...``, which named no project."""
    message = str(exc)
    for path in (str(project), str(project.resolve())):
        if message == path or message.startswith((f"{path}:", f"{path}/", f"{path}{os.sep}")):
            return exc
    return type(exc)(f"agent project {project}: {message}")
