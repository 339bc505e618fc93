#!/usr/bin/env python3
"""News publisher of the MOM example: every --interval seconds it publishes a news item (JSON
text) to the topic exchange ``news`` with the routing key ``news.<category>``.

    python3 examples/news/publisher.py --interval 3 --count 10

It registers its MOM user if needed (a taken name is fine) and declares the exchange, so it
can start before or after web.py. An item published while no queue is bound to ``news`` is
routed nowhere (the publisher says so): start web.py first to see every item.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
import uuid
from datetime import datetime, timezone

from news_common import (
    CATEGORIES,
    DEFAULT_PASSWORD,
    DEFAULT_URL,
    DEFAULT_USER,
    NEWS_EXCHANGE,
    connect,
    declare_exchange,
    eprint,
    retrying,
)

from mom_client import Connection, MomError

# Interleaved by category, so any three consecutive items cover all three categories.
SAMPLES: list[tuple[str, str, str]] = [
    ("sports", "Underdogs win the cup after a penalty shoot-out",
     "A late equaliser forced extra time, and the keeper saved two penalties."),
    ("tech", "New message broker ships with a REST gateway",
     "Publishers and consumers now talk to it over plain HTTP and JSON."),
    ("world", "Leaders agree on a plan to protect coral reefs",
     "The agreement covers fishing limits and a fund for marine parks."),
    ("sports", "Marathon record falls on a cold, windless morning",
     "The winner finished 40 seconds under the old mark."),
    ("tech", "Researchers demo a laptop battery that lasts a week",
     "The prototype uses a new electrolyte; shipping products are years away."),
    ("world", "Night trains return on three cross-border routes",
     "Sleeper services link six capitals from next spring."),
    ("sports", "Local chess club beats the national champions",
     "The decisive game lasted six hours and 112 moves."),
    ("tech", "Open-source project reaches one million contributors",
     "Maintainers thanked newcomers for documentation fixes above all."),
    ("world", "Record harvest expected after a mild, wet year",
     "Grain prices fell for the third month in a row."),
    ("sports", "Cyclist completes a lap of the coast in ten days",
     "She rode 2,400 km and raised funds for the lifeboat service."),
    ("tech", "City replaces its paper permits with an app",
     "Residents can now book parking and report potholes on their phones."),
    ("world", "Museum returns a thousand artefacts to their home country",
     "A ceremony marked the end of a decade of negotiations."),
]
assert {category for category, _, _ in SAMPLES} == set(CATEGORIES)


def make_item(n: int) -> dict[str, str]:
    """The ``n``-th news item (0-based), from the sample list in order, with a fresh id."""
    category, title, body = SAMPLES[n % len(SAMPLES)]
    return {
        # Hex only, so that the id is valid inside a routing key (comments.<news id>).
        "id": uuid.uuid4().hex[:16],
        "title": title,
        "body": body,
        "category": category,
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }


def publish_item(conn: Connection, item: dict[str, str], ttl_ms: int | None, retry_s: float) -> int:
    """Publishes one item; returns how many queues got it.

    A publish answered 503 (or not at all) may or may not have been stored, so a retry can
    deliver the item twice; consumers drop repeats by the item's id.
    """
    routing_key = f"news.{item['category']}"
    payload = json.dumps(item)
    published = retrying(
        f"publishing {item['id']}",
        lambda: conn.publish(NEWS_EXCHANGE, routing_key, payload, ttl_ms=ttl_ms),
        retry_s,
        eprint,
    )
    return published.routed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=DEFAULT_URL, help="MOM gateway (default %(default)s, env MOM_URL)")
    parser.add_argument("--user", default=DEFAULT_USER, help="MOM user (default %(default)s, env NEWS_USER)")
    parser.add_argument("--password", default=DEFAULT_PASSWORD, help="its password (env NEWS_PASSWORD)")
    parser.add_argument("--interval", type=float, default=3.0, help="seconds between items (default %(default)s)")
    parser.add_argument("--count", type=int, default=0, help="items to publish, then exit; 0: forever (default)")
    parser.add_argument(
        "--ttl",
        type=float,
        default=3600.0,
        help="seconds an undelivered item stays in a queue; 0: forever (default %(default)s)",
    )
    parser.add_argument(
        "--connect-timeout",
        type=float,
        default=60.0,
        help="seconds to keep retrying while the cluster is not up yet (default %(default)s)",
    )
    args = parser.parse_args(argv)
    if args.interval < 0 or args.count < 0 or args.ttl < 0:
        parser.error("--interval, --count and --ttl must not be negative")
    ttl_ms = round(args.ttl * 1000) or None

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)  # run.sh stops it so

    try:
        with connect(args.url, args.user, args.password, args.connect_timeout, eprint) as conn:
            declare_exchange(conn, NEWS_EXCHANGE, args.user, args.connect_timeout, eprint)
            print(f"publishing to exchange {NEWS_EXCHANGE!r} at {args.url} as {args.user!r}", flush=True)
            n = 0
            while args.count == 0 or n < args.count:
                if n:
                    time.sleep(args.interval)
                item = make_item(n)
                routed = publish_item(conn, item, ttl_ms, args.connect_timeout)
                n += 1
                total = f"/{args.count}" if args.count else ""
                note = "" if routed else " -- no queue bound to 'news' yet: nobody will see it"
                print(
                    f"published {n}{total} news.{item['category']} id={item['id']} {item['title']!r} "
                    f"(routed to {routed} queue{'s' if routed != 1 else ''}){note}",
                    flush=True,
                )
    except KeyboardInterrupt:
        return 130
    except MomError as e:
        eprint(f"publisher: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
