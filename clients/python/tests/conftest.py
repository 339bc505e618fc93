"""pytest fixtures: one real MOM cluster for the whole session, logged-in connections (the
test user's, the admin's, fresh users'), and unique names so that tests sharing the cluster
never see each other's messages or resources."""

from __future__ import annotations

import functools
import itertools
import uuid
from collections.abc import Iterator
from typing import Callable

import pytest
from helpers import PASSWORD, USER, USER_PASSWORD
from mom_cluster import Cluster, retry_until

from mom_client import Connection, ServerError, TransportError

WARMUP_KEYS = 16

_kept_logs: str | None = None


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """Starts the cluster and waits until it serves; kills every process at the end.

    Its temp dir (configs, logs) is removed, unless something failed: then it stays for a look.
    """
    global _kept_logs
    cluster = Cluster()
    passed = False
    try:
        cluster.start()
        _warm_up(cluster)
        yield cluster
        passed = not request.session.testsfailed
    finally:
        cluster.stop()
        if passed:
            cluster.remove_dir()
        else:
            _kept_logs = str(cluster.dir)


def _warm_up(cluster: Cluster) -> None:
    """Registers the test user and retries a publish on several keys (so several partitions)
    until each answers 201, then takes them back out: the partitions have leaders, in-sync
    followers and serve pulls and acks by then."""
    not_yet = (ServerError, TransportError)
    login = lambda: Connection(cluster.gateway_url, USER, PASSWORD, register=True)  # noqa: E731
    with retry_until("register", login, not_yet) as conn:
        retry_until("declare", lambda: conn.declare_exchange("warm-up", "fanout"), not_yet)
        conn.declare_queue("warm-up")
        conn.bind("warm-up", "warm-up")
        for n in range(WARMUP_KEYS):
            retry_until("publish", functools.partial(conn.publish, "warm-up", f"k{n}", "x"), not_yet)
        received = 0
        while received < WARMUP_KEYS:
            batch = conn.pull("warm-up", 100, wait_ms=10_000)
            assert batch, "warm-up messages did not come back"
            assert not conn.ack("warm-up", batch).stale
            received += len(batch)
        conn.delete_queue("warm-up")
        conn.delete_exchange("warm-up")


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    if _kept_logs:
        terminalreporter.write_line(f"cluster configs and logs kept in {_kept_logs}")


@pytest.fixture(scope="session")
def conn(cluster: Cluster) -> Iterator[Connection]:
    """The test user's connection."""
    with Connection(cluster.gateway_url, USER, PASSWORD) as connection:
        yield connection


@pytest.fixture(scope="session")
def admin_credentials(cluster: Cluster) -> tuple[str, str]:
    """``(user, password)`` of the admin the auth service creates at start."""
    return cluster.admin_user, cluster.admin_password


@pytest.fixture(scope="session")
def admin(cluster: Cluster, admin_credentials: tuple[str, str]) -> Iterator[Connection]:
    """The admin's connection (role ``admin``: may do everything, manages users)."""
    user, password = admin_credentials
    with Connection(cluster.gateway_url, user, password) as connection:
        yield connection


@pytest.fixture
def new_user(cluster: Cluster, unique: Callable[[str], str]) -> Iterator[Callable[[str], Connection]]:
    """``new_user("bob")`` registers a fresh user (a unique name starting with ``bob``) and
    gives its logged-in connection; its password is ``USER_PASSWORD``. Closed at the end."""
    made: list[Connection] = []

    def make(prefix: str = "user") -> Connection:
        connection = Connection(cluster.gateway_url, unique(prefix), USER_PASSWORD, register=True)
        made.append(connection)
        return connection

    yield make
    for connection in made:
        connection.close()


@pytest.fixture
def unique() -> Callable[[str], str]:
    """``unique("q")`` gives a name no other test uses, e.g. ``q-3f2a9c1e-0``."""
    tag = uuid.uuid4().hex[:8]
    counter = itertools.count()
    return lambda prefix: f"{prefix}-{tag}-{next(counter)}"
