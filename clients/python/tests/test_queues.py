"""Queues: declare, bind, publish, pull, ack, depth, redelivery, TTL and the consumer iterator."""

from __future__ import annotations

import threading
import time

import pytest
from helpers import PASSWORD, USER, drain, payloads

from mom_client import BadRequest, Connection, Delivery, ExchangeKind, PayloadTooLarge


def bound_queue(conn: Connection, unique, kind: str = "direct", key: str = "k"):
    exchange, queue = unique("ex"), unique("q")
    conn.declare_exchange(exchange, kind)
    conn.declare_queue(queue)
    conn.bind(exchange, queue, key)
    return exchange, queue


def test_declare_bind_publish_pull_ack(conn: Connection, unique) -> None:
    exchange, queue = unique("ex"), unique("q")
    assert conn.declare_exchange(exchange, ExchangeKind.DIRECT) is True
    assert conn.declare_queue(queue) is True
    assert conn.declare_queue(queue) is False
    assert conn.bind(exchange, queue, "jobs") is True
    assert conn.bind(exchange, queue, "jobs") is False
    assert queue in conn.list_queues()
    assert (exchange, ExchangeKind.DIRECT) in [(e.name, e.kind) for e in conn.list_exchanges()]
    info = conn.get_exchange(exchange)
    assert info.kind == "direct"
    assert [(b.queue, b.routing_key) for b in info.bindings] == [(queue, "jobs")]

    published = conn.publish(exchange, "jobs", "hello")
    assert published.routed == 1 and published.message_id
    depth = conn.get_queue(queue)
    assert (depth.ready, depth.leased) == (1, 0)

    [delivery] = conn.pull(queue, 10, wait_ms=5_000)
    assert (delivery.message_id, delivery.payload) == (published.message_id, "hello")
    assert (delivery.exchange, delivery.routing_key, delivery.delivery_count) == (exchange, "jobs", 1)
    assert delivery.published_at_ms > 1_600_000_000_000
    assert (conn.get_queue(queue).ready, conn.get_queue(queue).leased) == (0, 1)

    outcome = conn.ack(queue, delivery)
    assert (outcome.acked, outcome.stale) == (1, [])
    assert (conn.queue_depth(queue).ready, conn.queue_depth(queue).leased) == (0, 0)

    conn.unbind(exchange, queue, "jobs")
    assert conn.publish(exchange, "jobs", "nobody hears").routed == 0
    conn.delete_queue(queue)
    conn.delete_exchange(exchange)
    assert queue not in conn.list_queues()
    assert exchange not in [e.name for e in conn.list_exchanges()]


def test_a_queue_is_fifo_per_routing_key(conn: Connection, unique) -> None:
    exchange, queue = bound_queue(conn, unique)
    sent = [f"job-{n:02}" for n in range(20)]
    for payload in sent:
        conn.publish(exchange, "k", payload)
    assert payloads(drain(conn, queue, len(sent))) == sent


def test_a_batch_publish_stores_every_message_in_order(conn: Connection, unique) -> None:
    exchange, queue = bound_queue(conn, unique)
    sent = [f"batch-{n:03}" for n in range(120)]
    outcomes = conn.publish_batch(exchange, [("k", payload) for payload in sent])
    assert len(outcomes) == len(sent)
    assert all(not isinstance(o, str) and o.routed == 1 for o in outcomes), outcomes
    assert payloads(drain(conn, queue, len(sent))) == sent


