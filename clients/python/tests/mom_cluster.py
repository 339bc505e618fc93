"""A whole MOM cluster on loopback for the tests: real ZooKeeper, mom-auth, mom-partitioning,
mom-gateway and three mom-server nodes, each a process with a TOML config in a temp dir.

Mirrors testkit/src/cluster.rs (same config shapes, ports picked at runtime, short sessions):
user tokens signed with ``JWT_SECRET``, service tokens with ``CLUSTER_SECRET``, ZooKeeper
digest credentials on every service, an admin user made at start (``ADMIN_USER``), and
throttling of logins and registrations set so high that tests never hit it.
The binaries come from ``$MOM_BIN_DIR`` (default ``<repo>/target/debug``).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import itertools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable, TypeVar

import requests

REPO = Path(__file__).resolve().parents[3]
ZOOKEEPER_JAR = "/usr/share/java/zookeeper.jar"
JWT_SECRET = "test-user-token-secret"
"""Signs user tokens (auth service and gateway)."""
CLUSTER_SECRET = "test-cluster-secret"
"""Signs the services' own tokens (gateway, nodes, partitioning); must differ from JWT_SECRET."""
ZOOKEEPER_DIGEST = "mom:test-zookeeper-password"
"""ZooKeeper digest credentials every service uses (its znodes get the creator_all ACL)."""
ADMIN_USER = "admin"
ADMIN_PASSWORD = "test-admin-password"
"""The admin the auth service creates at start (``[bootstrap_admin]``)."""
# Tests register many users from one address: never throttle them.
AUTH_LIMITS = (
    "logins_per_user_per_minute = 100000\nlogins_per_address_per_minute = 100000\n"
    "registrations_per_address_per_minute = 100000\n"
)
STARTUP_S = 60.0
POLL_S = 0.025


def bin_dir() -> Path:
    return Path(os.environ.get("MOM_BIN_DIR") or REPO / "target" / "debug")


_picks = itertools.count()


def free_port() -> int:
    """A loopback port nobody listens on now, for a service to bind next.

    Taken below Linux's ephemeral range (32768+) so that no outgoing connection grabs it
    before the service binds; the pid spreads concurrent test runs apart (as testkit does).
    """
    first, span = 20_000, 12_000
    offset = os.getpid() * 7_919
    for _ in range(span):
        port = first + (offset + next(_picks)) % span
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free loopback port")


