"""`Consumer`: long-polls one queue or topic subscription and hands out its deliveries one by one."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING

from .types import Delivery

if TYPE_CHECKING:
    from .connection import Connection

MAX_WAIT_MS = 20_000
"""Longest long-poll the gateway accepts."""


class Consumer:
    """Iterates over the deliveries of one mailbox (a queue or a topic subscription).

    Made by :meth:`Connection.consume` or :meth:`Connection.consume_subscription`::

        consumer = conn.consume("jobs")
        for delivery in consumer:
            handle(delivery.payload)
            consumer.ack(delivery)

    Each pull fetches up to ``batch`` messages and buffers them. Buffered messages are already
    leased to this consumer, so keep the batch small enough to handle them all within the
    visibility timeout, or their acks come back stale. Messages still buffered when the
    consumer is dropped are delivered again once their lease runs out: nothing is lost.

    Iteration blocks until a message comes; with ``idle_timeout`` (seconds) it ends once none
    came for that long.
    """

    def __init__(
        self,
        conn: Connection,
        path: str,
        batch: int = 10,
        visibility_timeout_ms: int | None = None,
        idle_timeout: float | None = None,
    ) -> None:
        self._conn = conn
        self._path = path
        self._batch = batch
        self._visibility_timeout_ms = visibility_timeout_ms
        self._idle_timeout = idle_timeout
        self._buffer: deque[Delivery] = deque()

    @property
    def buffered(self) -> int:
        """Messages fetched (and leased) but not handed out yet."""
        return len(self._buffer)

    def next(self, timeout: float | None = None) -> Delivery | None:
        """The next delivery, waiting up to ``timeout`` seconds (``None``: as long as it takes).

        Returns ``None`` if nothing came in time. Always asks the gateway at least once, so a
        zero timeout polls without waiting.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._buffer:
            if deadline is None:
                wait_ms = MAX_WAIT_MS
            else:
                wait_ms = min(MAX_WAIT_MS, max(0, round((deadline - time.monotonic()) * 1000)))
            self._buffer.extend(
                self._conn._pull(self._path, self._batch, self._visibility_timeout_ms, wait_ms)
            )
            if not self._buffer and deadline is not None and time.monotonic() >= deadline:
                return None
        return self._buffer.popleft()

    def ack(self, delivery: Delivery) -> bool:
        """Acks ``delivery``: ``True`` if that deleted the message, ``False`` if the receipt was
        stale (the lease ran out and the message went, or will go, to someone else)."""
        return self._conn._ack(self._path, delivery).acked > 0

    def __iter__(self) -> Iterator[Delivery]:
        return self

    def __next__(self) -> Delivery:
        delivery = self.next(self._idle_timeout)
        if delivery is None:
            raise StopIteration
        return delivery
