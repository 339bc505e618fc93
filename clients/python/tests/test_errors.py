"""Typed errors: how HTTP statuses and error bodies become MomError subclasses."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mom_client import (
    BadGateway,
    BadRequest,
    Conflict,
    Connection,
    Forbidden,
    MomError,
    NotFound,
    ServerError,
    TooManyRequests,
    TransportError,
    Unavailable,
)
from mom_client.errors import error_for, retry_after_seconds


def test_a_missing_queue_is_not_found(admin: Connection, conn: Connection, unique) -> None:
    # For a plain user as for the admin: what does not exist is 404, not 403.
    missing = unique("missing")
    for call in (
        lambda: admin.get_queue(missing),
        lambda: admin.pull(missing),
        lambda: admin.pull_subscription(missing, "sub"),
        lambda: conn.get_queue(missing),
        lambda: conn.pull(missing),
        lambda: conn.pull_subscription(missing, "sub"),
    ):
        with pytest.raises(NotFound) as error:
            call()
        assert error.value.status == 404
        assert missing in error.value.message


@pytest.mark.parametrize("name", ["bad name!", "", "...", "x" * 129, "a/b"])
def test_a_bad_name_is_a_bad_request(conn: Connection, name: str) -> None:
    with pytest.raises(BadRequest) as error:
        conn.declare_queue(name)
    assert error.value.status == 400 and error.value.message


def test_bad_parameters_are_bad_requests(conn: Connection, unique) -> None:
    queue = unique("q")
    conn.declare_queue(queue)
    for call in (
        lambda: conn.pull(queue, 0),
        lambda: conn.pull(queue, 101),
        lambda: conn.pull(queue, wait_ms=20_001),
        lambda: conn.pull(queue, visibility_timeout_ms=0),
        lambda: conn.bind("ex", queue, "bad key!"),
    ):
        with pytest.raises(BadRequest):
            call()


def test_redeclaring_an_exchange_with_another_kind_is_a_conflict(conn: Connection, unique) -> None:
    exchange = unique("ex")
    assert conn.declare_exchange(exchange, "direct") is True
    assert conn.declare_exchange(exchange, "direct") is False
    with pytest.raises(Conflict) as error:
        conn.declare_exchange(exchange, "fanout")
    assert error.value.status == 409


def test_an_unreachable_gateway_is_a_transport_error() -> None:
    conn = Connection.from_token("http://127.0.0.1:1", "t", timeout=2)
    with pytest.raises(TransportError) as error:
        conn.list_queues()
    conn.close()
    assert error.value.status is None


def test_statuses_map_to_classes_and_bodies_to_messages() -> None:
    assert type(error_for(404, '{"error":"queue \\"q\\" does not exist"}')) is NotFound
    assert error_for(404, '{"error":"queue \\"q\\" does not exist"}').message == 'queue "q" does not exist'
    assert type(error_for(503, "")) is Unavailable and error_for(503, "").message == "Service Unavailable"
    assert isinstance(error_for(503, ""), ServerError)
    assert isinstance(error_for(502, "upstream died\n"), BadGateway)
    assert error_for(502, "  upstream died\n").message == "upstream died"
    assert type(error_for(500, '{"message":"x"}')) is ServerError
    assert error_for(500, '{"error":42}').message == '{"error":42}'
    odd = error_for(418, "")
    assert type(odd) is MomError and odd.status == 418
    assert str(error_for(401, '{"error":"token expired"}')) == "gateway answered 401: token expired"


def test_403_and_429_map_to_forbidden_and_too_many_requests() -> None:
    forbidden = error_for(403, '{"error":"user \\"bob\\" has no read permission on queue \\"q\\""}')
    assert (
        type(forbidden) is Forbidden and forbidden.message == 'user "bob" has no read permission on queue "q"'
    )
    throttled = error_for(429, '{"error":"too many attempts; retry in 7 seconds"}', "7")
    assert type(throttled) is TooManyRequests and isinstance(throttled, MomError)
    assert (throttled.status, throttled.retry_after) == (429, 7.0)
    assert error_for(429, "").retry_after is None and error_for(429, "").message == "Too Many Requests"
    assert error_for(429, "", "soon").retry_after is None
    assert retry_after_seconds(" 12 ") == 12.0 and retry_after_seconds("-3") == 0.0
    assert 50 < retry_after_seconds(formatdate(time.time() + 60, usegmt=True)) <= 60
    assert retry_after_seconds(formatdate(time.time() - 60, usegmt=True)) == 0.0


class _Throttling(BaseHTTPRequestHandler):
    """Answers every login 429 with a Retry-After, as a throttling auth service does."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = json.dumps({"error": "too many attempts; retry in 42 seconds"}).encode()
        self.send_response(429)
        self.send_header("Content-Type", "application/json")
        self.send_header("Retry-After", "42")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def throttling_gateway() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Throttling)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_throttled_login_says_when_to_retry(throttling_gateway: str) -> None:
    with pytest.raises(TooManyRequests) as throttled:
        Connection(throttling_gateway, "alice", "correct-horse-battery")
    assert (throttled.value.status, throttled.value.retry_after) == (429, 42.0)
    assert throttled.value.message == "too many attempts; retry in 42 seconds"
