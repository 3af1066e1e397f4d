"""The tree viewer's page, rendered by a real headless Chromium (Debian's `chromium` package)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from search_doubles import Game24Double

from stackmind.llm import LLM
from stackmind.search import render_html, solve
from stackmind.tasks import Game24

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("headless Chromium is needed: apt-get install -y chromium (Debian's package)")
    return exe


def browse(page: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [chromium(), *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args, page.as_uri()],
        capture_output=True, timeout=120, check=True,
    )


def test_page_renders_in_chromium(tmp_path: Path) -> None:
    from PIL import Image

    result = solve(Game24([4, 9, 10, 13]), LLM(Game24Double(noisy=True)), strategy="bfs", beam=2)
    page = tmp_path / "tree.html"
    page.write_text(render_html(result.tree.to_json()))
    shot = tmp_path / "tree.png"
    browse(page, tmp_path, f"--screenshot={shot}", "--window-size=1200,900", "--hide-scrollbars")
    img = Image.open(shot).convert("RGB")
    assert img.size == (1200, 900)
    colours = img.getcolors(maxcolors=1 << 20) or []
    assert len(colours) > 50, "the screenshot is blank"
    # the chosen path's highlight colour (#fff4c2) is on screen
    assert any(c == (0xFF, 0xF4, 0xC2) for _, c in colours)

    dom = browse(page, tmp_path, "--dump-dom").stdout.decode()
    assert dom.count('<details class="node') == len(result.tree)
    assert dom.count('class="node chosen') == 4  # root and three steps to 24
    assert "(10 - 4) * (13 - 9) = 24" in dom or "= 24" in dom


def test_big_trees_fold_except_the_chosen_path(monkeypatch: pytest.MonkeyPatch) -> None:
    from stackmind.search import viewer

    result = solve(Game24([2, 3, 4, 6]), LLM(Game24Double()), strategy="bfs", beam=8, stop_on_success=False)
    small = render_html(result.tree)
    assert small.count(" open><summary") > 10  # a tree this size starts unfolded
    monkeypatch.setattr(viewer, "FOLD_ABOVE", len(result.tree) - 1)
    html = render_html(result.tree)
    opened = html.count(" open><summary")
    assert 0 < opened <= 3  # only the chosen path's inner nodes start open
    assert html.count('<details class="node') == len(result.tree)
