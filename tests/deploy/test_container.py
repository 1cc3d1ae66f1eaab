"""The image for real: built with Podman, run, health-checked, chatted with through the OpenAI client, pushed to
a registry and pulled back by digest, restarted mid-run (the run reads interrupted), stopped with SIGTERM."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.deploy.containers import REPO, Engine, free_port, podman, wait_for

pytestmark = [pytest.mark.container, pytest.mark.timeout(2400)]  # the first test builds the image

HOME = "/home/halguru/.halguru"
AGENTS_TAG = "localhost/halguru-agents:test"


def halguru(engine: Engine, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(Path(sys.executable).parent / "halguru"), *args], capture_output=True, text=True,
                          timeout=900, env={**os.environ, "DOCKER_HOST": engine.docker_host, **(env or {})})


RELAY_YAML = """name: relay
description: Two tool steps; the second waits a minute, once (the container is killed meanwhile).
tools: [first, second]
workflow:
  steps:
    - {id: one, tool: first}
    - {id: two, tool: second}
  output: "{{ steps.two.output }}"
"""
RELAY_TOOLS = '''import time
from pathlib import Path

from halguru import tool

ONCE = Path("/tmp/relay-waited")  # the container's own /tmp: kept across its restarts


@tool
def first() -> str:
    """At once."""
    return "one done"


@tool
def second() -> str:
    """Waits a minute the first time in this container, then answers at once."""
    if not ONCE.exists():
        ONCE.touch()
        time.sleep(60)
    return "relay done"
'''


@pytest.fixture(scope="module")
def agents_image(engine: Engine, base_image: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """`halguru build`: the basic template and a two-step workflow baked in on top of the base image, through
    the engine's API."""
    relay = tmp_path_factory.mktemp("agents") / "relay"
    relay.mkdir()
    (relay / "agent.yaml").write_text(RELAY_YAML)
    (relay / "tools.py").write_text(RELAY_TOOLS)
    result = halguru(engine, "build", str(REPO / "agents-templates" / "basic"), str(relay), "--tag", AGENTS_TAG,
                     "--base", base_image)
    assert result.returncode == 0, result.stderr
    assert "COPY" in result.stderr  # the build's progress, shown as it ran
    assert result.stdout.startswith(f"built {AGENTS_TAG} (sha256:")
    return AGENTS_TAG


@dataclass
class Served:
    name: str
    url: str
    key: str
    cold_start_s: float

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", headers={"Authorization": f"Bearer {self.key}"}, timeout=10)


@pytest.fixture
def served(agents_image: str) -> Iterator[Served]:
    """The agents image running with HALGURU_HOME on a named volume and an admin key made in it first."""
    with serving(agents_image) as running:
        yield running


@contextlib.contextmanager
def serving(image: str, port_inside: int = 8000, *options: str) -> Iterator[Served]:
    """``image``'s own command run, its port ``port_inside`` published on loopback; ``options`` go to `podman
    run`."""
    name = f"halguru-test-{uuid.uuid4().hex[:8]}"
    podman("volume", "create", name)
    try:
        key = podman("run", "--rm", "-v", f"{name}:{HOME}", image, "halguru", "keys", "create", "tester",
                     "--admin").stdout.strip()
        port = free_port()
        started = time.monotonic()
        # --health-interval=disable: no systemd timer here; `podman healthcheck run` runs the check on demand
        podman("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:{port_inside}", "-e", "HALGURU_RUN_LEASE=3",
               "--health-interval=disable", *options,
               "-v", f"{name}:{HOME}", image)
        served = Served(name, f"http://127.0.0.1:{port}", key, 0.0)
        wait_for(served.ready, 180, "/readyz", step=0.1)
        served.cold_start_s = time.monotonic() - started
        print(f"\ncold start to /readyz: {served.cold_start_s:.1f} s")
        yield served
    finally:
        podman("rm", "-f", "-t", "0", name, check=False)
        podman("volume", "rm", "-f", name, check=False)