def _die_with_parent() -> None:
    # Linux: SIGKILL the service if the test process dies without cleaning up (e.g. SIGKILL).
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class Service:
    """One process with its output appended to a log file; SIGKILLed by :meth:`kill`."""

    def __init__(self, name: str, argv: list[str], log: Path) -> None:
        self.name = name
        self.log = log
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )

    def running(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        if self.running():
            self.process.kill()
        self.process.wait()

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class Cluster:
    """Starts everything with :meth:`start`; :meth:`stop` kills it all, also after a failure."""

    def __init__(
        self,
        nodes: int = 3,
        partitions: int = 8,
        replication_factor: int = 3,
        node_session_timeout_ms: int = 2_000,
        service_session_timeout_ms: int = 4_000,
    ) -> None:
        self.node_count = nodes
        self.partitions = partitions
        self.replication_factor = replication_factor
        self.node_session_timeout_ms = node_session_timeout_ms
        self.service_session_timeout_ms = service_session_timeout_ms
        for binary in ("mom-auth", "mom-partitioning", "mom-gateway", "mom-server"):
            if not (bin_dir() / binary).exists():
                raise RuntimeError(
                    f"{bin_dir() / binary} is missing: build the workspace binaries "
                    "(cargo build --workspace --bins) or set MOM_BIN_DIR"
                )
        self.dir = Path(tempfile.mkdtemp(prefix="mom-pyclient-"))
        self.services: list[Service] = []
        self.gateway_url = ""
        self.admin_user = ADMIN_USER
        self.admin_password = ADMIN_PASSWORD

    # ---- start and stop ----

    def start(self) -> None:
        # In every config the top-level keys come first, then the tables (TOML).
        zk = self._start_zookeeper()
        service_session = _zookeeper_table(zk, self.service_session_timeout_ms)
        auth_port, partitioning_port, gateway_port = free_port(), free_port(), free_port()
        self._spawn(
            "auth",
            "mom-auth",
            f'listen = "127.0.0.1:{auth_port}"\ndatabase = "{self.dir / "auth" / "users.db"}"\n'
            f'jwt_secret = "{JWT_SECRET}"\ntrusted_proxies = ["127.0.0.1"]\n'
            + AUTH_LIMITS
            + f'[bootstrap_admin]\nusername = "{ADMIN_USER}"\npassword = "{ADMIN_PASSWORD}"\n'
            + service_session,
        )
        self._spawn(
            "partitioning",
            "mom-partitioning",
            f'listen = "127.0.0.1:{partitioning_port}"\ncluster_secret = "{CLUSTER_SECRET}"\n'
            f"partitions = {self.partitions}\nreplication_factor = {self.replication_factor}\n"
            + service_session,
        )
        self._spawn(
            "gateway",
            "mom-gateway",
            f'listen = "127.0.0.1:{gateway_port}"\njwt_secret = "{JWT_SECRET}"\n'
            f'cluster_secret = "{CLUSTER_SECRET}"\nauth_url = "http://127.0.0.1:{auth_port}"\n'
            "max_body_bytes = 65536\n" + service_session,
        )
        self.gateway_url = f"http://127.0.0.1:{gateway_port}"
        for n in range(1, self.node_count + 1):
            self._spawn(
                f"node{n}",
                "mom-server",
                f'node_id = "node{n}"\nlisten = "127.0.0.1:{free_port()}"\n'
                f'data_dir = "{self.dir / f"node{n}"}"\ncluster_secret = "{CLUSTER_SECRET}"\n'
                "min_insync_replicas = 2\nreplication_timeout_ms = 2000\n"
                + _zookeeper_table(zk, self.node_session_timeout_ms),
            )
        for port in (auth_port, partitioning_port, gateway_port):
            self.wait_until(f"a service listening on {port}", functools.partial(_listens, port))
        self.wait_until(f"{self.node_count} live nodes at the gateway", self._all_nodes_live)

    def stop(self) -> None:
        """Kills every process (services first, ZooKeeper last)."""
        for service in reversed(self.services):
            service.kill()

    def remove_dir(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def _start_zookeeper(self) -> str:
        if not Path(ZOOKEEPER_JAR).exists():
            raise RuntimeError(f"{ZOOKEEPER_JAR} is missing: install Debian's zookeeper package")
        port = free_port()
        config = self.dir / "zoo.cfg"
        config.write_text(
            f"tickTime=200\ndataDir={self.dir / 'zookeeper'}\nclientPort={port}\n"
            "clientPortAddress=127.0.0.1\nadmin.enableServer=false\n"
            "4lw.commands.whitelist=ruok,srvr\nminSessionTimeout=400\nmaxSessionTimeout=30000\n"
        )
        argv = [
            "java",
            "-Xmx128m",
            "-cp",
            ZOOKEEPER_JAR,
            "org.apache.zookeeper.server.ZooKeeperServerMain",
            str(config),
        ]
        self.services.append(Service("zookeeper", argv, self.dir / "zookeeper.log"))
        # `ruok` answers before the server serves; `srvr` reporting a mode means it does.
        self.wait_until("zookeeper serving", lambda: "Mode:" in _four_letters(port, b"srvr"))
        return f"127.0.0.1:{port}"

    def _spawn(self, name: str, binary: str, config: str) -> None:
        path = self.dir / f"{name}.toml"
        path.write_text(config)
        argv = [str(bin_dir() / binary), "--config", str(path)]
        self.services.append(Service(name, argv, self.dir / f"{name}.log"))

    # ---- waiting ----

    def wait_until(self, what: str, condition: Callable[[], bool], timeout: float = STARTUP_S) -> None:
        """Polls ``condition`` until it holds; fails with the logs on timeout or a dead service."""
        deadline = time.monotonic() + timeout
        while not condition():
            dead = [s.name for s in self.services if not s.running()]
            if dead:
                raise RuntimeError(f"{', '.join(dead)} exited while waiting for {what}\n{self.logs()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out after {timeout}s waiting for {what}\n{self.logs()}")
            time.sleep(POLL_S)

    def _all_nodes_live(self) -> bool:
        try:
            health = requests.get(f"{self.gateway_url}/health", timeout=2).json()
        except (requests.RequestException, ValueError):
            return False
        return health.get("nodes") == self.node_count

    def logs(self) -> str:
        return "\n".join(f"---- {s.name} ({s.log}) ----\n{s.log_tail()}" for s in self.services)


def _zookeeper_table(connect: str, session_timeout_ms: int) -> str:
    """The ``[zookeeper]`` table of a service's config, with the digest credentials."""
    return (
        f'[zookeeper]\nconnect = "{connect}"\nsession_timeout_ms = {session_timeout_ms}\n'
        f'digest = "{ZOOKEEPER_DIGEST}"\n'
    )


def _listens(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def _four_letters(port: int, word: bytes) -> str:
    """ZooKeeper's answer to a four-letter command, or "" when it does not answer."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
            conn.settimeout(1)
            conn.sendall(word)
            chunks = []
            while True:
                chunk = conn.recv(4096)
                if not chunk:
                    return b"".join(chunks).decode(errors="replace")
                chunks.append(chunk)
    except OSError:
        return ""


T = TypeVar("T")


def retry_until(
    what: str,
    call: Callable[[], T],
    retry_on: tuple[type[BaseException], ...],
    timeout: float = STARTUP_S,
) -> T:
    """``call()`` until it stops raising one of ``retry_on``; re-raises after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except retry_on as e:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} still failing after {timeout}s: {e!r}") from e
            time.sleep(POLL_S * 4)
