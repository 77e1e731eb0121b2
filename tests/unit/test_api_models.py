from __future__ import annotations

from datetime import UTC, datetime
from typing import get_args

import pytest
from pydantic import ValidationError

from feedline.rules.effects import MediaRef, Rendition
from feedline.settings import StorageSettings
from feedline.stores.feed_items import PostView
from feedline.stores.media_store import MediaUrls, public_url
from schemas.event_contracts import latest_version, load_schema
from serving.models import (
    ContentType,
    MediaCreate,
    PostCreate,
    PostOut,
    post_json,
    rfc3339_ms,
)


def test_content_types_equal_the_event_schema_enum() -> None:
    schema = load_schema("post_created", latest_version("post_created"))
    enum = schema["properties"]["media"]["items"]["properties"]["content_type"]["enum"]
    assert set(get_args(ContentType)) == set(enum)


def test_caption_limit_matches_the_event_schema() -> None:
    schema = load_schema("post_created", latest_version("post_created"))
    limit = schema["properties"]["caption"]["maxLength"]
    PostCreate(caption="é" * limit, media_ids=["m1"])
    with pytest.raises(ValidationError, match="caption"):
        PostCreate(caption="x" * (limit + 1), media_ids=["m1"])


@pytest.mark.parametrize("body", [
    {"media_ids": []},
    {"media_ids": [f"m{n}" for n in range(11)]},
    {"media_ids": ["bad id"]},
    {"media_ids": ["m1"], "location": "Paris"},
])
def test_post_create_refuses(body: dict) -> None:
    with pytest.raises(ValidationError):
        PostCreate(**body)


def test_media_create_refuses_unknown_types_and_fields() -> None:
    with pytest.raises(ValidationError):
        MediaCreate(content_type="image/gif", bytes=10)
    with pytest.raises(ValidationError):
        MediaCreate(content_type="image/png", bytes=0)
    with pytest.raises(ValidationError):
        MediaCreate.model_validate({"content_type": "image/png", "bytes": 5, "name": "x"})


@pytest.mark.parametrize("ms", [0, 1, 999, 1_700_000_000_000, 1_700_000_000_999,
                                1_795_224_342_123])
def test_rfc3339_ms(ms: int) -> None:
    text = rfc3339_ms(ms)
    assert text.endswith("Z") and len(text) == 24
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert parsed == datetime.fromtimestamp(ms // 1000, UTC).replace(
        microsecond=(ms % 1000) * 1000)


def test_post_json_shape() -> None:
    described = MediaRef("m2", "image/jpeg", "gs://b/r/m2/7/w1080.jpg", 1600, 1200, None,
                         (Rendition("gs://b/r/m2/7/w1080.jpg", 1080, 810, "image/jpeg"),
                          Rendition("gs://b/r/m2/7/w320.jpg", 320, 240, "image/jpeg")),
                         "#102030")
    view = PostView("p1", "u1", "hi", (MediaRef("m1", "image/png", "gs://b/media/m1"), described),
                    1_700_000_000_000, likes=3, comments=1)
    body = post_json(view, lambda uri: "https://cdn/" + uri[5:])
    assert body == {
        "post_id": "p1", "author_id": "u1", "caption": "hi",
        "media": [
            # posted before media metadata (a post_created v1 event): nothing is known
            {"media_id": "m1", "content_type": "image/png", "url": "https://cdn/b/media/m1",
             "width": None, "height": None, "duration_ms": None, "renditions": [],
             "placeholder": None},
            {"media_id": "m2", "content_type": "image/jpeg",
             "url": "https://cdn/b/r/m2/7/w1080.jpg", "width": 1600, "height": 1200,
             "duration_ms": None,
             "renditions": [
                 {"url": "https://cdn/b/r/m2/7/w1080.jpg", "width": 1080, "height": 810,
                  "content_type": "image/jpeg"},
                 {"url": "https://cdn/b/r/m2/7/w320.jpg", "width": 320, "height": 240,
                  "content_type": "image/jpeg"}],
             "placeholder": "#102030"}],
        "created_at": "2023-11-14T22:13:20.000Z", "likes": 3, "comments": 1}
    assert PostOut.model_validate(body).model_dump() == body  # the documented model, exactly


def test_public_media_urls() -> None:
    emulator = StorageSettings(emulator_host="http://127.0.0.1:9023")
    real = StorageSettings(emulator_host=None)
    uri = "gs://feedline-media/media/m1"
    assert public_url(uri, emulator, None) == "http://127.0.0.1:9023/feedline-media/media/m1"
    assert public_url(uri, real, None) == "https://storage.googleapis.com/feedline-media/media/m1"
    assert public_url(uri, real, "https://cdn.example/") == "https://cdn.example/media/m1"


@pytest.mark.parametrize("base", [None, "https://cdn.example"])
@pytest.mark.parametrize("emulator", [None, "http://127.0.0.1:9023"])
@pytest.mark.parametrize("uri", ["gs://feedline-media/media/m1", "gs://other/x/y",
                                 "https://elsewhere/z"])
def test_media_url_fast_path_equals_public_url(base: str | None, emulator: str | None,
                                               uri: str) -> None:
    storage = StorageSettings(emulator_host=emulator)
    assert MediaUrls(storage, base)(uri) == public_url(uri, storage, base)