def test_bytes_payloads_come_back_byte_identical_with_headers(conn: Connection, unique) -> None:
    exchange, queue = bound_queue(conn, unique)
    every_byte = bytes(range(256))
    headers = {"trace-id": "t-1", "x.kind_2": "grüße €"}
    conn.publish(exchange, "k", every_byte, headers=headers, content_type="application/x-all-bytes")
    conn.publish(exchange, "k", "grüße €".encode("utf-8"))
    conn.publish(exchange, "k", "plain text", content_type="text/plain")
    binary, utf8, text = drain(conn, queue, 3)
    assert binary.payload_bytes == every_byte
    assert (binary.headers, binary.content_type) == (headers, "application/x-all-bytes")
    assert "\ufffd" in binary.payload, "the text form stays, lossy"
    assert utf8.payload == "grüße €" and utf8.payload_bytes == "grüße €".encode("utf-8")
    assert (utf8.headers, utf8.content_type) == ({}, None)
    assert (text.payload, text.payload_bytes) == ("plain text", b"plain text")
    assert text.content_type == "text/plain"

    # The default exchange and topics carry them alike; a batch may mix text and bytes.
    conn.publish_to_queue(queue, bytearray(b"\x00\xff"), headers={"via": "default"})
    [direct] = drain(conn, queue, 1)
    assert (direct.payload_bytes, dict(direct.headers)) == (b"\x00\xff", {"via": "default"})
    topic = unique("t")
    conn.declare_topic(topic)
    conn.subscribe(topic, "s")
    conn.publish_topic(topic, b"\x01\x80", headers={"via": "topic"}, content_type="application/x-t")
    [tick] = conn.pull_subscription(topic, "s", wait_ms=5_000)
    assert (tick.payload_bytes, dict(tick.headers)) == (b"\x01\x80", {"via": "topic"})
    assert tick.content_type == "application/x-t"
    conn.ack_subscription(topic, "s", tick)
    mixed = [("k", "t"), ("k", b"\xfe", {"n": "1"}), ("k", memoryview(b"m"), None)]
    outcomes = conn.publish_batch(exchange, mixed)
    assert all(not isinstance(o, str) for o in outcomes), outcomes
    got = drain(conn, queue, 3)
    assert [(d.payload_bytes, dict(d.headers)) for d in got] == [
        (b"t", {}),
        (b"\xfe", {"n": "1"}),
        (b"m", {}),
    ]


def test_bad_headers_and_oversized_payloads_are_refused(conn: Connection, unique) -> None:
    exchange, queue = bound_queue(conn, unique)
    with pytest.raises(BadRequest, match="header name"):
        conn.publish(exchange, "k", b"x", headers={"bad name": "v"})
    with pytest.raises(BadRequest, match="65 headers"):
        conn.publish(exchange, "k", b"x", headers={f"h{n}": "v" for n in range(65)})
    with pytest.raises(PayloadTooLarge):
        conn.publish(exchange, "k", bytes(4 * 1024 * 1024 + 1))
    with pytest.raises(TypeError):
        conn.publish(exchange, "k", 42)  # type: ignore[arg-type]
    assert conn.get_queue(queue).ready == 0


def test_unacked_messages_are_redelivered_and_stale_acks_refused(conn: Connection, unique) -> None:
    exchange, queue = bound_queue(conn, unique)
    published = conn.publish(exchange, "k", "letter")

    [first] = conn.pull(queue, visibility_timeout_ms=300, wait_ms=5_000)
    assert (first.message_id, first.delivery_count) == (published.message_id, 1)
    # Leased: nobody else gets it meanwhile.
    assert conn.pull(queue) == []

    # The consumer "crashed" without acking: the long-poll gets it back once the lease ends.
    [second] = conn.pull(queue, visibility_timeout_ms=30_000, wait_ms=10_000)
    assert (second.message_id, second.delivery_count) == (published.message_id, 2)
    assert second.receipt != first.receipt

    late = conn.ack(queue, first.receipt)
    assert (late.acked, late.stale) == (0, [first.receipt]), "an old receipt must not ack the new delivery"
    assert conn.ack(queue, [second]).acked == 1
    depth = conn.get_queue(queue)
    assert (depth.ready, depth.leased) == (0, 0)


def test_expired_messages_are_not_delivered(conn: Connection, unique) -> None:
    exchange, queue = bound_queue(conn, unique, kind="fanout", key="")
    expired_at = time.monotonic() + 0.2  # no later than the message's own TTL deadline
    conn.publish(exchange, "", "stale-quote", ttl_ms=200)
    conn.publish(exchange, "", "fresh-quote", ttl_ms=600_000)
    # TTL is about time passing: wait out the short one's (a margin for clock granularity);
    # from then on nothing may hand it out.
    time.sleep(max(0.0, expired_at + 0.05 - time.monotonic()))
    assert payloads(drain(conn, queue, 10)) == ["fresh-quote"]
    assert conn.get_queue(queue).ready == 0


