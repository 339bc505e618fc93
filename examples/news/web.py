#!/usr/bin/env python3
"""News web app of the MOM example: consumes the news through a MOM queue bound to the topic
exchange ``news`` and shows them live on a web page, with comments that travel through MOM.

    python3 examples/news/web.py --port 8000          # then open http://127.0.0.1:8000/

- News: queue ``<prefix>.news`` bound to ``news`` with ``news.#`` (every category) or
  ``news.<category>`` for each of ``--categories``.
- Comments: the page POSTs a comment to /api/comments; web.py publishes it to the topic
  exchange ``comments`` with the routing key ``comments.<news id>``, and consumes it back from
  its queue ``<prefix>.comments`` (bound with ``comments.#``) before it shows it, so every
  web.py attached to the same cluster shows every comment.
- Every consumed message is acked, also a malformed one (it is logged and dropped); repeats
  (MOM delivers at least once) are recognised by id and dropped.
- The page (index.html) gets the current state from /api/news and then live updates from
  /events (Server-Sent Events).

HTTP routes: ``GET /`` the page, ``GET /api/news`` the items with their comments (JSON),
``POST /api/comments`` ``{"news_id", "text", "author"?}``, ``GET /events`` the event stream,
``GET /api/health`` whether the consumers run.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import signal
import sys
import threading
import uuid
from collections import OrderedDict, deque
from datetime import datetime, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

from news_common import (
    CATEGORIES,
    COMMENTS_EXCHANGE,
    DEFAULT_PASSWORD,
    DEFAULT_URL,
    DEFAULT_USER,
    HERE,
    NEWS_EXCHANGE,
    connect,
    declare_exchange,
    retrying,
)

from mom_client import Connection, Delivery, Forbidden, MomError, NotFound

log = logging.getLogger("news-web")

INDEX_HTML = HERE / "index.html"
NEWS_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
"""What a news id may look like: it becomes part of the routing key comments.<news id>."""
CATEGORY = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_COMMENT = 1000
MAX_AUTHOR = 40
MAX_BODY = 16 * 1024
KEEPALIVE_S = 15.0
VISIBILITY_TIMEOUT_MS = 30_000


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


# ---- the state the page shows ----


class NewsStore:
    """The latest ``max_items`` news items with their comments, and a numbered log of changes
    (``news`` and ``comment`` events) that the event streams follow. Thread-safe.

    Items are ordered by when they were published (the broker's ``published_at_ms``), not by
    when they came: a queue spreads over partitions, so consumers get them in no strict order.
    """

    def __init__(self, max_items: int = 200, max_events: int = 5000) -> None:
        self._cond = threading.Condition()
        self._items: dict[str, dict[str, Any]] = {}
        self._comment_ids: set[str] = set()
        # Comments whose item has not come (yet): shown once it does.
        self._waiting: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()
        self._events: deque[tuple[int, str, dict[str, Any]]] = deque(maxlen=max_events)
        self._seq = 0
        self._max_items = max_items

    def _emit(self, kind: str, data: dict[str, Any]) -> None:
        self._seq += 1
        self._events.append((self._seq, kind, data))
        self._cond.notify_all()

    def add_news(self, item: dict[str, Any]) -> bool:
        """Adds an item (``False`` if its id is known: a repeated delivery)."""
        with self._cond:
            if item["id"] in self._items:
                return False
            item = dict(item, comments=self._waiting.pop(item["id"], []))
            self._items[item["id"]] = item
            if len(self._items) > self._max_items:
                old = self._items.pop(min(self._items.values(), key=_age)["id"])
                self._comment_ids.difference_update(c["id"] for c in old["comments"])
                if old is item:
                    return True  # older than everything shown: not shown
            self._emit("news", _copy(item))
            return True

    def add_comment(self, comment: dict[str, Any]) -> bool:
        """Adds a comment under its item (``False`` if its id is known)."""
        with self._cond:
            if comment["id"] in self._comment_ids:
                return False
            self._comment_ids.add(comment["id"])
            item = self._items.get(comment["news_id"])
            if item is not None:
                item["comments"].append(comment)
            else:
                self._waiting.setdefault(comment["news_id"], []).append(comment)
                while len(self._waiting) > self._max_items:
                    _, dropped = self._waiting.popitem(last=False)
                    self._comment_ids.difference_update(c["id"] for c in dropped)
            self._emit("comment", dict(comment))
            return True

    def has_item(self, news_id: str) -> bool:
        with self._cond:
            return news_id in self._items

    def snapshot(self) -> dict[str, Any]:
        """``{"seq", "items"}``: the items newest first; ``seq`` is the last event they include."""
        with self._cond:
            newest_first = sorted(self._items.values(), key=_age, reverse=True)
            return {"seq": self._seq, "items": [_copy(i) for i in newest_first]}

    def count(self) -> int:
        with self._cond:
            return len(self._items)

    def events_after(self, seq: int, timeout: float) -> tuple[int, list[tuple[int, str, dict[str, Any]]] | None]:
        """The events numbered above ``seq``, waiting up to ``timeout`` s for one.

        Returns ``(last seq, events)``; ``events`` is ``None`` when some of them are no longer
        kept (or ``seq`` is from before a restart): the follower must start over from a snapshot.
        """
        with self._cond:
            self._cond.wait_for(lambda: self._seq != seq, timeout)
            if seq > self._seq or (self._events and self._events[0][0] > seq + 1):
                return self._seq, None
            return self._seq, [e for e in self._events if e[0] > seq]


def _age(item: dict[str, Any]) -> tuple[int, str]:
    return item["published_at_ms"], item["id"]


def _copy(item: dict[str, Any]) -> dict[str, Any]:
    return dict(item, comments=[dict(c) for c in item.get("comments", [])])


# ---- reading messages ----


def parse_news(delivery: Delivery) -> dict[str, Any]:
    """The news item a delivery carries; ``ValueError`` when it is not a valid one."""
    data = json.loads(delivery.payload)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    item: dict[str, Any] = {}
    for field in ("id", "title", "body", "category", "timestamp"):
        value = data.get(field)
        if not isinstance(value, str):
            raise ValueError(f"no text field {field!r}")
        item[field] = value
    if not NEWS_ID.match(item["id"]):
        raise ValueError(f"bad id {item['id']!r}")
    item["published_at_ms"] = delivery.published_at_ms
    return item


def parse_comment(delivery: Delivery) -> dict[str, Any]:
    """The comment a delivery carries; its item is the one its routing key names."""
    data = json.loads(delivery.payload)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    prefix = "comments."
    if not delivery.routing_key.startswith(prefix):
        raise ValueError(f"routing key {delivery.routing_key!r} is not comments.<news id>")
    news_id = delivery.routing_key[len(prefix):]
    comment = {
        "id": data.get("id"),
        "news_id": news_id,
        "author": data.get("author"),
        "text": data.get("text"),
        "timestamp": data.get("timestamp"),
    }
    for field, value in comment.items():
        if not isinstance(value, str) or not value:
            raise ValueError(f"no text field {field!r}")
    return comment


def make_comment(body: Any) -> dict[str, Any]:
    """A new comment from the page's request body; ``ValueError`` with the reason if invalid."""
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    news_id, text, author = body.get("news_id"), body.get("text"), body.get("author") or "anonymous"
    if not isinstance(news_id, str) or not NEWS_ID.match(news_id):
        raise ValueError("news_id must be a news item's id")
    if not isinstance(text, str) or not text.strip():
        raise ValueError("text must be a non-empty string")
    if not isinstance(author, str):
        raise ValueError("author must be a string")
    text, author = text.strip(), author.strip() or "anonymous"
    if len(text) > MAX_COMMENT:
        raise ValueError(f"text is longer than {MAX_COMMENT} characters")
    if len(author) > MAX_AUTHOR:
        raise ValueError(f"author is longer than {MAX_AUTHOR} characters")
    return {"id": uuid.uuid4().hex, "news_id": news_id, "author": author, "text": text, "timestamp": now_iso()}


# ---- talking to MOM ----


class Mom:
    """The app's MOM side: the set-up of exchanges, queues and bindings, two consumer threads
    (news, comments; each with its own connection, as the client wants one per thread) and
    the publishing of comments (one connection shared under a lock by the HTTP threads)."""

    def __init__(self, args: argparse.Namespace, store: NewsStore, queue_prefix: str) -> None:
        self.url, self.user, self.password = args.url, args.user, args.password
        self.connect_timeout = args.connect_timeout
        self.store = store
        self.news_queue = f"{queue_prefix}.news"
        self.comments_queue = f"{queue_prefix}.comments"
        cats = args.categories
        self.news_keys = ["news.#"] if not cats else [f"news.{c}" for c in cats]
        self.stop = threading.Event()
        self.running = {"news": False, "comments": False}
        self._lock = threading.Lock()
        self._conn: Connection | None = None

    def _connect(self) -> Connection:
        return connect(self.url, self.user, self.password, self.connect_timeout, log.warning)

    def setup(self) -> None:
        """Logs in and declares what the app uses; raises SystemExit on a permission problem."""
        self._conn = self._connect()
        self._declare(self._conn)
        log.info(
            "consuming %s (bound to %r with %s) and %s (bound to %r with comments.#)",
            self.news_queue, NEWS_EXCHANGE, ", ".join(self.news_keys), self.comments_queue, COMMENTS_EXCHANGE,
        )

    def _declare(self, conn: Connection) -> None:
        def retry(what: str, call: Callable[[], Any]) -> Any:
            return retrying(what, call, self.connect_timeout, log.warning)

        try:
            for exchange in (NEWS_EXCHANGE, COMMENTS_EXCHANGE):
                declare_exchange(conn, exchange, self.user, self.connect_timeout, log.warning)
            for queue in (self.news_queue, self.comments_queue):
                retry(f"declaring queue {queue!r}", lambda q=queue: conn.declare_queue(q))
            for key in self.news_keys:
                retry(f"binding {key!r}", lambda k=key: conn.bind(NEWS_EXCHANGE, self.news_queue, k))
            # Bindings outlive the app: drop those of an earlier run with other --categories.
            info = retry("reading the news exchange", lambda: conn.get_exchange(NEWS_EXCHANGE))
            for binding in info.bindings:
                if binding.queue == self.news_queue and binding.routing_key not in self.news_keys:
                    log.info("unbinding %r (not among the categories now)", binding.routing_key)
                    retry("unbinding", lambda b=binding: conn.unbind(NEWS_EXCHANGE, self.news_queue, b.routing_key))
            retry("binding comments.#", lambda: conn.bind(COMMENTS_EXCHANGE, self.comments_queue, "comments.#"))
        except Forbidden as e:
            raise SystemExit(
                f"MOM refused {self.user!r} ({e.message}): the queues or exchanges belong to another "
                "user. Use that user (--user/--password) or another --queue-prefix."
            ) from e

    def start(self) -> None:
        for name, queue, handle in (
            ("news", self.news_queue, self._on_news),
            ("comments", self.comments_queue, self._on_comment),
        ):
            threading.Thread(target=self._consume, args=(name, queue, handle), name=f"consume-{name}", daemon=True).start()

    def _consume(self, name: str, queue: str, handle: Callable[[Delivery], None]) -> None:
        """Pulls, handles and acks the messages of ``queue`` until :attr:`stop` is set, riding
        out fail-overs and restarts of the cluster."""
        conn: Connection | None = None
        while not self.stop.is_set():
            try:
                if conn is None:
                    conn = self._connect()
                conn.get_queue(queue)  # there, and ours to read: then the consumer runs
                consumer = conn.consume(queue, batch=20, visibility_timeout_ms=VISIBILITY_TIMEOUT_MS)
                self.running[name] = True
                while not self.stop.is_set():
                    delivery = consumer.next(timeout=5)
                    if delivery is None:
                        continue
                    try:
                        handle(delivery)
                    except (ValueError, KeyError) as e:
                        log.warning("dropping a malformed %s message %s: %s", name, delivery.message_id, e)
                    # Acked also when malformed: it would only come back again and again.
                    if not consumer.ack(delivery):
                        log.warning("ack of %s came too late (lease ran out); it comes again", delivery.message_id)
            except NotFound:
                self.running[name] = False
                log.warning("queue %r is gone; declaring it again", queue)
                try:
                    if conn is not None:
                        self._declare(conn)
                except (MomError, SystemExit) as e:
                    log.error("could not declare %r again: %s", queue, e)
                    self.stop.wait(2)
            except MomError as e:
                self.running[name] = False
                log.warning("%s consumer: %s; retrying", name, e)
                self.stop.wait(1)
            except Exception:  # never let the thread die silently
                self.running[name] = False
                log.exception("%s consumer failed; retrying", name)
                self.stop.wait(1)
        if conn is not None:
            conn.close()

    def _on_news(self, delivery: Delivery) -> None:
        item = parse_news(delivery)
        if self.store.add_news(item):
            log.info("news %s [%s] %s", item["id"], item["category"], item["title"])

    def _on_comment(self, delivery: Delivery) -> None:
        comment = parse_comment(delivery)
        if self.store.add_comment(comment):
            log.info("comment %s on %s by %s", comment["id"], comment["news_id"], comment["author"])

    def publish_comment(self, comment: dict[str, Any]) -> int:
        """Publishes a comment to the ``comments`` exchange; returns how many queues got it."""
        payload = json.dumps(comment)
        with self._lock:
            assert self._conn is not None
            published = self._conn.publish(COMMENTS_EXCHANGE, f"comments.{comment['news_id']}", payload)
        return published.routed

    def healthy(self) -> bool:
        return all(self.running.values())


# ---- HTTP ----


class Handler(BaseHTTPRequestHandler):
    server_version = "mom-news/1"
    mom: Mom
    store: NewsStore

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base's name)
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:  # noqa: N802
        url = urlsplit(self.path)
        if url.path in ("/", "/index.html"):
            self._send(HTTPStatus.OK, INDEX_HTML.read_bytes(), "text/html; charset=utf-8")
        elif url.path == "/api/news":
            self._json(HTTPStatus.OK, self.store.snapshot())
        elif url.path == "/api/health":
            healthy = self.mom.healthy()
            self._json(
                HTTPStatus.OK if healthy else HTTPStatus.SERVICE_UNAVAILABLE,
                {
                    "status": "ok" if healthy else "starting",
                    "consumers": dict(self.mom.running),
                    "news_queue": self.mom.news_queue,
                    "comments_queue": self.mom.comments_queue,
                    "bindings": self.mom.news_keys,
                    "items": self.store.count(),
                },
            )
        elif url.path == "/events":
            self._events(parse_qs(url.query))
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no route {url.path}"})

    def do_POST(self) -> None:  # noqa: N802
        if urlsplit(self.path).path != "/api/comments":
            self._json(HTTPStatus.NOT_FOUND, {"error": "no such route"})
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            self.close_connection = True
            self._json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": f"the body must be 0 to {MAX_BODY} bytes"})
            return
        try:
            body = json.loads(self.rfile.read(length) or b"null")
        except ValueError as e:  # also bad UTF-8
            self._json(HTTPStatus.BAD_REQUEST, {"error": f"the body is not JSON: {e}"})
            return
        try:
            comment = make_comment(body)
        except ValueError as e:
            self._json(HTTPStatus.BAD_REQUEST, {"error": str(e)})
            return
        if not self.store.has_item(comment["news_id"]):
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no news item {comment['news_id']}"})
            return
        try:
            routed = self.mom.publish_comment(comment)
        except MomError as e:
            log.warning("publishing a comment failed: %s", e)
            self._json(HTTPStatus.BAD_GATEWAY, {"error": f"MOM did not take the comment: {e}"})
            return
        # Accepted, not shown yet: it shows once it comes back from MOM through the queue.
        self._json(HTTPStatus.ACCEPTED, {"comment": comment, "routed": routed})

    def _events(self, query: dict[str, list[str]]) -> None:
        """Server-Sent Events: ``news`` and ``comment`` events after the given sequence number
        (the browser's Last-Event-ID on a reconnect, else ``?after=``, else from the start);
        ``reset`` when those are no longer kept (the page then reloads its snapshot)."""
        try:
            seq = int(self.headers.get("Last-Event-ID") or query.get("after", ["0"])[0])
        except ValueError:
            seq = 0
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("X-Accel-Buffering", "no")
        self.end_headers()
        self.close_connection = True
        try:
            self._write(b"retry: 2000\n\n")
            while not self.mom.stop.is_set():
                last, events = self.store.events_after(seq, KEEPALIVE_S)
                if events is None:
                    self._write(f"id: {last}\nevent: reset\ndata: {{}}\n\n".encode())
                elif events:
                    self._write(
                        b"".join(
                            f"id: {n}\nevent: {kind}\ndata: {json.dumps(data)}\n\n".encode() for n, kind, data in events
                        )
                    )
                else:
                    self._write(b": keep-alive\n\n")  # also finds out when the page went away
                seq = last
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass

    def _write(self, data: bytes) -> None:
        self.wfile.write(data)
        self.wfile.flush()

    def _json(self, status: HTTPStatus, body: Any) -> None:
        self._send(status, json.dumps(body).encode(), "application/json")

    def _send(self, status: HTTPStatus, data: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)


class Server(ThreadingHTTPServer):
    daemon_threads = True  # an open event stream must not keep the process alive
    block_on_close = False


def parse_categories(text: str | None) -> list[str]:
    if not text:
        return []
    categories = sorted({c.strip() for c in text.split(",") if c.strip()})
    for c in categories:
        if not CATEGORY.match(c):
            raise argparse.ArgumentTypeError(f"bad category {c!r}")
    return categories


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=DEFAULT_URL, help="MOM gateway (default %(default)s, env MOM_URL)")
    parser.add_argument("--user", default=DEFAULT_USER, help="MOM user (default %(default)s, env NEWS_USER)")
    parser.add_argument("--password", default=DEFAULT_PASSWORD, help="its password (env NEWS_PASSWORD)")
    parser.add_argument("--port", type=int, default=8000, help="HTTP port of the page (default %(default)s)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    parser.add_argument(
        "--categories",
        type=parse_categories,
        default=[],
        help=f"comma-separated categories to show (of {', '.join(CATEGORIES)}); default: all (news.#)",
    )
    parser.add_argument(
        "--queue-prefix",
        help="prefix of this app's two MOM queues (default news-web-<port>); two apps with the "
        "same prefix share (split) the messages",
    )
    parser.add_argument(
        "--connect-timeout",
        type=float,
        default=60.0,
        help="seconds to keep retrying while the cluster is not up yet (default %(default)s)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="also log every HTTP request")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s web.py %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    for name in ("urllib3", "requests"):
        logging.getLogger(name).setLevel(logging.WARNING)

    server = Server((args.host, args.port), Handler)  # bind first: a taken port fails at once
    port = server.server_address[1]
    store = NewsStore()
    mom = Mom(args, store, args.queue_prefix or f"news-web-{port}")
    Handler.mom, Handler.store = mom, store

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        mom.setup()
        mom.start()
        shown = "127.0.0.1" if args.host in ("0.0.0.0", "") else args.host
        print(f"news page: http://{shown}:{port}/", flush=True)
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    except MomError as e:
        log.error("%s", e)
        return 1
    finally:
        mom.stop.set()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
