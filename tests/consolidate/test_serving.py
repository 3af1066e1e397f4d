"""Hot-loading against a local HTTP server that checks the request shape vLLM documents:
``POST /v1/load_lora_adapter`` with a JSON body ``{"lora_name": str, "lora_path": str}``."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import stackmind.interfaces.cli_consolidate  # noqa: F401
from stackmind.consolidate import AdapterRegistry, HotLoadError, hot_load, served_adapter
from stackmind.interfaces._app import app
from stackmind.settings import Settings

runner = CliRunner()


class FakeVLLM(BaseHTTPRequestHandler):
    loaded: dict[str, str]
    requests: list[dict[str, Any]]
    runtime_updates = True

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
        if self.path != "/v1/load_lora_adapter" or not self.runtime_updates:
            return self._send(404, '{"detail": "Not Found"}')
        if self.headers.get("Content-Type") != "application/json":
            return self._send(415, "json expected")
        data = json.loads(body)
        if set(data) - {"lora_name", "lora_path", "load_inplace"} or not isinstance(data.get("lora_name"), str) \
                or not isinstance(data.get("lora_path"), str):
            return self._send(400, "bad request shape")
        if not (Path(data["lora_path"]) / "adapter_config.json").is_file():
            return self._send(400, f"No adapter found for {data['lora_path']}")
        if data["lora_name"] in self.loaded:
            return self._send(400, f"The lora adapter '{data['lora_name']}' has already been loaded.")
        self.loaded[data["lora_name"]] = data["lora_path"]
        self._send(200, f"Success: LoRA adapter '{data['lora_name']}' added successfully.")

    def _send(self, code: int, text: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text.encode())

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, type[FakeVLLM]]]:
    handler = type("Handler", (FakeVLLM,), {"loaded": {}, "requests": []})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", handler
    httpd.shutdown()


def _registered(settings: Settings, tmp_path: Path) -> AdapterRegistry:
    src = tmp_path / "adapter"
    src.mkdir()
    (src / "adapter_config.json").write_text(json.dumps({"r": 16}))
    reg = AdapterRegistry.of(settings)
    reg.register(src, {"rank": 16})
    return reg


def test_hot_load_sends_what_vllm_expects(server: tuple[str, type[FakeVLLM]], tmp_path: Path) -> None:
    url, handler = server
    settings = Settings(backend="openai", openai_base_url=url, openai_api_key="k-123").ensure_dirs()
    reg = _registered(settings, tmp_path)
    name = hot_load(settings, reg.get("v0001"))
    assert name == "stackmind-v0001"
    assert handler.loaded == {"stackmind-v0001": str((settings.adapters_dir / "v0001").resolve())}
    assert handler.requests[0]["headers"]["Authorization"] == "Bearer k-123"
    assert served_adapter(settings)["name"] == "stackmind-v0001"
    assert hot_load(settings, reg.get("v0001")) == name  # loading again (a resumed run) is fine


def test_hot_load_explains_a_server_without_runtime_updates(server: tuple[str, type[FakeVLLM]],
                                                            tmp_path: Path) -> None:
    url, handler = server
    handler.runtime_updates = False
    settings = Settings(backend="openai", openai_base_url=url).ensure_dirs()
    reg = _registered(settings, tmp_path)
    with pytest.raises(HotLoadError, match="VLLM_ALLOW_RUNTIME_LORA_UPDATING=True"):
        hot_load(settings, reg.get("v0001"))
    assert served_adapter(settings) is None


def test_hot_load_explains_an_unreachable_server(tmp_path: Path) -> None:
    settings = Settings(backend="openai", openai_base_url="http://127.0.0.1:9/v1").ensure_dirs()
    reg = _registered(settings, tmp_path)
    with pytest.raises(HotLoadError, match="is the vLLM server up"):
        hot_load(settings, reg.get("v0001"), timeout_s=2)


def test_promote_hot_loads_when_a_server_is_configured(server: tuple[str, type[FakeVLLM]], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    url, handler = server
    monkeypatch.setenv("STACKMIND_BACKEND", "openai")
    monkeypatch.setenv("STACKMIND_OPENAI_BASE_URL", url)
    _registered(Settings().ensure_dirs(), tmp_path)
    res = runner.invoke(app, ["adapters", "promote", "v0001"])
    assert res.exit_code == 0, res.output
    assert "stackmind-v0001" in handler.loaded


def test_serve_vllm_prints_the_command(settings: Settings, tmp_path: Path) -> None:
    reg = _registered(settings, tmp_path)
    reg.promote("v0001")
    res = runner.invoke(app, ["serve", "--vllm", "--port", "8123"])
    assert res.exit_code == 0, res.output
    line = res.stdout.strip()
    assert line.startswith("VLLM_ALLOW_RUNTIME_LORA_UPDATING=True vllm serve ")
    assert "--enable-lora" in line and "--max-lora-rank 16" in line and "--port 8123" in line
    assert f"--lora-modules stackmind-v0001={(settings.adapters_dir / 'v0001').resolve()}" in line
