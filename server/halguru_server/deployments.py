"""Published agents: the registry every route looks agents up in, and publish, rollback, unpublish and sync.

``AgentRegistry`` is the server's one map of agent name to ``ServedAgent``. Publishing or rolling back builds
a whole new ``ServedAgent`` and swaps it in with one reference assignment: a request that already holds the
old one (a streaming answer, a queued job's run) finishes on it, the next lookup gets the new one.

A publish (``POST /v1/deployments``, a bundle made by ``halguru publish``; ``halguru.deploy.bundle`` says
what it holds) is checked entry by entry, unpacked into ``HALGURU_HOME/deployments/AGENT/SHA256/`` (content
addressed: the same bundle is one folder), validated with the same checks as ``halguru validate``
(``check_project``), stored in the ``deployments`` table with its bundle and made the active version. The
store is the truth: every replica sharing the database polls ``active_deployments`` (``deployments_poll``
seconds) and loads a version it does not serve yet, unpacking the bundle from the store when its own disk
lacks it; a restarted server loads the active versions before it listens. Unpublishing leaves an agent with no
active version: each replica stops serving it at its next poll (its versions stay stored for a rollback).

An agent given to ``halguru serve`` on the command line cannot be published over (409): it comes from the
image or folder the operator chose, and a published copy would silently disagree with it.

Publishing runs the bundle's ``tools.py`` on the server (validation imports it), so the permission is
``agents:publish``: developers and admins, people trusted to run code there.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import logging
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from halguru.agents.loader import AGENT_FILE, Agent
from halguru.deploy.bundle import MAX_BUNDLE_BYTES, open_bundle
from halguru.errors import HalguruError, StoreUnavailable
from halguru.printable import printable
from halguru.store.base import Store
from halguru.store.records import DeploymentRecord
from halguru_server.agents import ServedAgent, serve_agent
from halguru_server.errors import ApiError
from halguru_server.probes import OutageLog

if TYPE_CHECKING:
    from halguru.channels.base import Channel
    from halguru_server.state import Principal, ServerState

log = logging.getLogger("halguru.server")
MAX_NAME = 200  # a published agent's name: the API's routes take no longer one, and it names a folder (255 bytes)


@dataclass(frozen=True)
class Deployed:
    """Which published version a registry entry is."""

    version: int
    sha256: str


class AgentRegistry(Mapping[str, ServedAgent]):
    """Name -> ServedAgent, swapped atomically (copy on write); ``given`` are the command line's agents."""

    def __init__(self, agents: Mapping[str, ServedAgent]):
        self._agents = dict(agents)
        self.given = frozenset(agents)
        self.deployed: dict[str, Deployed] = {}
        self._lock = threading.Lock()
        self.listeners: list[Callable[[], None]] = []  # told after a swap (the worker: schedules, channels)
        self.swept = -SWEEP_EVERY_S  # when ``sweep_deleted`` last looked (monotonic): never yet

    def __getitem__(self, name: str) -> ServedAgent:
        return self._agents[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._agents)

    def __len__(self) -> int:
        return len(self._agents)

    def items(self) -> Any:  # one snapshot: a swap during the loop neither adds nor mixes entries
        return self._agents.items()

    def values(self) -> Any:
        return self._agents.values()

    def swap(self, served: ServedAgent, deployed: Deployed) -> ServedAgent | None:
        """Serve ``served`` from now on; the one it replaces (requests holding it finish on it)."""
        with self._lock:
            old = self._agents.get(served.name)
            self._agents = {**self._agents, served.name: served}
            self.deployed = {**self.deployed, served.name: deployed}
        return old

    def remove(self, name: str) -> ServedAgent | None:
        """Serve ``name`` no more (unpublished); the one removed (requests holding it finish on it)."""
        with self._lock:
            old = self._agents.get(name)
            self._agents = {k: v for k, v in self._agents.items() if k != name}
            self.deployed = {k: v for k, v in self.deployed.items() if k != name}
        return old

    def changed(self) -> None:
        """Tell the listeners an agent was swapped (once its channels are loaded too); from any thread."""
        for listener in self.listeners:
            try:
                listener()
            except Exception:
                log.exception("an agent registry listener failed")

    def version(self, name: str) -> int | None:
        found = self.deployed.get(name)
        return found.version if found else None


