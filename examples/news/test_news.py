"""End-to-end test of the news example against a real MOM cluster (ZooKeeper, auth,
partitioning, gateway, three broker nodes), started with the Python client's test launcher
(clients/python/tests/mom_cluster.py) from the binaries in $MOM_BIN_DIR (default
<repo>/target/debug).

Two web.py apps (all categories; tech only), the publisher for three items, then over HTTP:
the data endpoint shows the items (each app its categories), a posted comment travels through
MOM and shows under its item in both apps and on the live event stream, and every consumed
message was acked. Bounded to 60 s, the cluster's start included.

    bash examples/news/run-tests.sh          # makes examples/news/.venv with pytest
    python3 examples/news/test_news.py       # the same test without pytest
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "clients" / "python" / "tests"))  # mom_cluster
sys.path.insert(0, str(HERE))  # news_common, publisher (news_common finds mom_client)

import mom_cluster  # noqa: E402
import news_common  # noqa: E402
import publisher  # noqa: E402

from mom_client import Connection  # noqa: E402

try:
    import pytest
except ImportError:  # run as a plain script
    pytest = None  # type: ignore[assignment]

TIME_LIMIT_S = 60
USER, PASSWORD = news_common.DEFAULT_USER, news_common.DEFAULT_PASSWORD
ITEMS = 3  # publisher.SAMPLES interleaves the categories: one item of each


def _die_with_parent() -> None:
    # Linux: SIGKILL web.py when the test process dies without stopping it.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class WebApp:
    """One web.py process on its own port, its log in the cluster's directory."""

    def __init__(self, gateway: str, port: int, log: Path, *extra: str) -> None:
        self.port = port
        self.log = log
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-u", str(HERE / "web.py"), "--url", gateway, "--port", str(port),
                 "--user", USER, "--password", PASSWORD, "--connect-timeout", "30", *extra],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent,
            )

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            data = None if body is None else json.dumps(body).encode()
            headers = {"Content-Type": "application/json"} if data is not None else {}
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            text = response.read().decode()
            is_json = response.getheader("Content-Type", "").startswith("application/json")
            return response.status, json.loads(text) if is_json else text
        finally:
            conn.close()

    def healthy(self) -> bool:
        assert self.process.poll() is None, f"web.py exited:\n{self.output()}"
        try:
            return self.request("GET", "/api/health")[0] == 200
        except OSError:
            return False

    def items(self) -> list[dict[str, Any]]:
        status, answer = self.request("GET", "/api/news")
        assert status == 200, answer
        return answer["items"]

    def stop(self) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                return None
        return self.process.returncode

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def wait_for(what: str, condition: Callable[[], Any], deadline: float, extra: Callable[[], str] = str) -> Any:
    """Polls until ``condition()`` is truthy; returns it. Fails at ``deadline`` (monotonic)."""
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{extra()}")
        time.sleep(0.1)


@contextlib.contextmanager
def real_cluster() -> Iterator[mom_cluster.Cluster]:
    cluster = mom_cluster.Cluster()
    passed = False
    try:
        cluster.start()
        yield cluster
        passed = True
    finally:
        cluster.stop()
        if passed:
            cluster.remove_dir()
        else:
            print(f"cluster configs and logs kept in {cluster.dir}", file=sys.stderr)


def read_event(stream: http.client.HTTPResponse, kind: str, deadline: float) -> dict[str, Any]:
    """The data of the next event of type ``kind`` on a Server-Sent Events stream."""
    event = ""
    while time.monotonic() < deadline:
        line = stream.readline().decode()
        assert line, "the event stream ended"
        line = line.rstrip("\n")
        if line.startswith("event: "):
            event = line[len("event: "):]
        elif line.startswith("data: ") and event == kind:
            return json.loads(line[len("data: "):])
        elif line == "":
            event = ""
    raise AssertionError(f"no {kind} event in time")


