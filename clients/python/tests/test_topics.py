"""Topics: every subscription gets its own copy; subscribers are listed and removed."""

from __future__ import annotations

import pytest

from mom_client import Connection, NotFound


def test_two_subscribers_each_get_a_copy(conn: Connection, unique) -> None:
    topic = unique("prices")
    assert conn.declare_topic(topic) is True
    assert conn.declare_topic(topic) is False
    assert topic in conn.list_topics()
    assert conn.subscribe(topic, "alpha") is True
    assert conn.subscribe(topic, "alpha") is False
    conn.subscribe(topic, "beta")
    assert sorted(conn.list_subscribers(topic)) == ["alpha", "beta"]

    published = conn.publish_topic(topic, "tick-1")
    assert published.routed == 2
    for subscriber in ("alpha", "beta"):
        [delivery] = conn.pull_subscription(topic, subscriber, 10, wait_ms=5_000)
        assert (delivery.message_id, delivery.payload) == (published.message_id, "tick-1")
        assert conn.ack_subscription(topic, subscriber, delivery).acked == 1
        assert conn.pull_subscription(topic, subscriber) == []


def test_a_subscription_consumer_and_unsubscribe(conn: Connection, unique) -> None:
    topic = unique("events")
    conn.declare_topic(topic)
    conn.subscribe(topic, "worker")
    for n in range(3):
        conn.publish_topic(topic, f"e{n}", routing_key="same")
    consumer = conn.consume_subscription(topic, "worker", idle_timeout=0.5)
    got = []
    for delivery in consumer:
        assert consumer.ack(delivery)
        got.append(delivery.payload)
    assert got == ["e0", "e1", "e2"]

    conn.unsubscribe(topic, "worker")
    assert conn.list_subscribers(topic) == []
    assert conn.publish_topic(topic, "unheard").routed == 0
    with pytest.raises(NotFound):
        conn.pull_subscription(topic, "worker")
    conn.delete_topic(topic)
    assert topic not in conn.list_topics()


def test_a_late_subscription_replays_the_retained_history(conn: Connection, unique) -> None:
    from mom_client import Conflict

    topic = unique("history")
    conn.declare_topic(topic, retention_ms=600_000)
    with pytest.raises(Conflict):
        conn.declare_topic(topic, retention_ms=5)
    for n in range(3):
        assert conn.publish_topic(topic, f"old-{n}").routed == 0
    info = conn.get_topic(topic)
    assert (info["retention_ms"], info["retained"]["messages"]) == (600_000, 3)
    conn.subscribe(topic, "late", start="earliest")
    conn.subscribe(topic, "now")
    conn.publish_topic(topic, "new")
    lags = {s["subscriber"]: s["lag"] for s in conn.get_topic(topic)["subscriptions"]}
    assert lags == {"late": 4, "now": 1}
    got = conn.pull_subscription(topic, "late", 10, wait_ms=5_000)
    assert [d.payload for d in got] == ["old-0", "old-1", "old-2", "new"]
