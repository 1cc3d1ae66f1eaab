"""halguru.deploy without an engine: the build context, progress and errors through a stand-in API client,
registry names and the one-line error when no engine answers."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any

import pytest

from halguru.deploy import engine, image
from halguru.errors import HalguruError

AGENT = "name: {name}\ndescription: d\nmodel: smollm2\ninstructions: hi\n"


def project(root: Path, name: str) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "agent.yaml").write_text(AGENT.format(name=name))
    return folder


def test_context_bakes_agents_without_secrets_or_state(tmp_path: Path) -> None:
    folder = project(tmp_path / "agents", "helper")
    for secret in (".env", ".env.local", "server.pem", "id.key", ".git/config", ".halguru/traces.db",
                   "__pycache__/x.pyc"):
        (folder / secret).parent.mkdir(parents=True, exist_ok=True)
        (folder / secret).write_text("secret")
    (folder / "docs").mkdir()
    (folder / "docs" / "faq.md").write_text("faq")
    (folder / "docs" / "faq.md").chmod(0o600)  # private on the build machine
    projects = image.find_agent_projects([tmp_path / "agents"])
    with tarfile.open(fileobj=image.build_context(projects, "localhost/halguru:1")) as tar:
        names = sorted(tar.getnames())
        dockerfile = tar.extractfile("Dockerfile").read().decode()  # type: ignore[union-attr]
        modes = {m.name: (m.uid, oct(m.mode)) for m in tar.getmembers() if m.name.startswith("agents/")}
    assert names == ["Dockerfile", "agents/helper/agent.yaml", "agents/helper/docs/faq.md"]
    # root's files, readable by the image's user (uid 1000), who cannot rewrite them; bytecode compiled at build
    assert modes == {"agents/helper/agent.yaml": (0, "0o644"), "agents/helper/docs/faq.md": (0, "0o644")}
    assert dockerfile == ("FROM localhost/halguru:1\nUSER root\nCOPY agents/ /agents/\n"
                          "RUN python3 -m compileall -q /agents >/dev/null || true\nUSER 1000\n")


def test_projects_are_named_once(tmp_path: Path) -> None:
    project(tmp_path / "a", "helper")
    project(tmp_path / "b", "helper")
    with pytest.raises(HalguruError, match="two agent projects named 'helper'"):
        image.find_agent_projects([tmp_path / "a", tmp_path / "b"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(HalguruError, match="no agent project here"):
        image.find_agent_projects([tmp_path / "empty"])
    with pytest.raises(HalguruError, match="no such agent project"):
        image.find_agent_projects([tmp_path / "missing"])


class FakeAPI:
    def __init__(self, chunks: list[dict[str, Any]]) -> None:
        self.chunks, self.calls = chunks, []  # type: ignore[var-annotated]

    def build(self, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        return iter(self.chunks)

    def push(self, repository: str, **kwargs: Any) -> Any:
        self.calls.append({"repository": repository, **kwargs})
        return iter(self.chunks)


class FakeClient:
    def __init__(self, chunks: list[dict[str, Any]]) -> None:
        self.api = FakeAPI(chunks)
        self.images = self

    def get(self, ref: str) -> Any:
        return type("Image", (), {"id": "sha256:abc", "attrs": {"RepoDigests": []}})()


def test_build_shows_progress_and_fails_in_one_line(tmp_path: Path) -> None:
    folder = project(tmp_path, "helper")
    lines: list[str] = []
    client = FakeClient([{"stream": "STEP 1/2: FROM base\n"}, {"stream": "STEP 2/2: COPY agents/ /agents/\n"}])
    assert image.build_image([folder], "x:1", base="base", show=lines.append, client=client, check=False) == \
        "sha256:abc"
    assert lines[1:] == ["STEP 1/2: FROM base", "STEP 2/2: COPY agents/ /agents/"]
    assert client.api.calls[0]["labels"]["io.halguru.agents"] == "helper"
    bad = FakeClient([{"error": "base: image not known\n"}])
    with pytest.raises(HalguruError, match=r"^build of x:1 failed: base: image not known \(build the base"):
        image.build_image([folder], "x:1", base="base", show=lines.append, client=bad, check=False)


def test_push_returns_the_digest_and_reads_keyring_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("registry:reg.example.com:5000", "bot:s3cret")  # lookup_secret: the environment first
    digest = "sha256:" + "1" * 64
    client = FakeClient([{"status": "Pushing", "id": "l1"}, {"status": "Pushing", "id": "l1"},
                         {"status": "Pushed", "id": "l1"}, {"aux": {"Digest": digest}}])
    lines: list[str] = []
    assert image.push_image("reg.example.com:5000/team/agents:1", show=lines.append, client=client) == digest
    assert lines[1:] == ["l1: Pushing", "l1: Pushed"]
    call = client.api.calls[0]
    assert (call["repository"], call["tag"]) == ("reg.example.com:5000/team/agents", "1")
    assert call["auth_config"] == {"username": "bot", "password": "s3cret"}
    with pytest.raises(HalguruError, match="push of x:1 failed: denied"):
        image.push_image("x:1", show=lines.append, client=FakeClient([{"error": "denied"}]))


@pytest.mark.parametrize(("ref", "registry"), [
    ("halguru", "docker.io"), ("team/agents", "docker.io"), ("localhost/agents", "localhost"),
    ("127.0.0.1:5000/a", "127.0.0.1:5000"), ("ghcr.io/team/agents", "ghcr.io")])
def test_registry_of(ref: str, registry: str) -> None:
    assert image.registry_of(ref) == registry


def test_no_engine_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/none.sock")
    with pytest.raises(HalguruError) as caught:
        engine.connect()
    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith(f"no container engine answers at unix://{tmp_path}/none.sock (no such file")
    assert "podman system service" in str(caught.value)


def test_context_is_a_plain_tar(tmp_path: Path) -> None:
    projects = image.find_agent_projects([project(tmp_path, "helper")])
    data = image.build_context(projects, "b").getvalue()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert tar.getmember("agents/helper/agent.yaml").size > 0


def test_sbom_lists_python_and_debian_packages(tmp_path: Path) -> None:
    from halguru.deploy import sbom

    status = tmp_path / "status"
    status.write_text("Package: libgomp1\nStatus: install ok installed\nArchitecture: amd64\nVersion: 12.2.0-14+deb12u1"
                      "\n\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 1\n")
    debs = sbom.dpkg_components(status)
    assert [c["purl"] for c in debs] == ["pkg:deb/debian/libgomp1@12.2.0-14%2Bdeb12u1?arch=amd64"]
    document = sbom.bom(sbom.python_components() + debs, "halguru", "0.1.0", "abc123")
    assert (document["bomFormat"], document["specVersion"]) == ("CycloneDX", "1.5")
    purls = {c["purl"] for c in document["components"]}
    assert "pkg:pypi/llama-cpp-python@0.3.36" in purls and len(purls) == len(document["components"])