def test_image_is_labelled_non_root_and_health_checked(base_image: str, image_revision: str) -> None:
    info = json.loads(podman("image", "inspect", base_image).stdout)[0]
    config = info["Config"]
    assert config["User"] == "halguru"
    assert config["Labels"]["org.opencontainers.image.revision"] == image_revision
    health = info.get("Healthcheck") or config["Healthcheck"]  # podman reports it beside Config
    assert "/readyz" in " ".join(health["Test"])
    assert HOME in config["Volumes"]
    assert config["StopSignal"] == "SIGTERM"
    sbom = json.loads(podman("run", "--rm", "--entrypoint", "cat", base_image, config["Labels"]["io.halguru.sbom"]
                             ).stdout)
    purls = {c["purl"].split("@")[0] for c in sbom["components"]}
    assert {"pkg:pypi/llama-cpp-python", "pkg:pypi/halguru", "pkg:deb/debian/libgomp1"} <= purls
    assert sbom["metadata"]["component"]["properties"][0]["value"] == image_revision
    size_mb = info["Size"] / 1e6
    print(f"\nimage {base_image}: {size_mb:.0f} MB")
    assert size_mb < 1400  # 1,489 MB with the packages' test suites and llama.cpp's build tree; 1,360 without
    site = "/opt/halguru/lib/python3.11/site-packages"
    left = podman("run", "--rm", "--entrypoint", "sh", base_image, "-c",
                  f"find {site} -mindepth 2 -type d -name tests -not -path '{site}/halguru*'; ls -d {site}/lib; "
                  f"python3 -c 'import llama_cpp.llama_cpp'", check=False)
    assert left.stdout == "" and "No such file" in left.stderr and left.returncode == 0, left
    # the lead model ships prepared; minilm's ONNX layers are not (41 MB): the image's user cannot write them into
    # /opt/halguru/models, so a process builds them in memory at its first batch (~1 s) and embeds as anywhere;
    # so does the lead model's float32 copy on a CPU without fast 8-bit dot products
    from halguru.rag import mpnet

    # offline, on a read-only root: ONNX Runtime's telemetry (off) neither writes its device id nor warns
    found = podman("run", "--rm", "--read-only", "--network", "none", "--entrypoint", "python3", base_image, "-c", (
        "from halguru.rag import embedders, mpnet; m = embedders.MiniLMEmbedder(); "
        "print(len(m.embed(['a', 'b', 'c'])), m.layers.session is not None, mpnet.installed(), "
        "mpnet.encoder().embed(['how much disk is free']).shape, mpnet.encoder().precision)"))
    printed = found.stdout.strip().split(maxsplit=3)
    assert printed == ["3", "True", "True", f"(1, 768) {mpnet.precision()}"], printed
    assert "telemetry" not in found.stderr, found.stderr


def test_baked_agents_belong_to_root_compiled_and_readonly_to_the_serving_user(agents_image: str) -> None:
    """`halguru build` gave the files to uid 1000 (COPY --chown): code running as the server could rewrite
    tools.py, and the change outlived a restart."""
    found = podman("run", "--rm", "--entrypoint", "sh", agents_image, "-c",
                   "id -u; stat -c '%u %a' /agents/relay/tools.py; ls /agents/relay/__pycache__; "
                   "(echo '# planted' >> /agents/relay/tools.py) 2>/dev/null && echo written || echo refused"
                   ).stdout.split()
    assert found == ["1000", "0", "644", "tools.cpython-311.pyc", "refused"], found
    licence = podman("run", "--rm", "--entrypoint", "cat", agents_image, "/usr/share/doc/halguru/LICENSE").stdout
    assert "Apache License" in licence and "Version 2.0" in licence


def test_serves_chat_through_the_openai_client(served: Served) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=f"{served.url}/v1", api_key=served.key)
    answer = client.chat.completions.create(model="basic", messages=[{"role": "user", "content": "Say hello."}],
                                            max_tokens=16)
    assert answer.choices[0].message.content
    assert podman("healthcheck", "run", served.name, check=False).returncode == 0  # the image's HEALTHCHECK


def test_healthcheck_goes_straight_to_the_server_past_a_proxy(served: Served, base_image: str) -> None:
    """HTTP_PROXY / http_proxy set in the container (for the models' APIs, or added by Docker's client config):
    the image's HEALTHCHECK still asks the server itself. It went to the proxy (here nothing listens on its
    port), so a healthy server read unhealthy for good."""
    info = json.loads(podman("image", "inspect", base_image).stdout)[0]
    check = (info.get("Healthcheck") or info["Config"]["Healthcheck"])["Test"]
    assert check[0] == "CMD", check
    proxy = f"http://127.0.0.1:{free_port()}"
    env = [arg for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy")
           for arg in ("-e", f"{name}={proxy}")]
    result = podman("exec", *env, served.name, *check[1:], check=False)
    assert result.returncode == 0, result.stderr[-1000:]