class AgentsView(Mapping[str, Agent]):
    """The registry's agents (not their serving settings), live: what the worker's jobs run."""

    def __init__(self, registry: Mapping[str, ServedAgent]):
        self.registry = registry

    def __getitem__(self, name: str) -> Agent:
        return self.registry[name].agent

    def __iter__(self) -> Iterator[str]:
        return iter(self.registry)

    def __len__(self) -> int:
        return len(self.registry)


def root() -> Path:
    from halguru.config import get_settings

    return get_settings().home / "deployments"


STALE_INCOMING_S = 600.0  # an unpack folder untouched this long belongs to no running publish


def sweep_incoming() -> None:
    """Remove the unpack folders a killed process left in ``.incoming`` (a publish cut off by kill -9 left up to
    100 MB there for good); only those untouched for STALE_INCOMING_S: another process sharing HALGURU_HOME may
    be unpacking into its own right now."""
    folder = root() / ".incoming"
    limit = time.time() - STALE_INCOMING_S
    for entry in folder.iterdir() if folder.is_dir() else ():
        with contextlib.suppress(OSError):
            if entry.stat().st_mtime < limit:
                shutil.rmtree(entry)


SWEEP_EVERY_S = 60.0  # how often a replica looks for folders of versions deleted from the store


def sweep_deleted(store: Store, agents: AgentRegistry) -> list[Path]:
    """Remove the unpacked folders of versions no longer in the store (deleted on another replica: a publish past
    ``deployments_keep``, `halguru deployments delete`), which stayed on this replica's disk for good; the folders
    removed. Never a version this registry serves, one a run here still holds (a request finishing on a replaced
    version), nor one unpacked within STALE_INCOMING_S (another process sharing HALGURU_HOME may be publishing it:
    it is stored once validated)."""
    limit = time.time() - STALE_INCOMING_S
    found = [p for p in root().glob("*/*") if not p.parent.name.startswith(".") and p.is_dir()]
    if not found:
        return []
    with _publishing:  # a publish here moves its folder in and loads it (holding it) under this lock
        kept = {(d["agent"], d["sha256"]) for d in store.list_deployments()}
        kept |= {(name, d.sha256) for name, d in agents.deployed.items()}
        removed = _unheld([p for p in found if (p.parent.name, p.name) not in kept and _older(p, limit)])
        for folder in removed:
            shutil.rmtree(folder, ignore_errors=True)
    if removed:
        log.info("deleted versions' folders removed", extra={"fields": {"folders": [str(p) for p in removed]}})
    return removed


def _unheld(folders: list[Path]) -> list[Path]:
    """Those of ``folders`` that no agent loaded in this process still holds (a run in flight may read them)."""
    from halguru.agents.loader import folders_in_use

    if not folders:
        return []
    gc.collect()  # an agent only a reference cycle holds is no run's
    held = folders_in_use()
    return [f for f in folders if not any(path.is_relative_to(f.resolve()) for path in held)]


def _older(path: Path, limit: float) -> bool:
    try:
        return path.stat().st_mtime < limit
    except OSError:  # removed meanwhile
        return False


_publishing = threading.Lock()  # one publish's checks or swap, or rollback, at a time in this process (the store
# orders replicas); a publish indexes its knowledge outside it, under its agent's own lock


