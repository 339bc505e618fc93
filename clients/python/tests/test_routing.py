"""Exchange routing: direct keys, topic wildcards, fanout."""

from __future__ import annotations

from helpers import drain, payloads

from mom_client import Connection


def test_direct_routes_by_exact_key(conn: Connection, unique) -> None:
    exchange, eu, us = unique("orders"), unique("eu"), unique("us")
    conn.declare_exchange(exchange, "direct")
    for queue, key in ((eu, "eu"), (us, "us")):
        conn.declare_queue(queue)
        conn.bind(exchange, queue, key)
    assert conn.publish(exchange, "eu", "order-1").routed == 1
    assert conn.publish(exchange, "asia", "order-2").routed == 0
    assert payloads(drain(conn, eu)) == ["order-1"]
    assert drain(conn, us) == []


def test_topic_routes_by_wildcard_pattern(conn: Connection, unique) -> None:
    exchange = unique("stocks")
    conn.declare_exchange(exchange, "topic")
    queues = {}
    for label, pattern in (("nyse", "stock.*.nyse"), ("everything", "stock.#"), ("ibm", "*.ibm.*")):
        queues[label] = unique(label)
        conn.declare_queue(queues[label])
        conn.bind(exchange, queues[label], pattern)
    assert conn.publish(exchange, "stock.ibm.nyse", "a").routed == 3
    assert conn.publish(exchange, "stock.sap.xetra", "b").routed == 1
    assert conn.publish(exchange, "stock", "c").routed == 1
    assert conn.publish(exchange, "bond.ibm.nyse", "d").routed == 1
    assert payloads(drain(conn, queues["nyse"])) == ["a"]
    # Different keys may live on different nodes, so only per-key order is promised.
    assert sorted(payloads(drain(conn, queues["everything"]))) == ["a", "b", "c"]
    assert sorted(payloads(drain(conn, queues["ibm"]))) == ["a", "d"]


def test_fanout_ignores_the_key(conn: Connection, unique) -> None:
    exchange = unique("news")
    conn.declare_exchange(exchange, "fanout")
    queues = [unique("n") for _ in range(3)]
    for queue in queues:
        conn.declare_queue(queue)
        conn.bind(exchange, queue)
    assert conn.publish(exchange, "whatever", "headline").routed == 3
    for queue in queues:
        assert payloads(drain(conn, queue)) == ["headline"]
    conn.unbind(exchange, queues[2])
    assert conn.publish(exchange, "", "second").routed == 2
    assert [payloads(drain(conn, q)) for q in queues] == [["second"], ["second"], []]
