"""The media worker's checks and renditions on plain bytes (Pillow, no services)."""

from __future__ import annotations

import io
import os

import pytest
from PIL import Image

from feedline.media.processing import process, sniff
from feedline.settings import MediaSettings
from tests.support.media import (
    RED,
    VIDEO_LOCATION,
    carries_metadata,
    has_gps,
    mp4,
    photo,
    png,
    png_bomb,
    shorter_header,
    truncated,
    video,
    video_facts,
)

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
    (mp4(), "video/mp4", "undecodable"),
    (truncated(video(), 0.7), "video/mp4", "truncated"),
    (truncated(video(index_first=False), 0.9), "video/mp4", "undecodable"),
    (os.urandom(4096), "video/mp4", "wrong_type"),
    (photo(), "video/mp4", "wrong_type"),
    (video(codec="mpeg4"), "video/mp4", "unsupported_codec"),
    (b"\x00\x00\x00\x18ftypheic" + os.urandom(64), "image/heic", "unsupported_type"),
    (b"\xff\xd8\xff" + b"\x00" * 2048, "image/jpeg", "undecodable"),
], ids=["random-bytes-as-jpeg", "png-as-jpeg", "truncated-jpeg", "zero-bytes",
        "30000x30000-bomb", "mp4-as-photo", "mp4-header-only", "video-cut-index-first",
        "video-cut-index-last", "random-bytes-as-mp4", "jpeg-as-mp4", "mpeg4-part2-video",
        "heic", "jpeg-magic-then-noise"])
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


def test_a_video_becomes_a_playable_copy_and_a_poster_without_its_metadata() -> None:
    original = video(640, 360, seconds=2.0)
    assert VIDEO_LOCATION in str(video_facts(original)["tags"])  # the input really has it
    verdict = process(original, "video/mp4", SETTINGS)
    assert verdict.status == "ready", verdict.reason
    assert (verdict.width, verdict.height, verdict.duration_ms) == (640, 360, 2000)
    assert [(r.width, r.height, r.content_type) for r in verdict.renditions] == [
        (640, 360, "video/mp4"), (640, 360, "image/jpeg"), (320, 180, "image/jpeg")]
    playable = verdict.renditions[0].data
    served, uploaded = video_facts(playable), video_facts(original)
    assert served["frames"] == uploaded["frames"] == 50
    assert served["tracks"] == ["audio", "video"] and served["codecs"] == ["aac", "h264"]
    assert not {"location", "title"} & {k.split("-")[0] for k in served["tags"]}
    assert not any(k.startswith("com.apple") for k in served["tags"])
    assert VIDEO_LOCATION.encode() not in playable and b"taken at home" not in playable
    assert playable.index(b"moov") < playable.index(b"mdat")  # plays while it downloads
    for poster in verdict.renditions[1:]:
        assert carries_metadata(poster.data) == []
        with Image.open(io.BytesIO(poster.data)) as decoded:
            assert decoded.size == (poster.width, poster.height)
            assert decoded.getpixel((3, 3)) > (230, 230, 230)  # the white square, top left
    assert verdict.placeholder is not None
    found = tuple(int(verdict.placeholder[i:i + 2], 16) for i in (1, 3, 5))
    assert all(abs(a - b) <= 16 for a, b in zip(found, RED, strict=True)), verdict.placeholder


def test_a_portrait_video_is_measured_and_postered_as_shown() -> None:
    # Stored 640x360 and turned clockwise for display, as a phone held upright records.
    verdict = process(video(640, 360, rotation=-90, audio=False), "video/mp4", SETTINGS)
    assert (verdict.width, verdict.height) == (360, 640)
    assert [(r.width, r.height) for r in verdict.renditions] == [(360, 640), (360, 640),
                                                                 (320, 569)]
    served = video_facts(verdict.renditions[0].data)
    assert served["rotation"] == -90 and served["size"] == (640, 360)  # the player turns it
    assert served["tracks"] == ["video"]
    with Image.open(io.BytesIO(verdict.renditions[1].data)) as poster:
        # The white square was top left as stored; turned clockwise it is top right.
        assert poster.getpixel((poster.width - 4, 3)) > (230, 230, 230)
        assert poster.getpixel((3, 3)) < (230, 100, 100)


def test_a_quicktime_video_is_served_as_mp4() -> None:
    original = video(container="mov")
    assert original[4:12] == b"ftypqt  "
    verdict = process(original, "video/quicktime", SETTINGS)
    assert verdict.status == "ready", verdict.reason
    assert verdict.renditions[0].content_type == "video/mp4"
    assert verdict.renditions[0].data[4:8] == b"ftyp"
    assert verdict.renditions[0].suffix == "mp4"


def test_the_video_limits_come_from_the_settings() -> None:
    clip = video(640, 360, seconds=2.0, audio=False)
    short = MediaSettings(max_video_seconds=1)
    assert process(clip, "video/mp4", short).reason == (
        "too_long: 2.0 s is longer than the 1 s allowed")
    assert code(process(clip, "video/mp4", MediaSettings(max_side=600)).reason) == "too_large"
    assert code(process(clip, "video/mp4",
                        MediaSettings(max_pixels=640 * 300)).reason) == "too_many_pixels"
    assert code(process(clip, "video/mp4",
                        MediaSettings(video_codecs=("hevc",))).reason) == "unsupported_codec"
    assert process(clip, "video/mp4", MediaSettings(max_video_seconds=2)).status == "ready"


def test_video_processing_is_deterministic() -> None:
    clip = video(audio=True)
    first, again = (process(clip, "video/mp4", SETTINGS) for _ in range(2))
    assert [r.data for r in first.renditions] == [r.data for r in again.renditions]


def test_phone_codecs_are_served_as_phones_play_them() -> None:
    """MP3 sound is MP3 (its decoder is called mp3float); HEVC keeps the hvc1 tag Apple's
    players need (the muxer would pick hev1)."""
    with_mp3 = process(video(audio_codec="libmp3lame"), "video/mp4", SETTINGS)
    assert with_mp3.status == "ready", with_mp3.reason
    assert video_facts(with_mp3.renditions[0].data)["codecs"] == ["h264", "mp3"]
    hevc = video(codec="libx265", tag="hvc1", audio=False, seconds=0.4)
    assert video_facts(hevc)["video_tag"] == "hvc1"
    served = process(hevc, "video/mp4", SETTINGS)
    assert served.status == "ready", served.reason
    facts = video_facts(served.renditions[0].data)
    assert (facts["codecs"], facts["video_tag"], facts["frames"]) == (["hevc"], "hvc1", 10)


def test_a_header_that_understates_the_duration_is_caught_by_the_frames() -> None:
    liar = shorter_header(video(seconds=3.0, audio=False), 10)
    assert code(process(liar, "video/mp4", MediaSettings(max_video_seconds=2)).reason) \
        == "too_long"
    honest = process(liar, "video/mp4", SETTINGS)
    assert honest.status == "ready" and honest.duration_ms is not None
    assert honest.duration_ms >= 2900  # from the frames, not the 0.3 s the header claims