def publish(state: ServerState, principal: Principal, data: bytes) -> tuple[DeploymentRecord, bool]:
    """Check, unpack, validate, store and activate a bundle; (the version, whether it was the active one
    already). ApiError (one line) when refused. Blocking: call it in a thread."""
    from halguru.agents.checks import check_project
    from halguru.agents.spec import load_spec

    sha = hashlib.sha256(data).hexdigest()
    sweep_incoming()
    incoming = root() / ".incoming" / secrets.token_hex(8)
    incoming.mkdir(parents=True)
    try:
        try:
            manifest = open_bundle(data, incoming, state.settings.max_bundle_bytes)
            spec = load_spec(incoming / AGENT_FILE) if (incoming / AGENT_FILE).is_file() else None
        except HalguruError as exc:
            raise ApiError(400, _relative(str(exc), incoming), "invalid_bundle") from None
        if spec is None:
            raise ApiError(400, f"the bundle has no {AGENT_FILE}", "invalid_bundle")
        name = spec.name
        if manifest.get("agent", name) != name:  # it would be stored under the manifest's name, the agent served
            raise ApiError(400, f"the bundle's manifest names agent {printable(str(manifest['agent']))[:60]!r} but "
                                f"its {AGENT_FILE} names {printable(name)[:60]!r}; make bundles with "
                                "`halguru publish`", "invalid_bundle")
        if len(name) > MAX_NAME:
            raise ApiError(400, f"agent name {name[:20]}… is {len(name)} characters long; a published agent's name "
                                f"has at most {MAX_NAME}", "invalid_agent")
        _confined(spec.instructions_file, spec.knowledge, incoming)
        _may_publish(state, principal, name)
        with _agent_lock(name):  # one publish of an agent at a time: the next sees it (its bundle again: a no-op)
            with _publishing:
                active = state.store.active_deployments().get(name)
                if active is not None and active[1] == sha and state.agents.version(name) == active[0]:
                    record = next(d for d in state.store.list_deployments(name) if d["version"] == active[0])
                    return record, True
                folder = root() / name / sha
                created = _move_in(incoming, folder)
                previous = state.agents.get(name) if name in state.agents.deployed else None
                try:
                    agent = check_project(folder).agent  # `halguru validate`'s checks, on the server's models, tools
                    served = serve_agent(agent, state.settings.web_chat)
                except HalguruError as exc:
                    raise _refused(name, exc, folder, created) from None
            try:  # minutes for a few MB: other agents' publishes and rollbacks go on meanwhile
                _index_knowledge(agent, previous)
            except HalguruError as exc:
                raise _refused(name, exc, folder, created) from None
            with _publishing:
                manifest = {**manifest, "agent": name, "model": agent.spec.model, "tools": sorted(agent.tools)}
                record = state.store.create_deployment(name, sha, manifest, data, principal.owner)
                replaced = state.agents.deployed.get(name)
                _activate(state, served, record)
                _keep_newest(state, name, replaced)
                return record, False
    finally:
        shutil.rmtree(incoming, ignore_errors=True)


_agent_locks: dict[str, threading.Lock] = {}


def _agent_lock(name: str) -> threading.Lock:
    with _publishing:
        return _agent_locks.setdefault(name, threading.Lock())


def _refused(name: str, exc: HalguruError, folder: Path, created: bool) -> ApiError:
    """The publish refused as the agent's error says (its folder, unpacked by this publish, removed)."""
    if created:
        shutil.rmtree(folder, ignore_errors=True)
    return ApiError(400, f"{name}: {_relative(str(exc), folder)}", "invalid_agent")


def _index_knowledge(agent: Agent, previous: ServedAgent | None) -> None:
    """Index the version's knowledge folders before it goes live (the version it replaces answers meanwhile).
    Left to the first chat, a 1.4 MB folder (1,515 chunks, 400 s on a busy 2-core machine) ran that chat past
    ``limits.timeout`` (300 s): it answered nothing, and the chats after it waited for the rest. Each folder's
    base starts from ``previous`` (the version served now)'s: only the files that differ are embedded."""
    from halguru.rag.agent import KnowledgeRetriever, seed_folder_base

    retriever = agent.knowledge
    if isinstance(retriever, KnowledgeRetriever):
        before, now = previous.agent.path if previous is not None else None, agent.path
        if before is not None and now is not None:
            for entry in agent.spec.knowledge:
                seed_folder_base(agent.spec.name, before / entry, now / entry)
        retriever.bases()  # each folder's base brought up to date with the folder (a named base: nothing to do)


def _confined(instructions_file: str | None, knowledge: list[str], folder: Path) -> None:
    """instructions_file and knowledge folders name what the bundle holds: ``/etc/passwd`` or ``../..`` would
    put the server's own files in the agent's prompt or its knowledge base."""
    named = [("instructions_file", instructions_file)] if instructions_file else []
    for field, value in [*named, *(("knowledge", k) for k in knowledge)]:
        if not (folder / value).resolve().is_relative_to(folder.resolve()):
            raise ApiError(400, f"{AGENT_FILE}: {field}: {printable(value)} is outside the bundle; name a file or "
                                "folder inside the agent's folder", "invalid_agent")


