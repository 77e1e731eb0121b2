"""The GCS emulator killed (SIGKILL) or frozen (SIGSTOP) while clients upload media and
post it through the API.

The app runs in-process (``tests/support/faults.py``) on this test's topics and keyspace,
against the stack's emulator and media bucket. Uploader threads announce an upload
(``POST /v1/media``), PUT the bytes to the signed URL and post it (``POST /v1/posts`` with an
Idempotency-Key, retried with the same key on a 5xx); ``/readyz`` is polled throughout. The
emulator is killed once; the stack's supervisor (``jobs/localstack/supervise.py``) must
restart it with no manual step, within ``RECOVERY_BOUND_S``; or frozen for ``FREEZE_S``, and
uploads must succeed again within the same bound after SIGCONT. Afterwards: uploads and posts
succeed again, every object uploaded before the kill is still there byte for byte (the
emulator keeps its files on disk), every post answered 202 is in Kafka exactly once and
names an object holding exactly the bytes uploaded, and a retried key produced at most one
event. Object storage is not a readiness dependency (feeds are served without it): /readyz
must stay ready.

It kills the shared stack's emulator: other users of the stack see it down for a few seconds.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
import pytest

from feedline.settings import ServingSettings, StackSettings
from feedline.stores.media_store import object_name
from feedline.stores.object_store import storage_client
from tests.support.faults import (
    Answer,
    ApiThreads,
    InProcessApi,
    auth,
    freeze,
    in_kafka_exactly_once,
)
from tests.support.kills import kill, supervised_service
from tests.support.media import photo, processed_inline, remove_media
from tests.support.waiting import eventually

pytestmark = [pytest.mark.faults, pytest.mark.integration]

#: The stated recovery bound: from SIGKILL to an upload posted again.
RECOVERY_BOUND_S = 60.0
#: How long the frozen emulator stays stopped.
FREEZE_S = 20.0
UPLOADERS = 2
PHOTO = photo(64, 48)  # a real JPEG: with a suffix after its end it still decodes


@dataclass
class Upload:
    """One client's upload-and-post attempt: its steps' answers (status 0: no connection)."""

    user: str
    key: str
    content: bytes
    started: float
    media_id: str | None = None
    put_status: int = 0
    put_ended: float = 0.0
    posts: list[Answer] = field(default_factory=list)


class Uploaders(ApiThreads):
    """Threads uploading media and posting it; a /readyz poller."""

    def __init__(self, api: InProcessApi, settings: ServingSettings,
                 uploads: list[Upload]) -> None:
        super().__init__(api, settings)
        self.uploads = uploads
        self.spawn(self._upload, UPLOADERS)

    def _upload(self, uploader: int) -> None:
        user = f"uploader{uploader}"
        headers = auth(self.settings, user)
        with self._client() as client:
            n = 0
            while not self.stop.is_set():
                n += 1
                content = PHOTO + f"{user}-{n}".encode()
                upload = Upload(user, f"{user}-{n}", content, time.monotonic())
                self.uploads.append(upload)
                announced = client.post("/v1/media", headers=headers, json={
                    "content_type": "image/jpeg", "bytes": len(content)})
                assert announced.status_code == 201, announced.text
                media = announced.json()
                upload.media_id = media["media_id"]
                try:
                    put = httpx.put(media["upload_url"], content=content,
                                    headers=media["upload_headers"], timeout=30)
                    upload.put_status = put.status_code
                except httpx.TransportError:
                    upload.put_status = 0  # the emulator is down: this upload is given up
                upload.put_ended = time.monotonic()
                if upload.put_status == 200 and not self._processed(upload.media_id):
                    upload.put_status = 0  # the emulator went down meanwhile: given up
                if upload.put_status != 200:
                    self.stop.wait(0.2)
                    continue
                keyed = {**headers, "Idempotency-Key": upload.key}
                while not self.stop.is_set():
                    started = time.monotonic()
                    response = client.post("/v1/posts", headers=keyed, json={
                        "caption": upload.key, "media_ids": [upload.media_id]})
                    upload.posts.append(Answer(
                        started, time.monotonic(), response.status_code,
                        response.headers.get("retry-after"), response.json(), upload.key))
                    if response.status_code < 500:
                        break
                    self.stop.wait(0.5)  # the client retries with the same key
                self.stop.wait(0.2)

    def _processed(self, media_id: str) -> bool:
        """Made ready as the media worker would (in this thread, no topic): a post needs it."""
        try:
            return processed_inline(self.settings, media_id) == "ready"
        except Exception:  # object storage is down
            return False

    def posted_after(self, moment: float) -> Upload | None:
        return next((u for u in list(self.uploads) if u.started > moment
                     and any(a.status == 202 for a in u.posts)), None)

    def summary(self) -> str:
        puts = Counter(u.put_status for u in self.uploads)
        posts = Counter(a.status for u in self.uploads for a in u.posts)
        ready = Counter(a.status for a in self.readiness)
        return f"PUTs {dict(puts)}, posts {dict(posts)}, /readyz {dict(ready)}"


@pytest.mark.parametrize("fault", ["kill", "freeze"])
def test_uploads_and_posts_recover_after_the_gcs_emulator_is_killed_or_frozen(
        freeze_settings: ServingSettings, stack: StackSettings, fault: str) -> None:
    supervised_service(stack, "gcs")  # skips when nothing would restart it
    settings = freeze_settings
    bucket = storage_client(settings.storage).bucket(settings.storage.media_bucket)
    uploads: list[Upload] = []
    try:
        with InProcessApi(settings) as api, Uploaders(api, settings, uploads) as traffic:
            start = time.monotonic()
            eventually(lambda: traffic.posted_after(start), "a post with media before the kill",
                       timeout_s=RECOVERY_BOUND_S, detail=traffic.summary)
            if fault == "kill":
                killed = kill(stack, "gcs", timeout_s=RECOVERY_BOUND_S,
                              detail=traffic.summary)
                killed_at, back_at = killed.killed_at, killed.back_at
            else:
                frozen = freeze(stack, "gcs", min_s=FREEZE_S, max_s=FREEZE_S, group=True)
                killed_at, back_at = frozen.frozen_at, frozen.thawed_at
            posted = eventually(lambda: traffic.posted_after(back_at),
                                "an upload posted after the restart",
                                timeout_s=RECOVERY_BOUND_S, detail=traffic.summary)
            eventually(lambda: sum(u.started > posted.started and u.put_status == 200
                                   for u in list(traffic.uploads)) >= 5,
                       "uploads succeeding steadily after the restart",
                       timeout_s=RECOVERY_BOUND_S, detail=traffic.summary)
        print(f"emulator ({fault}) back {back_at - killed_at:.1f} s after the fault; first upload "
              f"posted {max(a.ended for a in posted.posts) - killed_at:.1f} s after it; "
              f"{traffic.summary()}")

        # Uploads refused while it was down (or none in that window); no other failure.
        assert all(u.put_status in (0, 200) for u in traffic.uploads), traffic.summary()
        assert any(u.put_status == 200 and u.put_ended < killed_at for u in traffic.uploads)
        for upload in traffic.uploads:
            assert all(a.status in (202, 503, 504) for a in upload.posts), upload
        # Storage is not a readiness dependency: /readyz stayed ready throughout.
        assert all(a.status == 200 for a in traffic.readiness), traffic.summary()

        # Every uploaded object is there byte for byte, the ones from before the kill too.
        uploaded = [u for u in traffic.uploads if u.put_status == 200]
        for upload in uploaded:
            assert upload.media_id is not None
            blob = bucket.blob(object_name(upload.media_id))
            assert blob.download_as_bytes() == upload.content, upload.key

        # Every post answered 202 is in Kafka exactly once; a retried key made one event.
        events = in_kafka_exactly_once(settings, settings.kafka.uploads_topic,
                                       [a for u in uploaded for a in u.posts if a.status == 202])
        per_caption = Counter(e["caption"] for e in events)
        assert max(per_caption.values()) == 1, "a retried key produced two posts"
        by_id = {e["event_id"]: e for e in events}
        for upload in uploaded:
            accepted = [a for a in upload.posts if a.status == 202]
            assert len({a.body["event_id"] for a in accepted}) <= 1, upload
            for answer in accepted:
                event = by_id[answer.body["event_id"]]
                assert [m["media_id"] for m in event["media"]] == [upload.media_id]
    finally:
        remove_media(settings, [u.media_id for u in uploads if u.media_id is not None])
