"""S3 calls retry 5xx answers with backoff and give up after ``s3.max_attempts`` (a real HTTP endpoint)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from botocore.exceptions import ClientError

from minielm.config import S3Config
from minielm.storage import ObjectStore, s3_client

INTERNAL_ERROR = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code>'
    b"<Message>We encountered an internal error, please try again.</Message></Error>"
)


class FlakyS3:
    """Answers GetObject with 500 InternalError ``failures`` times, then with the body."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server hook name
                outer.calls += 1
                if outer.calls <= outer.failures:
                    self._reply(500, INTERNAL_ERROR, "application/xml")
                else:
                    self._reply(200, b'{"value": 42}', "application/json")

            def _reply(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def config(self) -> S3Config:
        return S3Config(
            endpoint_url=f"http://127.0.0.1:{self.server.server_address[1]}",
            access_key_id="test",
            secret_access_key="test",
            max_attempts=3,
        )

    def __enter__(self) -> FlakyS3:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_internal_errors_are_retried_until_the_object_reads():
    with FlakyS3(failures=2) as s3:
        assert ObjectStore(s3.config).get_json("survives/kill.json") == {"value": 42}
        assert s3.calls == 3


def test_persistent_internal_errors_fail_after_max_attempts():
    with FlakyS3(failures=10) as s3:
        with pytest.raises(ClientError, match="InternalError"):
            ObjectStore(s3.config).get_json("survives/kill.json")
        assert s3.calls == 3


def test_retries_zero_means_a_single_try():
    with FlakyS3(failures=1) as s3:
        with pytest.raises(ClientError, match="InternalError"):
            ObjectStore(s3.config, client=s3_client(s3.config, retries=0)).get_json("k.json")
        assert s3.calls == 1


def _stubbed_store():
    from botocore.stub import Stubber

    config = S3Config(endpoint_url="http://127.0.0.1:9", access_key_id="test", secret_access_key="test")
    client = s3_client(config, retries=0)
    return ObjectStore(config, client=client), Stubber(client)


def test_ensure_bucket_raises_a_failed_head_instead_of_creating_over_the_bucket():
    store, stub = _stubbed_store()
    stub.add_client_error("head_bucket", service_error_code="InternalError", http_status_code=500)
    with stub, pytest.raises(ClientError, match="InternalError"):
        store.ensure_bucket()  # a create_bucket call would fail the stubber with UnStubbedResponseError
    stub.assert_no_pending_responses()


@pytest.mark.parametrize("create_error", [None, "BucketAlreadyOwnedByYou"])
def test_ensure_bucket_creates_a_missing_bucket(create_error):
    store, stub = _stubbed_store()
    stub.add_client_error("head_bucket", service_error_code="404", http_status_code=404)
    if create_error:  # another process created it between the two calls
        stub.add_client_error("create_bucket", service_error_code=create_error, http_status_code=409)
    else:
        stub.add_response("create_bucket", {}, {"Bucket": store.bucket})
    with stub:
        store.ensure_bucket()
    stub.assert_no_pending_responses()
