"""`Connection`: an authenticated handle on the MOM gateway's REST API (docs/rest-api.md)."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Union
from urllib.parse import quote

import requests

from .consumer import MAX_WAIT_MS, Consumer
from .errors import Conflict, MomError, TransportError, error_for
from .types import (
    ClusterView,
    NodeView,
    PartitionView,
    AckOutcome,
    Binding,
    Delivery,
    Exchange,
    ExchangeInfo,
    ExchangeKind,
    Grant,
    Health,
    Permission,
    Published,
    QueueDepth,
    ResourceKind,
    Role,
    UserInfo,
)

Payload = Union[str, bytes, bytearray, memoryview]
Headers = Mapping[str, str]
Receipts = Union[str, Delivery, Iterable[Union[str, Delivery]]]
Permissions = Union[Permission, str, Iterable[Union[Permission, str]]]

DEFAULT_TIMEOUT = 30.0
"""Seconds to wait for an answer. Above the 15 s the gateway spends retrying a publish or ack
through a leader fail-over, so that such a call ends with the gateway's own 503 rather than a
client-side timeout that leaves it unknown whether the message was stored."""


def _segment(name: str) -> str:
    # Valid names need no escaping, but an invalid one must reach the gateway as one path
    # segment so that it answers 400 rather than routing it somewhere else.
    return quote(name, safe="")


def _receipt_list(receipts: Receipts) -> list[str]:
    if isinstance(receipts, (str, Delivery)):
        receipts = [receipts]
    return [r.receipt if isinstance(r, Delivery) else r for r in receipts]


def _message(
    payload: Payload,
    headers: Headers | None = None,
    content_type: str | None = None,
) -> dict[str, Any]:
    """The payload fields of one message: ``str`` as ``payload`` (text), bytes-like as
    ``payload_base64`` (any bytes, delivered byte for byte), with headers and content type."""
    if isinstance(payload, (bytes, bytearray, memoryview)):
        body: dict[str, Any] = {"payload_base64": base64.b64encode(bytes(payload)).decode("ascii")}
    elif isinstance(payload, str):
        body = {"payload": payload}
    else:
        raise TypeError(f"a payload is str or bytes, not {type(payload).__name__}")
    if headers:
        body["headers"] = {str(k): str(v) for k, v in headers.items()}
    if content_type is not None:
        body["content_type"] = content_type
    return body


class Connection:
    """A logged-in user's handle on one gateway.

    ``Connection(url, user, password)`` logs in (``POST /auth/login``) and sends the token
    with every call; ``register=True`` creates the user first. Every failure raises a
    :class:`~mom_client.MomError` subclass chosen by the HTTP status.

    Whoever declares an exchange, queue or topic owns it; other users get
    :class:`~mom_client.Forbidden` until the owner (or an admin) grants them permissions with
    :meth:`grant`. Admins can do everything and manage users (:meth:`users`,
    :meth:`create_user`...).

    Tokens expire (``expires_in`` seconds after login, an hour by default). A connection that
    knows the password logs in again once when a call answers 401, so long-running consumers
    keep working; that retry is safe because a 401 means the gateway did nothing.

    A connection holds a ``requests.Session`` (a connection pool); use one per thread, and
    :meth:`close` it or use it as a context manager.
    """

    def __init__(
        self,
        url: str,
        user: str,
        password: str,
        *,
        register: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        """Logs ``user`` in at the gateway ``url`` (e.g. ``http://127.0.0.1:8080``).

        With ``register=True`` the user is registered first; a name that is already taken is
        not an error then, so the login decides whether the password is right.
        """
        self._setup(url, timeout)
        self._credentials: tuple[str, str] | None = (user, password)
        try:
            if register:
                with contextlib.suppress(Conflict):
                    self._register(user, password)
            self.login()
        except BaseException:
            self.close()
            raise

    @classmethod
    def from_token(cls, url: str, token: str, *, timeout: float = DEFAULT_TIMEOUT) -> Connection:
        """A connection using an already issued bearer ``token`` (never logs in again)."""
        conn = cls.__new__(cls)
        conn._setup(url, timeout)
        conn._credentials = None
        conn._token = token
        return conn

    @staticmethod
    def register(url: str, user: str, password: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Creates the user ``user`` (password of 8 characters or more).

        Raises :class:`~mom_client.Conflict` if the name is taken,
        :class:`~mom_client.Forbidden` if registration is closed (an admin creates users then,
        see :meth:`create_user`) and :class:`~mom_client.TooManyRequests` when throttled.
        """
        conn = Connection.from_token(url, "", timeout=timeout)
        try:
            conn._register(user, password)
        finally:
            conn.close()

    def _setup(self, url: str, timeout: float) -> None:
        self._url = url.rstrip("/")
        self._timeout = timeout
        self._session = requests.Session()
        self._token = ""
        self.expires_in: int | None = None

    def _register(self, user: str, password: str) -> None:
        self._call("POST", "/auth/register", {"username": user, "password": password}, auth=False)

    def login(self) -> None:
        """Logs in again with the user and password given at construction, renewing the token.

        Raises :class:`~mom_client.TooManyRequests` (with ``retry_after``) when the auth
        service throttles logins.
        """
        if self._credentials is None:
            raise MomError("this connection was made from a token and has no password")
        user, password = self._credentials
        _, answer = self._call("POST", "/auth/login", {"username": user, "password": password}, auth=False)
        self._take_token(answer)

    def _take_token(self, answer: dict[str, Any]) -> None:
        self._token = answer["token"]
        self.expires_in = answer.get("expires_in")

    @property
    def url(self) -> str:
        """The gateway's base URL, without a trailing slash."""
        return self._url

    @property
    def user(self) -> str | None:
        """The user name given at construction (``None`` for :meth:`from_token`; see :meth:`whoami`)."""
        return None if self._credentials is None else self._credentials[0]

    @property
    def token(self) -> str:
        """The bearer token this connection sends."""
        return self._token

    def __repr__(self) -> str:
        # Never show the token: reprs end up in logs.
        return f"Connection({self._url!r})"

    def close(self) -> None:
        """Closes the pooled HTTP connections."""
        self._session.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # ---- HTTP ----

    def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        auth: bool = True,
        timeout: float | None = None,
    ) -> tuple[int, Any]:
        """Sends one request; returns ``(status, decoded JSON or None)`` or raises a MomError."""
        response = self._send(method, path, body, auth, timeout)
        if response.status_code == 401 and auth and self._credentials is not None:
            self.login()
            response = self._send(method, path, body, auth, timeout)
        if not response.ok:
            raise error_for(response.status_code, response.text, response.headers.get("Retry-After"))
        if response.status_code == 204 or not response.content:
            return response.status_code, None
        try:
            return response.status_code, response.json()
        except ValueError as e:
            raise MomError(f"undecodable answer from {path}: {e}", response.status_code) from e

    def _send(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        auth: bool,
        timeout: float | None,
    ) -> requests.Response:
        headers = {"Authorization": f"Bearer {self._token}"} if auth and self._token else {}
        try:
            return self._session.request(
                method,
                self._url + path,
                json=body,
                headers=headers,
                timeout=self._timeout if timeout is None else timeout,
            )
        except requests.RequestException as e:
            raise TransportError(f"{method} {path}: {e}") from e

    def health(self) -> Health:
        """``GET /health``: is the gateway up, and how many broker nodes does it see."""
        _, answer = self._call("GET", "/health", auth=False)
        return Health(status=answer["status"], nodes=int(answer["nodes"]))

    def cluster(self) -> ClusterView:
        """``GET /cluster``: nodes (live or not), partitions with leader, epoch, replicas and
        in-sync set, and the controller."""
        _, answer = self._call("GET", "/cluster")
        return ClusterView(
            controller=answer.get("controller"),
            nodes=[NodeView(id=n["id"], address=n["address"], live=bool(n["live"])) for n in answer["nodes"]],
            partitions=[
                PartitionView(
                    partition=int(p["partition"]),
                    leader=p["leader"],
                    leader_live=bool(p["leader_live"]),
                    epoch=int(p["epoch"]),
                    replicas=list(p["replicas"]),
                    isr=list(p["isr"]),
                )
                for p in answer["partitions"]
            ],
        )

    # ---- exchanges ----

    def declare_exchange(self, name: str, kind: ExchangeKind | str) -> bool:
        """Declares an exchange; ``True`` if it was created, ``False`` if it existed alike.

        Raises :class:`~mom_client.Conflict` if it exists with another kind.
        """
        status, _ = self._call("POST", "/exchanges", {"name": name, "kind": ExchangeKind(kind).value})
        return status == 201

    def list_exchanges(self) -> list[Exchange]:
        """All exchanges."""
        _, answer = self._call("GET", "/exchanges")
        return [Exchange(e["name"], ExchangeKind(e["kind"])) for e in answer["exchanges"]]

    def get_exchange(self, name: str) -> ExchangeInfo:
        """One exchange with its bindings."""
        _, answer = self._call("GET", f"/exchanges/{_segment(name)}")
        bindings = [Binding(b["queue"], b["routing_key"]) for b in answer.get("bindings", [])]
        return ExchangeInfo(answer["name"], ExchangeKind(answer["kind"]), bindings)

    def delete_exchange(self, name: str) -> None:
        """Deletes an exchange and its bindings (the queues stay); NotFound if there is none."""
        self._call("DELETE", f"/exchanges/{_segment(name)}")

    def bind(self, exchange: str, queue: str, routing_key: str = "") -> bool:
        """Binds ``queue`` to ``exchange`` with a key (a pattern for topic exchanges).

        ``True`` if the binding was created, ``False`` if it existed.
        """
        body = {"queue": queue, "routing_key": routing_key}
        status, _ = self._call("POST", f"/exchanges/{_segment(exchange)}/bindings", body)
        return status == 201

    def unbind(self, exchange: str, queue: str, routing_key: str = "") -> None:
        """Removes a binding made by :meth:`bind`."""
        body = {"queue": queue, "routing_key": routing_key}
        self._call("DELETE", f"/exchanges/{_segment(exchange)}/bindings", body)

    def publish(
        self,
        exchange: str,
        routing_key: str,
        payload: Payload,
        *,
        ttl_ms: int | None = None,
        delay_ms: int | None = None,
        mandatory: bool = False,
        message_id: str | None = None,
        headers: Headers | None = None,
        content_type: str | None = None,
    ) -> Published:
        """Publishes ``payload`` to an exchange; ``ttl_ms`` drops it undelivered after that long,
        ``delay_ms`` keeps it from consumers for that long after it is stored (delayed delivery).

        ``mandatory=True`` refuses the message (:class:`~mom_client.Unprocessable`, 422) when
        no queue would get it, instead of answering ``routed == 0``. ``message_id`` is your own
        id for it: publishing again with the same id (a retry after a timeout) stores it once.

        A ``str`` payload goes as text; ``bytes`` (or ``bytearray``, ``memoryview``) go as
        base64 and may hold any bytes: consumers get them back exactly with
        :attr:`Delivery.payload_bytes`. At most 4 MiB (:class:`~mom_client.PayloadTooLarge`
        beyond). ``headers`` (at most 64; names 1-128 of ``[A-Za-z0-9._-]``, values up to 4096
        bytes) and ``content_type`` (up to 255 characters) are delivered with the message
        (:attr:`Delivery.headers`, :attr:`Delivery.content_type`); going over a limit is
        :class:`~mom_client.BadRequest`.

        A missing exchange is :class:`~mom_client.NotFound`; one without a matching binding
        takes the message with ``routed == 0``, and nobody will ever see it.
        A :class:`~mom_client.Unavailable` (503) or :class:`~mom_client.TransportError` means
        the message may or may not have been stored.
        """
        return self._publish(
            f"/exchanges/{_segment(exchange)}/publish",
            routing_key,
            _message(payload, headers, content_type),
            ttl_ms,
            mandatory,
            message_id,
            delay_ms,
        )

    def publish_to_queue(
        self,
        queue: str,
        payload: Payload,
        *,
        ttl_ms: int | None = None,
        delay_ms: int | None = None,
        mandatory: bool = False,
        message_id: str | None = None,
        headers: Headers | None = None,
        content_type: str | None = None,
    ) -> Published:
        """Publishes ``payload`` straight to a queue through the default exchange: no exchange
        or binding needed (payloads and options as :meth:`publish`)."""
        return self._publish(
            f"/queues/{_segment(queue)}/publish",
            "",
            _message(payload, headers, content_type),
            ttl_ms,
            mandatory,
            message_id,
            delay_ms,
        )

    def publish_topic(
        self,
        topic: str,
        payload: Payload,
        *,
        routing_key: str = "",
        ttl_ms: int | None = None,
        delay_ms: int | None = None,
        mandatory: bool = False,
        message_id: str | None = None,
        headers: Headers | None = None,
        content_type: str | None = None,
    ) -> Published:
        """Publishes ``payload`` to every subscriber of ``topic`` (payloads, rules and options
        as :meth:`publish`)."""
        return self._publish(
            f"/topics/{_segment(topic)}/publish",
            routing_key,
            _message(payload, headers, content_type),
            ttl_ms,
            mandatory,
            message_id,
            delay_ms,
        )

    def publish_batch(
        self,
        exchange: str,
        messages: Iterable[tuple[str, Payload] | tuple[str, Payload, Headers | None]],
    ) -> list[Published | str]:
        """Publishes up to 1,000 ``(routing_key, payload)`` messages in one request; a
        message may also be ``(routing_key, payload, headers)`` (a mapping, or ``None``).

        Payloads are text or bytes as in :meth:`publish`, and may be mixed. Returns each
        message's outcome in order: a :class:`Published`, or the reason (a string) it was not
        stored, e.g. its partition had no leader for the whole retry window. Bad input fails
        the whole batch with :class:`~mom_client.BadRequest`.
        """
        entries = []
        for message in messages:
            key, payload, *rest = message
            headers = rest[0] if rest else None
            entries.append({"routing_key": key, **_message(payload, headers)})
        body = {"messages": entries}
        _, answer = self._call("POST", f"/exchanges/{_segment(exchange)}/publish", body)
        return [
            Published(entry["message_id"], int(entry["routed"])) if "message_id" in entry else str(entry["error"])
            for entry in answer["published"]
        ]

    def _publish(
        self,
        path: str,
        routing_key: str,
        message: dict[str, Any],
        ttl_ms: int | None,
        mandatory: bool = False,
        message_id: str | None = None,
        delay_ms: int | None = None,
    ) -> Published:
        body: dict[str, Any] = {"routing_key": routing_key, **message}
        if ttl_ms is not None:
            body["ttl_ms"] = ttl_ms
        if delay_ms is not None:
            body["delay_ms"] = delay_ms
        if mandatory:
            body["mandatory"] = True
        if message_id is not None:
            body["message_id"] = message_id
        _, answer = self._call("POST", path, body)
        return Published(answer["message_id"], int(answer["routed"]))

    # ---- queues ----

    def declare_queue(
        self,
        name: str,
        *,
        dead_letter_exchange: str | None = None,
        max_deliveries: int | None = None,
    ) -> bool:
        """Declares a queue; ``True`` if it was created, ``False`` if it existed.

        A message delivered ``max_deliveries`` times without an ack, or rejected
        (:meth:`nack` with ``requeue=False``), goes to ``dead_letter_exchange`` with
        ``x-death-*`` headers saying why (dropped without one). Declaring an existing queue
        with other settings is :class:`~mom_client.Conflict`.
        """
        body: dict[str, Any] = {"name": name}
        if dead_letter_exchange is not None:
            body["dead_letter_exchange"] = dead_letter_exchange
        if max_deliveries is not None:
            body["max_deliveries"] = max_deliveries
        status, _ = self._call("POST", "/queues", body)
        return status == 201

    def list_queues(self) -> list[str]:
        """Names of all queues."""
        _, answer = self._call("GET", "/queues")
        return [q["name"] for q in answer["queues"]]

    def get_queue(self, name: str) -> QueueDepth:
        """How many messages a queue holds, ready and leased."""
        _, answer = self._call("GET", f"/queues/{_segment(name)}")
        return QueueDepth(answer["name"], int(answer["ready"]), int(answer["leased"]))

    queue_depth = get_queue

    def delete_queue(self, name: str) -> None:
        """Deletes a queue with its messages and bindings; NotFound if there is none."""
        self._call("DELETE", f"/queues/{_segment(name)}")

    def pull(
        self,
        queue: str,
        max: int = 1,
        *,
        visibility_timeout_ms: int | None = None,
        wait_ms: int = 0,
    ) -> list[Delivery]:
        """Pulls up to ``max`` (1-100) messages from a queue.

        Waits up to ``wait_ms`` (at most 20000) for the first one; an empty list means none
        came. The messages are leased for ``visibility_timeout_ms`` (the gateway's default,
        30 s, when ``None``): ack them within it, or they are delivered again.
        """
        return self._pull(f"/queues/{_segment(queue)}", max, visibility_timeout_ms, wait_ms)

    def ack(self, queue: str, receipts: Receipts) -> AckOutcome:
        """Acks deliveries of a queue, given as receipts or :class:`Delivery` objects.

        A receipt whose lease ran out comes back in ``stale`` instead of acking: the message
        was (or will be) delivered again, and only the newest delivery can delete it.
        """
        return self._ack(f"/queues/{_segment(queue)}", receipts)

    def nack(self, queue: str, receipts: Receipts, *, requeue: bool = True) -> AckOutcome:
        """Gives deliveries back: with ``requeue`` they are ready again at once (the delivery
        counts towards ``max_deliveries``); without, they are dead-lettered (see
        :meth:`declare_queue`). ``acked`` of the answer counts the deliveries given back."""
        return self._nack(f"/queues/{_segment(queue)}", receipts, requeue)

    def consume(
        self,
        queue: str,
        *,
        batch: int = 10,
        visibility_timeout_ms: int | None = None,
        idle_timeout: float | None = None,
    ) -> Consumer:
        """A :class:`Consumer` that long-polls ``queue`` and yields its deliveries one by one."""
        return Consumer(self, f"/queues/{_segment(queue)}", batch, visibility_timeout_ms, idle_timeout)

    def stream(self, queue: str) -> Iterator[Delivery]:
        """Reserved for push delivery (Server-Sent Events), which the gateway does not offer yet.

        Raises ``NotImplementedError``; use :meth:`consume`, which long-polls, meanwhile.
        """
        raise NotImplementedError("the gateway has no streaming endpoint yet; use consume()")

    # ---- topics and subscriptions ----

    def declare_topic(self, name: str, *, retention_ms: int | None = None) -> bool:
        """Declares a topic; ``True`` if it was created, ``False`` if it existed.

        With ``retention_ms``, the topic keeps every message that long after its publish (also
        with no subscriber), so that a new subscription can start in the past (see
        :meth:`subscribe`). Declaring an existing topic with another retention is
        :class:`~mom_client.Conflict`.
        """
        body: dict[str, Any] = {"name": name}
        if retention_ms is not None:
            body["retention_ms"] = retention_ms
        status, _ = self._call("POST", "/topics", body)
        return status == 201

    def get_topic(self, name: str) -> dict[str, Any]:
        """A topic's ``retention_ms``, what it ``retained`` (``messages``, ``bytes``,
        ``oldest_published_at_ms``), its ``subscribers`` and their ``subscriptions`` with each
        one's ``lag`` (messages not acked yet)."""
        _, answer = self._call("GET", f"/topics/{_segment(name)}")
        return answer

    def list_topics(self) -> list[str]:
        """Names of all topics."""
        _, answer = self._call("GET", "/topics")
        return [t["name"] for t in answer["topics"]]

    def delete_topic(self, name: str) -> None:
        """Deletes a topic with its subscriptions and their messages; NotFound if there is none."""
        self._call("DELETE", f"/topics/{_segment(name)}")

    def subscribe(
        self,
        topic: str,
        subscriber: str,
        *,
        start: str | None = None,
        start_offsets: dict[int, int] | None = None,
        start_time_ms: int | None = None,
    ) -> bool:
        """Creates the subscription ``subscriber`` of ``topic``; ``True`` if it is new.

        Each subscription gets its own copy of every message published to the topic after it
        was made; consumers sharing one subscription share its messages. On a topic with
        retention, a new subscription may start in the past: ``start="earliest"`` (everything
        retained), ``start_offsets`` (per partition, from that offset on) or ``start_time_ms``
        (published then or later); at most one of them.
        """
        body: dict[str, Any] = {"subscriber": subscriber}
        if start is not None:
            body["start"] = start
        if start_offsets is not None:
            body["start_offsets"] = {str(p): o for p, o in start_offsets.items()}
        if start_time_ms is not None:
            body["start_time_ms"] = start_time_ms
        status, _ = self._call("POST", f"/topics/{_segment(topic)}/subscriptions", body)
        return status == 201

    def list_subscribers(self, topic: str) -> list[str]:
        """Subscriber names of a topic."""
        _, answer = self._call("GET", f"/topics/{_segment(topic)}/subscriptions")
        return list(answer["subscribers"])

    def unsubscribe(self, topic: str, subscriber: str) -> None:
        """Deletes a subscription and the messages waiting in it; NotFound if there is none."""
        self._call("DELETE", self._subscription_path(topic, subscriber))

    def pull_subscription(
        self,
        topic: str,
        subscriber: str,
        max: int = 1,
        *,
        visibility_timeout_ms: int | None = None,
        wait_ms: int = 0,
    ) -> list[Delivery]:
        """:meth:`pull` for a topic subscription."""
        path = self._subscription_path(topic, subscriber)
        return self._pull(path, max, visibility_timeout_ms, wait_ms)

    def ack_subscription(self, topic: str, subscriber: str, receipts: Receipts) -> AckOutcome:
        """:meth:`ack` for a topic subscription."""
        return self._ack(self._subscription_path(topic, subscriber), receipts)

    def consume_subscription(
        self,
        topic: str,
        subscriber: str,
        *,
        batch: int = 10,
        visibility_timeout_ms: int | None = None,
        idle_timeout: float | None = None,
    ) -> Consumer:
        """:meth:`consume` for an existing topic subscription (see :meth:`subscribe`)."""
        path = self._subscription_path(topic, subscriber)
        return Consumer(self, path, batch, visibility_timeout_ms, idle_timeout)

    @staticmethod
    def _subscription_path(topic: str, subscriber: str) -> str:
        return f"/topics/{_segment(topic)}/subscriptions/{_segment(subscriber)}"

    # ---- permissions ----

    def grant(
        self,
        user: str,
        kind: ResourceKind | str,
        pattern: str,
        permissions: Permissions,
    ) -> Grant:
        """Gives ``user`` ``permissions`` (``"configure"``, ``"write"``, ``"read"``) on the
        exchanges, queues or topics (``kind``) named ``pattern``.

        ``pattern`` is a name or a pattern with ``*`` and ``?``. An owner may grant on a name
        it owns, or on a pattern, which then reaches only the resources that owner owns; an
        admin may grant on anything. Raises :class:`~mom_client.Forbidden` for a name the
        caller does not own, :class:`~mom_client.NotFound` if ``user`` does not exist.
        """
        if isinstance(permissions, (Permission, str)):
            permissions = [permissions]
        body = {
            "user": user,
            "kind": ResourceKind(kind).value,
            "pattern": pattern,
            "permissions": [Permission(p).value for p in permissions],
        }
        _, answer = self._call("POST", "/permissions", body)
        return Grant.from_json(answer)

    def permissions(self) -> list[Grant]:
        """The grants this user gave or got (every grant, for an admin)."""
        _, answer = self._call("GET", "/permissions")
        return [Grant.from_json(g) for g in answer["permissions"]]

    def revoke(self, grant: Grant | str) -> None:
        """Withdraws a grant (a :class:`Grant` or its id): for its granter, its grantee or an
        admin. Takes effect for every request that starts after this returns."""
        grant_id = grant.id if isinstance(grant, Grant) else grant
        self._call("DELETE", f"/permissions/{_segment(grant_id)}")

    # ---- own tokens ----

    def whoami(self) -> UserInfo:
        """Who this connection's token stands for, and its role."""
        _, answer = self._call("GET", "/auth/whoami")
        return UserInfo.from_json(answer)

    def refresh_token(self) -> None:
        """Swaps this connection's token for a fresh one (updating :attr:`token` and
        :attr:`expires_in`); works while the current one is still valid, also for a
        connection made with :meth:`from_token`."""
        _, answer = self._call("POST", "/auth/refresh")
        self._take_token(answer)

    def revoke_tokens(self) -> None:
        """Voids every token of this user issued so far, this connection's included (e.g.
        after a token leaked).

        A connection that knows the password logs in again on its next call; one made with
        :meth:`from_token` gets :class:`~mom_client.Unauthorized` from then on.
        """
        self._call("POST", "/auth/revoke")

    # ---- users (admin only: others get Forbidden) ----

    def users(self) -> list[UserInfo]:
        """Every user, by name."""
        _, answer = self._call("GET", "/auth/users")
        return [UserInfo.from_json(u) for u in answer["users"]]

    def create_user(self, name: str, password: str, role: Role | str = Role.USER) -> UserInfo:
        """Creates a user (also while registration is closed); Conflict if the name is taken."""
        body = {"username": name, "password": password, "role": Role(role).value}
        _, answer = self._call("POST", "/auth/users", body)
        return UserInfo.from_json(answer)

    def delete_user(self, name: str) -> None:
        """Deletes a user with the grants it gave or got; its tokens stop working at once.

        Its exchanges, queues and topics stay (for admins to manage). NotFound if there is no
        such user; an admin cannot delete themself (BadRequest).
        """
        self._call("DELETE", f"/auth/users/{_segment(name)}")

    def set_role(self, name: str, role: Role | str) -> UserInfo:
        """Makes a user an ``"admin"`` or a plain ``"user"``; an admin cannot demote themself."""
        _, answer = self._call("PUT", f"/auth/users/{_segment(name)}/role", {"role": Role(role).value})
        return UserInfo.from_json(answer)

    def reset_password(self, name: str, password: str) -> None:
        """Sets a user's password; every token it had stops working."""
        self._call("PUT", f"/auth/users/{_segment(name)}/password", {"password": password})

    # ---- mailboxes: queues and subscriptions alike ----

    def _pull(
        self, path: str, max_messages: int, visibility_timeout_ms: int | None, wait_ms: int
    ) -> list[Delivery]:
        body: dict[str, Any] = {"max": max_messages, "wait_ms": wait_ms}
        if visibility_timeout_ms is not None:
            body["visibility_timeout_ms"] = visibility_timeout_ms
        # The gateway holds a long-poll open for up to wait_ms before it answers.
        timeout = self._timeout + max(0, min(wait_ms, MAX_WAIT_MS)) / 1000
        _, answer = self._call("POST", f"{path}/pull", body, timeout=timeout)
        return [Delivery.from_json(m) for m in answer["messages"]]

    def _ack(self, path: str, receipts: Receipts) -> AckOutcome:
        _, answer = self._call("POST", f"{path}/ack", {"receipts": _receipt_list(receipts)})
        return AckOutcome(int(answer["acked"]), list(answer.get("stale", [])))

    def _nack(self, path: str, receipts: Receipts, requeue: bool) -> AckOutcome:
        body = {"receipts": _receipt_list(receipts), "requeue": requeue}
        _, answer = self._call("POST", f"{path}/nack", body)
        return AckOutcome(int(answer["nacked"]), list(answer.get("stale", [])))
