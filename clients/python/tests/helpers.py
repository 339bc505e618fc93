"""Helpers the test modules share: the test user's credentials and draining a queue."""

from __future__ import annotations

from mom_client import Connection, Delivery

USER = "alice"
PASSWORD = "correct-horse-battery"


def drain(conn: Connection, queue: str, count: int = 100, quiet_ms: int = 300) -> list[Delivery]:
    """Pulls and acks until ``count`` messages came or none came for ``quiet_ms``."""
    got: list[Delivery] = []
    while len(got) < count:
        batch = conn.pull(queue, min(count - len(got), 100), wait_ms=quiet_ms)
        if not batch:
            break
        outcome = conn.ack(queue, batch)
        assert outcome.stale == [], f"fresh receipts refused: {outcome.stale}"
        got.extend(batch)
    return got


def payloads(deliveries: list[Delivery]) -> list[str]:
    return [d.payload for d in deliveries]
