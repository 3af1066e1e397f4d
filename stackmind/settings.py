"""The one Settings object.

Sources, highest priority first: keyword arguments, environment variables (``STACKMIND_*``;
the Telegram token and Wolfram|Alpha key also under their usual names), a ``.env`` file in the
working directory, an optional ``stackmind.toml`` (working directory, or the path in
``STACKMIND_CONFIG``), then defaults that work offline with no server, key or GPU.

Every path the project writes lives under ``home`` (``STACKMIND_HOME``, default ``~/.stackmind``).

Every value is checked and bounded (a step budget, a timeout, a token count cannot be made endless
by a typo), and a bad one is a `SettingsError` with one line that names where it came from: the
environment variable, the ``.env`` file or ``stackmind.toml`` and its line, and what to write instead.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from stackmind.errors import StackmindError

Backend = Literal["llamacpp", "transformers", "openai", "vllm"]


def _toml_path() -> Path:
    return Path(os.environ.get("STACKMIND_CONFIG", "stackmind.toml"))


class SettingsError(StackmindError, ValueError):
    """A setting that cannot be used: where it came from, what is wrong, what to write."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="STACKMIND_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
        allow_inf_nan=False,
    )

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as e:
            raise settings_error(e, type(self), values) from e
        except tomllib.TOMLDecodeError as e:
            raise SettingsError(f"{_toml_path()}:{_toml_where(e)} is not valid TOML ({_toml_problem(e)}): "
                                "fix the file, or point STACKMIND_CONFIG elsewhere") from e
        except UnicodeDecodeError as e:
            raise SettingsError(f"{_undecodable() or 'a settings file'}: not UTF-8 text (byte {e.start}): "
                                "save it as UTF-8") from e
        except OSError as e:
            raise SettingsError(f"cannot read the settings ({type(e).__name__}: {e}): check stackmind.toml "
                                "and .env in this folder (and STACKMIND_CONFIG)") from e
        _check_toml_keys(type(self))

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
    openai_concurrency: int = Field(8, ge=1, le=256)
    # Bounded waits on the server: a connection within `openai_connect_timeout_s`, the first byte
    # of an answer within `openai_timeout_s`, and each request (all its tries) within
    # `openai_deadline_s`; so a server that accepts and never answers fails in two minutes.
    openai_connect_timeout_s: float = Field(10.0, gt=0, le=120)
    openai_timeout_s: float = Field(60.0, gt=0, le=600)
    openai_deadline_s: float = Field(120.0, gt=0, le=3600)
    openai_retries: int = Field(4, ge=0, le=10)
    # Which model the openai backend asks for: "served" (the newest adapter `stackmind consolidate`
    # hot-loaded into that server, else `model`), "none" (always `model`), or a model name.
    openai_adapter: str = "served"
    openai_adapter_refresh_s: float = Field(30.0, ge=0, le=86400)  # how often "served" asks the server
    device: str = "auto"  # auto | cpu | cuda
    threads: int | None = Field(None, ge=1, le=1024)  # CPU threads for in-process decoding (default: every core)
    torch_threads: int | None = Field(None, ge=1, le=1024)
    llamacpp_slots: int = Field(8, ge=1, le=256)  # sequences llama.cpp decodes together (chats, branches, samples)
    llamacpp_ctx: int = Field(4096, ge=256, le=131_072)  # tokens one sequence may hold (prompt + reply)
    seed: int = Field(0, ge=0, le=2**32 - 1)

    # --- Agent --------------------------------------------------------------------------------
    max_steps: int = Field(6, ge=1, le=1000)
    max_new_tokens: int = Field(320, ge=1, le=32_768)  # one step: a program for @python can be long
    temperature: float = Field(0.0, ge=0, le=5)
    # A step the token limit cut before it was one step, or one that repeats a step already taken on
    # the goal word for word (greedy decoding's fixed point: the same state again), is sampled again at
    # vote_temperature, at most this many times: a small model's long program repeats its comments,
    # and after a failed call it often writes the same call again.
    resamples: int = Field(2, ge=0, le=16)
    render_budget_tokens: int = Field(1536, ge=16, le=1_000_000)
    demos: int = Field(2, ge=0, le=16)  # worked examples of similar goals pushed before the first step (stackmind.demos: by kind of goal, a second only when about as close)
    demos_from_episodes: bool = True  # the agent's own solved episodes are demonstrations too (not in benchmarks)
    # How `run` reaches a conclusion: the single-path loop ("none"); several sampled paths and the
    # majority of their answers ("vote", self-consistency); or a tree of steps (bfs, dfs, mcts).
    search: Literal["none", "vote", "bfs", "dfs", "mcts"] = "none"
    samples: int = Field(1, ge=1, le=64)  # paths sampled by "vote" (more than 1 with search "none" means vote)
    vote_temperature: float = Field(0.7, ge=0, le=5)  # sampling temperature of voting paths and tree expansions
    search_samples: int = Field(3, ge=1, le=64)  # steps sampled per expanded node of a tree search
    search_max_calls: int = Field(24, ge=1, le=10_000)  # LLM calls one search may make
    search_max_seconds: float = Field(600.0, gt=0, le=86_400)
    memory: bool = True  # long-term memory: recall before each step, store what leaves the stack
    recall_k: int = Field(3, ge=0, le=100)  # memories recalled before a step
    policies: bool = True  # fast learning: push the learning policies whose triggers fire
    # The data dir whose policies (<it>/policies, its learned ones) the agent uses; default `home`. An
    # agent measured in a throwaway data dir keeps the policies of the one it measures.
    policies_home: Path | None = None
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

    def check_home(self) -> Settings:
        """The data dir is a folder this process may use (or does not exist yet): else a SettingsError."""
        home = self.home
        if home.exists() and not home.is_dir():
            raise SettingsError(f"{home} is a file, not a folder; {_folder_hint(home, self)}")
        above = next((p for p in home.absolute().parents if p.exists()), None)
        if not home.exists() and above is not None and not above.is_dir():
            raise SettingsError(f"{home} cannot be made: {above} is a file; {_folder_hint(home, self)}")
        if home.is_dir() and not os.access(home, os.R_OK | os.W_OK | os.X_OK):
            raise SettingsError(f"{home} cannot be read and written by this user; {_folder_hint(home, self)}")
        return self

    def ensure_dirs(self) -> Settings:
        for d in (self.home, self.models_dir, self.episodes_dir, self.adapters_dir, self.cache_dir):
            try:
                d.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise SettingsError(f"{_folder_problem(d, e)}; {_folder_hint(d, self)}") from e
        return self


