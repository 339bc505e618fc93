"""mom_client: Python client for the REST gateway of MOM, a distributed message broker.

Usage::

    from mom_client import Connection

    with Connection("http://127.0.0.1:8080", "alice", "s3cret-pass", register=True) as conn:
        conn.declare_exchange("orders", "direct")
        conn.declare_queue("eu")
        conn.bind("orders", "eu", "eu")
        conn.publish("orders", "eu", "hello")
        consumer = conn.consume("eu")
        delivery = consumer.next()
        consumer.ack(delivery)
"""

from .connection import DEFAULT_TIMEOUT, Connection
from .consumer import MAX_WAIT_MS, Consumer
from .errors import (
    BadGateway,
    BadRequest,
    Conflict,
    Forbidden,
    MomError,
    NotFound,
    PayloadTooLarge,
    ServerError,
    TransportError,
    Unauthorized,
    Unavailable,
)
from .types import (
    AckOutcome,
    Binding,
    Delivery,
    Exchange,
    ExchangeInfo,
    ExchangeKind,
    Health,
    Published,
    QueueDepth,
)

__all__ = [
    "AckOutcome",
    "BadGateway",
    "BadRequest",
    "Binding",
    "Conflict",
    "Connection",
    "Consumer",
    "DEFAULT_TIMEOUT",
    "Delivery",
    "Exchange",
    "ExchangeInfo",
    "ExchangeKind",
    "Forbidden",
    "Health",
    "MAX_WAIT_MS",
    "MomError",
    "NotFound",
    "PayloadTooLarge",
    "Published",
    "QueueDepth",
    "ServerError",
    "TransportError",
    "Unauthorized",
    "Unavailable",
]