def test_the_port_comes_from_halguru_serve_port_and_the_healthcheck_follows(agents_image: str) -> None:
    """Configured by its variable like every serve setting: the image's command passed --host and --port, which
    beat it, so HALGURU_SERVE_PORT=9000 still served on 8000 without a word (and the check asked 8000 only)."""
    with serving(agents_image, 9000, "-e", "HALGURU_SERVE_PORT=9000") as running:
        assert running.get("/healthz").json() == {"status": "ok"}
        assert podman("healthcheck", "run", running.name, check=False).returncode == 0


def test_serves_with_workers_on_a_read_only_root_without_a_tmpfs(agents_image: str) -> None:
    """Docker's --read-only (Podman's with --read-only-tmpfs=false): nothing but the volume is writable, /tmp
    included; `--workers 2` stopped after its banner ("No usable temporary directory found")."""
    with serving(agents_image, 8000, "--read-only", "--read-only-tmpfs=false", "-e",
                 "HALGURU_SERVE_WORKERS=2") as running:
        answer = httpx.post(f"{running.url}/v1/chat/completions", headers={"Authorization": f"Bearer {running.key}"},
                            json={"model": "basic", "max_tokens": 8, "messages": [{"role": "user", "content": "Hi"}]},
                            timeout=120)
        assert answer.status_code == 200, answer.text
        assert "halguru_http_requests_total" in running.get("/metrics").text


def test_push_with_docker_config_or_keyring_credentials_then_pull_by_digest(engine: Engine, agents_image: str,
                                                                              tmp_path: Path) -> None:
    ref = f"{engine.registry}/halguru-agents:test"
    podman("tag", agents_image, ref)
    user, password = engine.registry_login
    nobody = tmp_path / "no-docker-config"
    nobody.mkdir()
    refused = halguru(engine, "push", ref, env={"DOCKER_CONFIG": str(nobody)})
    assert refused.returncode == 1 and refused.stderr.splitlines()[-1].startswith(f"Error: push of {ref} failed:")
    # the keyring entry halguru / registry:HOST (read through lookup_secret: the environment first)
    by_secret = halguru(engine, "push", ref, env={"DOCKER_CONFIG": str(nobody),
                                                   f"registry:{engine.registry}": f"{user}:{password}"})
    assert by_secret.returncode == 0, by_secret.stderr
    config = tmp_path / "docker-config"
    config.mkdir()
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    (config / "config.json").write_text(json.dumps({"auths": {engine.registry: {"auth": token}}}))
    result = halguru(engine, "push", ref, env={"DOCKER_CONFIG": str(config)})  # `docker login`'s file
    assert result.returncode == 0, result.stderr
    digest = re.search(r"@(sha256:[0-9a-f]{64})", result.stdout)
    assert digest, result.stdout
    image_id = json.loads(podman("image", "inspect", agents_image).stdout)[0]["Id"]
    podman("rmi", ref)
    import docker

    client = docker.DockerClient(base_url=engine.docker_host)
    pulled = client.images.pull(f"{engine.registry}/halguru-agents@{digest.group(1)}",
                                auth_config={"username": user, "password": password})
    assert pulled.id.removeprefix("sha256:") == image_id.removeprefix("sha256:")


def test_restart_mid_run_marks_the_run_interrupted(served: Served) -> None:
    """The container is killed while a reply streams; after the restart the run's lease has passed and the
    run reads interrupted (not running forever: the new PID 1 is the same PID as the old one)."""
    from openai import OpenAI

    client = OpenAI(base_url=f"{served.url}/v1", api_key=served.key, max_retries=0)
    streaming = threading.Event()

    def chat() -> None:
        try:
            stream = client.chat.completions.create(model="basic", stream=True, max_tokens=256, messages=[
                {"role": "user", "content": "Write a long story about a lighthouse keeper."}])
            for _ in stream:
                streaming.set()
        except Exception:
            pass  # the connection dies with the container

    thread = threading.Thread(target=chat, daemon=True)
    thread.start()
    assert streaming.wait(120), "no reply streamed"
    assert served.get("/v1/runs?status=running").json()["data"]
    podman("restart", "-t", "0", served.name)  # SIGKILL: no drain, the run's row stays 'running'
    wait_for(served.ready, 180, "/readyz after the restart", step=0.2)
    runs = wait_for(lambda: served.get("/v1/runs?status=interrupted").json()["data"], 30, "an interrupted run")
    assert runs[0]["agent"] == "basic"
    assert not served.get("/v1/runs?status=running").json()["data"]