def run_news_flow(cluster: mom_cluster.Cluster) -> None:
    deadline = time.monotonic() + TIME_LIMIT_S - 10  # leaves time for the stops
    gateway = cluster.gateway_url
    every = WebApp(gateway, mom_cluster.free_port(), cluster.dir / "web-all.log")
    tech = WebApp(gateway, mom_cluster.free_port(), cluster.dir / "web-tech.log", "--categories", "tech")
    apps = [every, tech]

    def logs() -> str:
        return "\n".join(f"---- web.py :{a.port} ----\n{a.output()}" for a in apps)

    try:
        for app in apps:
            wait_for(f"web.py on {app.port} consuming", app.healthy, deadline, logs)
        status, page = every.request("GET", "/")
        assert status == 200 and "EventSource" in page and "/api/comments" in page

        # The publisher: registers (already done by web.py: 409 is fine), declares, publishes.
        run = subprocess.run(
            [sys.executable, str(HERE / "publisher.py"), "--url", gateway, "--user", USER,
             "--password", PASSWORD, "--count", str(ITEMS), "--interval", "0.2"],
            capture_output=True, text=True, timeout=max(1.0, deadline - time.monotonic()),
        )
        assert run.returncode == 0, f"publisher failed:\n{run.stdout}\n{run.stderr}"
        lines = [line for line in run.stdout.splitlines() if line.startswith("published ")]
        assert len(lines) == ITEMS, run.stdout
        # Topic routing: a tech item reaches both apps' queues, the others only the first's.
        for line, (category, title, _) in zip(lines, publisher.SAMPLES):
            assert f"news.{category} " in line and repr(title) in line, line
            assert f"(routed to {2 if category == 'tech' else 1} queue" in line, line

        items = wait_for(f"{ITEMS} items on the page", lambda: len(every.items()) >= ITEMS and every.items(),
                         deadline, logs)
        assert len(items) == ITEMS, items
        expected = {(c, t, b) for c, t, b in publisher.SAMPLES[:ITEMS]}
        assert {(i["category"], i["title"], i["body"]) for i in items} == expected
        for item in items:
            assert re.fullmatch(r"[0-9a-f]{16}", item["id"]), item
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", item["timestamp"]), item
            assert item["comments"] == []
        assert [i["title"] for i in items] == [t for _, t, _ in reversed(publisher.SAMPLES[:ITEMS])], \
            "newest first"
        tech_items = wait_for("the tech item in the tech app", tech.items, deadline, logs)
        assert [i["category"] for i in tech_items] == ["tech"], tech_items
        tech_item = tech_items[0]

        # A comment: posted to one app, published to MOM, consumed back by both apps.
        snapshot_seq = every.request("GET", "/api/news")[1]["seq"]
        stream_conn = http.client.HTTPConnection("127.0.0.1", every.port, timeout=10)
        stream_conn.request("GET", f"/events?after={snapshot_seq}")
        stream = stream_conn.getresponse()
        assert stream.status == 200 and stream.getheader("Content-Type", "").startswith("text/event-stream")
        try:
            text = "Finally a broker I can curl!"
            status, answer = every.request(
                "POST", "/api/comments", {"news_id": tech_item["id"], "author": "tester", "text": text}
            )
            assert status == 202, answer
            assert answer["routed"] == 2, answer  # both apps' comment queues
            comment_id = answer["comment"]["id"]
            live = read_event(stream, "comment", deadline)
            assert (live["id"], live["news_id"], live["text"], live["author"]) == (
                comment_id, tech_item["id"], text, "tester"
            ), live
        finally:
            stream_conn.close()

        def shown_in(app: WebApp) -> list[dict[str, Any]]:
            return [c for i in app.items() if i["id"] == tech_item["id"] for c in i["comments"]]

        for app in apps:
            comments = wait_for(f"the comment in web.py :{app.port}", lambda a=app: shown_in(a), deadline, logs)
            assert [(c["id"], c["text"], c["author"]) for c in comments] == [(comment_id, text, "tester")]
        # Other items have no comments.
        assert all(i["comments"] == [] for i in every.items() if i["id"] != tech_item["id"])

        # Refused comments never reach MOM.
        assert every.request("POST", "/api/comments", {"news_id": tech_item["id"], "text": "  "})[0] == 400
        assert every.request("POST", "/api/comments", {"news_id": "nope", "text": "hi"})[0] == 404
        assert every.request("POST", "/api/comments", "not an object")[0] == 400

        # Every consumed message was acked: all four queues empty, nothing leased.
        with Connection(gateway, USER, PASSWORD) as conn:
            queues = [f"news-web-{a.port}.{kind}" for a in apps for kind in ("news", "comments")]

            def drained() -> bool:
                return all((d.ready, d.leased) == (0, 0) for d in map(conn.get_queue, queues))

            wait_for("every queue drained and acked", drained, deadline,
                     lambda: str([conn.get_queue(q) for q in queues]))
    finally:
        codes = [app.stop() for app in apps]
    assert codes == [0, 0], f"web.py did not stop cleanly on SIGTERM: {codes}\n{logs()}"


if pytest is not None:
    pytestmark = pytest.mark.timeout(TIME_LIMIT_S)

    @pytest.fixture(scope="module")
    def cluster() -> Iterator[mom_cluster.Cluster]:
        with real_cluster() as running:
            yield running

    def test_news_items_and_comments(cluster: mom_cluster.Cluster) -> None:
        run_news_flow(cluster)


if __name__ == "__main__":
    started = time.monotonic()
    with real_cluster() as running:
        run_news_flow(running)
    print(f"ok: news example passed in {time.monotonic() - started:.1f} s")
