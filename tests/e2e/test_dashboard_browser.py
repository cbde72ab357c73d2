"""The admin dashboard (``GET /dashboard``) in headless Chromium against ``syncline dev``.

A real ``syncline dev`` serves the basic test app plus one module that prints (and
one test runs ``syncline cluster up`` for a gateway's dashboard); a real Chromium,
driven by ``tests/clients/js/dashboard.mjs`` (playwright-core), signs in and works
the page while the test writes through the HTTP API. Every wait has a deadline;
nothing sleeps to let time pass.

Without Chromium the tests skip, unless ``SYNCLINE_REQUIRE_CHROMIUM=1`` (set by
``scripts/test`` where it installs Chromium, as in CI), where they fail.
Screenshots and the server's log are kept in ``$SYNCLINE_TEST_ARTIFACTS``
(default: a directory under pytest's temporary directory; the path is printed).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from tests.fixtures.dev_server import DevServer
from tests.fixtures.local_cluster import syncline
from tests.fixtures.node_driver import NodeDriver
from tests.fixtures.servers import APPS

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

CHROMIUM = Path(os.environ.get("SYNCLINE_CHROMIUM", "/usr/bin/chromium"))
JS_CLIENTS = Path(__file__).resolve().parents[1] / "clients" / "js"
DASHBOARD_DRIVER = JS_CLIENTS / "dashboard.mjs"
BANK = Path(__file__).resolve().parents[1] / "cluster" / "apps" / "bank"
WRONG_KEY = "syncline-admin|default|" + "0" * 64

# Added to the basic app: a function whose printed line the dashboard must show.
GREETER_MODULE = '''\
"""For the dashboard's tests: a mutation that prints."""

from syncline import mutation, v


@mutation(args={"name": v.string()})
async def greet(ctx, name):
    print(f"greeting {name}")
    return f"Hello, {name}!"
