"""Fault injection on the local stack: the API in-process, traffic through it, a frozen service.

``InProcessApi`` runs the app under uvicorn on a free loopback port; ``Traffic`` drives
writer, keyed-writer, reader and ``/readyz`` threads through it and records every answer;
``freeze`` sends SIGSTOP to one of the stack's services (pid from ``services()``) and
always SIGCONT (``tests/support/kills.py`` kills one). Set ``FAULTS_EVENT_LOG`` to a file
path to have each fault appended to it before and after (UTC time, service, pid), for
stacks shared with other users.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, Self

import httpx
import uvicorn

from feedline.settings import ServingSettings, StackSettings
from jobs.localstack.stack import services
from serving.auth import issue_token
from serving.main import create_app
from serving.responses import DEGRADED_HEADER
from tests.integration.test_api_stack import consume
from tests.support.reference import Expected
from tests.support.waiting import eventually

WRITERS = 3
#: Posts per feed page the readers ask for: every feed of the fault tests fits in one.
PAGE = 100


@dataclass(frozen=True)
class Answer:
    """One HTTP exchange: when it started and ended (monotonic), and what came back."""

    started: float
    ended: float
    status: int
    retry_after: str | None
    body: Any
    label: str = ""
    """Whose request it was: the reader's user, or the keyed writer's Idempotency-Key."""
    degraded: str | None = None
    """The ``X-Feed-Degraded`` header."""


def auth(settings: ServingSettings, user_id: str) -> dict[str, str]:
    """Headers of a request made by ``user_id``."""
    return {"Authorization": f"Bearer {issue_token(settings.api.jwt_secret, user_id, ttl_s=600)}"}


def exchange(client: httpx.Client, method: str, url: str,
             headers: dict[str, str] | None = None, label: str = "") -> Answer:
    """One request, timed and recorded (status 0: the connection failed)."""
    started = time.monotonic()
    try:
        response = client.request(method, url, headers=headers)
    except httpx.TransportError:  # no server (killed, restarting): status 0
        return Answer(started, time.monotonic(), 0, None, None, label)
    body = response.json() if response.content else None
    return Answer(started, time.monotonic(), response.status_code,
                  response.headers.get("retry-after"), body, label,
                  response.headers.get(DEGRADED_HEADER))


def feed_items(answer: Answer) -> list[tuple[str, int, int]]:
    """(post_id, likes, comments) of a feed page, in order."""
    return [(i["post_id"], i["likes"], i["comments"]) for i in answer.body["items"]]


def expected_feed(expected: Expected, user: str) -> list[tuple[str, int, int]]:
    """The reference home feed of ``user``: its timeline plus the live posts of the
    celebrities it follows, newest first, with their counters."""
    entries = dict(expected.timelines.get(user, {}))
    followed = expected.followed_celebrities.get(user, set())
    entries.update({post: created for post, (author, created) in expected.live_posts.items()
                    if author in followed})
    ordered = sorted(entries.items(), key=lambda e: (e[1], e[0]), reverse=True)
    return [(post, *expected.post_counters.get(post, (0, 0))) for post, _created in ordered]


class InProcessApi:
    """The app under uvicorn in a thread, on a free 127.0.0.1 port."""

    def __init__(self, settings: ServingSettings) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        config = uvicorn.Config(create_app(settings), log_config=None, access_log=False,
                                lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run,
                                       kwargs={"sockets": [self.socket]}, daemon=True)

    def __enter__(self) -> InProcessApi:
        self.thread.start()
        eventually(lambda: self.server.started, "the in-process API to start", timeout_s=60)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(60)
        self.socket.close()


class ApiEndpoint(Protocol):
    """Where an API answers: ``InProcessApi``, or a server of the stack."""

    @property
    def url(self) -> str: ...


class ApiThreads:
    """Threads driving an in-process API until ``stop``, one of them polling ``/readyz``
    every 0.5 s; a ``with`` block starts them and stops and joins them at its end."""

    def __init__(self, api: ApiEndpoint, settings: ServingSettings) -> None:
        self.api = api
        self.settings = settings
        self.stop = threading.Event()
        self.readiness: list[Answer] = []
        self.threads = [threading.Thread(target=self._poll_readiness, daemon=True)]

    def spawn(self, target: Callable[[int], None], count: int) -> None:
        """Add ``count`` threads running ``target(n)``."""
        self.threads += [threading.Thread(target=target, args=(n,), daemon=True)
                         for n in range(count)]

    def _client(self) -> httpx.Client:
        return httpx.Client(base_url=self.api.url, timeout=60)

    def _poll_readiness(self) -> None:
        with self._client() as client:
            while not self.stop.is_set():
                self.readiness.append(exchange(client, "GET", "/readyz"))
                self.stop.wait(0.5)

    def __enter__(self) -> Self:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(120)


class Traffic(ApiThreads):
    """Threads driving the API, recording every answer.

    ``writers`` make follows without an Idempotency-Key; ``keyed_writers`` make follows
    with one and retry a 5xx with the same key until it is answered otherwise (or the
    traffic stops); ``readers`` read home feeds of the users in ``read_users`` in turn
    (the list may grow while they run); one thread polls ``/readyz`` every 0.5 s.
    """

    def __init__(self, api: ApiEndpoint, settings: ServingSettings, writers: int = WRITERS,
                 *, keyed_writers: int = 0, readers: int = 0,
                 read_users: Iterable[str] = (), tag: str = "") -> None:
        super().__init__(api, settings)
        self.tag = tag
        """Part of every followee's name: unique names on topics other runs wrote to."""
        self.writes: list[Answer] = []
        self.keyed: list[Answer] = []
        self.reads: list[Answer] = []
        self.read_users = list(read_users)
        self.spawn(self._write, writers)
        self.spawn(self._write_keyed, keyed_writers)
        self.spawn(self._read, readers)

    def _write(self, writer: int) -> None:
        user = f"writer{writer}"
        with self._client() as client:
            n = 0
            while not self.stop.is_set():
                n += 1
                self.writes.append(exchange(
                    client, "PUT", f"/v1/users/followee{self.tag}{writer}-{n}/follow",
                    auth(self.settings, user)))
                self.stop.wait(0.1)

    def _write_keyed(self, writer: int) -> None:
        user = f"keyed{writer}"
        with self._client() as client:
            n = 0
            while not self.stop.is_set():
                n += 1
                key = f"key{self.tag}{writer}-{n}"
                headers = {**auth(self.settings, user), "Idempotency-Key": key}
                while not self.stop.is_set():
                    answer = exchange(client, "PUT",
                                      f"/v1/users/kfollowee{self.tag}{writer}-{n}/follow",
                                      headers, label=key)
                    self.keyed.append(answer)
                    if 0 < answer.status < 500:
                        break
                    self.stop.wait(0.2)  # the client retries with the same key
                self.stop.wait(0.1)

    def _read(self, reader: int) -> None:
        with self._client() as client:
            n = reader
            while not self.stop.is_set():
                users = self.read_users
                if users:
                    user = users[n % len(users)]
                    self.reads.append(exchange(client, "GET", f"/v1/feed?limit={PAGE}",
                                               auth(self.settings, user), label=user))
                n += 1
                self.stop.wait(0.1)

    def wait_flowing(self, timeout_s: float) -> None:
        """Wait until writes are accepted, reads answered and /readyz ready (before a fault)."""
        start = time.monotonic()
        eventually(lambda: self.accepted_after(start) and self.ready_after(start)
                   and any(a.started > start for a in list(self.reads)),
                   "writes, reads and /readyz answering before the freeze",
                   timeout_s=timeout_s, detail=self.summary)

    def accepted_after(self, moment: float) -> Answer | None:
        return next((a for a in list(self.writes) if a.status == 202 and a.started > moment),
                    None)

    def ready_after(self, moment: float) -> Answer | None:
        return next((a for a in list(self.readiness)
                     if a.status == 200 and a.started > moment), None)

    def summary(self) -> str:
        def count(answers: Sequence[Answer]) -> dict[str, int]:
            return dict(Counter(f"{a.status}{'/' + a.degraded if a.degraded else ''}"
                                for a in answers))
        return (f"writes {count(self.writes)}, keyed writes {count(self.keyed)}, "
                f"reads {count(self.reads)}, /readyz {count(self.readiness)}")