# ---- saying what is wrong ------------------------------------------------------------------------

def _undecodable() -> Path | None:
    """Which settings file is not UTF-8 (stackmind.toml or .env)."""
    for path in (_toml_path(), Path(".env")):
        try:
            path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            return path
        except OSError:
            continue
    return None


def _folder_problem(d: Path, e: OSError) -> str:
    if isinstance(e, FileExistsError) or d.exists() and not d.is_dir():
        return f"{d} is a file, not a folder"
    if isinstance(e, NotADirectoryError):
        return f"{d} cannot be made: a part of its path is a file"
    return f"cannot make the folder {d}: {e.strerror or e}"


def _folder_hint(d: Path, s: Settings) -> str:
    if s.cache is not None and (d == s.cache or s.cache in d.parents):
        return "point STACKMIND_CACHE at a folder you can write"
    return "point STACKMIND_HOME at a folder you can write (default ~/.stackmind)"


def settings_error(error: ValidationError, cls: type[BaseSettings], values: dict[str, Any] | None = None) -> SettingsError:
    """One line for a settings class's ValidationError: each bad value with where it came from."""
    prefix = str(cls.model_config.get("env_prefix") or "")
    parts = []
    for err in error.errors():
        field = str(err["loc"][0]) if err["loc"] else ""
        given = err.get("input")
        where = _source(cls, field, prefix, values or {})
        parts.append(f"{where}: {field}: {_plain_message(err)} (got {_short(given)})")
    return SettingsError("; ".join(parts) + "; fix or unset it (see README, Configuration)")


def _source(cls: type[BaseSettings], field: str, prefix: str, values: dict[str, Any]) -> str:
    """Where a field's value came from, strongest source first (as pydantic-settings reads them)."""
    if field in values:
        return "given"
    names = _env_names(cls, field, prefix)
    lowered = {k.lower(): k for k in os.environ}
    for name in names:
        if name.lower() in lowered:
            return lowered[name.lower()]
    env_file = cls.model_config.get("env_file")
    if isinstance(env_file, str) and Path(env_file).is_file():
        for i, line in enumerate(_lines(Path(env_file)), 1):
            key = line.split("=", 1)[0].strip().removeprefix("export ").strip()
            if "=" in line and key.lower() in {n.lower() for n in names}:
                return f"{env_file}:{i}: {key}"
    if cls is Settings:
        toml = _toml_path()
        if toml.is_file():
            for i, line in enumerate(_lines(toml), 1):
                if re.match(rf"^\s*{re.escape(field)}\s*=", line):
                    return f"{toml}:{i}"
            return str(toml)
    return f"{prefix}{field.upper()}"


def _env_names(cls: type[BaseSettings], field: str, prefix: str) -> list[str]:
    info = cls.model_fields.get(field)
    names = [f"{prefix}{field}"]
    alias = info.validation_alias if info is not None else None
    if isinstance(alias, AliasChoices):
        names += [c for c in alias.choices if isinstance(c, str)]
    elif isinstance(alias, str):
        names.append(alias)
    return names


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []


def _plain_message(err: Any) -> str:
    msg = str(err.get("msg", "invalid"))
    ctx = err.get("ctx") or {}
    if err.get("type") == "finite_number":
        return "must be a finite number"
    if "ge" in ctx and "le" in ctx:
        return f"must be from {ctx['ge']} to {ctx['le']}"
    return msg[0].lower() + msg[1:] if msg else msg


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _toml_where(e: tomllib.TOMLDecodeError) -> str:
    line, col = getattr(e, "lineno", None), getattr(e, "colno", None)
    if line is None:
        m = re.search(r"line (\d+), column (\d+)", str(e))
        line, col = (int(m.group(1)), int(m.group(2))) if m else (1, 1)
    return f"{line}:{col}"


def _toml_problem(e: tomllib.TOMLDecodeError) -> str:
    return re.sub(r"\s*\(at line \d+, column \d+\)", "", getattr(e, "msg", None) or str(e))


def _check_toml_keys(cls: type[BaseSettings]) -> None:
    """stackmind.toml holds settings only: an unknown key is most likely a typo, so it is an error."""
    path = _toml_path()
    if not path.is_file():
        return
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return  # already read once by the settings source: not reached
    known = set(cls.model_fields)
    for key in data:
        if key not in known:
            line = next((i for i, text in enumerate(_lines(path), 1) if re.match(rf"^\s*{re.escape(key)}\s*=", text)), 1)
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f"did you mean {close[0]!r}?" if close else "see README, Configuration, for the settings"
            raise SettingsError(f"{path}:{line}: unknown setting {key!r}: {hint}")
