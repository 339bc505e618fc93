"""What publisher.py and web.py share: the MOM client import, the defaults, and logging in
(registering the user if needed) with retries while the cluster is still starting."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Callable, TypeVar

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

try:  # installed (pip install -e clients/python), or...
    import mom_client
except ImportError:  # ...straight from the repository's source tree
    sys.path.insert(0, str(REPO / "clients" / "python" / "src"))
    import mom_client

from mom_client import Conflict, Connection, Forbidden, MomError, ServerError, TransportError

DEFAULT_URL = os.environ.get("MOM_URL", "http://127.0.0.1:8080")
# NEWS_* rather than MOM_USER/MOM_PASSWORD, so that credentials exported for the `mom` CLI
# do not silently turn the example into another user (who would not own its exchanges).
DEFAULT_USER = os.environ.get("NEWS_USER", "news")
DEFAULT_PASSWORD = os.environ.get("NEWS_PASSWORD", "news-example-password")

NEWS_EXCHANGE = "news"
"""Topic exchange of the news items, routing key ``news.<category>``."""
COMMENTS_EXCHANGE = "comments"
"""Topic exchange of the comments, routing key ``comments.<news id>``."""
CATEGORIES = ("sports", "tech", "world")

T = TypeVar("T")


def retrying(what: str, call: Callable[[], T], timeout: float, log: Callable[[str], None]) -> T:
    """``call()`` again while the cluster answers 5xx, 429 or not at all, for up to ``timeout`` s.

    Other errors (401 wrong password, 403 not yours, 400...) are raised at once.
    """
    deadline = time.monotonic() + timeout
    delay = 0.2
    said = False
    while True:
        try:
            return call()
        except MomError as e:
            transient = isinstance(e, (ServerError, TransportError)) or e.status == 429
            if not transient or time.monotonic() + delay > deadline:
                raise
            if not said:
                log(f"{what}: {e}; retrying for up to {timeout:.0f} s")
                said = True
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def connect(url: str, user: str, password: str, timeout: float, log: Callable[[str], None]) -> Connection:
    """Registers ``user`` if needed (a taken name is fine: the login then checks the password)
    and logs in, retrying while the gateway or the auth service is not up yet."""
    return retrying(
        f"logging in to {url} as {user!r}",
        lambda: Connection(url, user, password, register=True),
        timeout,
        log,
    )


def declare_exchange(conn: Connection, name: str, user: str, timeout: float, log: Callable[[str], None]) -> None:
    """Declares the topic exchange ``name`` (its owner is whoever declared it first)."""
    try:
        retrying(f"declaring exchange {name!r}", lambda: conn.declare_exchange(name, "topic"), timeout, log)
    except Forbidden as e:
        raise SystemExit(
            f"exchange {name!r} belongs to another MOM user, and {user!r} has no permission on it "
            f"({e.message}). Run the example as that user (--user/--password), or have the owner "
            f'grant it: POST /permissions {{"user": "{user}", "kind": "exchange", "pattern": "{name}", '
            '"permissions": ["configure", "write", "read"]}'
        ) from e
    except Conflict as e:
        raise SystemExit(f"exchange {name!r} exists, but is not a topic exchange ({e.message})") from e


def eprint(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


__all__ = [
    "CATEGORIES",
    "COMMENTS_EXCHANGE",
    "DEFAULT_PASSWORD",
    "DEFAULT_URL",
    "DEFAULT_USER",
    "HERE",
    "NEWS_EXCHANGE",
    "connect",
    "declare_exchange",
    "eprint",
    "mom_client",
    "retrying",
]
