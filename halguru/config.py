"""Settings, read from the environment (prefix ``HALGURU_``).

``HALGURU_HOME`` is the user's halguru folder: the trace database, registered
models and knowledge bases live there.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HALGURU_", extra="ignore")

    home: Path = Field(default_factory=lambda: Path.home() / ".halguru")
    db_path: Path | None = Field(default=None, description="trace store; default HOME/halguru.db")
    default_model: str = "smollm2"
    load_plugins: str | None = Field(
        default=None, description="comma-separated plugin names to load; default: all installed"
    )
    http_allow_private: bool = Field(
        default=False, description="let http_get reach loopback and private addresses"
    )
    llama_n_ctx: int = 4096
    llama_n_threads: int | None = None
    llama_saved_states: int = Field(default=8, description="conversations whose KV cache is kept")

    @property
    def database(self) -> Path:
        return self.db_path or self.home / "halguru.db"

    @property
    def models_file(self) -> Path:
        return self.home / "models.yaml"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings() -> None:
    """Forget cached settings (tests change HALGURU_HOME between cases)."""
    get_settings.cache_clear()
