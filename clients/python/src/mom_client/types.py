"""Values the gateway sends back (deliveries, publish and ack outcomes, listings) as dataclasses."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class ExchangeKind(str, Enum):
    """How an exchange routes. A plain string (``"direct"``...) is accepted wherever this is."""

    DIRECT = "direct"
    """To the queues bound with exactly the message's routing key."""
    TOPIC = "topic"
    """To the queues whose binding pattern matches the key (``*`` one word, ``#`` zero or more)."""
    FANOUT = "fanout"
    """To every bound queue, whatever the key."""


@dataclass(frozen=True)
class Delivery:
    """One delivery of a message pulled from a queue or a topic subscription.

    The message is leased to its puller until it is acked with ``receipt`` or its visibility
    timeout runs out; then it is delivered again with a new receipt.
    """

    message_id: str
    """Id given to the message when it was published (the same on every redelivery)."""
    receipt: str
    """Opaque proof of this particular delivery; needed to ack it."""
    exchange: str
    """Exchange (or topic) the message was published to."""
    routing_key: str
    """Routing key it was published with."""
    payload: str
    """The message body as text: its bytes read as UTF-8, invalid sequences replaced by
    U+FFFD. Text; use :attr:`payload_bytes` for binary."""
    delivery_count: int
    """How many times the message has been handed out, this time included."""
    published_at_ms: int
    """When it was published, in milliseconds since the Unix epoch."""
    payload_base64: str = ""
    """The message body exactly as published, in standard base64 (empty from a gateway older
    than binary payloads)."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """The headers it was published with (empty if none)."""
    content_type: str | None = None
    """The content type it was published with, if any."""

    @property
    def payload_bytes(self) -> bytes:
        """The message body exactly as published (``payload_base64`` decoded); from a gateway
        that sends no ``payload_base64``, the text payload encoded as UTF-8."""
        if not self.payload_base64:
            return self.payload.encode("utf-8")
        try:
            return base64.b64decode(self.payload_base64, validate=True)
        except binascii.Error as e:
            raise ValueError(f"payload_base64 is not valid base64: {e}") from e

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Delivery:
        return cls(
            message_id=data["message_id"],
            receipt=data["receipt"],
            exchange=data["exchange"],
            routing_key=data["routing_key"],
            payload=data["payload"],
            delivery_count=int(data["delivery_count"]),
            published_at_ms=int(data["published_at_ms"]),
            payload_base64=data.get("payload_base64", ""),
            headers=dict(data.get("headers") or {}),
            content_type=data.get("content_type"),
        )


@dataclass(frozen=True)
class Published:
    """Answer to a publish."""

    message_id: str
    """Id of the new message."""
    routed: int
    """How many queues (or topic subscribers) got a copy; 0 means nobody will see it."""


@dataclass(frozen=True)
class AckOutcome:
    """Answer to an ack."""

    acked: int
    """How many receipts deleted their message."""
    stale: list[str] = field(default_factory=list)
    """Receipts refused: not the message's current delivery (its lease ran out), or it is gone."""


@dataclass(frozen=True)
class QueueDepth:
    """How many messages a queue holds."""

    name: str
    ready: int
    """Waiting to be pulled."""
    leased: int
    """Pulled but neither acked nor timed out yet."""


@dataclass(frozen=True)
class Health:
    """Answer of ``GET /health``."""

    status: str
    """``"ok"`` when the gateway serves."""
    nodes: int
    """Broker nodes the gateway currently sees alive."""


@dataclass(frozen=True)
class NodeView:
    """A broker node as ``GET /cluster`` shows it."""

    id: str
    address: str
    """The address other services dial."""
    live: bool


@dataclass(frozen=True)
class PartitionView:
    """A partition as ``GET /cluster`` shows it."""

    partition: int
    leader: str
    leader_live: bool
    epoch: int
    replicas: list[str]
    isr: list[str]
    """The in-sync replicas."""


@dataclass(frozen=True)
class ClusterView:
    """Answer of ``GET /cluster``: nodes, partitions and the elected controller."""

    controller: str | None
    nodes: list[NodeView]
    partitions: list[PartitionView]


@dataclass(frozen=True)
class Exchange:
    """An exchange as listed by ``GET /exchanges``."""

    name: str
    kind: ExchangeKind


@dataclass(frozen=True)
class Binding:
    """One binding of an exchange to a queue."""

    queue: str
    routing_key: str
    """The binding key, or pattern for topic exchanges."""


@dataclass(frozen=True)
class ExchangeInfo:
    """An exchange with its bindings, as shown by ``GET /exchanges/{name}``."""

    name: str
    kind: ExchangeKind
    bindings: list[Binding] = field(default_factory=list)


class ResourceKind(str, Enum):
    """What a permission grant is on. A plain string (``"queue"``...) is accepted wherever this is."""

    EXCHANGE = "exchange"
    QUEUE = "queue"
    TOPIC = "topic"


class Permission(str, Enum):
    """The three permissions (after RabbitMQ's); a plain string is accepted wherever this is.

    Owners and admins hold all three on everything they own (admins: on everything).
    """

    CONFIGURE = "configure"
    """Re-declare or delete it; bind a queue (``configure`` on the queue)."""
    WRITE = "write"
    """Publish to the exchange or topic."""
    READ = "read"
    """Pull, ack and read the depth of a queue; subscribe to a topic and use its
    subscriptions; bind a queue to the exchange (``read`` on the exchange)."""


class Role(str, Enum):
    """A user's role. A plain string (``"admin"``...) is accepted wherever this is."""

    USER = "user"
    ADMIN = "admin"
    """May do everything, manage users and grant on anything."""


@dataclass(frozen=True)
class Grant:
    """A permission grant, as ``POST /permissions`` and ``GET /permissions`` show it."""

    id: str
    """Its id, for :meth:`Connection.revoke <mom_client.Connection.revoke>`."""
    user: str
    """Who got the permissions."""
    kind: ResourceKind
    pattern: str
    """A name, or a pattern with ``*`` (any characters) and ``?`` (one character)."""
    permissions: list[Permission]
    granted_by: str
    """Who gave it; a non-admin's grant reaches only the resources that user owns."""

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Grant:
        return cls(
            id=data["id"],
            user=data["user"],
            kind=ResourceKind(data["kind"]),
            pattern=data["pattern"],
            permissions=[Permission(p) for p in data["permissions"]],
            granted_by=data["granted_by"],
        )


@dataclass(frozen=True)
class UserInfo:
    """A user and its role, as ``GET /auth/whoami`` and ``GET /auth/users`` show it."""

    username: str
    role: Role

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> UserInfo:
        return cls(username=data["username"], role=Role(data["role"]))
