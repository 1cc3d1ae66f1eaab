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
    # HALGURU_LOAD_PLUGINS is read straight from the environment by halguru.plugins.manager (start-up cost).
    http_allow_private: bool = Field(
        default=False, description="let http_get reach loopback and private addresses"
    )
    llama_n_ctx: int = 4096
    llama_n_threads: int | None = None
    llama_saved_states: int = Field(default=8, description="conversations whose KV cache is kept")
    run_lease: float = Field(default=30.0, gt=0, description="seconds a run stays 'running' without a renewal "
                             "by its process; after that it reads as interrupted")

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