def read_feeds_twice(api: InProcessApi, settings: ServingSettings, users: Iterable[str],
                     want: Mapping[str, list[tuple[str, int, int]]]) -> list[Answer]:
    """Read each user's whole feed twice (the first read caches it), each time equal to
    ``want[user]``; returns each user's second answer."""
    second = []
    with httpx.Client(base_url=api.url, timeout=60) as client:
        for user in users:
            for _ in range(2):
                answer = exchange(client, "GET", f"/v1/feed?limit={PAGE}", auth(settings, user))
                assert answer.status == 200 and answer.body["next_cursor"] is None
                got = feed_items(answer)
                assert got == want[user], f"{user}: served {got}, reference {want[user]}"
            second.append(answer)
    return second


def assert_readiness_down_while_frozen(traffic: Traffic, fault: Freeze, dependency: str) -> None:
    """/readyz told the truth: ``dependency`` down on every poll while frozen, and every
    answer a status per dependency, never a reason."""
    frozen_polls = [a for a in traffic.readiness if fault.during(a)]
    assert frozen_polls and all(down_in(a, dependency) for a in frozen_polls), traffic.summary()
    assert all(set(a.body["checks"].values()) <= {"ok", "down"} for a in traffic.readiness)


def in_kafka_exactly_once(settings: ServingSettings, topic: str,
                          accepted: Iterable[Answer]) -> list[dict[str, Any]]:
    """Every accepted write's event is in ``topic`` and no event is there twice; returns the
    topic's events (read once, to its end offset)."""
    events = [event for _key, event in consume(settings, topic)]
    produced = Counter(event["event_id"] for event in events)
    missing = [a.body["event_id"] for a in accepted if produced[a.body["event_id"]] == 0]
    assert not missing, f"{len(missing)} writes answered 202 are not in Kafka"
    assert max(produced.values()) == 1, "an event is in Kafka more than once"
    return events