def test_workflow_killed_mid_run_resumes_from_its_checkpoint(served: Served) -> None:
    """Killed during step two: after the restart the run reads interrupted at 'step one', and resuming it
    runs only what is left."""
    headers = {"Authorization": f"Bearer {served.key}"}
    conversation = httpx.post(f"{served.url}/v1/conversations", json={"agent": "relay"}, headers=headers).json()

    def send() -> None:
        with contextlib.suppress(httpx.HTTPError):  # the connection dies with the container
            httpx.post(f"{served.url}/v1/conversations/{conversation['id']}/messages", json={"content": "go"},
                       headers=headers, timeout=120)

    threading.Thread(target=send, daemon=True).start()
    # 'start' comes first and 'step one ok' a moment later; step two then waits a minute, so kill it there
    run = wait_for(lambda: [r for r in served.get("/v1/runs?status=running").json()["data"]
                            if r["checkpoint"] not in (None, "start")], 60, "step one's checkpoint", step=0.1)[0]
    assert run["checkpoint"] == "step one ok"
    podman("restart", "-t", "0", served.name)
    wait_for(served.ready, 180, "/readyz after the restart", step=0.2)
    interrupted = wait_for(lambda: [r for r in served.get("/v1/runs?status=interrupted").json()["data"]
                                    if r["id"] == run["id"]], 30, "the run read interrupted")[0]
    assert (interrupted["kind"], interrupted["checkpoint"]) == ("workflow", run["checkpoint"])
    resumed = httpx.post(f"{served.url}/v1/runs/{run['id']}/resume", headers=headers, timeout=60)
    assert resumed.status_code == 200, resumed.text
    assert (resumed.json()["status"], resumed.json()["output"]) == ("ok", "relay done")


def trusting(root: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(root))


def test_behind_caddy_with_tls(served: Served, tmp_path: Path) -> None:
    """deploy/Caddyfile for real (Debian's caddy): HTTPS from its internal CA in front of the container, a reply
    streamed through it."""
    from openai import OpenAI

    https = free_port()
    env = {**os.environ, "HALGURU_DOMAIN": "localhost", "HALGURU_TLS": "internal", "HALGURU_HTTPS_PORT": str(https),
           "HALGURU_HTTP_PORT": str(free_port()), "HALGURU_UPSTREAM": served.url.removeprefix("http://"),
           "XDG_DATA_HOME": str(tmp_path / "data"), "XDG_CONFIG_HOME": str(tmp_path / "config")}
    with open(tmp_path / "caddy.log", "w") as log:
        caddy = subprocess.Popen(["caddy", "run", "--config", str(REPO / "deploy" / "Caddyfile"), "--adapter",
                                  "caddyfile"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        root = tmp_path / "data" / "caddy" / "pki" / "authorities" / "local" / "root.crt"
        base = f"https://localhost:{https}"

        def ready() -> bool:
            try:
                return root.exists() and httpx.get(f"{base}/readyz", verify=trusting(root),
                                                   timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, 60, "/readyz through Caddy")
        client = OpenAI(base_url=f"{base}/v1", api_key=served.key, http_client=httpx.Client(verify=trusting(root)))
        chunks = list(client.chat.completions.create(model="basic", stream=True, max_tokens=16, messages=[
            {"role": "user", "content": "Say hello."}]))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finally:
        caddy.terminate()
        caddy.wait(10)


def test_stops_cleanly_on_sigterm(served: Served) -> None:
    started = time.monotonic()
    podman("stop", "-t", "30", served.name)
    took = time.monotonic() - started
    state = json.loads(podman("inspect", served.name).stdout)[0]["State"]
    assert state["ExitCode"] == 0, podman("logs", served.name).stderr[-2000:]
    assert took < 25, f"took {took:.0f} s to stop"
