"""The container tests' engine: Debian's Podman behind its Docker-compatible API socket (started here, on a
socket of its own) and Debian's docker-registry on loopback; the halguru image built once per session.

Marked ``container``: `pytest -m 'not container'` skips them; scripts/test-machine installs podman, runc and
docker-registry and runs them.
"""

from __future__ import annotations

import os
import resource
import secrets
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator

import httpx
import pytest

from tests.deploy.containers import BASE_TAG, REPO, Engine, free_port, revision, wait_for


def _need(*tools: str) -> None:
    missing = [t for t in tools if not shutil.which(t)]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: apt-get install podman runc docker-registry "
                    "(./scripts/test does, as root)")


@pytest.fixture(scope="session")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """docker-registry on a free loopback port, and `podman system service` on a socket of its own whose
    registries.conf marks that registry insecure (plain HTTP)."""
    _need("podman", "docker-registry")
    work = tmp_path_factory.mktemp("engine")
    port = free_port()
    password = secrets.token_urlsafe(12)
    (work / "htpasswd").write_text(f"pusher:{_bcrypt(password)}\n")
    (work / "registry.yml").write_text(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: "
        f"{work / 'registry-data'}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n"
        f"auth:\n  htpasswd:\n    realm: halguru-test\n    path: {work / 'htpasswd'}\n")
    (work / "registries.conf").write_text(
        'unqualified-search-registries = ["docker.io"]\nshort-name-mode = "permissive"\n\n'
        f'[[registry]]\nlocation = "127.0.0.1:{port}"\ninsecure = true\n')
    # containers' ulimits within this machine's (podman's defaults exceed a container host's hard limits)
    limits = [f'"{name}={_limit(kind)}:{_limit(kind)}"' for name, kind in
              (("nofile", resource.RLIMIT_NOFILE), ("nproc", resource.RLIMIT_NPROC))]
    (work / "containers.conf").write_text(f"[containers]\ndefault_ulimits = [{', '.join(limits)}]\n")
    # the podman commands of the tests (run, exec, tag) see the same settings as the API service
    settings = {"CONTAINERS_REGISTRIES_CONF": str(work / "registries.conf"),
                "CONTAINERS_CONF": str(work / "containers.conf")}
    saved = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    env = dict(os.environ)
    sock = work / "podman.sock"
    with open(work / "registry.log", "w") as rlog, open(work / "podman.log", "w") as plog:
        registry = subprocess.Popen(["docker-registry", "serve", str(work / "registry.yml")], stdout=rlog,
                                    stderr=subprocess.STDOUT)
        service = subprocess.Popen(["podman", "system", "service", "--time=0", f"unix://{sock}"], env=env,
                                   stdout=plog, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: _answers(f"http://127.0.0.1:{port}/v2/"), 30, "docker-registry")
        wait_for(lambda: _answers("http://d/_ping", transport=httpx.HTTPTransport(uds=str(sock))), 60,
                 "podman's API socket")
        yield Engine(f"unix://{sock}", f"127.0.0.1:{port}", work, ("pusher", password))
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        for proc in (service, registry):
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def _bcrypt(password: str) -> str:
    """The registry's htpasswd hash (bcrypt), through the C library's crypt (Python 3.11's crypt module)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt

    return crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH))


def _limit(kind: int) -> int:
    """At most this process's soft limit, and 16384: podman's defaults (and, on some hosts, anything near the
    hard limit) fail in runc with "error setting rlimit ... operation not permitted"."""
    soft = resource.getrlimit(kind)[0]
    return 16384 if soft == resource.RLIM_INFINITY else min(soft, 16384)


def _answers(url: str, transport: httpx.HTTPTransport | None = None) -> bool:
    try:
        with httpx.Client(transport=transport, timeout=2) as client:
            return client.get(url).status_code < 500
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="session")
def image_revision() -> str:
    """The source revision the image is labelled with (read once: commits may land while the tests run)."""
    return revision()


@pytest.fixture(scope="session")
def base_image(engine: Engine, image_revision: str) -> str:
    """halguru's image from the Dockerfile: Debian's base made locally when missing (deploy/debian-base), every
    wheel from deploy/wheels (deploy/wheelhouse: pip's cache, llama.cpp compiled once), so no index is asked."""
    subprocess.run([str(REPO / "deploy" / "debian-base"), "podman"], check=True, timeout=900)
    subprocess.run([str(REPO / "deploy" / "wheelhouse")], check=True, timeout=1800,
                   env={**os.environ, "PYTHON": sys.executable})
    started = time.monotonic()
    result = subprocess.run(["podman", "build", "--format", "docker", "-t", BASE_TAG, "--build-arg", "OFFLINE=1",
                             "--build-arg", f"REVISION={image_revision}", str(REPO)], capture_output=True, text=True,
                            timeout=2400)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    print(f"\nimage {BASE_TAG} built in {time.monotonic() - started:.0f} s")
    return BASE_TAG
