"""The media worker's checks and renditions on plain bytes (Pillow, no services)."""

from __future__ import annotations

import io
import os

import pytest
from PIL import Image

from feedline.media.processing import process, sniff
from feedline.settings import MediaSettings
from tests.support.media import RED, carries_metadata, has_gps, mp4, photo, png, png_bomb, truncated

SETTINGS = MediaSettings()


def code(reason: str | None) -> str:
    assert reason is not None
    return reason.split(":", 1)[0]


def test_a_photo_becomes_two_renditions_without_its_metadata() -> None:
    original = photo(1600, 1200)
    assert has_gps(original) and carries_metadata(original)  # the input really has them
    verdict = process(original, "image/jpeg", SETTINGS)
    assert verdict.status == "ready" and verdict.reason is None
    assert (verdict.width, verdict.height) == (1600, 1200)
    assert [(r.width, r.height, r.content_type) for r in verdict.renditions] == [
        (1080, 810, "image/jpeg"), (320, 240, "image/jpeg")]
    for rendition in verdict.renditions:
        assert carries_metadata(rendition.data) == []
        with Image.open(io.BytesIO(rendition.data)) as decoded:
            assert decoded.size == (rendition.width, rendition.height)
            assert decoded.format == "JPEG"
    # The dominant colour is the photo's red (JPEG moves it a little).
    assert verdict.placeholder is not None
    found = tuple(int(verdict.placeholder[i:i + 2], 16) for i in (1, 3, 5))
    assert all(abs(a - b) <= 12 for a, b in zip(found, RED, strict=True)), verdict.placeholder


def test_the_exif_orientation_is_applied_before_it_is_dropped() -> None:
    # Orientation 6: the camera was turned; the pixels are stored 1600 wide, shown 1200 wide.
    verdict = process(photo(1600, 1200, orientation=6), "image/jpeg", SETTINGS)
    assert (verdict.width, verdict.height) == (1200, 1600)
    assert (verdict.renditions[0].width, verdict.renditions[0].height) == (1080, 1440)


def test_a_small_photo_is_never_enlarged() -> None:
    verdict = process(photo(300, 200, gps=False), "image/jpeg", SETTINGS)
    assert [(r.width, r.height) for r in verdict.renditions] == [(300, 200)]


def test_transparency_keeps_png_renditions() -> None:
    verdict = process(png(400, 300, alpha=True), "image/png", SETTINGS)
    assert verdict.status == "ready"
    assert [(r.width, r.content_type) for r in verdict.renditions] == [
        (400, "image/png"), (320, "image/png")]
    opaque = process(png(400, 300), "image/png", SETTINGS)
    assert {r.content_type for r in opaque.renditions} == {"image/jpeg"}


@pytest.mark.parametrize(("data", "claimed", "expected"), [
    (os.urandom(4096), "image/jpeg", "wrong_type"),
    (png(), "image/jpeg", "wrong_type"),
    (truncated(photo()), "image/jpeg", "truncated"),
    (b"", "image/jpeg", "empty"),
    (png_bomb(), "image/png", "too_many_pixels"),
    (mp4(), "image/jpeg", "wrong_type"),
    (mp4(), "video/mp4", "unsupported_type"),
    (b"\xff\xd8\xff" + b"\x00" * 2048, "image/jpeg", "undecodable"),
], ids=["random-bytes-as-jpeg", "png-as-jpeg", "truncated-jpeg", "zero-bytes",
        "30000x30000-bomb", "mp4-as-photo", "video", "jpeg-magic-then-noise"])
def test_bad_input_is_rejected_with_its_reason(data: bytes, claimed: str,
                                               expected: str) -> None:
    verdict = process(data, claimed, SETTINGS)
    assert verdict.status == "rejected"
    assert code(verdict.reason) == expected, verdict.reason
    assert verdict.renditions == () and verdict.width is None


def test_the_bomb_is_refused_from_its_header_with_its_size() -> None:
    bomb = png_bomb()
    assert len(bomb) < 10_000
    verdict = process(bomb, "image/png", SETTINGS)
    assert "900000000 pixels" in (verdict.reason or "")  # 30000 x 30000, read from the header


def test_the_limits_come_from_the_settings() -> None:
    strict = MediaSettings(max_pixels=1000 * 1000, max_side=1500)
    assert code(process(photo(1600, 1200), "image/jpeg", strict).reason) == "too_many_pixels"
    assert code(process(photo(1600, 500), "image/jpeg", strict).reason) == "too_large"
    assert process(photo(1400, 500), "image/jpeg", strict).status == "ready"


def test_reasons_name_what_the_file_is() -> None:
    verdict = process(png(), "image/jpeg", SETTINGS)
    assert verdict.reason == "wrong_type: the file is a PNG image, announced as image/jpeg"


def test_sniffing_knows_the_announceable_types() -> None:
    assert sniff(photo(50, 50)) == "image/jpeg"
    assert sniff(png(50, 50)) == "image/png"
    assert sniff(mp4()) == "video/mp4"
    assert sniff(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "image/webp"
    assert sniff(b"\x00\x00\x00\x18ftypheic") == "image/heic"
    assert sniff(b"\x00\x00\x00\x14ftypqt  ") == "video/quicktime"
    assert sniff(b"hello") is None


def test_processing_is_deterministic() -> None:
    original = photo(900, 700)
    first, again = (process(original, "image/jpeg", SETTINGS) for _ in range(2))
    assert [r.data for r in first.renditions] == [r.data for r in again.renditions]
    assert first.placeholder == again.placeholder
