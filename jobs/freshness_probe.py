"""The freshness probe: how long a post takes to reach a follower's home feed, watched always.

``python -m jobs.freshness_probe`` acts, through the API like any client, as two synthetic
accounts: ``probe-author`` (posts) and ``probe-follower`` (follows the author, reads its home
feed). Every ``--interval`` seconds the author posts (one small PNG, uploaded once and
shown by every probe post), the follower polls its feed until the post is there, and the
time from the post's request to its first sighting goes into the histogram
``feedline_freshness_seconds``; then the author deletes the post. A post not seen within
``--timeout`` counts in ``feedline_freshness_probe_failures_total{reason="timeout"}``; a
request the API refuses in ``{reason="api"}``.

The probe accounts are ordinary users: nothing excludes them from counters, feeds, the
archive or rebuilds; their user ids say what they are. ``/metrics`` is served on
``monitoring.freshness_probe_port`` (the local stack runs the probe as a helper service).
"""

from __future__ import annotations

import argparse
import json
import logging
import struct
import sys
import time
import urllib.error
import urllib.request
import uuid
import zlib
from collections.abc import Callable, Sequence
from typing import Any

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from feedline.cli import stop_on_signals
from feedline.logs import configure_logging
from feedline.settings import ServingSettings, settings_errors_exit
from serving.auth import issue_token

log = logging.getLogger(__name__)

PROBE_AUTHOR = "probe-author"
PROBE_FOLLOWER = "probe-follower"


