"""Knowledge shared by replicas: a `halguru serve` process and an ingesting process with different homes (two
hosts) on one knowledge folder (HALGURU_KNOWLEDGE_PATH); what the ingest commits, the running replica retrieves at
its next question, without a restart."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx

from tests.server.test_serve_process import start


def test_an_ingest_elsewhere_is_retrieved_by_a_running_replica(tmp_path: Path, halguru_cmd: list[str],
                                                                 subprocess_env: dict[str, str]) -> None:
    shared = tmp_path / "shared-knowledge"
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "install.md").write_text("# Install\n\nInstall halguru with pipx install halguru.\n")
    agent = tmp_path / "agents" / "helper"
    agent.mkdir(parents=True)
    (agent / "agent.yaml").write_text("name: helper\nmodel: scripted\ninstructions: Answer from the documents.\n"
                                      "knowledge: [notes]\nretrieval: {mode: auto, top_k: 3}\n")
    host_a = {**subprocess_env, "HALGURU_HOME": str(tmp_path / "home-a"), "HALGURU_KNOWLEDGE_PATH": str(shared)}
    host_b = {**host_a, "HALGURU_HOME": str(tmp_path / "home-b")}

    def kb(*args: str) -> None:  # the other host's CLI
        done = subprocess.run([*halguru_cmd, "kb", *args], env=host_b, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr

    kb("create", "notes")
    kb("ingest", "notes", str(docs))
    replica, url = start(halguru_cmd, host_a, str(agent.parent), "--dev")
    try:
        def sources(question: str) -> set[str]:
            conv = httpx.post(f"{url}/v1/conversations", json={"agent": "helper"}).json()["id"]
            answer = httpx.post(f"{url}/v1/conversations/{conv}/messages", json={"content": question}, timeout=60)
            events = httpx.get(f"{url}/v1/runs/{answer.json()['run_id']}").json()["events"]
            return {hit["source"] for e in events if e["type"] == "retrieval" for hit in e["hits"]}

        assert sources("How do I install halguru?") == {"docs/install.md"}
        (docs / "cat.md").write_text("# Office\n\nThe office cat is called Pixel.\n")
        kb("ingest", "notes", str(docs))  # while the replica runs, with its base open
        assert "docs/cat.md" in sources("What is the office cat called?")
    finally:
        replica.terminate()
        replica.wait(15)
    assert (shared / "notes").is_dir() and not (tmp_path / "home-a" / "knowledge").exists()
