"""A small client of Toxiproxy's HTTP API, and the server started as a process.

Toxiproxy (built by ``make toxiproxy`` into ``<state dir>/bin/toxiproxy-server``) forwards
TCP from a listen address to an upstream and applies "toxics" on the way: latency,
bandwidth, connection resets. Tests put one proxy between the API and each store and add
toxics to their own proxies only; the stores themselves are never touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from jobs.localstack.base import free_port
from tests.support.waiting import eventually

#: Where ``make toxiproxy`` puts the server, below the stack's state directory.
SERVER_IN_STATE_DIR = Path("bin") / "toxiproxy-server"


def server_binary(state_dir: Path) -> Path | None:
    """TOXIPROXY_SERVER, else the state directory's build, else one on PATH."""
    for candidate in (os.environ.get("TOXIPROXY_SERVER"), state_dir / SERVER_IN_STATE_DIR,
                      shutil.which("toxiproxy-server")):
        if candidate and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


class Proxy:
    """One proxy: ``listen`` (host:port) forwards to its upstream."""

    def __init__(self, api: httpx.Client, name: str, listen: str) -> None:
        self.api, self.name, self.listen = api, name, listen

    @property
    def port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])

    def add(self, toxic: str, kind: str, stream: str = "downstream",
            **attributes: Any) -> None:
        """Add a toxic (``latency``, ``bandwidth``, ``reset_peer`` ...) named ``toxic``."""
        response = self.api.post(f"/proxies/{self.name}/toxics", json={
            "name": toxic, "type": kind, "stream": stream, "toxicity": 1.0,
            "attributes": attributes})
        response.raise_for_status()

    def remove(self, toxic: str) -> None:
        self.api.delete(f"/proxies/{self.name}/toxics/{toxic}").raise_for_status()

    def enable(self, enabled: bool = True) -> None:
        """Accept connections again (``enabled=False``: close every connection it carries
        and refuse new ones, as a host gone from the network would)."""
        self.api.post(f"/proxies/{self.name}", json={"enabled": enabled}).raise_for_status()

    def clear(self) -> None:
        """Remove every toxic of this proxy."""
        for toxic in self.api.get(f"/proxies/{self.name}/toxics").json():
            self.remove(toxic["name"])

    @contextmanager
    def toxic(self, kind: str, stream: str = "downstream", **attributes: Any) -> Iterator[None]:
        """The toxic applied for the ``with`` block, removed after whatever happens."""
        name = f"{kind}_{stream}"
        self.add(name, kind, stream, **attributes)
        try:
            yield
        finally:
            self.remove(name)


class Toxiproxy:
    """A toxiproxy-server process on 127.0.0.1, driven through its HTTP API."""

    def __init__(self, binary: Path, log_path: Path) -> None:
        self.port = free_port()
        self.api = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=10)
        self.log = log_path.open("ab")
        self.process = subprocess.Popen(
            [str(binary), "-host", "127.0.0.1", "-port", str(self.port)],
            stdout=self.log, stderr=subprocess.STDOUT)
        eventually(self._answers, "toxiproxy-server to answer", timeout_s=60, every_s=0.2)

    def _answers(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"toxiproxy-server exited with {self.process.returncode}")
        try:
            return self.api.get("/version").status_code == 200
        except httpx.TransportError:
            return False

    def proxy(self, name: str, upstream: str) -> Proxy:
        """A new proxy to ``upstream`` on a free loopback port."""
        listen = f"127.0.0.1:{free_port()}"
        self.api.post("/proxies", json={"name": name, "listen": listen, "upstream": upstream,
                                        "enabled": True}).raise_for_status()
        return Proxy(self.api, name, listen)

    def stop(self) -> None:
        """Stop the server (by its own pid) and close the client."""
        self.api.close()
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.log.close()