def _png_1x1() -> bytes:
    """A valid 1x1 grey PNG (signature, IHDR, IDAT, IEND), built rather than pasted."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)  # 8-bit greyscale
    pixels = zlib.compress(b"\x00\x80")  # filter byte 0, one grey pixel
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels)
            + chunk(b"IEND", b""))


#: The media every probe post shows.
PROBE_PNG = _png_1x1()

FRESHNESS = Histogram("feedline_freshness_seconds",
                      "Time from a probe post's request until it is in the follower's feed.",
                      buckets=(0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0,
                               60.0, 120.0))
FAILURES = Counter("feedline_freshness_probe_failures",
                   "Probe rounds without a measurement.", ["reason"])
LAST_SUCCESS = Gauge("feedline_freshness_probe_last_success_timestamp_seconds",
                     "When a probe post was last seen in the follower's feed (Unix time).")


class ProbeError(RuntimeError):
    """The API refused (``status``) or could not answer (no status) a probe request."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ApiClient:
    """The few API calls the probe makes, as one user or the other (JSON over urllib)."""

    def __init__(self, base_url: str, tokens: dict[str, str], timeout_s: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.tokens = tokens
        self.timeout_s = timeout_s

    def call(self, method: str, path: str, user: str, body: Any = None) -> Any:
        """The JSON answer of one request; `ProbeError` on a status >= 400 or no answer."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 (the API's own URL)
            f"{self.base_url}{path}", data=data, method=method,
            headers={"Authorization": f"Bearer {self.tokens[user]}",
                     "Content-Type": "application/json",
                     "Idempotency-Key": uuid.uuid4().hex,
                     "X-Request-ID": f"freshness-probe-{uuid.uuid4().hex[:12]}"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310
                raw = response.read()
        except urllib.error.HTTPError as error:
            raise ProbeError(f"{method} {path}: {error.code} {error.read()[:300]!r}",
                             error.code) from None
        except (urllib.error.URLError, OSError) as error:
            raise ProbeError(f"{method} {path}: {error}") from None
        return json.loads(raw) if raw else None

    def upload(self, url: str, headers: dict[str, str], payload: bytes) -> None:
        """PUT a file to its signed upload URL."""
        request = urllib.request.Request(url, data=payload, method="PUT",  # noqa: S310
                                         headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s):  # noqa: S310
                pass
        except (urllib.error.URLError, OSError) as error:
            raise ProbeError(f"upload: {error}") from None


class FreshnessProbe:
    """One author, one follower: post, watch the feed, delete."""

    def __init__(self, client: ApiClient, *, timeout_s: float = 120.0, poll_s: float = 0.2,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], object] = time.sleep) -> None:
        self.client = client
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self.clock = clock
        self.sleep = sleep
        self.media_id: str | None = None

    def setup(self) -> None:
        """The follower follows the author; the author uploads the probe image once."""
        self.client.call("PUT", f"/v1/users/{PROBE_AUTHOR}/follow", PROBE_FOLLOWER)
        upload = self.client.call("POST", "/v1/media", PROBE_AUTHOR,
                                  {"content_type": "image/png", "bytes": len(PROBE_PNG)})
        self.client.upload(upload["upload_url"], upload.get("upload_headers") or {}, PROBE_PNG)
        # An API whose media are processed before use wants the upload marked complete (the
        # posts then answer 409 until it is ready: those rounds count as failed); an API
        # without that step has no such route.
        try:
            self.client.call("POST", f"/v1/media/{upload['media_id']}/complete", PROBE_AUTHOR)
        except ProbeError as error:
            if error.status not in (404, 405):
                raise
        self.media_id = upload["media_id"]

    def seen(self, post_id: str) -> bool:
        """Whether the post is on the first page of the follower's home feed."""
        page = self.client.call("GET", "/v1/feed?limit=20", PROBE_FOLLOWER)
        return any(item.get("post_id") == post_id for item in page.get("items", []))

    def once(self) -> float | None:
        """One round: the seconds until the post was seen, or None (a failure, counted)."""
        try:
            if self.media_id is None:
                self.setup()
            began = self.clock()
            accepted = self.client.call("POST", "/v1/posts", PROBE_AUTHOR,
                                        {"caption": "freshness probe",
                                         "media_ids": [self.media_id]})
            post_id = accepted["post_id"]
            try:
                took = self._watch(post_id, began)
            finally:
                self._delete(post_id)
        except ProbeError as error:
            FAILURES.labels("api").inc()
            log.warning("probe round failed: %s", error)
            return None
        if took is None:
            FAILURES.labels("timeout").inc()
            log.warning("post not in the follower's feed after %.0f s", self.timeout_s)
            return None
        FRESHNESS.observe(took)
        LAST_SUCCESS.set_to_current_time()
        return took

    def _watch(self, post_id: str, began: float) -> float | None:
        while not self.seen(post_id):
            if self.clock() - began > self.timeout_s:
                return None
            self.sleep(self.poll_s)
        return self.clock() - began

    def _delete(self, post_id: str) -> None:
        """Retract the probe post (a failure is logged: the next round goes on)."""
        try:
            self.client.call("DELETE", f"/v1/posts/{post_id}", PROBE_AUTHOR)
        except ProbeError as error:
            log.warning("could not delete probe post %s: %s", post_id, error)


def probe_tokens(settings: ServingSettings, ttl_s: int) -> dict[str, str]:
    """Tokens of both probe accounts, signed with the API's secret."""
    api = settings.api
    return {user: issue_token(api.jwt_secret, user, ttl_s=ttl_s, issuer=api.jwt_issuer,
                              audience=api.jwt_audience)
            for user in (PROBE_AUTHOR, PROBE_FOLLOWER)}


def run(argv: Sequence[str] | None = None) -> int:
    """Probe every ``--interval`` seconds until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m jobs.freshness_probe", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--api-url", help="the API (default: http://api.host:api.port)")
    parser.add_argument("--interval", type=float, default=30.0, help="seconds between posts")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds to wait for a post in the feed")
    parser.add_argument("--host", default="127.0.0.1", help="address of /metrics")
    parser.add_argument("--port", type=int, required=True, help="port of /metrics")
    args = parser.parse_args(argv)
    configure_logging("freshness-probe")
    with settings_errors_exit("python -m jobs.freshness_probe"):
        settings = ServingSettings()
    api_url = args.api_url or f"http://{settings.api.host}:{settings.api.port}"
    ttl_s = min(settings.api.jwt_max_lifetime_s, 24 * 3600)
    start_http_server(args.port, addr=args.host)
    stopping = stop_on_signals()
    log.info("probing %s every %.0f s; /metrics on %s:%d", api_url, args.interval, args.host,
             args.port)
    minted = time.monotonic()
    probe = FreshnessProbe(ApiClient(api_url, probe_tokens(settings, ttl_s)),
                           timeout_s=args.timeout)
    while not stopping.is_set():
        if time.monotonic() - minted > ttl_s / 2:  # fresh tokens long before they expire
            probe.client.tokens = probe_tokens(settings, ttl_s)
            minted = time.monotonic()
        took = probe.once()
        if took is not None:
            log.info("freshness %.2f s", took)
        stopping.wait(args.interval)
    return 0


if __name__ == "__main__":
    sys.exit(run())
