"""The gateway's web dashboard, driven in a real headless Chromium against a real cluster.

One walk through the page, as an operator would: register and log in, see the three broker
nodes live, declare a queue and an exchange, bind them, publish through the form and watch
the queue's depth and the exchange's count change, peek at a message (leased, not acked), then
SIGKILL a broker node and watch its row turn red. The cluster comes from the Python client's
launcher (clients/python/tests/mom_cluster.py).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select, WebDriverWait

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "clients" / "python" / "tests"))
from mom_cluster import Cluster  # noqa: E402

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
PASSWORD = "correct-horse-battery"
# What the page needs at most to show a change: a poll (1.5 s) plus slow debug builds.
SHOWN_S = 15
# A killed node's ZooKeeper session lasts 2 s (the launcher's node_session_timeout_ms).
DEATH_SHOWN_S = 20
DEAD_ROW_RED = "rgba(253, 228, 228, 1)"


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """Three broker nodes, every partition with a live leader and all replicas in sync."""
    cluster = Cluster()
    passed = False
    try:
        cluster.start()
        cluster.wait_until("every partition writable and in sync", lambda: _health(cluster) == "ok")
        yield cluster
        passed = not request.session.testsfailed
    finally:
        cluster.stop()
        if passed:
            cluster.remove_dir()
        else:
            print(f"\ncluster logs kept in {cluster.dir}\n{cluster.logs()}")


def _health(cluster: Cluster) -> str:
    try:
        return requests.get(f"{cluster.gateway_url}/health", timeout=2).json().get("status", "")
    except (requests.RequestException, ValueError):
        return ""


def _token(cluster: Cluster, user: str) -> dict[str, str]:
    """Registers ``user`` and answers its ``Authorization`` header."""
    credentials = {"username": user, "password": PASSWORD}
    requests.post(f"{cluster.gateway_url}/auth/register", json=credentials, timeout=5).raise_for_status()
    reply = requests.post(f"{cluster.gateway_url}/auth/login", json=credentials, timeout=5)
    reply.raise_for_status()
    return {"Authorization": f"Bearer {reply.json()['token']}"}


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="mom-ui-chromium-")
    for argument in (
        "--headless=new",
        "--no-sandbox",  # root in a container
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1000",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


class Page:
    """The dashboard as the test sees it: fields by id, rows by their data attributes."""

    def __init__(self, driver: WebDriver) -> None:
        self.driver = driver

    def wait(self, what: str, condition, timeout: float = SHOWN_S):
        """Polls ``condition(driver)`` until truthy; rows are redrawn every poll, so a stale
        element just means "look again"."""

        def attempt(driver):
            try:
                return condition(driver)
            except StaleElementReferenceException:
                return False

        return WebDriverWait(self.driver, timeout, poll_frequency=0.1).until(attempt, message=what)

    def field(self, element_id: str):
        return self.driver.find_element(By.ID, element_id)

    def type(self, element_id: str, text: str) -> None:
        field = self.field(element_id)
        field.clear()
        field.send_keys(text)

    def choose(self, element_id: str, value: str) -> None:
        Select(self.field(element_id)).select_by_value(value)

    def submit(self, form: str, expect: str) -> str:
        """Clicks the form's button and waits for its outcome line to contain ``expect``."""
        self.field(f"{form}-submit").click()
        result = self.field(f"{form}-result")
        self.wait(
            f"{form}: {expect!r} (shown: {result.text!r})",
            lambda _: expect in result.text or "error" in result.get_attribute("class"),
        )
        assert expect in result.text, f"{form} failed: {result.text}"
        return result.text

    def cell(self, row: str, field: str) -> str:
        """The text of ``<tr data-{row}> <td data-field={field}>``; "" while the row is absent."""
        cells = self.driver.find_elements(By.CSS_SELECTOR, f"tr[{row}] td[data-field='{field}']")
        return cells[0].text if cells else ""

    def node_states(self) -> dict[str, str]:
        rows = self.driver.find_elements(By.CSS_SELECTOR, "#nodes tr[data-node]")
        return {r.get_attribute("data-node"): r.get_attribute("data-state") for r in rows}


