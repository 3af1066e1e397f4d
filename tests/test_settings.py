from __future__ import annotations

from pathlib import Path

import pytest

from stackmind.settings import Settings


def test_defaults_work_offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("STACKMIND_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    s = Settings()
    assert s.home == tmp_path / ".stackmind"
    assert s.backend == "llamacpp" and s.openai_base_url is None
    assert s.db_path.parent == s.home and s.episodes_dir.parent == s.home


def test_sources_env_over_dotenv_over_toml(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    Path("stackmind.toml").write_text('max_steps = 3\nmodel = "from-toml"\nbackend = "openai"\n')
    Path(".env").write_text("STACKMIND_MODEL=from-dotenv\nTELEGRAM_BOT_TOKEN=123:abc\n")
    monkeypatch.setenv("STACKMIND_BACKEND", "vllm")
    s = Settings()
    assert s.max_steps == 3  # toml
    assert s.model == "from-dotenv"  # .env beats toml
    assert s.backend == "vllm"  # environment beats both
    assert s.telegram_bot_token is not None and s.telegram_bot_token.get_secret_value() == "123:abc"
    assert "123:abc" not in repr(s) and "123:abc" not in str(s.model_dump())


def test_config_path_and_bad_values(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = tmp_path / "elsewhere.toml"
    cfg.write_text("render_budget_tokens = 77\n")
    monkeypatch.setenv("STACKMIND_CONFIG", str(cfg))
    assert Settings().render_budget_tokens == 77
    monkeypatch.setenv("STACKMIND_BACKEND", "carrier-pigeon")
    with pytest.raises(ValueError, match="backend"):
        Settings()


def test_cache_dir_is_separate_from_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STACKMIND_HOME", str(tmp_path / "h"))
    monkeypatch.setenv("STACKMIND_CACHE", str(tmp_path / "c"))
    s = Settings().ensure_dirs()
    assert s.models_dir == tmp_path / "c" / "models" and s.models_dir.is_dir()
    monkeypatch.delenv("STACKMIND_CACHE")
    assert Settings().cache_dir == tmp_path / "h" / "cache"
