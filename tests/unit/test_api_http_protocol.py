"""The request-head limits of ``serving.http_protocol``, on a real uvicorn (slowloris, huge
headers). The server runs the app with every dependency unreachable: only the protocol,
``/healthz`` and the 401 of a protected route are exercised."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator

import pytest

from feedline.settings import REPO_ROOT
from jobs.localstack.base import free_port
from tests.support.waiting import eventually

PROTOCOL = "serving.http_protocol:GuardedHttpToolsProtocol"
MAX_HEADER_BYTES = 8192


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FEEDLINE_", "UVICORN_"))}
    env.update({
        "PYTHONPATH": str(REPO_ROOT), "UVICORN_HTTP": PROTOCOL,
        "FEEDLINE_ENVIRONMENT": "test",
        "FEEDLINE_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:1",
        "FEEDLINE_REDIS__URL": "redis://127.0.0.1:1/0", "FEEDLINE_CQL__PORT": "1",
        "FEEDLINE_STORAGE__EMULATOR_HOST": "http://127.0.0.1:1",
        "FEEDLINE_API__MAX_HEADER_BYTES": str(MAX_HEADER_BYTES),
        "FEEDLINE_API__HEADER_TIMEOUT_S": "1", "FEEDLINE_API__GC_FREEZE": "false",
    })
    cwd = tmp_path_factory.mktemp("api")  # no .env
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "serving.main:create_app", "--factory",
         "--host", "127.0.0.1", "--port", str(port), "--no-access-log"],
        env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def up() -> bool:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return True
        except OSError:
            return False

    try:
        eventually(up, timeout_s=60, what="the API with the guarded protocol answers")
        yield "127.0.0.1", port
    finally:
        process.terminate()
        process.wait(timeout=30)


def exchange(address: tuple[str, int], *chunks: bytes) -> bytes:
    """Send ``chunks``, then read until the server closes the connection."""
    with socket.create_connection(address, timeout=60) as conn:
        for chunk in chunks:
            conn.sendall(chunk)
        received = b""
        while data := conn.recv(65536):
            received += data
        return received


def request(path: str, *headers: str, body: bytes = b"", method: str = "GET",
            close: bool = True) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: t", *headers]
    if body:
        lines += [f"Content-Length: {len(body)}", "Content-Type: application/json"]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def status_codes(raw: bytes) -> list[int]:
    """Status of each response (a status line may follow the previous body directly)."""
    return [int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", raw)]


def test_ordinary_requests_pass_including_kept_alive_ones(server: tuple[str, int]) -> None:
    raw = exchange(server, request("/healthz", close=False), request("/healthz"))
    assert status_codes(raw) == [200, 200]


def test_a_body_arriving_with_the_head_is_not_counted_as_head(server: tuple[str, int]) -> None:
    body = b'{"caption": "' + b"x" * (6 * MAX_HEADER_BYTES) + b'"}'
    raw = exchange(server, request("/v1/posts", method="POST", body=body))
    assert status_codes(raw) == [401]  # reached the app (no token), not refused as 431


def test_a_head_over_the_limit_gets_431_and_the_connection_closes(
        server: tuple[str, int]) -> None:
    raw = exchange(server, request("/healthz", "X-Padding: " + "a" * (2 * MAX_HEADER_BYTES)))
    assert status_codes(raw) == [431]
    assert b"application/problem+json" in raw and b"header-too-large" in raw


def test_many_small_headers_add_up(server: tuple[str, int]) -> None:
    headers = [f"X-H{i}: {'b' * 60}" for i in range(2 * MAX_HEADER_BYTES // 60)]
    assert status_codes(exchange(server, request("/healthz", *headers))) == [431]


def test_a_head_that_never_completes_gets_408_and_the_connection_closes(
        server: tuple[str, int]) -> None:
    # Half a head, then silence: the server, not this client, ends the connection.
    raw = exchange(server, b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: a")
    assert status_codes(raw) == [408]
    assert b"request-timeout" in raw


def test_a_silent_connection_is_closed(server: tuple[str, int]) -> None:
    assert status_codes(exchange(server)) == [408]


def test_a_slow_head_on_a_kept_alive_connection_is_cut_too(server: tuple[str, int]) -> None:
    raw = exchange(server, request("/healthz", close=False), b"GET /healthz HTTP/1.1\r\nHo")
    assert status_codes(raw) == [200, 408]
