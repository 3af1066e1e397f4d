"""`stackmind status --deployment` against real services, and `stackmind episodes` on both stores."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from fakes.servers import Backend, ChromaServer, PostgresServer, free_port
from typer.testing import CliRunner

from stackmind.interfaces.cli import app
from stackmind.storage import open_episodes
from stackmind.trace import Episode

runner = CliRunner()


class _Models(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path != "/v1/models":
            self.send_error(404)
            return
        body = json.dumps({"object": "list", "data": [{"id": "qwen2.5-coder-0.5b-instruct", "object": "model"}]})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def models_endpoint() -> Iterator[str]:
    """An HTTP endpoint answering GET /v1/models as an OpenAI-compatible server does (the check only asks that)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Models)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_embedded_parts_need_no_server() -> None:
    res = runner.invoke(app, ["status", "--deployment"])
    assert res.exit_code == 0, res.output
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("ok") and "embedded" in line for line in lines)


@pytest.mark.server
def test_every_configured_service_answers_or_the_exit_status_says_so(
    postgres_server: PostgresServer, chroma_server: ChromaServer, models_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STACKMIND_DATABASE_URL", postgres_server.create_database("deployment_check"))
    monkeypatch.setenv("STACKMIND_CHROMA_URL", chroma_server.url)
    monkeypatch.setenv("STACKMIND_BACKEND", "openai")
    monkeypatch.setenv("STACKMIND_OPENAI_BASE_URL", models_endpoint)
    res = runner.invoke(app, ["status", "--deployment", "--json"])
    assert res.exit_code == 0, res.output
    got = json.loads(res.stdout)
    assert got["ok"] and [s["service"] for s in got["services"]] == ["database", "chroma", "model server"]
    assert "PostgreSQL" in got["services"][0]["detail"] and "Chroma" in got["services"][1]["detail"]
    assert "qwen2.5-coder-0.5b-instruct" in got["services"][2]["detail"]

    monkeypatch.setenv("STACKMIND_CHROMA_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("STACKMIND_DATABASE_URL", f"postgresql://bot:s3cret@127.0.0.1:{free_port()}/stackmind")
    res = runner.invoke(app, ["status", "--deployment"])
    assert res.exit_code == 1
    lines = res.stdout.strip().splitlines()
    assert [line.split()[:2] for line in lines] == [["DOWN", "database"], ["DOWN", "chroma"], ["ok", "model"]]
    assert "s3cret" not in res.output and "bot:***@" in lines[0]


def test_episodes_export_and_import(backend: Backend, tmp_path: Path) -> None:
    settings = backend.settings()
    with open_episodes(settings) as store:
        for i in range(3):
            store.save(Episode(goal=f"goal {i}", answer=str(i)))
    out = tmp_path / "exported"
    res = runner.invoke(app, ["episodes", "export", str(out), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["exported"] == 3 and len(list(out.glob("*.trace.yaml"))) == 3
    listed = runner.invoke(app, ["episodes", "list", "--json"])
    assert sorted(e["goal"] for e in json.loads(listed.stdout)["episodes"]) == ["goal 0", "goal 1", "goal 2"]
    path = next(p for p in out.glob("*.trace.yaml") if "goal: goal 1" in p.read_text())
    path.write_text(path.read_text().replace("goal 1", "goal 1, corrected by hand"))
    (out / "broken.trace.yaml").write_text("goal: [\n")
    res = runner.invoke(app, ["episodes", "import", str(out)])
    assert res.exit_code == 1  # one file did not parse: reported, the others imported
    assert "imported 3 episodes" in res.stdout and "0 new, 3 replaced" in res.stdout
    assert "broken.trace.yaml:" in res.output
    with open_episodes(settings) as store:
        assert sorted(e.goal for e in store.episodes()) == ["goal 0", "goal 1, corrected by hand", "goal 2"]
    status = json.loads(runner.invoke(app, ["status", "--json"]).stdout)
    assert status["episodes"] == 3 and status["database"].startswith(backend.name)