'''


def tid(testid: str, extra: str = "") -> str:
    """A CSS selector for an element by its data-testid (plus more CSS)."""
    return f'[data-testid="{testid}"]{extra}'


# -- fixtures: one server and one browser for the module ---------------------------


@pytest.fixture(scope="module")
def artifacts(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get("SYNCLINE_TEST_ARTIFACTS")
    if configured:
        directory = Path(configured) / "dashboard"
        directory.mkdir(parents=True, exist_ok=True)
    else:
        directory = tmp_path_factory.mktemp("dashboard-artifacts")
    # Say where, past pytest's output capture, so that a passing run tells it too.
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        print(f"\ndashboard screenshots and server log: {directory}")
    return directory


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(
    tmp_path_factory: pytest.TempPathFactory, artifacts: Path
) -> AsyncIterator[DevServer]:
    root = tmp_path_factory.mktemp("dashboard-server")
    app = root / "app"
    shutil.copytree(APPS / "basic", app)
    (app / "greeter.py").write_text(GREETER_MODULE)
    dev = DevServer(app, root / "data", root / "server.log")
    await dev.start()
    assert dev.admin_key, dev.log()
    try:
        yield dev
    finally:
        dev.stop()
        shutil.copy(dev.log_path, artifacts / "server.log")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[NodeDriver]:
    if not CHROMIUM.exists():
        reason = (
            f"{CHROMIUM} is absent: install Debian's chromium package "
            "(scripts/test does so when run as root)"
        )
        # scripts/test sets this where it can install Chromium (CI runs as root):
        # there a missing browser is a broken setup, not a reason to skip.
        if os.environ.get("SYNCLINE_REQUIRE_CHROMIUM") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    if (
        shutil.which("node") is None
        or not (JS_CLIENTS / "node_modules" / "playwright-core").exists()
    ):
        pytest.fail("playwright-core is not installed: run the README's test command (npm ci)")
    driver = NodeDriver(DASHBOARD_DRIVER)
    await driver.start()
    try:
        await driver.call("launch", timeout=60)
        yield driver
    finally:
        await driver.close()


class Page:
    """One browser tab on the dashboard, with waits that have deadlines."""

    def __init__(
        self, driver: NodeDriver, name: str, url: str, admin_key: str, artifacts: Path
    ) -> None:
        self.driver = driver
        self.name = name
        self.url = url
        self.admin_key = admin_key
        self.artifacts = artifacts

    async def _call(self, op: str, timeout: float = 10.0, **fields: Any) -> Any:
        # The browser side gives up at `timeout`; this side waits a little longer
        # so that its error, which says what the page showed, is the one raised.
        return await self.driver.call(
            op, timeout=timeout + 5, page=self.name, timeoutMs=timeout * 1000, **fields
        )

    async def goto(self, path: str = "/dashboard") -> int:
        return int(await self._call("goto", url=self.url + path))

    async def click(self, selector: str) -> None:
        await self._call("click", selector=selector)

    async def fill(self, selector: str, value: str) -> None:
        await self._call("fill", selector=selector, value=value)

    async def select(self, selector: str, value: str) -> None:
        await self._call("selectOption", selector=selector, value=value)

    async def wait_visible(self, selector: str, timeout: float = 10.0) -> None:
        await self._call("waitFor", selector=selector, state="visible", timeout=timeout)

    async def wait_hidden(self, selector: str, timeout: float = 10.0) -> None:
        await self._call("waitFor", selector=selector, state="hidden", timeout=timeout)

    async def wait_text(self, selector: str, contains: str, timeout: float = 10.0) -> str:
        """The text of the first element matching ``selector`` that contains ``contains``."""
        return str(
            await self._call("waitText", selector=selector, contains=contains, timeout=timeout)
        )

    async def wait_no_text(self, selector: str, contains: str, timeout: float = 10.0) -> None:
        await self._call("waitNoText", selector=selector, contains=contains, timeout=timeout)

    async def texts(self, selector: str) -> list[str]:
        return list(await self._call("texts", selector=selector))

    async def count(self, selector: str) -> int:
        return int(await self._call("count", selector=selector))

    async def input_value(self, selector: str) -> str:
        return str(await self._call("inputValue", selector=selector))

    async def reload(self) -> None:
        await self._call("reload")

    async def eval(self, expression: str) -> Any:
        return await self._call("eval", expression=expression)

    async def screenshot(self, label: str) -> Path:
        path = self.artifacts / f"{self.name}-{label}.png"
        await self._call("screenshot", path=str(path), timeout=20)
        return path

    async def sign_in(self) -> None:
        await self.goto()
        await self.fill(tid("login-key"), self.admin_key)
        await self.click(tid("login-submit"))
        await self.wait_visible(tid("app"))
        await self.wait_text(tid("connection-status"), "Live")

    async def open_view(self, view: str) -> None:
        await self.click(tid(f"tab-{view}"))
        await self.wait_visible(tid(f"view-{view}"))

    async def open_table(self, table: str) -> None:
        await self.open_view("data")
        await self.click(tid("table-item", f'[data-table="{table}"]'))
        await self.wait_text(tid("data-table-name"), table)


@pytest_asyncio.fixture(loop_scope="module")
async def page(
    request: pytest.FixtureRequest, browser: NodeDriver, server: DevServer, artifacts: Path
) -> AsyncIterator[Page]:
    tab = await open_tab(browser, request.node.name, server.url, server.admin_key or "", artifacts)
    try:
        yield tab
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            await show_failure(tab, server.log())
        await browser.call("closePage", page=tab.name)


async def open_tab(
    browser: NodeDriver, test_name: str, url: str, admin_key: str, artifacts: Path
) -> Page:
    name = re.sub(r"[^A-Za-z0-9_-]", "_", test_name)
    await browser.call("newPage", name=name)
    return Page(browser, name, url, admin_key, artifacts)


async def show_failure(tab: Page, server_log: str) -> None:
    """What the page looked like and what its console and the server said."""
    print(f"screenshot of the failure: {await tab.screenshot('failed')}")
    print("--- browser console ---")
    print("\n".join(await tab.driver.call("console", page=tab.name)))
    print(f"--- server log ---\n{server_log}")


class Api:
    """Writes and reads through Syncline's HTTP API, as an admin."""

    def __init__(self, url: str, admin_key: str, http: aiohttp.ClientSession) -> None:
        self.url = url
        self.admin_key = admin_key
        self.http = http

    async def run(self, path: str, args: dict[str, Any] | None = None) -> Any:
        async with self.http.post(
            f"{self.url}/api/function",
            json={"path": path, "args": args or {}, "format": "json"},
            headers={"Authorization": f"Convex {self.admin_key}"},
        ) as response:
            body = await response.json()
        assert response.status == 200, body
        return body["value"]


@pytest_asyncio.fixture(loop_scope="module")
async def api(server: DevServer) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as http:
        yield Api(server.url, server.admin_key or "", http)


# -- the tests ------------------------------------------------------------------------


async def test_a_wrong_key_is_refused_and_the_admin_key_signs_in(
    page: Page, server: DevServer
) -> None:
    # Both /dashboard and /dashboard/ serve the page, with its assets.
    assert await page.goto("/dashboard/") == 200
    await page.wait_visible(tid("login-view"))
    assert await page.goto("/dashboard") == 200
    await page.wait_visible(tid("login-view"))

    await page.fill(tid("login-key"), WRONG_KEY)
    await page.click(tid("login-submit"))
    assert "not valid" in await page.wait_text(tid("login-error"), "admin key")
    assert await page.eval("sessionStorage.length") == 0
    await page.screenshot("wrong-key")

    await page.sign_in()
    assert "embedded" in await page.wait_text(tid("deployment-summary"), "embedded")
    await page.screenshot("signed-in")

    # The key lives in sessionStorage: a reload stays signed in.
    await page.reload()
    await page.wait_visible(tid("app"))
    await page.wait_text(tid("connection-status"), "Live")

    await page.click(tid("sign-out"))
    await page.wait_visible(tid("login-view"))
    assert await page.eval("sessionStorage.length") == 0

    # A kept key is checked again on load: one the server no longer takes signs out.
    await page.eval(f"sessionStorage.setItem('syncline.dashboard.adminKey', {WRONG_KEY!r})")
    await page.reload()
    assert "not valid" in await page.wait_text(tid("login-error"), "admin key")
    assert await page.eval("sessionStorage.length") == 0


async def test_browse_a_table_and_see_changes_live(page: Page, api: Api) -> None:
    await api.run("counters:increment", {"name": "visits"})
    await page.sign_in()
    await page.open_table("counters")
    visits = tid("doc-row", ':has(td[data-field="name"]:text-is("visits")) td[data-field="value"]')
    assert await page.wait_text(visits, "1") == "1"
    # A marker that a reload would wipe: the updates below arrive live.
    await page.eval("window.__notReloaded = true")

    await api.run("counters:increment", {"name": "visits", "by": 41.0})
    assert await page.wait_text(visits, "42") == "42"
    await api.run("counters:increment", {"name": "arrivals"})
    await page.wait_text(tid("documents-table"), "arrivals")
    assert await page.eval("window.__notReloaded === true")
    await page.screenshot("live-table")


async def test_filter_by_an_index_and_load_more(page: Page, api: Api) -> None:
    for i in range(55):
        await api.run("notes:add", {"author": "prolific", "body": f"note {i}"})
    await api.run("notes:add", {"author": "quiet", "body": "the only quiet note"})
    await page.sign_in()
    await page.open_table("notes")
    await page.wait_text(tid("documents"), "the only quiet note")

    await page.select(tid("data-index"), "by_author")
    await page.fill(tid("eq-author"), "quiet")
    await page.click(tid("data-apply"))
    await page.wait_text(tid("documents-count"), "1 document shown")
    assert await page.texts(tid("doc-row", " td[data-field='author']")) == ["quiet"]

    await page.fill(tid("eq-author"), "prolific")
    await page.click(tid("data-apply"))
    await page.wait_text(tid("documents-count"), "50 documents shown")
    await page.click(tid("load-more"))
    await page.wait_text(tid("documents-count"), "55 documents shown")
    assert await page.count(tid("load-more")) == 0
    authors = await page.texts(tid("doc-row", " td[data-field='author']"))
    assert set(authors) == {"prolific"}
    await page.screenshot("filtered")


async def test_run_a_function_and_see_its_result_and_log_lines(page: Page) -> None:
    await page.sign_in()
    await page.open_view("functions")
    await page.click(tid("fn-item", '[data-path="greeter:greet"]'))
    await page.wait_text(tid("fn-validator"), "name")
    await page.fill(tid("fn-args"), '{"name": "Ada"}')
    await page.click(tid("fn-run"))
    assert '"Hello, Ada!"' in await page.wait_text(tid("fn-value"), "Hello")
    assert "greeting Ada" in await page.wait_text(tid("fn-logs"), "greeting Ada")
    await page.screenshot("function-run")

    # A failing function shows its error, and malformed arguments never leave the page.
    await page.click(tid("fn-item", '[data-path="errors:crash"]'))
    await page.click(tid("fn-run"))
    await page.wait_text(tid("fn-error"), "Server Error")
    await page.fill(tid("fn-args"), "{not json")
    await page.click(tid("fn-run"))
    await page.wait_text(tid("fn-error"), "not valid JSON")


async def test_logs_view_tails_printed_lines(page: Page, api: Api) -> None:
    await page.sign_in()
    await page.open_view("logs")
    await api.run("greeter:greet", {"name": "Grace"})
    await page.wait_text(tid("logs-table"), "greeting Grace")
    await page.screenshot("logs")

    # Printed lines are LOG: a minimum of ERROR hides them, a path filter keeps them.
    await page.select(tid("logs-level"), "ERROR")
    await page.wait_no_text(tid("logs-table"), "greeting Grace")
    await page.select(tid("logs-level"), "DEBUG")
    await page.fill(tid("logs-path"), "greeter:greet")
    await page.wait_text(tid("logs-table"), "greeting Grace")
    await page.fill(tid("logs-path"), "counters:increment")
    await page.wait_no_text(tid("logs-table"), "greeting Grace")


async def test_edit_insert_and_delete_documents(page: Page, api: Api) -> None:
    note_id = await api.run("notes:add", {"author": "editor", "body": "original"})
    await page.sign_in()
    await page.open_table("notes")
    await page.click(tid("doc-row", f'[data-id="{note_id}"]'))
    assert "original" in await page.input_value(tid("doc-editor"))

    # Data the schema rejects: the server's message shows, and nothing changed.
    await page.fill(tid("doc-editor"), '{"author": 5, "body": "invalid"}')
    await page.click(tid("doc-save"))
    error = await page.wait_text(tid("doc-error"), "author")
    await page.screenshot("validation-error")
    assert (await api.run("notes:get", {"id": note_id}))["body"] == "original", error
    row = f'[data-id="{note_id}"] td[data-field="body"]'
    assert await page.texts(tid("doc-row", row)) == ["original"]

    # Not even JSON: refused before it reaches the server.
    await page.fill(tid("doc-editor"), '{"author": ')
    await page.click(tid("doc-save"))
    await page.wait_text(tid("doc-error"), "not valid JSON")

    # A valid edit is saved and the table follows.
    await page.fill(tid("doc-editor"), '{"author": "editor", "body": "edited"}')
    await page.click(tid("doc-save"))
    await page.wait_text(tid("doc-status"), "Saved")
    await page.wait_text(tid("doc-row", row), "edited")
    assert (await api.run("notes:get", {"id": note_id}))["body"] == "edited"

    # Delete asks for a second click.
    await page.click(tid("doc-delete"))
    await page.click(tid("doc-delete-confirm"))
    await page.wait_hidden(tid("doc-editor-panel"))
    assert await page.count(tid("doc-row", f'[data-id="{note_id}"]')) == 0
    assert await api.run("notes:get", {"id": note_id}) is None

    # Add a document.
    await page.click(tid("doc-add"))
    await page.fill(tid("doc-editor"), '{"author": "inserter", "body": "added from the page"}')
    await page.click(tid("doc-save"))
    status = await page.wait_text(tid("doc-status"), "Inserted")
    new_id = status.removeprefix("Inserted ").removesuffix(".")
    await page.wait_text(tid("documents-table"), "added from the page")
    assert (await api.run("notes:get", {"id": new_id}))["author"] == "inserter"


async def test_scheduled_jobs_can_be_cancelled(page: Page, api: Api) -> None:
    job_id = await api.run("reminders:remind", {"text": "much later", "delay": 3600.0})
    await page.sign_in()
    await page.open_view("schedules")
    job_row = tid("job-row", f'[data-id="{job_id}"]')
    await page.wait_text(job_row, "pending")
    await page.screenshot("schedules")
    await page.click(f"{job_row} {tid('job-cancel')}")
    await page.wait_text(job_row, "canceled")
    assert await api.run("reminders:status", {"id": job_id}) == "canceled"


async def test_deployment_and_health_views(page: Page) -> None:
    await page.sign_in()
    await page.open_view("deployment")
    assert await page.wait_text(tid("deployment-mode"), "embedded") == "embedded"
    schema = await page.wait_text(tid("schema-table", '[data-table="notes"]'), "by_author")
    assert "author" in schema
    # The versions this data directory has run, newest first: the live one on top.
    await page.wait_visible(tid("deployment-versions"))
    live = await page.wait_text(tid("deployment-version"), "")
    rows = await page.texts(tid("deployment-version-row"))
    assert rows and rows[0].split()[0] == live
    await page.screenshot("deployment")

    await page.open_view("health")
    assert await page.wait_text(tid("health-mode"), "embedded") == "embedded"
    await page.wait_visible(tid("health-region"))
    await page.screenshot("health")


async def test_the_page_survives_a_server_restart(page: Page, server: DevServer, api: Api) -> None:
    await api.run("counters:increment", {"name": "restarts"})
    await page.sign_in()
    await page.open_table("counters")
    await page.wait_text(tid("documents-table"), "restarts")
    await page.eval("window.__notReloaded = true")

    server.stop()
    await page.wait_text(tid("connection-status"), "Reconnecting", timeout=15)
    await server.start()
    await page.wait_text(tid("connection-status"), "Live", timeout=30)

    # The table's subscription came back with the connection.
    await api.run("counters:increment", {"name": "after restart"})
    await page.wait_text(tid("documents-table"), "after restart", timeout=15)
    assert await page.eval("window.__notReloaded === true")
    await page.screenshot("after-restart")


# -- a cluster ------------------------------------------------------------------------


@pytest_asyncio.fixture(loop_scope="module")
async def cluster(artifacts: Path) -> AsyncIterator[tuple[str, str]]:
    """``syncline cluster up`` with the bank app: (gateway URL, admin key). Its services'
    logs are kept with the screenshots; whatever is left running is stopped by pid."""
    base = Path(tempfile.mkdtemp(prefix="syncline-dashboard-cluster-"))
    base.chmod(0o755)  # PostgreSQL runs as its own user under root and must enter it
    data = base / "cluster"
    try:
        code, out, err = await syncline("cluster", "up", "--app", str(BANK), "--data", str(data))
        assert code == 0, err
        lines = dict(line.split(": ", 1) for line in out.strip().splitlines())
        yield lines["gateway"], lines["admin key"]
    finally:
        logs = artifacts / "cluster-logs"
        logs.mkdir(exist_ok=True)
        for log in data.glob("*/*.log"):
            shutil.copy(log, logs / log.name)
        if (data / "cluster.json").exists():
            await syncline("cluster", "down", "--data", str(data))
            code, out, _ = await syncline("cluster", "status", "--data", str(data), "--json")
            for process in json.loads(out)["processes"] if code == 0 else []:
                if process["pid"] is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(process["pid"], signal.SIGKILL)
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.cluster
async def test_a_cluster_gateway_serves_the_dashboard(
    request: pytest.FixtureRequest,
    browser: NodeDriver,
    artifacts: Path,
    cluster: tuple[str, str],
) -> None:
    url, admin_key = cluster
    tab = await open_tab(browser, request.node.name, url, admin_key, artifacts)
    try:
        await tab.sign_in()
        await tab.open_view("health")
        assert await tab.wait_text(tid("health-mode"), "cluster") == "cluster"
        for role in ("txn", "scheduler"):
            # An elected leader, with its address and one standby (cluster up runs two).
            leader = await tab.wait_text(tid("leader-row", f'[data-role="{role}"]'), "127.0.0.1")
            assert leader.split("\t")[-1] == "1", leader
        nodes = await tab.texts(tid("node-row"))
        assert {row.split("\t")[1] for row in nodes} >= {"gateway", "sync"}, nodes
        await tab.screenshot("cluster-health")

        # Documents through the gateway, and a change arriving live.
        async with aiohttp.ClientSession() as http:
            api = Api(url, admin_key, http)
            await api.run("bank:increment", {"name": "through the gateway"})
            await tab.open_table("counters")
            await tab.wait_text(tid("documents-table"), "through the gateway")
            await api.run("bank:increment", {"name": "live from the cluster"})
            await tab.wait_text(tid("documents-table"), "live from the cluster")
        await tab.screenshot("cluster-data")
    except BaseException:
        await show_failure(tab, f"(the services' logs are in {artifacts / 'cluster-logs'})")
        raise
    finally:
        await browser.call("closePage", page=tab.name)