def test_an_operator_sees_traffic_and_a_killed_node_on_the_dashboard(
    cluster: Cluster, browser: WebDriver
) -> None:
    suffix = uuid.uuid4().hex[:8]
    user, queue, exchange = f"ui-{suffix}", f"ui-q-{suffix}", f"ui-x-{suffix}"
    page = Page(browser)
    try:
        # The page and its files come with their content types.
        for path, content_type in [("/", "text/html"), ("/ui/app.js", "text/javascript")]:
            reply = requests.get(cluster.gateway_url + path, timeout=5)
            assert reply.status_code == 200 and reply.headers["content-type"].startswith(content_type)

        browser.get(cluster.gateway_url + "/")
        page.wait("login form shown", lambda _: page.field("login").is_displayed())
        page.type("login-username", user)
        page.type("login-password", PASSWORD)
        page.field("register-submit").click()
        page.wait("dashboard shown", lambda _: page.field("dashboard").is_displayed())
        assert user in page.field("whoami").text
        page.wait(
            "three live nodes",
            lambda _: page.node_states() == {"node1": "live", "node2": "live", "node3": "live"},
        )
        page.wait("health ok", lambda _: page.field("health").text == "ok")

        # Declare a queue and an exchange, bind them.
        page.choose("declare-kind", "queue")
        page.type("declare-name", queue)
        page.submit("declare", f"queue {queue}: created")
        page.wait("queue row, empty", lambda _: page.cell(f"data-queue='{queue}'", "ready") == "0")
        page.choose("declare-kind", "exchange")
        page.choose("declare-exchange-kind", "direct")
        page.type("declare-name", exchange)
        page.submit("declare", f"exchange {exchange}: created")
        page.type("bind-exchange", exchange)
        page.type("bind-queue", queue)
        page.type("bind-key", "greeting")
        page.submit("bind", f"{queue} ← {exchange}")
        page.wait(
            "binding shown",
            lambda _: queue in page.cell(f"data-exchange='{exchange}'", "bindings"),
        )

        # Publish three copies through the form: the queue's depth and the exchange's count
        # follow.
        page.choose("publish-kind", "exchange")
        page.type("publish-name", exchange)
        page.type("publish-key", "greeting")
        page.type("publish-payload", "hello from the dashboard")
        page.type("publish-copies", "3")
        page.submit("publish", "published 3 messages")
        page.wait("3 ready", lambda _: page.cell(f"data-queue='{queue}'", "ready") == "3")
        page.wait(
            "3 published", lambda _: page.cell(f"data-exchange='{exchange}'", "published") == "3"
        )
        # The page read 0 a poll earlier: a rate over the last seconds shows.
        page.wait(
            "a publish rate",
            lambda _: page.cell(f"data-exchange='{exchange}'", "publish-rate") not in ("", "—", "0/s"),
        )

        # Peek at one: shown, leased (in flight), not acked; the peeker counts as a consumer.
        page.wait(
            "queue offered for peeking",
            lambda _: f"queue/{queue}"
            in [o.get_attribute("value") for o in Select(page.field("peek-mailbox")).options],
        )
        page.choose("peek-mailbox", f"queue/{queue}")
        page.type("peek-max", "1")
        page.submit("peek", "delivered again")
        peeked = browser.find_elements(By.CSS_SELECTOR, "#peeked td.payload")
        assert [td.text for td in peeked] == ["hello from the dashboard"]
        row = f"data-queue='{queue}'"
        page.wait(
            "1 in flight, 2 ready",
            lambda _: (page.cell(row, "ready"), page.cell(row, "leased")) == ("2", "1"),
        )
        page.wait("one consumer", lambda _: page.cell(row, "consumers") == "1")
        assert page.cell(row, "delivered") == "1"
        page.wait("a deliver rate", lambda _: page.cell(row, "deliver-rate") not in ("", "—", "0/s"))

        # /stats needs a token and shows another user nothing of this user's.
        assert requests.get(f"{cluster.gateway_url}/stats", timeout=5).status_code == 401
        other = _token(cluster, f"ui-other-{suffix}")
        theirs = requests.get(f"{cluster.gateway_url}/stats", headers=other, timeout=5).json()
        assert queue not in [q["name"] for q in theirs["queues"]]
        assert exchange not in [x["name"] for x in theirs["exchanges"]]

        # SIGKILL a broker node: its row turns red, the others stay live.
        victim = next(s for s in cluster.services if s.name == "node3")
        victim.kill()
        page.wait(
            "node3 shown dead",
            lambda _: page.node_states().get("node3") == "dead",
            timeout=DEATH_SHOWN_S,
        )
        dead_row = browser.find_element(By.CSS_SELECTOR, "#nodes tr[data-node='node3']")
        assert "node-dead" in dead_row.get_attribute("class").split()
        state_cell = dead_row.find_element(By.CSS_SELECTOR, "td[data-field='state']")
        assert state_cell.value_of_css_property("background-color") == DEAD_ROW_RED
        assert state_cell.text == "dead"
        assert page.node_states() == {"node1": "live", "node2": "live", "node3": "dead"}

        # No script error on the way (failed requests, e.g. a 503 during failover, are fine).
        errors = [
            entry["message"]
            for entry in browser.get_log("browser")
            if entry["level"] == "SEVERE" and "Failed to load resource" not in entry["message"]
        ]
        assert errors == []

        # Logging out shows the login form again and forgets the token.
        page.field("logout").click()
        page.wait("login form shown again", lambda _: page.field("login").is_displayed())
        assert browser.execute_script("return sessionStorage.getItem('mom.session')") is None
    except (AssertionError, WebDriverException):
        shot = cluster.dir / "dashboard-failure.png"
        try:
            browser.save_screenshot(str(shot))
            (cluster.dir / "dashboard-failure.html").write_text(browser.page_source)
            print(f"\nscreenshot and page source in {cluster.dir}")
        except WebDriverException:
            pass
        raise