def rollback(state: ServerState, principal: Principal, name: str, version: int) -> DeploymentRecord:
    """Serve ``version`` of ``name`` again (any stored version: back or forward). Blocking."""
    _may_publish(state, principal, name)
    with _publishing:
        known = {d["version"]: d for d in state.store.list_deployments(name)}
        if version not in known:
            raise ApiError(404, f"agent {name!r} has no version {version}" + (
                f"; its versions: {', '.join(map(str, sorted(known)))}" if known else " (it was never published)"))
        served = _load(state.store, state.settings.web_chat, name, version, known[version]["sha256"])
        record = state.store.activate_deployment(name, version)
        assert record is not None
        _activate(state, served, record)
        return record


def delete_version(state: ServerState, principal: Principal, name: str, version: int) -> DeploymentRecord:
    """Delete a stored version (its bundle, and its folder on this disk): one that should never be served again,
    a secret published by mistake. Not the active one, nor one a paused run waits on. Blocking."""
    _may_publish(state, principal, name)
    with _publishing:
        known = {d["version"]: d for d in state.store.list_deployments(name)}
        record = known.get(version)
        if record is None:
            raise ApiError(404, f"agent {name!r} has no version {version}" + (
                f"; its versions: {', '.join(map(str, sorted(known)))}" if known else " (it was never published)"))
        if record["active"]:
            raise ApiError(409, f"{name} v{version} is the version served; roll back to another first "
                                f"(`halguru deployments rollback {name} VERSION`)", "conflict")
        if record["sha256"] in _awaited(state.store, name):
            raise ApiError(409, f"a run of {name} paused for approval on v{version} waits on it; approve or "
                                "reject it first (`halguru approvals list`)", "conflict")
        state.store.delete_deployments(name, [version])
        _remove_folders(state, name, [record["sha256"]])
        return record


def unpublish(state: ServerState, principal: Principal, name: str) -> DeploymentRecord:
    """Serve no version of ``name`` from the next request on, on every replica (each within its poll); its
    schedules and channels stop with it. Its versions stay stored: a rollback serves one again. Blocking."""
    _may_publish(state, principal, name, "it was not published: start the server without that folder instead")
    with _publishing:
        record = state.store.deactivate_deployment(name)
        if record is None:
            known = state.store.list_deployments(name)
            raise ApiError(404 if not known else 409, f"agent {name!r} " + (
                "was never published" if not known else
                f"is not served (unpublished); `halguru deployments rollback {name} VERSION` serves a version "
                "again"), None if not known else "conflict")
        _retire(state.agents, state.channels, name)
        log.info("agent unpublished", extra={"fields": {"agent": name, "version": record["version"]}})
        return record


def _retire(agents: AgentRegistry, channels: dict[str, dict[str, Channel]], name: str) -> None:
    """Stop serving a published agent here: its requests are 404 from now on, its channels and schedules stop."""
    agents.remove(name)
    channels.pop(name, None)
    agents.changed()


def _keep_newest(state: ServerState, name: str, replaced: Deployed | None) -> None:
    """Delete the agent's versions past the newest ``deployments_keep`` (each holds its whole bundle in the store:
    a server published to for a year grew by every version, up to 20 MiB each), except the active one, the one
    it just ``replaced`` (requests may still run on it, reading its folder) and any a paused run waits on.
    Called under ``_publishing``; a failure is logged, the publish stands."""
    keep = state.settings.deployments_keep
    versions = state.store.list_deployments(name)  # newest first
    if not keep or len(versions) <= keep:
        return
    try:
        spared = _awaited(state.store, name) | ({replaced.sha256} if replaced else set())
        old = [d for d in versions[keep:] if not d["active"] and d["sha256"] not in spared]
        gone = set(state.store.delete_deployments(name, [d["version"] for d in old]))
        _remove_folders(state, name, [d["sha256"] for d in old if d["version"] in gone])
    except Exception:
        log.exception("could not delete old versions of %s", name)
        return
    if gone:
        log.info("old versions deleted", extra={"fields": {"agent": name, "versions": sorted(gone), "kept": keep}})


