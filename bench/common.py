"""What the benchmarks share: progress lines, percentiles, the JSON they print and write,
the stack's API as a client."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from feedline.settings import ApiSettings, get_stack_settings
from serving.auth import issue_token


def say(message: str) -> None:
    """Progress on stderr."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile (``share`` in 0..1)."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(share * len(ordered)) - 1))]


def emit(results: dict[str, Any], out: Path | None) -> int:
    """Print the results as JSON, and write them to ``out`` when given; exit code 0."""
    text = json.dumps(results, indent=2)
    print(text)
    if out:
        out.write_text(text + "\n")
    return 0


class StackApi:
    """The running stack's API as its clients use it, each call made as a given user."""

    def __init__(self, api: ApiSettings | None = None) -> None:
        self.api = api or get_stack_settings().api
        self.base_url = f"http://{self.api.host}:{self.api.port}"
        self.http = httpx.Client(base_url=self.base_url, timeout=60)

    def headers(self, user: str) -> dict[str, str]:
        """A bearer token of ``user``."""
        token = issue_token(self.api.jwt_secret, user, ttl_s=3600, issuer=self.api.jwt_issuer,
                            audience=self.api.jwt_audience)
        return {"Authorization": f"Bearer {token}"}

    def call(self, method: str, path: str, user: str, **kwargs: Any) -> Any:
        """The JSON answer; a RuntimeError for any answer but a success."""
        answer = self.http.request(method, path, headers=self.headers(user), **kwargs)
        if answer.status_code >= 300:
            raise RuntimeError(f"{method} {path}: {answer.status_code} {answer.text[:200]}")
        return answer.json()

    def upload(self, user: str, data: bytes, content_type: str = "image/jpeg") -> str:
        """Announce and PUT a file; its media id (not completed yet)."""
        body = self.call("POST", "/v1/media", user,
                         json={"content_type": content_type, "bytes": len(data)})
        httpx.put(body["upload_url"], content=data, headers=body["upload_headers"],
                  timeout=60).raise_for_status()
        return str(body["media_id"])

    def complete(self, user: str, media_id: str) -> None:
        """``POST /v1/media/{id}/complete``."""
        self.call("POST", f"/v1/media/{media_id}/complete", user)

    def wait_ready(self, user: str, media_id: str, *, timeout_s: float = 300,
                   poll_s: float = 0.02) -> None:
        """Poll ``GET /v1/media/{id}`` until it is no longer processing; it must be ready."""
        deadline = time.monotonic() + timeout_s
        while (status := self.call("GET", f"/v1/media/{media_id}", user)["status"]) \
                == "processing":
            if time.monotonic() > deadline:
                raise RuntimeError(f"{media_id} still processing after {timeout_s} s")
            time.sleep(poll_s)
        if status != "ready":
            raise RuntimeError(f"{media_id} is {status}")
