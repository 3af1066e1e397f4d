"""A fake Wolfram|Alpha v2 query API over real HTTP on 127.0.0.1.

It answers ``GET /v2/query?appid=...&input=...`` with the XML the real service sends, under the exact
``Content-Type: text/xml; charset=utf-8`` that the `wolframalpha` client asserts. Known inputs get
pods from ``answers``; an unknown input gets ``success="false"``; a wrong appid gets the service's
error document. ``content_type`` can be changed to see how the tool copes with a server that sends
something else.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse
from xml.sax.saxutils import escape, quoteattr

CONTENT_TYPE = "text/xml; charset=utf-8"


class FakeWolfram:
    def __init__(self, app_id: str = "TEST-APPID", answers: dict[str, list[tuple[str, str, bool]]] | None = None) -> None:
        self.app_id = app_id
        # input -> [(pod title, plaintext, primary)]
        self.answers = answers or {}
        self.content_type = CONTENT_TYPE
        self.queries: list[dict[str, list[str]]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeWolfram:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v2/query"

    def document(self, params: dict[str, list[str]]) -> str:
        if params.get("appid", [""])[0] != self.app_id:
            return ('<?xml version="1.0" encoding="UTF-8"?>\n<queryresult success="false" error="true" numpods="0">'
                    "<error><code>1</code><msg>Invalid appid</msg></error></queryresult>")
        query = params.get("input", [""])[0]
        pods = self.answers.get(query)
        if not pods:
            return ('<?xml version="1.0" encoding="UTF-8"?>\n<queryresult success="false" error="false" '
                    'numpods="0"><didyoumeans count="0"/></queryresult>')
        body = []
        for i, (title, text, primary) in enumerate(pods):
            prim = ' primary="true"' if primary else ""
            body.append(f'<pod title={quoteattr(title)} scanner="Simplification" id="P{i}" position="{(i + 1) * 100}" '
                        f'error="false" numsubpods="1"{prim}><subpod title=""><plaintext>{escape(text)}</plaintext>'
                        "</subpod></pod>")
        return (f'<?xml version="1.0" encoding="UTF-8"?>\n<queryresult success="true" error="false" '
                f'numpods="{len(pods)}" datatypes="Math" version="2.6">{"".join(body)}</queryresult>')

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                url = urlparse(self.path)
                if url.path != "/v2/query":
                    self.send_error(404)
                    return
                params = parse_qs(url.query)
                fake.queries.append(params)
                data = fake.document(params).encode("utf-8")
                self.send_response(200)
                self.send_header("Content-Type", fake.content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler
