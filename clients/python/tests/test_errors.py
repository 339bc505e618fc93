"""Typed errors: how HTTP statuses and error bodies become MomError subclasses."""

from __future__ import annotations

import pytest

from mom_client import (
    BadGateway,
    BadRequest,
    Conflict,
    Connection,
    MomError,
    NotFound,
    ServerError,
    TransportError,
    Unavailable,
)
from mom_client.errors import error_for


def test_a_missing_queue_is_not_found(conn: Connection, unique) -> None:
    missing = unique("missing")
    for call in (
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
