"""The container engine: a docker SDK client for Docker or Podman's Docker-compatible API socket."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from halguru.errors import HalguruError

START_PODMAN = ("start Docker, or Podman's API: `podman system service --time=0 unix:///run/podman/podman.sock &` "
                "and `export DOCKER_HOST=unix:///run/podman/podman.sock`")


def candidate_sockets() -> list[str]:
    """Engine addresses to try when DOCKER_HOST is unset: Docker's socket, then Podman's (rootless, rootful)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}"
    paths = ["/var/run/docker.sock", f"{runtime}/podman/podman.sock", "/run/podman/podman.sock"]
    return [f"unix://{p}" for p in paths if Path(p).exists()]


def connect(base_url: str | None = None, timeout: int = 600) -> Any:
    """A pinged ``docker.DockerClient``: ``base_url``, else DOCKER_HOST, else the first socket that answers.
    Raises HalguruError, in one line, when no engine is reachable."""
    try:
        import docker
        from docker.errors import DockerException
    except ImportError:  # pragma: no cover - a dependency of halguru
        raise HalguruError("the docker package is missing: pip install 'docker>=7.1'") from None
    urls = [base_url] if base_url else [os.environ["DOCKER_HOST"]] if os.environ.get("DOCKER_HOST") else \
        candidate_sockets()
    if not urls:
        raise HalguruError(f"no container engine found (no DOCKER_HOST, no Docker or Podman socket): {START_PODMAN}")
    errors = []
    for url in urls:
        try:
            client = docker.DockerClient(base_url=url, timeout=timeout)
            client.ping()
            return client
        except DockerException as exc:
            errors.append(f"{url} ({_reason(exc)})")
    raise HalguruError(f"no container engine answers at {', '.join(errors)}: {START_PODMAN}")


def _reason(exc: Exception) -> str:
    """The last line of a connection error's chain, short (the SDK wraps urllib3's in requests' in its own)."""
    text = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    for marker in ("No such file or directory", "Connection refused", "Permission denied"):
        if marker in text:
            return marker.lower()
    return text[:160]