def down_in(answer: Answer, dependency: str) -> bool:
    """A /readyz answer saying ``dependency`` is not ready."""
    return answer.status == 503 and dependency in answer.body["down"]


def service_pid(stack: StackSettings, name: str) -> int:
    """The pid of one of the stack's running services."""
    service = next(s for s in services(stack) if s.name == name)
    pid = service.process.pid()
    assert pid is not None, f"the stack's {name} is not running"
    return pid


def note(message: str) -> None:
    path = os.environ.get("FAULTS_EVENT_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as log:
            log.write(f"{datetime.now(UTC):%H:%M:%S} faults: {message}\n")


@dataclass(frozen=True)
class Freeze:
    """When a service was stopped and resumed (monotonic)."""

    service: str
    frozen_at: float
    thawed_at: float

    def during(self, answer: Answer) -> bool:
        """The exchange happened wholly while the service was frozen."""
        return answer.started > self.frozen_at and answer.ended < self.thawed_at

    @property
    def seconds(self) -> float:
        return self.thawed_at - self.frozen_at


def freeze(stack: StackSettings, name: str, *, min_s: float, max_s: float,
           seen: Callable[[float], bool] = lambda _frozen_at: True,
           on_frozen: Callable[[], object] = lambda: None, group: bool = False) -> Freeze:
    """SIGSTOP the service ``name`` (its whole process group with ``group``: a server and
    its workers); SIGCONT once ``seen(frozen_at)`` holds and ``min_s`` passed, or after
    ``max_s`` whatever happens (always, even on an error)."""
    pid = service_pid(stack, name)
    print(f"\nfreezing {name} (pid {pid}) for {min_s:.0f}-{max_s:.0f} s")
    note(f"freezing {name} (SIGSTOP {'group' if group else 'pid'} {pid}) "
         f"{min_s:.0f}-{max_s:.0f} s")
    frozen_at = time.monotonic()
    send = (lambda sig: os.killpg(pid, sig)) if group else (lambda sig: os.kill(pid, sig))
    send(signal.SIGSTOP)
    try:
        on_frozen()
        while time.monotonic() < frozen_at + max_s and not (
                time.monotonic() >= frozen_at + min_s and seen(frozen_at)):
            time.sleep(0.2)
    finally:
        send(signal.SIGCONT)
        thawed_at = time.monotonic()
        note(f"{name} resumed (SIGCONT pid {pid}) after {thawed_at - frozen_at:.1f} s")
    print(f"{name} resumed after {thawed_at - frozen_at:.1f} s frozen")
    return Freeze(name, frozen_at, thawed_at)
