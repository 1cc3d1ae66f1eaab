"""Settings: the environment (prefix ``HALGURU_``) over the user's config file over the defaults.

``HALGURU_HOME`` is the user's halguru folder: the trace database, registered models, knowledge bases
and ``config.toml`` live there. ``config.toml`` holds settings by their field name (``default_model =
"smollm2"``, ``llama_n_ctx = 8192``); ``halguru config set KEY VALUE`` writes it, ``halguru config show``
says where each value comes from. An environment variable wins over the file; ``home`` itself can only
come from the environment (the file lives in it).
"""

from __future__ import annotations

import os
import re
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from halguru.errors import HalguruError

CONFIG_FILE = "config.toml"


class ConfigError(HalguruError):
    """The user's config file (or a HALGURU_ variable) holds something invalid."""


class Settings(BaseSettings):
    # an empty variable (HALGURU_HOME= ...) is unset, as home_dir() reads it: one home, not two
    model_config = SettingsConfigDict(env_prefix="HALGURU_", extra="ignore", env_ignore_empty=True)

    home: Path = Field(default_factory=lambda: Path.home() / ".halguru")
    db_path: Path | None = Field(default=None, description="trace store; default HOME/halguru.db")
    database_url: str | None = Field(
        default=None, description="postgresql://USER:PASSWORD@HOST:PORT/DB: keep the store in PostgreSQL (several "
                                  "serve replicas and workers share it) instead of the SQLite file db_path")
    database_statement_timeout: float = Field(
        default=30.0, ge=0, le=86400,
        description="seconds a PostgreSQL statement may run before the database cancels it (serve answers 503), "
                    "so a runaway query does not hold a pooled connection; 0: none. The URL's own "
                    "statement_timeout wins; migrations and `halguru db copy` have none")
    knowledge_path: Path | None = Field(
        default=None, description="the folder of the knowledge bases (one LanceDB folder each); default "
                                  "HOME/knowledge. Serve replicas on several hosts point it at one shared filesystem")
    default_model: str = Field(
        default="smollm2", min_length=1,
        description="the model the reference `default` names (agent.yaml `model: default`, --model default); "
                    "set it with `halguru models default NAME`")
    # HALGURU_LOAD_PLUGINS is read straight from the environment by halguru.plugins.manager (start-up cost).
    http_allow_private: bool = Field(
        default=False, description="let http_get reach loopback and private addresses"
    )
    llama_n_ctx: int = Field(default=4096, ge=256, description="llama.cpp context size of each slot, in tokens")
    llama_n_threads: int | None = Field(default=None, ge=1, description="llama.cpp threads; default measured")
    llama_saved_states: int = Field(default=8, ge=0, description="conversations whose KV cache is kept")
    llama_slots: int | None = Field(
        default=None, ge=1, le=64,
        description="generations one llama.cpp model runs at once, batched (each with llama_n_ctx tokens); "
                    "default 4, fewer if their KV cache would pass a quarter of the memory")
    embed_deadline: float = Field(
        default=600.0, gt=0, le=86400, description="seconds one call of an openai:MODEL embedder may take in all "
                                                   "(its 120 s timeout is per read)")
    run_lease: float = Field(default=30.0, gt=0, le=86400, description="seconds a run stays 'running' without "
                             "a renewal by its process; after that it reads as interrupted")

    @field_validator("db_path", "knowledge_path", mode="before")
    @classmethod
    def _a_path(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():  # Path("") is the current folder, wherever that is
            raise ValueError("give a path (unset it with `halguru config unset` for the default)")
        return value

    @field_validator("database_statement_timeout", "embed_deadline", "run_lease", mode="before")
    @classmethod
    def _not_nan(cls, value: Any) -> Any:
        # nan fails every bound, and was refused as "should be less than or equal to 86400"
        try:
            nan = value != value or (isinstance(value, str) and float(value) != float(value))
        except ValueError:
            nan = False  # not a number at all: pydantic says so
        if nan:
            raise ValueError(f"give a number of seconds, not {value}")
        return value

    @field_validator("database_url")
    @classmethod
    def _a_postgresql_url(cls, value: str | None) -> str | None:
        # only its form here (no driver import at start-up); the connection says the rest, naming the host
        if value and value.partition("://")[0] not in ("postgresql", "postgres"):
            raise ValueError("not a PostgreSQL URL: give postgresql://USER:PASSWORD@HOST:PORT/DB")
        return value or None

    @property
    def database(self) -> Path:
        return self.db_path or self.home / "halguru.db"

    @property
    def models_file(self) -> Path:
        return self.home / "models.yaml"

    @property
    def config_file(self) -> Path:
        return self.home / CONFIG_FILE

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _ConfigFileSource(settings_cls)


SECRET_FILE_SUFFIX = "_FILE"


def load_secret_files(environ: Any = None) -> list[str]:
    """``HALGURU_X_FILE=/run/secrets/x`` sets ``HALGURU_X`` to that file's text (its last line break left off): the
    Docker and Kubernetes secrets convention, for any HALGURU_ variable (a database URL, ``HALGURU_AUDIT_KEY``,
    ``HALGURU_SERVE_SESSION_SECRET``, ``HALGURU_TOKEN``...), so a secret need not sit in the environment a
    ``docker inspect`` shows. The variables it set. A file that cannot be read, or a ``HALGURU_X`` set to something
    else beside ``HALGURU_X_FILE``, is a one-line ConfigError (a process it started, which inherits both, agrees)."""
    environ = os.environ if environ is None else environ
    done: list[str] = []
    for variable in sorted(environ):
        if not (variable.startswith("HALGURU_") and variable.endswith(SECRET_FILE_SUFFIX)) or \
                len(variable) <= len("HALGURU_") + len(SECRET_FILE_SUFFIX):
            continue
        name, path = variable[:-len(SECRET_FILE_SUFFIX)], Path(environ[variable]).expanduser()
        try:
            text = path.read_text(encoding="utf-8").removesuffix("\n").removesuffix("\r")
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text" \
                if isinstance(exc, UnicodeDecodeError) else str(exc)
            raise ConfigError(f"{variable}: cannot read {path}: {why} (mount the secret there, or unset "
                              f"{variable})") from None
        if name in environ and environ[name] != text:
            raise ConfigError(f"both {name} and {variable} are set: set one of them")
        environ[name] = text
        done.append(name)
    return done


def home_dir() -> Path:
    """HALGURU_HOME, without reading the config file (which lives there)."""
    home = os.environ.get("HALGURU_HOME")
    return Path(home).expanduser() if home else Path.home() / ".halguru"


def templates_root() -> Path:
    """Templates ship inside the wheel (halguru/_templates); in a checkout they are agents-templates/."""
    packaged = Path(__file__).parent / "_templates"
    return packaged if packaged.is_dir() else Path(__file__).parents[1] / "agents-templates"


def config_path() -> Path:
    return home_dir() / CONFIG_FILE


def read_config_file(path: Path | None = None) -> dict[str, Any]:
    """The user's config file as a mapping ({} when there is none); a broken file is a one-line error."""
    path = path or config_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except NotADirectoryError:  # every command said "[Errno 20] Not a directory: '.../config.toml'"
        file = next(p for p in path.parents if p.exists())
        where = f"{path.parent}" if file == path.parent else f"{path.parent}: {file}"
        raise ConfigError(f"HALGURU_HOME {where} is a file, not a folder: set HALGURU_HOME to a folder (or unset "
                          "it for ~/.halguru)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML ({exc}); fix it or delete it") from None


class _ConfigFileSource(PydanticBaseSettingsSource):
    """Settings from HALGURU_HOME/config.toml (below the environment, above the defaults)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False  # unused: __call__ reads the whole file at once

    def __call__(self) -> dict[str, Any]:
        data = read_config_file()
        return {k: v for k, v in data.items() if k in self.settings_cls.model_fields and k != "home"}


def settable_keys() -> list[str]:
    """The settings a config file may hold (all but ``home``)."""
    return [name for name in Settings.model_fields if name != "home"]


def config_items() -> list[tuple[str, Any, str]]:
    """Every setting as (key, value, where it comes from: ``env HALGURU_X``, the config file, ``default``)."""
    settings, data = get_settings(), read_config_file()
    items = []
    for key in Settings.model_fields:
        source = _source(key, data)
        value = getattr(settings, key)
        if value is None and key in ("db_path", "knowledge_path"):  # the path used, not a dash
            value = settings.database if key == "db_path" else settings.home / "knowledge"
        items.append((key, shown(key, value), source))
    return items


def _source(key: str, data: dict[str, Any]) -> str:
    """Where setting ``key``'s value comes from, as `config show` says it (``data``: the config file's)."""
    env = _variable_for(key)
    if env and os.environ.get(f"{env}{SECRET_FILE_SUFFIX}"):  # read from its file (load_secret_files)
        env = f"{env}{SECRET_FILE_SUFFIX}"
    return f"env {env}" if env else str(config_path()) if key in data and key != "home" else "default"


def setting_source(key: str) -> str:
    """Where setting ``key``'s value comes from, for an error that names it: ``HALGURU_X`` (the environment),
    ``KEY in PATH/config.toml`` or ``the default; set KEY with `halguru config set` or HALGURU_X``."""
    source = _source(key, read_config_file())
    if source.startswith("env "):
        return source.removeprefix("env ")
    if source == "default":
        return f"the default; set {key} with `halguru config set` or HALGURU_{key.upper()}"
    return f"{key} in {source}"


def _variable_for(key: str) -> str | None:
    """The environment variable that sets ``key``, read as the settings read it (pydantic-settings: any case;
    an empty one, ``HALGURU_RUN_LEASE=``, is unset), or None."""
    wanted = f"HALGURU_{key.upper()}"
    return next((name for name, value in os.environ.items() if name.upper() == wanted and value != ""), None)


def shown(key: str, value: Any) -> Any:
    """A setting's value as printed: a database URL without its password."""
    if key == "database_url" and value:
        # up to the last @: a password may hold an @ or a / that its owner did not percent-encode
        return re.sub(r"(://[^:/@]*:).*@", r"\1***@", str(value))
    return value


