"""The one Settings object.

Sources, highest priority first: keyword arguments, environment variables (``STACKMIND_*``;
the Telegram token and Wolfram|Alpha key also under their usual names), a ``.env`` file in the
working directory, an optional ``stackmind.toml`` (working directory, or the path in
``STACKMIND_CONFIG``), then defaults that work offline with no server, key or GPU.

Every path the project writes lives under ``home`` (``STACKMIND_HOME``, default ``~/.stackmind``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

Backend = Literal["llamacpp", "transformers", "openai", "vllm"]


def _toml_path() -> Path:
    return Path(os.environ.get("STACKMIND_CONFIG", "stackmind.toml"))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="STACKMIND_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )

    home: Path = Field(default_factory=lambda: Path.home() / ".stackmind")
    # Heavy one-time work (the dequantized model, the sandbox's compiled module) is cached here;
    # default ``home/cache``. Tests point it at a shared folder so that each test's fresh home
    # does not redo that work.
    cache: Path | None = None

    # --- LLM ---------------------------------------------------------------------------------
    # llamacpp: the embedded GGUF in-process (the default for generation on a CPU); transformers:
    # in-process torch (what training uses; anyone can choose it); openai: any compatible server;
    # vllm: in-process vLLM on a GPU host.
    backend: Backend = "llamacpp"
    # For the openai backend: the served model name (with vLLM, a LoRA adapter's name selects it).
    model: str = "qwen2.5-coder-0.5b-instruct"
    # A local model to use instead of the embedded one: a GGUF file (llamacpp) or a Hugging Face
    # folder (transformers, vllm).
    model_path: Path | None = None
    openai_base_url: str | None = None
    openai_api_key: SecretStr | None = None
    openai_concurrency: int = 8
    openai_timeout_s: float = 120.0
    openai_retries: int = 4
    device: str = "auto"  # auto | cpu | cuda
    threads: int | None = None  # CPU threads for in-process decoding (default: every core)
    torch_threads: int | None = None
    llamacpp_slots: int = 8  # sequences llama.cpp decodes together (chats, search branches, samples)
    llamacpp_ctx: int = 4096  # tokens one sequence may hold (prompt + reply)
    seed: int = 0

    # --- Agent --------------------------------------------------------------------------------
    max_steps: int = 6
    max_new_tokens: int = 320  # one step: a program for @python can be long
    temperature: float = 0.0
    render_budget_tokens: int = 1536
    demos: int = 2  # worked examples of similar goals pushed before the first step
    demos_from_episodes: bool = True  # the agent's own solved episodes are demonstrations too (not in benchmarks)
    # How `run` reaches a conclusion: the single-path loop ("none"); several sampled paths and the
    # majority of their answers ("vote", self-consistency); or a tree of steps (bfs, dfs, mcts).
    search: Literal["none", "vote", "bfs", "dfs", "mcts"] = "none"
    samples: int = 1  # paths sampled by "vote" (more than 1 with search "none" means vote)
    vote_temperature: float = 0.7  # sampling temperature of voting paths and tree expansions
    search_samples: int = 3  # steps sampled per expanded node of a tree search
    search_max_calls: int = 24  # LLM calls one search may make
    search_max_seconds: float = 600.0
    memory: bool = True  # long-term memory: recall before each step, store what leaves the stack
    recall_k: int = 3  # memories recalled before a step
    policies: bool = True  # fast learning: push the learning policies whose triggers fire
    learn: bool = True  # after an episode with a reward: hindsight labels and a value-model update

    # --- Secrets (never logged; SecretStr hides them in reprs) ------------------------------
    telegram_bot_token: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("STACKMIND_TELEGRAM_BOT_TOKEN", "TELEGRAM_BOT_TOKEN"),
    )
    wolframalpha_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("STACKMIND_WOLFRAMALPHA_API_KEY", "WOLFRAMALPHA_API_KEY"),
    )
    chroma_url: str | None = None
    # The Chroma database on that server (created when missing): several installations, or test
    # runs, can share one server without seeing each other's memories.
    chroma_database: str = "default_database"

    # --- Shared state (a deployment past one machine; see docs/deploy.md) ---------------------
    # postgresql://user:password@host:5432/db: stacks, episodes, ratings and labels in PostgreSQL
    # for every worker. Unset: SQLite in ``home`` and episode files, the embedded default. A
    # SecretStr since the URL may carry a password (`database_label` is safe to print).
    database_url: SecretStr | None = None
    database_pool_size: int = 8

    @field_validator("database_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """``STACKMIND_DATABASE_URL=`` (empty) means the embedded store, as unset does."""
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if isinstance(text, str) and not text.strip():
            return None
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=_toml_path())
        return (init_settings, env_settings, dotenv_settings, toml, file_secret_settings)

    # --- Layout of the data directory ---------------------------------------------------------
    @property
    def db_path(self) -> Path:
        return self.home / "stackmind.db"

    @property
    def database_label(self) -> str:
        """Where stacks and episodes live, safe to print (a URL's password is masked)."""
        if self.database_url is None:
            return f"sqlite:{self.db_path}"
        url = self.database_url.get_secret_value()
        if "://" not in url:  # a libpq key=value string
            return re.sub(r"(password\s*=\s*)('[^']*'|\S+)", r"\1***", url)
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = parts.netloc.rsplit("@", 1)[1]
        user = parts.username or ""
        return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))

    @property
    def cache_dir(self) -> Path:
        return self.cache if self.cache is not None else self.home / "cache"

    @property
    def models_dir(self) -> Path:
        return self.cache_dir / "models"

    @property
    def episodes_dir(self) -> Path:
        return self.home / "episodes"

    @property
    def adapters_dir(self) -> Path:
        return self.home / "adapters"

    @property
    def sandbox_dir(self) -> Path:
        """Per-run scratch folders of the sandbox (its compiled module lives in cache_dir)."""
        return self.home / "sandbox"

    @property
    def memory_dir(self) -> Path:
        return self.home / "memory"

    def ensure_dirs(self) -> Settings:
        for d in (self.home, self.models_dir, self.episodes_dir, self.adapters_dir, self.cache_dir):
            d.mkdir(parents=True, exist_ok=True)
        return self
