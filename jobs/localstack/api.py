"""The feedline HTTP API (uvicorn running ``serving.main:create_app``) on the local stack."""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from collections.abc import Mapping

from jobs.localstack.base import Service
from jobs.localstack.redis_server import guards_url

#: uvicorn's HTTP protocol with a size limit and a receipt deadline on request heads.
HTTP_PROTOCOL = "serving.http_protocol:GuardedHttpToolsProtocol"

#: Settings blocks the API reads, handed to it so it serves exactly the stack's endpoints.
_BLOCKS = ("kafka", "cql", "redis", "storage", "feed", "api")


class ApiService(Service):
    """uvicorn with ``api.workers`` worker processes on ``api.host:api.port``."""

    name = "api"

    def endpoint(self) -> str:
        """Base URL of the API."""
        api = self.settings.api
        return f"http://{api.host}:{api.port}"

    def marker(self) -> str:
        """The app factory and port on uvicorn's command line."""
        return f"serving.main:create_app --factory --host {self.settings.api.host} " \
               f"--port {self.settings.api.port}"

    def prepare(self) -> None:
        """Empty the multi-process metrics folder (samples of earlier runs are stale)."""
        metrics = self.home / "metrics"
        metrics.mkdir(parents=True, exist_ok=True)
        for stale in metrics.glob("*.db"):
            stale.unlink()

    def command(self) -> tuple[list[str], Mapping[str, str]]:
        """The uvicorn command line; the settings are passed as JSON, one block each."""
        api = self.settings.api
        argv = [sys.executable, "-m", "uvicorn", "serving.main:create_app", "--factory",
                "--host", api.host, "--port", str(api.port), "--workers", str(api.workers),
                "--no-access-log", "--timeout-graceful-shutdown", "10"]
        blocks = {block: getattr(self.settings, block) for block in _BLOCKS}
        # The guards live in the stack's non-evicting Redis (unless configured elsewhere).
        blocks["redis"] = blocks["redis"].model_copy(
            update={"guards_url": guards_url(self.settings)})
        env = {f"FEEDLINE_{block.upper()}": settings.model_dump_json()
               for block, settings in blocks.items()}
        env["FEEDLINE_ENVIRONMENT"] = self.settings.environment
        env["PROMETHEUS_MULTIPROC_DIR"] = str(self.home / "metrics")
        # uvicorn's --http, read from its environment: limits on each request head.
        env["UVICORN_HTTP"] = HTTP_PROTOCOL
        return argv, env

    def healthy(self) -> bool:
        """GET /healthz answers 200."""
        try:
            with urllib.request.urlopen(f"{self.endpoint()}/healthz", timeout=2) as r:  # noqa: S310
                return bool(r.status == 200)
        except (urllib.error.URLError, OSError):
            return False