def test_delayed_messages_are_not_delivered_early(conn: Connection, unique) -> None:
    queue = unique("delayed")
    conn.declare_queue(queue)
    published = time.monotonic()
    conn.publish_to_queue(queue, "later", delay_ms=800)
    conn.publish_to_queue(queue, "now")
    assert payloads(drain(conn, queue, 10)) == ["now"]
    got = conn.pull(queue, 1, wait_ms=5_000)
    assert [d.payload for d in got] == ["later"]
    assert time.monotonic() - published >= 0.8
    conn.ack(queue, got)


def test_the_consumer_iterator_yields_every_message_in_order(conn: Connection, unique) -> None:
    exchange, queue = bound_queue(conn, unique)
    sent = [f"m{n}" for n in range(7)]
    for payload in sent:
        conn.publish(exchange, "k", payload)
    consumer = conn.consume(queue, batch=3, idle_timeout=0.5)
    got: list[Delivery] = []
    for delivery in consumer:
        assert consumer.ack(delivery)
        got.append(delivery)
    assert payloads(got) == sent
    assert consumer.next(timeout=0) is None


def test_the_consumer_long_polls_until_a_message_comes(cluster, conn: Connection, unique) -> None:
    exchange, queue = bound_queue(conn, unique)
    got: list[Delivery] = []

    def consume() -> None:
        # A connection per thread: a requests.Session is not meant to be shared.
        with Connection(cluster.gateway_url, USER, PASSWORD) as own:
            consumer = own.consume(queue, batch=1)
            delivery = consumer.next(timeout=15)
            if delivery is not None:
                consumer.ack(delivery)
                got.append(delivery)

    waiter = threading.Thread(target=consume)
    waiter.start()
    conn.publish(exchange, "k", "wake-up")
    waiter.join(timeout=20)
    assert not waiter.is_alive()
    assert payloads(got) == ["wake-up"]


def test_a_consumer_ack_after_the_lease_ran_out_is_refused(conn: Connection, unique) -> None:
    exchange, queue = bound_queue(conn, unique)
    conn.publish(exchange, "k", "slow")
    consumer = conn.consume(queue, batch=1, visibility_timeout_ms=200)
    first = consumer.next(timeout=5)
    again = consumer.next(timeout=10)  # redelivered to us after the lease ran out
    assert first and again and again.message_id == first.message_id
    assert consumer.ack(first) is False
    assert consumer.ack(again) is True


def test_streaming_is_not_there_yet(conn: Connection) -> None:
    with pytest.raises(NotImplementedError):
        conn.stream("any")


def test_the_default_exchange_mandatory_and_own_message_ids(conn, unique) -> None:
    from mom_client import Unprocessable

    queue = unique("inbox")
    conn.declare_queue(queue)
    assert conn.publish_to_queue(queue, "straight in").routed == 1
    exchange = unique("unbound")
    conn.declare_exchange(exchange, "direct")
    with pytest.raises(Unprocessable):
        conn.publish(exchange, "k", "nobody wants this", mandatory=True)
    assert conn.publish(exchange, "k", "lost").routed == 0
    for _ in range(3):
        assert conn.publish_to_queue(queue, "once", message_id=f"{queue}-m1").message_id == f"{queue}-m1"
    assert sorted(payloads(drain(conn, queue, 10, quiet_ms=1000))) == ["once", "straight in"]


def test_rejected_and_exhausted_messages_are_dead_lettered(conn: Connection, unique) -> None:
    dlx, dead, work = unique("dlx"), unique("dead"), unique("work")
    conn.declare_exchange(dlx, ExchangeKind.FANOUT)
    conn.declare_queue(dead)
    conn.bind(dlx, dead, "")
    conn.declare_queue(work, dead_letter_exchange=dlx, max_deliveries=2)
    conn.publish_to_queue(work, "again")
    [first] = conn.pull(work, 1, wait_ms=5_000)
    assert conn.nack(work, [first], requeue=True).acked == 1
    [second] = conn.pull(work, 1)
    assert second.delivery_count == 2
    assert conn.nack(work, [second], requeue=False).acked == 1
    [letter] = conn.pull(dead, 1, wait_ms=5_000)
    assert (letter.payload, letter.headers["x-death-reason"]) == ("again", "rejected")
