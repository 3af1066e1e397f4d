from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

import stackmind.interfaces.cli_consolidate  # noqa: F401  (registers its commands)
from stackmind.consolidate import AdapterRegistry, ConsolidationLocked, RegistryError, consolidate_dir
from stackmind.consolidate.lock import exclusive
from stackmind.interfaces._app import app
from stackmind.settings import Settings

runner = CliRunner()


def fake_adapter(directory: Path, tag: str) -> Path:
    """A folder shaped like a saved peft adapter (the registry copies files; it does not load them)."""
    directory.mkdir(parents=True)
    (directory / "adapter_config.json").write_text(json.dumps({"r": 8, "peft_type": "LORA", "tag": tag}))
    (directory / "adapter_model.safetensors").write_bytes(tag.encode() * 10)
    return directory


def test_versions_promotion_and_rollback(settings: Settings, tmp_path: Path) -> None:
    reg = AdapterRegistry.of(settings)
    v1 = reg.register(fake_adapter(tmp_path / "a", "one"), {"parent": None, "rank": 8})
    v2 = reg.register(fake_adapter(tmp_path / "b", "two"), {"parent": "v0001", "rank": 8})
    assert (v1.name, v2.name) == ("v0001", "v0002")
    assert reg.current() is None
    reg.promote("v0001")
    reg.promote("2")  # a bare number names a version too
    link = settings.adapters_dir / "current"
    assert link.is_symlink() and os.readlink(link) == "v0002"  # relative: the data dir can move
    assert json.loads((link / "adapter_config.json").read_text())["tag"] == "two"
    assert reg.rollback().name == "v0001"
    assert reg.current().name == "v0001"
    assert reg.rollback() is None  # back to the base model
    assert not link.exists()
    assert [v.name for v in reg.versions()] == ["v0001", "v0002"]  # nothing deleted
    assert [h["event"] for h in reg.history()] == ["promoted", "promoted", "rollback", "rollback"]
    assert reg.get("v0002").meta["parent"] == "v0001"
    with pytest.raises(RegistryError, match="no adapter version 'v0009'"):
        reg.promote("v0009")


def test_the_transformers_backend_finds_the_promoted_adapter(settings: Settings, tmp_path: Path) -> None:
    from stackmind.llm.transformers import _promoted_adapter

    reg = AdapterRegistry.of(settings)
    reg.register(fake_adapter(tmp_path / "a", "one"), {})
    assert _promoted_adapter(settings) is None
    reg.promote("v0001")
    assert _promoted_adapter(settings) == (settings.adapters_dir / "v0001").resolve()


def test_a_half_written_version_is_never_listed(settings: Settings, tmp_path: Path) -> None:
    reg = AdapterRegistry.of(settings)
    (settings.adapters_dir / ".v0001.tmp123").mkdir(parents=True)  # what a kill during copy leaves
    assert reg.versions() == []
    assert reg.register(fake_adapter(tmp_path / "a", "one"), {}).name == "v0001"


def test_second_holder_of_the_lock_gets_a_clear_error(settings: Settings) -> None:
    lock = consolidate_dir(settings) / "lock"
    with exclusive(lock):
        with pytest.raises(ConsolidationLocked, match=f"pid {os.getpid()}"), exclusive(lock):
            pass
        res = runner.invoke(app, ["consolidate"])
        assert res.exit_code == 75
        assert "another consolidation is running" in res.output
    with exclusive(lock):  # released after the block
        pass


def test_adapters_cli(settings: Settings, tmp_path: Path) -> None:
    reg = AdapterRegistry.of(settings)
    reg.register(fake_adapter(tmp_path / "a", "one"), {"rank": 8, "gate": {
        "passed": True, "current": {"loss": 2.0}, "candidate": {"loss": 1.5}}})
    reg.register(fake_adapter(tmp_path / "b", "two"), {"rank": 16, "parent": "v0001"})
    res = runner.invoke(app, ["adapters", "promote", "v0002"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["adapters", "list", "--json"])
    data = json.loads(res.stdout)
    assert data["current"] == "v0002" and [v["name"] for v in data["versions"]] == ["v0001", "v0002"]
    res = runner.invoke(app, ["adapters", "list"])
    assert "2.000 -> 1.500" in res.stdout
    res = runner.invoke(app, ["adapters", "rollback"])
    assert res.exit_code == 0 and "base model" in res.stdout
    res = runner.invoke(app, ["adapters", "promote", "v0042"])
    assert res.exit_code == 1 and "known: v0001, v0002" in res.output
