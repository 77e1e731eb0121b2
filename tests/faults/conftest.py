"""Fixtures of the fault tests: the real stack (tests/support/fixtures.py), an API on the
test's own topics, keyspace and key prefix, and a small seeded feed world."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from feedline.settings import ApiSettings, ServingSettings, StackSettings
from schemas.event_contracts import Event
from tests.integration import test_api_stack
from tests.integration.test_api_stack import FEED, Seeder
from tests.support.fixtures import *  # noqa: F403
from tests.support.reference import Expected, reference_for
from tests.support.toxiproxy import Toxiproxy, server_binary

api_settings = test_api_stack.api_settings  # this test's topics, keyspace and key prefix
seeder = test_api_stack.seeder  # the streaming jobs' rules and writer, on the same stores


@pytest.fixture(scope="session")
def toxiproxy(stack: StackSettings,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[Toxiproxy]:
    """toxiproxy-server on a free loopback port for the session, stopped by its pid."""
    binary = server_binary(stack.local.state_dir)
    if binary is None:
        pytest.fail("toxiproxy-server not found: run `make toxiproxy` (or set TOXIPROXY_SERVER)")
    server = Toxiproxy(binary, tmp_path_factory.mktemp("toxiproxy") / "server.log")
    yield server
    server.stop()


@pytest.fixture
def freeze_settings(api_settings: ServingSettings) -> ServingSettings:
    """The API with its default timeouts (Kafka, Redis, CQL, Retry-After)."""
    return api_settings.model_copy(update={"api": ApiSettings(
        rate_limit_per_minute=100_000, celebrity_cache_s=0, gc_freeze=False,
        access_log=False)})


@dataclass
class RecordingSeeder(Seeder):
    """A seeder that keeps every event it applied."""

    events: list[Event] = field(default_factory=list)

    def apply(self, event: Event) -> Event:
        self.events.append(event)
        return super().apply(event)


@dataclass(frozen=True)
class World:
    """Seeded stores: the events applied, the reference computed from them, the readers."""

    events: list[Event]
    expected: Expected
    readers: list[str]
    star_only: str
    """The reader who follows the celebrity alone: an empty timeline, so the API reads
    that feed from the CQL store whatever Redis holds (``FeedReader``)."""


#: Readers: each follows one or two of the authors (none of them a celebrity: at most
#: ``celebrity_threshold`` followers each), every other one the celebrity too.
READERS = [f"reader{n}" for n in range(8)]
AUTHORS = [f"author{n}" for n in range(4)]
CELEBRITY = "star"
STAR_ONLY = "reader8"


@pytest.fixture
def world(seeder: Seeder) -> World:
    """Follows, posts (one celebrity's among them), deletes, likes and comments applied to
    the test's stores with the streaming jobs' rules and writer; nothing cached in Redis
    but what the writer itself keeps (post hashes, counters)."""
    seeding = RecordingSeeder(seeder.writer, seeder.engine)
    for n, reader in enumerate(READERS):
        seeding.follow(reader, AUTHORS[n % 4])
        if n in (0, 2):
            seeding.follow(reader, AUTHORS[n + 1])
    fans = [f"fan{n}" for n in range(FEED.celebrity_threshold)]
    for reader in [*READERS[::2], STAR_ONLY, *fans]:
        seeding.follow(reader, CELEBRITY)
    posts: list[tuple[str, str]] = []
    for round_ in range(3):
        for author in [*AUTHORS, CELEBRITY]:
            post_id = f"p-{author}-{round_}"
            seeding.post(author, post_id)
            posts.append((author, post_id))
    for author, post_id in posts[1::7]:
        seeding.delete(author, post_id)
    live = [p for _a, p in posts if p in seeding.live]
    for n, post_id in enumerate(live):
        for liker in READERS[: n % 4]:
            seeding.like(liker, post_id)
        if n % 3 == 0:
            seeding.comment(READERS[n % len(READERS)], post_id, f"c-{post_id}")
    expected = reference_for(seeding.events, FEED)
    assert expected.celebrities == {CELEBRITY} and expected.deleted_posts
    assert not expected.timelines.get(STAR_ONLY)
    return World(seeding.events, expected, [*READERS, STAR_ONLY], STAR_ONLY)
