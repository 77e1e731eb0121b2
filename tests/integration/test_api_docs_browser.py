"""/docs and /redoc render every operation in a real headless Chromium cut off from the internet.

The app runs in-process under uvicorn on a free 127.0.0.1 port (its stores are unreachable:
the pages need only the OpenAPI document). Chromium resolves no host but 127.0.0.1 and runs
the page on virtual time, for a budget far beyond what rendering needs: timers fire without
waiting and network loads stop the clock, so the machine's speed does not matter. Then it
dumps the DOM, and its network log shows every URL the page asked for. Chromium comes from
the Debian packages (`make system-deps` installs it); without it these tests are skipped.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from serving.main import create_app
from tests.support.unreachable import UNREACHABLE
from tests.support.waiting import HANG_GUARD_S, eventually

CHROMIUM = shutil.which("chromium")
HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (`make system-deps` installs it)")

#: Virtual milliseconds the page may run: many times what either UI needs to render.
VIRTUAL_TIME_BUDGET_MS = 60_000


@pytest.fixture(scope="module")
def origin() -> Iterator[str]:
    """The app served by uvicorn in a thread of this process, on a free local port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(UNREACHABLE), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()

    def serving() -> bool:
        assert thread.is_alive(), "uvicorn stopped before it started serving"
        return server.started

    eventually(serving, "uvicorn to serve the app", every_s=0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join()
        sock.close()


@pytest.fixture(scope="module")
def operations(origin: str) -> list[dict[str, Any]]:
    """Every operation of the app's OpenAPI document, with its method and path."""
    spec = httpx.get(f"{origin}/openapi.json").raise_for_status().json()
    found = [{**operation, "method": method, "path": path}
             for path, methods in spec["paths"].items()
             for method, operation in methods.items()]
    assert ("get", "/v1/feed") in {(o["method"], o["path"]) for o in found}
    return found


@dataclass
class Visit:
    """What Chromium made of one page: the DOM it rendered and the URLs the page requested."""

    dom: str
    requested: list[str]


def visit(origin: str, page: str, scratch: Path) -> Visit:
    """Open ``page`` of ``origin`` in headless Chromium, every host but 127.0.0.1 unresolvable."""
    assert CHROMIUM is not None
    net_log = scratch / "net-log.json"
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={scratch / 'profile'}",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        f"--log-net-log={net_log}", f"--virtual-time-budget={VIRTUAL_TIME_BUDGET_MS}",
        "--dump-dom", origin + page,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=HANG_GUARD_S,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return Visit(dom=done.stdout,
                 requested=page_requests(json.loads(net_log.read_text()), origin))


def page_requests(net_log: dict[str, Any], origin: str) -> list[str]:
    """URLs the page of ``origin`` asked for (its scripts, style sheets, images, fetches).

    Their initiator is the page's origin, whatever host they go to; Chromium's own requests
    (update checks, accounts, autofill) have none.
    """
    start_job = net_log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    starts = [event.get("params", {}) for event in net_log["events"]
              if event["type"] == start_job]
    return [params["url"] for params in starts if params.get("initiator") == origin]


class _Dom(HTMLParser):
    """Swagger UI's operation blocks (method, path) and the text of every ``h2`` and the
    ``data-section-id`` of every element (ReDoc's operation sections)."""

    def __init__(self) -> None:
        super().__init__()
        self.opblocks: list[tuple[str, str]] = []
        self.section_ids: list[str] = []
        self.h2_texts: list[str] = []
        self._method: str | None = None
        self._h2: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        classes = (attributes.get("class") or "").split()
        if tag == "div" and "opblock" in classes:
            self._method = next((c.removeprefix("opblock-") for c in classes
                                 if c.removeprefix("opblock-") in HTTP_METHODS), None)
        if "opblock-summary-path" in classes and self._method is not None:
            self.opblocks.append((self._method, attributes.get("data-path") or ""))
            self._method = None
        if attributes.get("data-section-id"):
            self.section_ids.append(attributes["data-section-id"] or "")
        if tag == "h2":
            self._h2 = []

    def handle_data(self, data: str) -> None:
        if self._h2 is not None:
            self._h2.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "h2" and self._h2 is not None:
            self.h2_texts.append("".join(self._h2).strip())
            self._h2 = None


def parse(dom: str) -> _Dom:
    parser = _Dom()
    parser.feed(dom)
    return parser


def assert_only_own_requests(page: Visit, origin: str, expected: set[str]) -> None:
    elsewhere = [url for url in page.requested if not url.startswith(origin + "/")]
    assert not elsewhere, f"the page asked another host for {elsewhere}"
    assert expected <= set(page.requested), (
        f"the network log lacks {expected - set(page.requested)}: {page.requested}")


def test_swagger_ui_renders_every_operation_offline(origin: str, operations: list[dict],
                                                    tmp_path: Path) -> None:
    page = visit(origin, "/docs", tmp_path)
    rendered = parse(page.dom).opblocks
    assert sorted(rendered) == sorted((o["method"], o["path"]) for o in operations), page.dom[
        -3000:]
    assert_only_own_requests(page, origin, {
        f"{origin}/openapi.json", f"{origin}/docs/assets/swagger-ui-bundle.js",
        f"{origin}/docs/assets/swagger-ui.css"})


def test_redoc_renders_every_operation_offline(origin: str, operations: list[dict],
                                               tmp_path: Path) -> None:
    page = visit(origin, "/redoc", tmp_path)
    dom = parse(page.dom)
    sections = {s.rsplit("/operation/", 1)[1] for s in dom.section_ids if "/operation/" in s}
    assert sections == {o["operationId"] for o in operations}, page.dom[-3000:]
    for operation in operations:
        assert operation["summary"] in dom.h2_texts, operation["summary"]
    assert_only_own_requests(page, origin, {
        f"{origin}/openapi.json", f"{origin}/docs/assets/redoc.standalone.js"})
