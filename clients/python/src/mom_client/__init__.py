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
        conn.grant("bob", "queue", "eu", ["read"])   # bob may pull from alice's queue now
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
    TooManyRequests,
    TransportError,
    Unauthorized,
    Unavailable,
    Unprocessable,
)
from .types import (
    AckOutcome,
    Binding,
    ClusterView,
    Delivery,
    Exchange,
    ExchangeInfo,
    ExchangeKind,
    Grant,
    Health,
    NodeView,
    PartitionView,
    Permission,
    Published,
    QueueDepth,
    ResourceKind,
    Role,
    UserInfo,
)

__all__ = [
    "AckOutcome",
    "BadGateway",
    "BadRequest",
    "Binding",
    "ClusterView",
    "Conflict",
    "Connection",
    "Consumer",
    "DEFAULT_TIMEOUT",
    "Delivery",
    "Exchange",
    "ExchangeInfo",
    "ExchangeKind",
    "Forbidden",
    "Grant",
    "Health",
    "MAX_WAIT_MS",
    "MomError",
    "NodeView",
    "NotFound",
    "PartitionView",
    "PayloadTooLarge",
    "Permission",
    "Published",
    "QueueDepth",
    "ResourceKind",
    "Role",
    "ServerError",
    "TooManyRequests",
    "TransportError",
    "Unauthorized",
    "Unavailable",
    "Unprocessable",
    "UserInfo",
]