def _awaited(store: Store, name: str) -> set[str]:
    """The versions (bundle hashes) of ``name`` that runs paused for approval wait on: they continue on theirs."""
    return {Path(a["agent_path"]).name for a in store.list_pending(agents=[name])
            if a["agent_path"] and published_version_of(name, a["agent_path"])}


def published_version_of(name: str, path: str) -> bool:
    """Whether ``path`` is a folder a published version of ``name`` is unpacked in (not a folder agent's)."""
    return Path(path).resolve().parent == (root() / name).resolve()


def _remove_folders(state: ServerState, name: str, shas: list[str]) -> None:
    """Remove deleted versions' unpacked folders from this disk, unless a stored version has the same bundle or a
    run here is still on it (a request finishing on the version just replaced; ``sweep_deleted`` removes it
    later)."""
    left = {d["sha256"] for d in state.store.list_deployments(name)}
    for folder in _unheld([root() / name / sha for sha in set(shas) - left]):  # a held one: the sweep's, later
        shutil.rmtree(folder, ignore_errors=True)


def sync(state: ServerState) -> list[str]:
    """Serve each agent's active version as the store says (another replica published, rolled back or
    unpublished); the agents swapped or retired. A version that fails to load is logged and the agent keeps its
    current one."""
    swapped = sync_registry(state.store, state.agents, state.settings.web_chat, state.channels)
    for name in swapped:
        if name in state.agents:  # not one unpublished
            _label_tools(state, state.agents[name])
    return swapped


async def follow(sync: Callable[[], object], every: float) -> None:
    """Call ``sync`` (in a thread) every ``every`` seconds until cancelled: serve what another replica published or
    rolled back. An outage is logged once as it starts and once as it ends; the agents being served stay."""
    said = OutageLog("looking for published versions")
    while True:
        await asyncio.sleep(every)
        try:
            await asyncio.to_thread(sync)
        except Exception as exc:
            said.failed(exc)
        else:
            said.answered()


def sync_registry(store: Store, agents: AgentRegistry, web_chat: str,
                  channels: dict[str, dict[str, Channel]]) -> list[str]:
    """``sync`` for any process holding a registry (serve, and `halguru worker`)."""
    swapped: list[str] = []
    if time.monotonic() >= agents.swept + SWEEP_EVERY_S:  # at start-up, then now and then
        agents.swept = time.monotonic()
        try:
            sweep_deleted(store, agents)
        except OSError as exc:
            log.warning("could not remove deleted versions' folders: %s", exc)
    active = store.active_deployments()
    for name in set(agents.deployed) - set(active):  # unpublished on another replica
        with _publishing:
            if name in agents.deployed and name not in store.active_deployments():  # as below: read again
                _retire(agents, channels, name)
                log.info("published agent unpublished", extra={"fields": {"agent": name}})
                swapped.append(name)
    for name, (version, sha) in active.items():
        if agents.deployed.get(name) == Deployed(version, sha):
            continue
        if name in agents.given:
            log.warning("published agent %s is also given on the command line; serving the command line's", name)
            continue
        try:
            with _publishing:
                # Read again under the lock: a publish in this process may have made a newer version active (and
                # swapped it in) since the read above, which would otherwise be swapped back out until next poll.
                if (store.active_deployments().get(name) != (version, sha)
                        or agents.deployed.get(name) == Deployed(version, sha)):
                    continue
                served = _load(store, web_chat, name, version, sha)
                _install(agents, channels, served, Deployed(version, sha))
        except StoreUnavailable:  # not this version's fault: the caller's next look tries again
            raise
        except HalguruError as exc:
            log.error("cannot serve published %s v%s: %s", name, version, exc)
            continue
        log.info("serving published agent", extra={"fields": {"agent": name, "version": version}})
        swapped.append(name)
    return swapped


