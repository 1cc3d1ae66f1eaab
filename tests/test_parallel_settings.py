"""Commands that change one of the user's files (models.yaml, config.toml, servers.json) run at once, as from a
setup script, two terminals or CI jobs sharing a HALGURU_HOME: what each one reports done is in the file."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib

import yaml

from halguru.models.registry import bundled_gguf_path


def at_once(commands: list[list[str]], env: dict[str, str]) -> list[subprocess.CompletedProcess[str]]:
    """Start every command before waiting for any; their results in order."""
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                              start_new_session=True) for command in commands]
    results = []
    for command, proc in zip(commands, procs, strict=True):
        out, err = proc.communicate(timeout=120)
        results.append(subprocess.CompletedProcess(command, proc.returncode, out, err))
    return results


def test_parallel_model_adds_all_land_and_a_name_is_registered_once(halguru_cmd, subprocess_env, halguru_home):
    gguf = str(bundled_gguf_path())
    names = [f"r{n}" for n in range(1, 7)]
    results = at_once([[*halguru_cmd, "models", "add", name, "--gguf", gguf] for name in names]
                      + [[*halguru_cmd, "models", "add", "dup", "--gguf", gguf] for _ in range(3)], subprocess_env)

    for result in results[:6]:
        assert result.returncode == 0 and "Added model" in result.stdout, result.stderr
    dups = results[6:]
    assert sorted(r.returncode for r in dups) == [0, 1, 1], [r.stderr for r in dups]
    for refused in (r for r in dups if r.returncode):
        assert refused.stderr.startswith("Error: model 'dup' is already registered") and "Traceback" not in \
            refused.stderr and len(refused.stderr.splitlines()) == 1, refused.stderr
    stored = yaml.safe_load((halguru_home / "models.yaml").read_text(encoding="utf-8"))["models"]
    assert sorted(stored) == sorted([*names, "dup"])
    listed = subprocess.run([*halguru_cmd, "models", "list", "--json"], capture_output=True, text=True,
                            env=subprocess_env, timeout=60, check=True).stdout
    assert {*names, "dup"} <= {entry["name"] for entry in json.loads(listed)}


def test_parallel_config_sets_all_land(halguru_cmd, subprocess_env, halguru_home):
    settings = {"llama_n_ctx": "2048", "llama_saved_states": "4", "llama_slots": "2", "run_lease": "20",
                "default_model": "scripted", "http_allow_private": "true"}
    results = at_once([[*halguru_cmd, "config", "set", key, value] for key, value in settings.items()],
                      subprocess_env)

    for result in results:
        assert result.returncode == 0 and result.stdout.startswith("Set "), result.stderr
    stored = tomllib.loads((halguru_home / "config.toml").read_text(encoding="utf-8"))
    assert stored == {"llama_n_ctx": 2048, "llama_saved_states": 4, "llama_slots": 2, "run_lease": 20.0,
                      "default_model": "scripted", "http_allow_private": True}


def test_parallel_logins_all_land(subprocess_env, halguru_home):
    """`halguru login` to several servers at once (the token goes to the keyring, the URL to servers.json)."""
    urls = [f"http://127.0.0.1:{port}" for port in range(9001, 9061)]  # 6 processes, 10 logins each
    script = ("import sys, types\nfrom halguru import login\n"  # a keyring that keeps nothing: servers.json is tested
              "login._keyring = lambda: types.SimpleNamespace(set_password=lambda *_: None)\n"
              "for url in sys.argv[1:]:\n    login.save_login(url, 'token', 'dev')\n")
    results = at_once([[sys.executable, "-c", script, *urls[n::6]] for n in range(6)], subprocess_env)

    assert [r.returncode for r in results] == [0] * 6, [r.stderr for r in results]
    stored = json.loads((halguru_home / "servers.json").read_text(encoding="utf-8"))
    assert sorted(stored["servers"]) == urls and stored["default"] in urls
