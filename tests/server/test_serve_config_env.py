"""The serve config names secrets as ${ENV_VAR}: they come from the environment, never the file."""

from __future__ import annotations

import pytest
from halguru_server.settings import load_settings

from halguru.errors import HalguruError

CONFIG = """
auth:
  smtp: {host: smtp.example.com, sender: me@example.com, password: "${SMTP_PASSWORD}"}
  oidc:
    - {name: corp, issuer: "https://id.example.com", client_id: halguru, client_secret: "${CORP_SECRET}"}
session_secret: "${SESSION_SECRET}"
public_rate_per_minute: 7
"""


def test_env_references_are_read_from_the_environment(tmp_path, monkeypatch) -> None:
    config = tmp_path / "serve.yaml"
    config.write_text(CONFIG)
    monkeypatch.setenv("SMTP_PASSWORD", "s3cret pass")
    monkeypatch.setenv("CORP_SECRET", "oidc-secret")
    monkeypatch.setenv("SESSION_SECRET", "x" * 40)
    settings = load_settings(config)
    assert settings.auth.smtp is not None and settings.auth.smtp.password == "s3cret pass"
    assert settings.auth.oidc[0].client_secret == "oidc-secret"
    assert settings.session_secret == "x" * 40 and settings.public_rate_per_minute == 7


def test_an_unset_variable_is_one_line_naming_the_setting(tmp_path, monkeypatch) -> None:
    config = tmp_path / "serve.yaml"
    config.write_text(CONFIG)
    monkeypatch.setenv("SMTP_PASSWORD", "p")
    monkeypatch.delenv("CORP_SECRET", raising=False)
    with pytest.raises(HalguruError) as caught:
        load_settings(config)
    assert str(caught.value) == (f"{config}: auth.oidc[0].client_secret is ${{CORP_SECRET}}, but the environment "
                                 "variable CORP_SECRET is not set")


def test_a_broken_config_is_one_line_naming_file_line_and_column(cli_error, tmp_path) -> None:
    """PyYAML's own message spans several lines and names "<unicode string>"; the user sees the file's."""
    config = tmp_path / "bad.yaml"
    config.write_text("port: [1\n")
    error = cli_error("serve", str(tmp_path), "--config", str(config))
    assert error == (f"Error: {config}:2:1: invalid YAML: expected ',' or ']', but got '<stream end>' "
                     "(while parsing a flow sequence at line 1, column 7); separate the items with ', ' and close "
                     "the list with ']'")
    config.write_bytes(b"\xff\xfe")
    assert cli_error("serve", str(tmp_path), "--config", str(config)).endswith(f"{config}: not UTF-8 text")


@pytest.mark.parametrize(("variable", "value", "said"), [
    ("HALGURU_SERVE_SHUTDOWN_TIMEOUT", "-1", "greater than or equal to 0"),
    ("HALGURU_SERVE_HEADER_TIMEOUT", "soon", "a valid number"),
    ("HALGURU_SERVE_TRUSTED_PROXIES", "10.0.0.1", "not valid JSON"),
    ("HALGURU_SERVE_LOG_LEVEL", "LOUD", "'debug', 'info', 'warning', 'error' or 'critical'"),  # was a traceback
])
def test_a_bad_variable_is_one_line_naming_it(cli_error, tmp_path, variable, value, said) -> None:
    error = cli_error("serve", str(tmp_path), env={variable: value})
    assert error.startswith(f"Error: invalid serve setting {variable}: ") and said in error
    assert "\n" not in error.strip()


def test_a_misspelt_variable_is_said_with_the_one_meant(halguru_cmd, subprocess_env, tmp_path) -> None:
    """pydantic-settings ignores a variable that names no setting: `HALGURU_SERVE_PROT=9000` served on 8000."""
    import subprocess

    proc = subprocess.run([*halguru_cmd, "serve", str(tmp_path / "none")], capture_output=True, text=True,
                          env={**subprocess_env, "HALGURU_SERVE_PROT": "9000"}, timeout=60)
    assert ("halguru: warning: HALGURU_SERVE_PROT is not a serve setting (did you mean HALGURU_SERVE_PORT?); "
            "it is ignored") in proc.stderr.splitlines()


def test_secrets_are_read_from_the_files_their_file_variables_name(halguru_cmd, subprocess_env, cli_error, tmp_path,
                                                                    monkeypatch, capsys) -> None:
    """Docker and Kubernetes secrets are files (/run/secrets/x), which images read through HALGURU_X_FILE: halguru
    read only HALGURU_X, so a database URL or session secret had to sit in the environment `docker inspect` shows."""
    import subprocess

    from halguru.config import load_secret_files

    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "db").write_text("postgresql://app:s3cret@db.internal:5432/halguru\n")
    (secrets / "session").write_text("a-long-session-secret")
    shown = subprocess.run([*halguru_cmd, "config", "show"], capture_output=True, text=True, timeout=60,
                           env={**subprocess_env, "HALGURU_DATABASE_URL_FILE": str(secrets / "db")})
    assert shown.returncode == 0, shown.stderr
    line = next(x for x in shown.stdout.splitlines() if x.startswith("database_url"))
    assert "postgresql://app:***@db.internal:5432/halguru" in line and "(env HALGURU_DATABASE_URL_FILE)" in line

    assert cli_error("config", "show", env={"HALGURU_DATABASE_URL_FILE": str(secrets / "gone")}) == (
        f"Error: HALGURU_DATABASE_URL_FILE: cannot read {secrets / 'gone'}: No such file or directory (mount the "
        "secret there, or unset HALGURU_DATABASE_URL_FILE)")
    assert cli_error("config", "show", env={"HALGURU_AUDIT_KEY_FILE": str(secrets)}).endswith(
        f"cannot read {secrets}: Is a directory (mount the secret there, or unset HALGURU_AUDIT_KEY_FILE)")
    assert cli_error("config", "show", env={"HALGURU_DATABASE_URL_FILE": str(secrets / "db"),
                                            "HALGURU_DATABASE_URL": "sqlite:///elsewhere"}) == (
        "Error: both HALGURU_DATABASE_URL and HALGURU_DATABASE_URL_FILE are set: set one of them")

    monkeypatch.delenv("HALGURU_SERVE_SESSION_SECRET", raising=False)  # restored (unset) after the test
    monkeypatch.setenv("HALGURU_SERVE_SESSION_SECRET_FILE", str(secrets / "session"))
    assert load_secret_files() == ["HALGURU_SERVE_SESSION_SECRET"]
    assert load_secret_files() == ["HALGURU_SERVE_SESSION_SECRET"]  # again (a process it started): agreed
    assert load_settings().session_secret == "a-long-session-secret"
    assert "not a serve setting" not in capsys.readouterr().err  # the _FILE variable is not taken for a typo
