"""An expected client mistake (HTTP 400) is one log line, not KServe's logged stack trace."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

from kserve.errors import InvalidInput

from serving import server


def test_invalid_input_is_one_log_line_and_a_400_naming_the_field(monkeypatch):
    logged = []
    monkeypatch.setattr(server.log, "info", lambda event, **fields: logged.append((event, fields)))
    monkeypatch.setattr(server.log, "error", lambda *args, **kwargs: logged.append(("error", args, kwargs)))
    request = SimpleNamespace(url=SimpleNamespace(path="/v1/models/student-rewriter:predict"))
    response = asyncio.run(server.invalid_input_handler(request, InvalidInput("instances[0].query: empty query")))
    assert response.status_code == 400
    assert json.loads(response.body) == {"error": "instances[0].query: empty query"}
    assert logged == [
        (
            "client error",
            {"status": 400, "path": "/v1/models/student-rewriter:predict", "error": "instances[0].query: empty query"},
        )
    ]


def test_the_server_app_routes_invalid_input_to_that_handler():
    app = server.LocalModelServer(http_port=0).build_app()
    assert app.exception_handlers[InvalidInput] is server.invalid_input_handler