def _load(store: Store, web_chat: str, name: str, version: int, sha: str) -> ServedAgent:
    """The stored version as a ServedAgent, unpacking its bundle from the store if this disk lacks it."""
    from halguru.agents.loader import load_agent

    folder = _unpacked(store, name, version, sha)
    try:
        return serve_agent(load_agent(folder), web_chat)
    except HalguruError as exc:
        raise HalguruError(f"{name} v{version}: {_relative(str(exc), folder)}") from None


def _unpacked(store: Store, name: str, version: int, sha: str) -> Path:
    """The version's folder on this disk, unpacked from the store's bundle if missing."""
    folder = root() / name / sha
    if not (folder / AGENT_FILE).is_file():
        data = store.deployment_bundle(name, version)
        if data is None:
            raise HalguruError(f"agent {name!r} version {version} has no stored bundle")
        incoming = root() / ".incoming" / secrets.token_hex(8)
        incoming.mkdir(parents=True)
        try:
            open_bundle(data, incoming, max(MAX_BUNDLE_BYTES, len(data)))
            _move_in(incoming, folder)
        finally:
            shutil.rmtree(incoming, ignore_errors=True)
    return folder


def unpack_for(store: Store, agent: str, path: str) -> None:
    """A paused run's published version (``path``: its folder) on this disk, so any replica can resume it: one
    that never served that version unpacks it from the store. Nothing for a folder agent's path."""
    folder = Path(path)
    if folder.parent.resolve() != (root() / agent).resolve() or (folder / AGENT_FILE).is_file():
        return
    for record in store.list_deployments(agent):
        if record["sha256"] == folder.name:
            _unpacked(store, agent, record["version"], record["sha256"])
            return


def _move_in(incoming: Path, folder: Path) -> bool:
    """Put the unpacked ``incoming`` at ``folder`` in one rename (a folder there is always whole: another
    process sharing HALGURU_HOME may have put the same bundle there first, and then that one stays); whether
    this call put it there."""
    if (folder / AGENT_FILE).is_file():
        return False
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        incoming.rename(folder)
    except OSError:
        if (folder / AGENT_FILE).is_file():
            return False
        raise
    return True


def _install(agents: AgentRegistry, channels: dict[str, dict[str, Channel]], served: ServedAgent,
             deployed: Deployed) -> None:
    """Serve ``served`` with its channels, then tell the registry's listeners (the worker takes up its
    schedules and fetching channels)."""
    agents.swap(served, deployed)
    _channels(channels, served)
    agents.changed()


def _activate(state: ServerState, served: ServedAgent, record: DeploymentRecord) -> None:
    _install(state.agents, state.channels, served, Deployed(record["version"], record["sha256"]))
    _label_tools(state, served)
    log.info("agent version live", extra={"fields": {"agent": served.name, "version": record["version"],
                                                     "sha256": record["sha256"][:12]}})


def _label_tools(state: ServerState, served: ServedAgent) -> None:
    """The agent's tools become metric label values (bounded: only tools agents declare), like a folder's."""
    from halguru_server.app import declared_tools

    state.metrics.tools = state.metrics.tools | declared_tools(served.agent)


def _channels(channels: dict[str, dict[str, Channel]], served: ServedAgent) -> None:
    from halguru_server.worker import load_all_channels

    try:
        channels[served.name] = load_all_channels({served.name: served}).get(served.name, {})
    except HalguruError as exc:
        log.error("agent %s: its channels did not load: %s", served.name, exc)


def _may_publish(state: ServerState, principal: Principal, name: str,
                 instead: str = "publish it under another name, or start the server without that folder") -> None:
    # The key's limit first: its 403 is the same whether the agent exists or not (the 409 below says it does).
    if principal.key is not None and not principal.key.allows(name):
        raise ApiError(403, f"this API key may not use agent {name!r}")
    if name in state.agents.given:
        path = state.agents[name].agent.path
        raise ApiError(409, f"agent {name!r} is served from {path or 'a file'} given to `halguru serve`; {instead}",
                       "conflict")


def _relative(message: str, folder: Path) -> str:
    """A message without the server's folder in front of the bundle's paths (``agent.yaml:3: ...``)."""
    for prefix in (str(folder.resolve()), str(folder)):
        message = message.replace(prefix + "/", "").replace(prefix, ".")
    return message


def now_ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 1)
