"""Helpers the test modules share: the test users' credentials, draining a queue, and waiting
for a token to be refused."""

from __future__ import annotations

import time

from mom_client import Connection, Delivery, Unauthorized

USER = "alice"
PASSWORD = "correct-horse-battery"
USER_PASSWORD = "long-enough-pw"
"""Password of the users the ``new_user`` fixture makes."""


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


def refused_within(url: str, token: str, seconds: float = 5.0) -> bool:
    """Whether the gateway starts refusing ``token`` (401) within ``seconds``: it learns of
    deletions and revocations through a ZooKeeper watch, so not necessarily at once."""
    deadline = time.monotonic() + seconds
    with Connection.from_token(url, token) as conn:
        while True:
            try:
                conn.list_queues()
            except Unauthorized:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
