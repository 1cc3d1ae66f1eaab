"""`halguru build`: agent projects baked into an image on top of halguru's; `halguru push`: to a registry.

Both go through the Docker Engine API (``engine.connect``), so Docker and Podman's compatible socket serve
alike. Progress is handed, a line at a time, to the caller's ``show``.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from halguru.errors import HalguruError

DEFAULT_BASE = "localhost/halguru:latest"
AGENT_FILE = "agent.yaml"
# never baked in: version control, local state and caches, and files that hold secrets
SKIP_DIRS = {".git", ".halguru", ".venv", "venv", "__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache",
             "node_modules"}
SKIP_SUFFIXES = (".pyc", ".pem", ".key", ".p12")
SKIP_NAMES = {".env", ".netrc", ".DS_Store"}
IMAGE_UID = 1000  # the base image's halguru user

Show = Callable[[str], None]


def find_agent_projects(paths: Iterable[Path]) -> dict[str, Path]:
    """Each path is an agent project or a folder of them (one level); named by folder, names unique."""
    found: dict[str, Path] = {}
    for given in paths:
        path = given.expanduser().resolve()
        if (path / AGENT_FILE).is_file():
            projects = [path]
        elif path.is_dir():
            projects = sorted(p for p in path.iterdir() if (p / AGENT_FILE).is_file())
            if not projects:
                raise HalguruError(f"{path}: no agent project here (a folder with {AGENT_FILE}, or folders of them)")
        else:
            from halguru.agents.loader import no_such_project

            raise HalguruError(no_such_project(given.expanduser()))  # as typed: the hint's --dir too
        for project in projects:
            if project.name in found and found[project.name] != project:
                raise HalguruError(f"two agent projects named {project.name!r}: {found[project.name]} and {project}")
            found[project.name] = project
    return found


def check_projects(projects: dict[str, Path]) -> None:
    """Load each project as `halguru serve` would, so a broken one fails here, not in the container."""
    from halguru.agents.loader import load_agent

    for project in projects.values():
        load_agent(project)


def _skipped(path: Path) -> bool:
    return path.name in SKIP_NAMES or path.name.endswith(SKIP_SUFFIXES) or path.name.startswith(".env.")


def _project_files(project: Path) -> Iterator[Path]:
    for item in sorted(project.iterdir()):
        if item.is_symlink() or _skipped(item):
            continue
        if item.is_dir():
            if item.name not in SKIP_DIRS:
                yield from _project_files(item)
        elif item.is_file():
            yield item


def dockerfile(base: str) -> str:
    """The agents' files belong to root and are read by the image's user, who cannot rewrite their code (tools.py)
    for the next start; their bytecode is compiled here, as that user cannot write __pycache__ either (a .py file
    that does not compile, say a sample in a knowledge folder, is left as it is: the projects were loaded first)."""
    return (f"FROM {base}\n"
            "USER root\n"
            "COPY agents/ /agents/\n"
            "RUN python3 -m compileall -q /agents >/dev/null || true\n"
            f"USER {IMAGE_UID}\n")


def _readable(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """A file as the image gets it: root's, readable by everyone (executable where it was), whatever its mode and
    owner on the build machine (a 0600 file would be unreadable to the image's user)."""
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o755 if info.mode & 0o111 else 0o644
    return info


def build_context(projects: dict[str, Path], base: str) -> io.BytesIO:
    """A tar of the Dockerfile and agents/NAME/... (the build context the engine receives)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        def add_bytes(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))

        add_bytes("Dockerfile", dockerfile(base).encode())
        for name, project in projects.items():
            for file in _project_files(project):
                tar.add(file, arcname=f"agents/{name}/{file.relative_to(project).as_posix()}", recursive=False,
                        filter=_readable)
    buffer.seek(0)
    return buffer


def build_image(paths: list[Path], tag: str, *, base: str = DEFAULT_BASE, show: Show = print,
                client: Any = None, check: bool = True) -> str:
    """Build TAG: ``base`` with the agent projects at /agents/NAME. Returns the image id."""
    from halguru.deploy.engine import connect

    projects = find_agent_projects(paths)
    if check:
        check_projects(projects)
    client = client or connect()
    labels = {"io.halguru.agents": ",".join(projects), "org.opencontainers.image.base.name": base}
    show(f"building {tag} from {base} with {len(projects)} agent(s): {', '.join(projects)}")
    stream = client.api.build(fileobj=build_context(projects, base), custom_context=True, tag=tag, rm=True,
                              forcerm=True, decode=True, labels=labels)
    for chunk in stream:
        if chunk.get("error") or chunk.get("errorDetail"):
            message = str(chunk.get("error") or chunk["errorDetail"].get("message", "")).strip()
            hint = (f" (build the base image first: `podman build --format docker -t {base} .` in halguru's "
                    "source tree, or pass --base)") if base in message or "manifest unknown" in message else ""
            raise HalguruError(f"build of {tag} failed: {message}{hint}")
        text = str(chunk.get("stream", "")).rstrip()
        if text:
            show(text)
    return str(client.images.get(tag).id)


def registry_of(repository: str) -> str:
    """The registry host of a repository reference (docker.io when it names none)."""
    first = repository.split("/", 1)[0]
    return first if "/" in repository and ("." in first or ":" in first or first == "localhost") else "docker.io"


def keyring_auth(registry: str) -> dict[str, str] | None:
    """Credentials from the keyring entry ``halguru`` / ``registry:HOST`` holding ``USER:PASSWORD``."""
    from halguru.models.secrets import lookup_secret

    value = lookup_secret(f"registry:{registry}")
    if not value or ":" not in value:
        return None
    username, password = value.split(":", 1)
    return {"username": username, "password": password}


def push_image(ref: str, *, show: Show = print, client: Any = None) -> str:
    """Push REF; credentials from the keyring, else the Docker config (~/.docker/config.json, its helpers).
    Returns the pushed manifest's digest (sha256:...)."""
    from docker.utils import parse_repository_tag

    from halguru.deploy.engine import connect

    client = client or connect()
    repository, tag = parse_repository_tag(ref)
    tag = tag or "latest"
    registry = registry_of(repository)
    digest = ""
    last: dict[str, str] = {}
    show(f"pushing {repository}:{tag} to {registry}")
    for chunk in client.api.push(repository, tag=tag, stream=True, decode=True, auth_config=keyring_auth(registry)):
        if chunk.get("error") or chunk.get("errorDetail"):
            message = str(chunk.get("error") or chunk["errorDetail"].get("message", "")).strip()
            raise HalguruError(f"push of {ref} failed: {message}")
        digest = str((chunk.get("aux") or {}).get("Digest") or digest)
        status, layer = str(chunk.get("status", "")), str(chunk.get("id", ""))
        if status and last.get(layer) != status:  # a line per layer and state, not per progress tick
            last[layer] = status
            show(f"{layer}: {status}" if layer else status)
    return digest or _pushed_digest(client, f"{repository}:{tag}", repository)


def _pushed_digest(client: Any, ref: str, repository: str) -> str:
    """The digest from the image's RepoDigests (engines whose push stream carries none)."""
    for item in client.images.get(ref).attrs.get("RepoDigests") or []:
        name, _, digest = str(item).partition("@")
        if name.endswith(repository.split("/", 1)[-1]) and digest:
            return digest
    raise HalguruError(f"pushed {ref}, but the engine reported no digest: {json.dumps(repository)}")