def _check_key(key: str) -> None:
    """Refuse a key that is no setting, with the closest one as a hint (a typo must not be written)."""
    import difflib

    if key not in settable_keys():
        close = difflib.get_close_matches(key, settable_keys(), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        why = "HALGURU_HOME is set in the environment only; " if key == "home" else ""
        raise ConfigError(f"unknown setting {key!r}: {why}{hint}keys: {', '.join(settable_keys())}")


def unset_config_value(key: str) -> bool:
    """Remove setting ``key`` from the config file (back to its default); False when the file did not hold
    it, so that nothing is reported removed that was not there."""
    _check_key(key)
    from halguru.atomic import lock_for_update

    with lock_for_update(config_path()):
        data = read_config_file()
        if key not in data:
            return False
        del data[key]
        _write_config_file(data)
    reset_settings()
    return True


def set_config_value(key: str, value: str | None) -> Any:
    """Check ``value`` (text, as typed) against setting ``key`` and write it to the config file; ``None``
    removes the key (back to the default). Returns the value as stored. The file is replaced atomically, and
    read and written under its lock: settings set by parallel commands all land."""
    _check_key(key)
    from halguru.atomic import lock_for_update

    with lock_for_update(config_path()):
        data = read_config_file()
        if value is None:
            data.pop(key, None)
            stored = None
        else:
            try:  # the text as typed: the field's validators see "" before it becomes Path(".")
                typed = getattr(Settings.model_validate({**data, key: value, "home": home_dir()}), key)
            except ValidationError as exc:
                raise ConfigError(f"invalid value {value!r} for {key}: {_said(exc)}") from None
            stored = str(typed) if isinstance(typed, Path) else typed
            if stored is None:
                data.pop(key, None)
            else:
                data[key] = stored
        _write_config_file(data)
    reset_settings()
    return stored


def _write_config_file(data: dict[str, Any]) -> None:
    """Replace the config file atomically; the caller holds its lock (``lock_for_update``)."""
    import tomli_w

    from halguru.atomic import write_atomically

    write_atomically(config_path(), tomli_w.dumps(data), private=True)  # database_url may hold a password


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings (cached: once a process); a key of config.toml that names no setting is said then."""
    try:
        settings = Settings()
    except ValidationError as exc:
        problem = exc.errors()[0]
        key = ".".join(str(p) for p in problem["loc"])
        raise ConfigError(f"invalid setting {key} ({_where_set(key)}): {_said(exc)}") from None
    _warn_unknown_keys()
    return settings


def _where_set(key: str) -> str:
    """Where the bad value of ``key`` came from: the variable that sets it, else the config file (the error
    named both, ``HALGURU_LLAMA_N_CTX or llama_n_ctx in config.toml``, leaving the user to look in each)."""
    source = _source(key, read_config_file())
    if source.startswith("env "):
        return source
    if source == "default":  # not found where it was read from: name both places
        return f"HALGURU_{key.upper()} or {key} in {config_path()}"
    return f"{key} in {source}; fix it or `halguru config unset {key}`"


def _warn_unknown_keys() -> None:
    """A misspelt key of config.toml is ignored by the settings: say so, with the key meant (`llama_ctx`)."""
    import sys

    from halguru.errors import did_you_mean

    keys = settable_keys()
    for key in sorted(set(read_config_file()) - set(keys)):
        print(f"warning: {config_path()}: unknown setting {key!r} is ignored{did_you_mean(key, keys)}",
              file=sys.stderr)


def _said(exc: ValidationError) -> str:
    """The first problem in pydantic's words, without its "Value error, " tag on a validator's own."""
    return str(exc.errors()[0]["msg"]).removeprefix("Value error, ")


def reset_settings() -> None:
    """Forget cached settings (tests change HALGURU_HOME between cases)."""
    get_settings.cache_clear()
