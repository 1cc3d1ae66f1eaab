"""The whole hosted flow with real processes and a real browser: `halguru login URL` (the CLI as a subprocess)
prints a code, a developer signed in to the server in headless Chromium approves it on /auth/device, the CLI
keeps the key in its keyring, then `halguru publish` and `halguru deployments list` as subprocesses use it; the
console's Deployments page in the same browser serves v1 again."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml
from playwright.sync_api import expect

from halguru.client import Client
from tests.server.localaccounts import PASSWORD, Accounts, accounts_server_fixture, smtp_server_fixture
from tests.server.test_serve_webchat import browser  # noqa: F401  (the fixture)

__all__ = ["accounts_server_fixture", "smtp_server_fixture"]  # pytest finds them here
REPO = Path(__file__).resolve().parents[2]


def test_device_login_in_chromium_then_publish_with_the_cli(accounts_server, halguru_cmd, subprocess_env,
                                                              tmp_path: Path, browser: Any) -> None:  # noqa: F811
    accounts: Accounts = accounts_server()
    accounts.user("dev@example.com", role="developer")
    env = {**subprocess_env, "PYTHON_KEYRING_BACKEND": "tests.file_keyring.FileKeyring", "HALGURU_NO_BROWSER": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), subprocess_env.get("PYTHONPATH")]))}
    login = subprocess.Popen([*halguru_cmd, "login", accounts.url], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert login.stdout is not None
        first = login.stdout.readline()
        page_url = first.split()[1]
        code = re.search(r"approve the code (\S+)\.", login.stdout.readline()).group(1)  # type: ignore[union-attr]
        assert page_url == f"{accounts.url}/auth/device?code={code}"

        page = browser.new_page()
        page.goto(page_url)  # not signed in: to the sign-in page, and back here after it
        page.get_by_label("Email").fill("dev@example.com")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_label("Code shown by the program")).to_have_value(code, timeout=20_000)
        page.get_by_role("button", name="Approve").click()
        expect(page.get_by_role("heading", name="Program signed in")).to_be_visible(timeout=20_000)
        out, err = login.communicate(timeout=30)
    finally:
        if login.poll() is None:
            login.kill()
    assert login.returncode == 0, err
    assert f"Signed in to {accounts.url} as dev@example.com (developer)" in out

    shop = tmp_path / "shop"
    shop.mkdir()
    (shop / "agent.yaml").write_text(yaml.safe_dump({"name": "shop", "model": "scripted:a.yaml"}))
    (shop / "a.yaml").write_text(yaml.safe_dump(["shop v1 here"]))
    started = time.perf_counter()
    published = subprocess.run([*halguru_cmd, "publish", str(shop)], env=env, capture_output=True, text=True,
                               timeout=120)
    assert published.returncode == 0, published.stderr
    assert f"Published shop v1 to {accounts.url}" in published.stdout
    token = yaml.safe_load((Path(env["HALGURU_HOME"]) / "test-keyring.json").read_text())[
        f"halguru/server:{accounts.url}"]
    with Client(accounts.url, token) as hg:
        assert hg.send(hg.new_conversation("shop").id, "hi").output == "shop v1 here"
    print(f"publish-to-live with the CLI as a process: {(time.perf_counter() - started) * 1000:.0f} ms")
    (shop / "a.yaml").write_text(yaml.safe_dump(["shop v2 here"]))
    again = subprocess.run([*halguru_cmd, "publish", str(shop)], env=env, capture_output=True, timeout=120)
    assert again.returncode == 0, again.stderr
    listed = subprocess.run([*halguru_cmd, "deployments", "list"], env=env, capture_output=True, text=True,
                            timeout=60)
    assert listed.returncode == 0 and re.search(r"\*\s+shop\s+v2\b", listed.stdout), listed.stdout
    assert "dev@example.com" in listed.stdout

    # the console, in the same signed-in browser: serve v1 again
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(f"{accounts.url}/admin/deployments")
    page.get_by_role("button", name="Serve v1").click()
    expect(page.get_by_role("status")).to_contain_text("shop v1 is served", timeout=20_000)
    with Client(accounts.url, token) as hg:
        assert hg.send(hg.new_conversation("shop").id, "hi").output == "shop v1 here"
