"""Old published versions go: a server keeps each agent's newest ``deployments_keep`` versions (bundles in the
store, folders on disk), never the one served, the one just replaced, or one a paused run waits on; and
`halguru deployments delete` removes one version (a secret published by mistake), against a real `halguru serve`."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from halguru.store import open_store
from tests.server.test_publish import (
    TOOLS,
    answer,
    approving_shop,
    error,
    memory_keyring,
    use_store,
    user_key,
    write_shop,
)

__all__ = ["memory_keyring"]  # pytest finds the autouse fixture here


def versions() -> list[int]:
    return [d["version"] for d in open_store().list_deployments("shop")]


def folders(home: Path) -> set[str]:
    return {p.name for p in (home / "deployments" / "shop").iterdir()}


def test_a_publish_deletes_versions_past_the_newest_kept(cli, cli_error, serve, tmp_path: Path,
                                                         halguru_home: Path) -> None:
    """Every version stayed in the store with its whole bundle (and unpacked on disk) for good: a server published
    to daily grew without end. With deployments_keep: 2, publishing v4 deletes v1 (v2 stays one more publish: it
    was served until now)."""
    server = serve(deployments_keep=2)
    key = user_key("developer")
    cli("login", server.url, "--api-key", input=key + "\n")
    shop = tmp_path / "shop"
    for n in (1, 2, 3):
        write_shop(shop, f"v{n}-answer")
        assert f"Published shop v{n}" in cli("publish", str(shop)).output
    assert versions() == [3, 2]  # v1: past the newest 2, and not the one v3 replaced
    shas = {d["version"]: d["sha256"] for d in open_store().list_deployments("shop")}
    assert folders(halguru_home) == set(shas.values())
    assert open_store().deployment_bundle("shop", 1) is None
    refused = error(cli("deployments", "rollback", "shop", "1", code=1))
    assert refused.endswith(": agent 'shop' has no version 1; its versions: 2, 3")

    assert "v2 is live" in cli("deployments", "rollback", "shop", "v2").output
    write_shop(shop, "v4-answer")
    assert "Published shop v4" in cli("publish", str(shop)).output
    assert versions() == [4, 3, 2]  # v2 was served until this publish: requests may still run on it
    write_shop(shop, "v5-answer")
    cli("publish", str(shop))
    assert versions() == [5, 4]
    assert len(folders(halguru_home)) == 2 and answer(server.url, key).startswith("v5-answer")


def test_a_version_a_paused_run_waits_on_is_kept_until_it_is_decided(cli, serve, tmp_path: Path) -> None:
    """A run paused for approval continues on the version it paused on: that version is not deleted while it waits,
    neither by a publish nor by `deployments delete`."""
    server, key, shop = approving_shop(cli, serve, tmp_path, deployments_keep=1)
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
        conv = http.post("/v1/conversations", json={"agent": "shop"}).json()["id"]
        paused = http.post(f"/v1/conversations/{conv}/messages", json={"content": "where is A1?"}).json()
        assert paused["status"] == "paused"
        for n in (2, 3, 4):
            (shop / "tools.py").write_text(TOOLS.replace("shipped", f"shipped (v{n})"))
            cli("publish", str(shop))
        assert versions() == [4, 3, 1]  # v2 went; v3 was served until v4; v1 waits for the approval
        refused = http.delete("/v1/deployments/shop/versions/1")
        assert refused.status_code == 409 and "paused for approval on v1" in refused.json()["error"]["message"]
        done = http.post(f"/v1/runs/{paused['run_id']}/approve", json={})
        assert done.status_code == 200, done.text
        [result] = [e for e in http.get(f"/v1/runs/{done.json()['run_id']}").json()["events"]
                    if e["type"] == "tool_result"]
        assert "order A1: shipped" in str(result) and "(v" not in str(result)  # on v1's tool
        assert done.json()["status"] == "paused"  # v1's script starts over and asks again: still waits on v1
        assert http.delete("/v1/deployments/shop/versions/1").status_code == 409
        assert http.delete(f"/v1/conversations/{conv}").status_code == 204  # its approvals go with it
        deleted = http.delete("/v1/deployments/shop/versions/1")
        assert deleted.status_code == 200, deleted.text
    assert versions() == [4, 3]


def test_deployments_delete_removes_one_version_and_says_why_it_will_not(cli, serve, tmp_path: Path,
                                                                         halguru_home: Path) -> None:
    """A version published with a secret in it could only be rolled away from, never removed: its bundle stayed in
    the store, and any rollback served it again. `halguru deployments delete` removes it (audited); the version
    served, or one that does not exist, is refused in one line."""
    server = serve()
    key = user_key("developer")
    cli("login", server.url, "--api-key", input=key)
    shop = tmp_path / "shop"
    for n in (1, 2):
        write_shop(shop, f"v{n}-answer")
        cli("publish", str(shop))
    v1 = open_store().list_deployments("shop")[-1]
    assert "Deleted shop v1" in cli("deployments", "delete", "shop", "v1").output
    assert versions() == [2] and folders(halguru_home) == {open_store().list_deployments("shop")[0]["sha256"]}
    assert v1["sha256"] not in folders(halguru_home)
    assert error(cli("deployments", "delete", "shop", "2", code=1)).endswith(
        ": shop v2 is the version served; roll back to another first (`halguru deployments rollback shop VERSION`)")
    assert error(cli("deployments", "delete", "shop", "7", code=1)).endswith(
        ": agent 'shop' has no version 7; its versions: 2")
    assert error(cli("deployments", "delete", "shop", "seven", code=1)).startswith("'seven' is not a version number")
    [entry] = open_store().list_audit(action="agent.delete_version")
    assert (entry["target"], entry["details"]["version"]) == ("shop", 1)
    assert answer(server.url, key).startswith("v2-answer")
    user = httpx.delete(server.url + "/v1/deployments/shop/versions/2",
                        headers={"Authorization": f"Bearer {user_key('user')}"})
    assert user.status_code == 403


def test_the_console_deletes_a_version(serve, tmp_path: Path) -> None:
    """/admin/deployments has "Delete vN" beside "Serve vN" (not on the served version), audited as the CLI's."""
    from halguru.client import Client
    from halguru.deploy.bundle import make_bundle

    server, key = serve(), user_key("developer")
    with Client(server.url, key) as hg:
        for says in ("v1-answer", "v2-answer"):
            hg.publish(make_bundle(write_shop(tmp_path / "shop", says)).data)
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}) as http:
        page = http.get("/admin/deployments").text
        assert "Delete v1" in page and "Delete v2" not in page and 'aria-label="Delete v1 shop"' in page
        done = http.post("/admin/deployments/shop/delete", data={"version": "1"})
        assert done.status_code == 303 and "shop+v1+is+deleted" in done.headers["location"]
        served = http.post("/admin/deployments/shop/delete", data={"version": "2"})
        assert "the+version+served" in served.headers["location"]
        assert "give+a+version+number" in http.post("/admin/deployments/shop/delete",
                                                     data={"version": "²"}).headers["location"]
    assert versions() == [2]
    assert [e["details"]["version"] for e in open_store().list_audit(action="agent.delete_version")] == [1]


