"""A small local HTTP server speaking the KFP v2beta1 endpoints that ``pipelines.submit`` uses.

No KFP API server can run on these machines; this one records every request (path, query, headers,
body) and answers like KFP: 401 without the expected token, 403 for a namespace it does not know,
runs that walk through RUNNING to a final state one poll at a time.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

API = "/apis/v2beta1"


@dataclass
class FakeKfp:
    token: str = "good-token"
    namespaces: set[str] = field(default_factory=lambda: {"team-a"})
    final_state: str = "SUCCEEDED"
    requests: list[dict] = field(default_factory=list)
    experiments: dict[str, dict] = field(default_factory=dict)
    runs: dict[str, dict] = field(default_factory=dict)
    recurring: dict[str, dict] = field(default_factory=dict)
    url: str = ""

    def handle(self, method: str, path: str, query: dict, headers: dict, body: dict | None) -> tuple[int, dict]:
        self.requests.append({"method": method, "path": path, "query": query, "headers": headers, "body": body})
        if headers.get("Authorization") != f"Bearer {self.token}":
            return 401, {"error": "Unauthenticated", "message": "token is missing or invalid"}
        namespace = (query.get("namespace") or [None])[0] or (body or {}).get("namespace")
        if namespace is not None and namespace not in self.namespaces:
            return 403, {"message": f"user is not allowed in namespace {namespace}"}
        route = path[len(API) :]
        if method == "GET" and route == "/experiments":
            name = json.loads(query["filter"][0])["predicates"][0]["string_value"]
            found = [e for e in self.experiments.values() if e["display_name"] == name]
            return 200, {"experiments": found} if found else {}
        if method == "POST" and route == "/experiments":
            experiment = {**body, "experiment_id": f"exp-{len(self.experiments) + 1}"}
            self.experiments[experiment["experiment_id"]] = experiment
            return 200, experiment
        if method == "POST" and route == "/runs":
            run = {**body, "run_id": uuid.uuid4().hex[:8], "state": "PENDING", "polls": 0}
            self.runs[run["run_id"]] = run
            return 200, {k: v for k, v in run.items() if k != "polls"}
        if method == "GET" and route.startswith("/runs/"):
            run = self.runs.get(route.split("/")[2])
            if run is None:
                return 404, {"message": "run not found"}
            run["polls"] += 1
            states = ["RUNNING", "RUNNING", self.final_state]
            state = states[min(run["polls"] - 1, 2)]
            tasks = [{"display_name": "validate-data", "state": "SUCCEEDED" if run["polls"] > 1 else "RUNNING"}]
            return 200, {"run_id": run["run_id"], "state": state, "run_details": {"task_details": tasks}}
        if method == "GET" and route == "/recurringruns":
            return 200, {"recurringRuns": list(self.recurring.values())}
        if method == "POST" and route == "/recurringruns":
            created = {**body, "recurring_run_id": f"rr-{uuid.uuid4().hex[:6]}"}
            self.recurring[created["recurring_run_id"]] = created
            return 200, created
        if method == "DELETE" and route.startswith("/recurringruns/"):
            self.recurring.pop(route.split("/")[2], None)
            return 200, {}
        return 404, {"message": f"no route {method} {path}"}


def serve(fake: FakeKfp):
    """Start the fake on a free port (a daemon thread); returns the server (``server.shutdown()`` stops it)."""

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, method: str) -> None:
            url = urlparse(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            status, payload = fake.handle(method, url.path, parse_qs(url.query), dict(self.headers), body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):  # noqa: N802 (http.server's naming)
            self._answer("GET")

        def do_POST(self):  # noqa: N802
            self._answer("POST")

        def do_DELETE(self):  # noqa: N802
            self._answer("DELETE")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