SLOW_TOOLS = '''import time
from pathlib import Path

from halguru import tool


@tool
def lookup(order: str) -> str:
    """Look an order up (waits for the test's gate, then reads a file of its version)."""
    Path(r"{started}").touch()
    while not Path(r"{gate}").exists():
        time.sleep(0.05)
    return (Path(__file__).parent / "status.txt").read_text()
'''


def slow_shop(folder: Path, status: str, started: Path, gate: Path) -> Path:
    """The shop whose lookup waits for ``gate`` and answers its version's ``status.txt``."""
    import yaml

    write_shop(folder, "unused")
    (folder / "tools.py").write_text(SLOW_TOOLS.format(started=started, gate=gate))
    (folder / "status.txt").write_text(status)
    (folder / "answers.yaml").write_text(yaml.safe_dump([
        {"tool_calls": [{"name": "lookup", "arguments": {"order": "A1"}}]}, "done"]))
    return folder


def aged(folder: Path) -> None:
    """As if unpacked an hour ago (a folder unpacked in the last minutes may be a publish under way)."""
    import os

    os.utime(folder, (time.time() - 3600, time.time() - 3600))


def wait_until(check: Callable[[], bool], what: str, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_a_version_deleted_under_a_running_request_keeps_its_folder_until_the_run_ends(
        cli, serve, tmp_path: Path, halguru_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`deployments delete` of the version a request is still running on removed its folder at once: the run's
    tool, reading a file of its version, failed. Now the folder stays while the run holds it (also past the
    replica's sweeps) and goes once the run has ended."""
    import threading

    from halguru_server import deployments

    monkeypatch.setattr(deployments, "SWEEP_EVERY_S", 0.1, raising=False)
    server = serve(deployments_poll=0.1)
    key = user_key("developer")
    cli("login", server.url, "--api-key", input=key)
    started, gate = tmp_path / "started", tmp_path / "gate"
    shop = slow_shop(tmp_path / "shop", "v1 status", started, gate)
    cli("publish", str(shop))
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
        conv = http.post("/v1/conversations", json={"agent": "shop"}).json()["id"]
        answered: list[httpx.Response] = []
        asking = threading.Thread(target=lambda: answered.append(
            http.post(f"/v1/conversations/{conv}/messages", json={"content": "where is A1?"})))
        asking.start()
        wait_until(started.exists, "the run did not call its tool")
        (shop / "status.txt").write_text("v2 status")
        cli("publish", str(shop))
        [v2, v1] = open_store().list_deployments("shop")
        assert http.delete("/v1/deployments/shop/versions/1").status_code == 200
        assert v1["sha256"] in folders(halguru_home)  # the run is still on it
        aged(halguru_home / "deployments" / "shop" / v1["sha256"])
        time.sleep(1.0)  # ten sweeps
        assert v1["sha256"] in folders(halguru_home)
        gate.touch()
        asking.join(60)
        [result] = [e for e in http.get(f"/v1/runs/{answered[0].json()['run_id']}").json()["events"]
                    if e["type"] == "tool_result"]
        assert "v1 status" in str(result)
    wait_until(lambda: folders(halguru_home) == {v2["sha256"]}, "the deleted version's folder stayed")


def test_a_replica_removes_the_folders_of_versions_deleted_elsewhere(
        store_url: str, serve, tmp_path: Path, halguru_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A replica that unpacked a version another replica later deleted (`deployments delete`, or a publish past
    deployments_keep) kept the folder on its disk for good. Now a replica's start removes such folders, and a
    running one does within its sweep (here every 0.1 s; 60 s by default)."""
    import shutil

    from halguru_server import deployments

    from halguru.client import Client
    from halguru.deploy.bundle import make_bundle

    use_store(store_url, monkeypatch)
    server, key = serve(deployments_poll=0.1), user_key("developer")
    with Client(server.url, key) as hg:
        for says in ("v1-answer", "v2-answer"):
            hg.publish(make_bundle(write_shop(tmp_path / "shop", says)).data)
        [v2, v1] = open_store().list_deployments("shop")
        unpacked = halguru_home / "deployments" / "shop" / v1["sha256"]
        shutil.copytree(unpacked, tmp_path / "other-disk")
        hg.delete_version("shop", 1)
    # what the other replica's disk still has: v1, unpacked long ago
    shutil.copytree(tmp_path / "other-disk", unpacked)
    aged(unpacked)
    time.sleep(0.5)  # the running replica's sweep is once a minute
    assert unpacked.is_dir()
    serve(deployments_poll=0.1)  # a replica starting
    assert folders(halguru_home) == {v2["sha256"]}

    monkeypatch.setattr(deployments, "SWEEP_EVERY_S", 0.1, raising=False)
    shutil.copytree(tmp_path / "other-disk", unpacked)
    aged(unpacked)
    wait_until(lambda: not unpacked.exists(), "the running replica kept the deleted version's folder")
    assert answer(server.url, key).startswith("v2-answer")


FLOW_TOOLS = '''from pathlib import Path

from halguru import tool

BROKEN = Path(r"{broken}")


@tool
def charge(amount: int) -> str:
    """Charge the customer's card."""
    return f"charged {{amount}} EUR"


@tool
def ship(order: str) -> str:
    """Ship the order (fails while the BROKEN flag file exists)."""
    if BROKEN.exists():
        raise RuntimeError("the courier is down")
    return f"shipped {{order}}"
'''


def publish_flow(hg: Any, folder: Path, broken: Path, says: str) -> None:
    """Publish ``flow``: a workflow (charge, then ship: failing while ``broken`` exists, then a sentence)."""
    import yaml

    from halguru.deploy.bundle import make_bundle

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "agent.yaml").write_text(yaml.safe_dump({"name": "flow", "tools": ["charge", "ship"], "workflow": {
        "steps": [{"id": "pay", "tool": "charge", "args": {"amount": 40}},
                  {"id": "send", "tool": "ship", "args": {"order": "{{ input }}"}},
                  {"id": "done", "condition": f"'{says} ' ~ steps.send.output"}]}}, sort_keys=False))
    (folder / "tools.py").write_text(FLOW_TOOLS.format(broken=broken))
    hg.publish(make_bundle(folder).data)


def test_a_run_cut_on_a_deleted_version_is_refused_in_one_line_everywhere(cli, serve, tmp_path: Path,
                                                                        halguru_home: Path) -> None:
    """A failed workflow run of v1, v1 then deleted: resuming it loaded a folder that was gone (or, on a replica
    whose disk still had it, ran the deleted version again). Now `POST /v1/runs/ID/resume` answers 409, `halguru
    runs resume` one line, and a job whose retry would resume such a run fails for good at once, all saying why;
    also where the folder is still on disk. Deleting the version is not refused: it may hold a secret."""
    import shutil

    from halguru.client import Client

    server, key, broken = serve(job_backoff=8), user_key("developer"), tmp_path / "BROKEN"
    broken.touch()
    with Client(server.url, key) as hg, httpx.Client(base_url=server.url, timeout=30,
                                                      headers={"Authorization": f"Bearer {key}"}) as http:
        publish_flow(hg, tmp_path / "flow", broken, "v1")
        conv = http.post("/v1/conversations", json={"agent": "flow"}).json()["id"]
        failed = http.post(f"/v1/conversations/{conv}/messages", json={"content": "A-7"}).json()
        assert failed["status"] == "failed"
        job = http.post("/v1/jobs", json={"agent": "flow", "input": "B-8"}).json()
        wait_until(lambda: http.get(f"/v1/jobs/{job['id']}").json()["attempts"] >= 1
                   and http.get(f"/v1/jobs/{job['id']}").json()["status"] == "queued", "the job did not fail once")
        publish_flow(hg, tmp_path / "flow", broken, "v2")
        v1 = open_store().list_deployments("flow")[1]
        shutil.copytree(halguru_home / "deployments" / "flow" / v1["sha256"], tmp_path / "v1-copy")
        hg.delete_version("flow", 1)
        broken.unlink()

        said = (f"run {failed['run_id']} ran a published version of flow that was deleted since (`halguru deployments "
                "delete`, or past the newest deployments_keep); it cannot be resumed: ask again")
        refused = http.post(f"/v1/runs/{failed['run_id']}/resume", json={})
        assert refused.status_code == 409 and refused.json()["error"]["message"] == said
        assert error(cli("runs", "resume", failed["run_id"], code=1)) == said
        # a replica whose disk still has v1's folder refuses the same (it never serves a deleted version again)
        shutil.copytree(tmp_path / "v1-copy", halguru_home / "deployments" / "flow" / v1["sha256"])
        refused = http.post(f"/v1/runs/{failed['run_id']}/resume", json={})
        assert refused.status_code == 409 and refused.json()["error"]["message"] == said

        wait_until(lambda: http.get(f"/v1/jobs/{job['id']}").json()["status"] == "dead", "the job was not given up")
        dead = http.get(f"/v1/jobs/{job['id']}").json()
        assert dead["attempts"] == 2 and "ran a published version of flow that was deleted since" in dead["last_error"]
        ok = http.post(f"/v1/conversations/{conv}/messages", json={"content": "A-7"}).json()  # asking again: v2
        assert (ok["status"], ok["output"]) == ("ok", "v2 shipped A-7")


def test_a_jobs_cut_run_resumes_on_its_version_where_this_disk_never_had_it(serve, tmp_path: Path,
                                                                           halguru_home: Path) -> None:
    """A job's workflow run failed on v1; v2 was published and the replica (or worker) retrying the job had never
    unpacked v1: the retry failed 'no such agent project' at each try until the job was dead. Now it unpacks v1
    from the store, as an approval's continuation does, and the run goes on on v1."""
    import shutil

    from halguru.client import Client

    server, key, broken = serve(job_backoff=8), user_key("developer"), tmp_path / "BROKEN"
    broken.touch()
    with Client(server.url, key) as hg, httpx.Client(base_url=server.url, timeout=30,
                                                      headers={"Authorization": f"Bearer {key}"}) as http:
        publish_flow(hg, tmp_path / "flow", broken, "v1")
        job = http.post("/v1/jobs", json={"agent": "flow", "input": "B-8"}).json()
        wait_until(lambda: http.get(f"/v1/jobs/{job['id']}").json()["attempts"] >= 1
                   and http.get(f"/v1/jobs/{job['id']}").json()["status"] == "queued", "the job did not fail once")
        publish_flow(hg, tmp_path / "flow", broken, "v2")
        v1 = open_store().list_deployments("flow")[1]
        shutil.rmtree(halguru_home / "deployments" / "flow" / v1["sha256"])  # this disk never had it
        broken.unlink()
        wait_until(lambda: http.get(f"/v1/jobs/{job['id']}").json()["status"] in ("done", "dead")
                   or http.get(f"/v1/jobs/{job['id']}").json()["attempts"] > 2, "the job was not retried", within=30)
        done = http.get(f"/v1/jobs/{job['id']}").json()
        assert (done["status"], done["attempts"]) == ("done", 2), done
        assert done["result"]["output"] == "v1 shipped B-8"  # v1's workflow
