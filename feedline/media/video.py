"""Inspect and render one uploaded video (MP4 or QuickTime) with PyAV: FFmpeg's libraries.

Checks, in order, each refusal a ``reason`` as for photos (``feedline.media.processing``):

* ``undecodable``: FFmpeg cannot read the container, it has no video track, or a frame
  does not decode (every frame of the video track is decoded once);
* ``truncated``: the container's index points past the end of the file (an upload cut
  short after a front-loaded index; with the index at the end, a cut file has none and is
  ``undecodable``);
* ``too_many_pixels`` / ``too_large``: the frame size, against the photo limits;
* ``too_long``: longer than ``media.max_video_seconds``;
* ``unsupported_codec``: a track the served file could not carry as it is (video other
  than ``media.video_codecs``, audio other than ``media.audio_codecs``).

A video that passes becomes three renditions: the video itself, remuxed into a new MP4
(the first video and audio tracks, their packets copied as they are, the index in front
for progressive playback) that carries none of the upload's metadata — no location, no
title, no device tags; its display rotation (a phone's portrait video) is kept, as it is
part of the picture — and its first frame, turned upright, as JPEG poster renditions the
widths of a photo's. The placeholder is the poster's dominant colour. ``width`` and
``height`` are the dimensions as displayed (rotation applied).
"""

from __future__ import annotations

import errno
import io
import os
import tempfile
from dataclasses import dataclass
from typing import Any

import av

from feedline.media.processing import (
    KIND,
    MachineError,
    RenderedImage,
    Verdict,
    rejected,
    render_photo,
    size_refused,
)
from feedline.settings import MediaSettings


def process_video(data: bytes, claimed: str, settings: MediaSettings) -> Verdict:
    """Check a video of type ``claimed``: ready with its renditions, or rejected.

    Raises ``MachineError`` when the machine, not the file, failed (a full disk for the
    remuxed copy): the worker retries the upload later.
    """
    try:
        with av.open(io.BytesIO(data), mode="r", format="mov",
                     metadata_errors="ignore") as source:
            checked = _inspect(source, data, settings)
    except av.FFmpegError as error:
        return rejected("undecodable", f"not a decodable {KIND[claimed].split(' ', 1)[1]} "
                                       f"({type(error).__name__}: {error.strerror})")
    if checked.verdict.status == "rejected":
        return checked.verdict
    try:
        playable = _remux(data, checked.tracks)
    except av.FFmpegError as error:
        if getattr(error, "errno", None) in _MACHINE_ERRORS:
            raise MachineError(error.errno, f"remuxing the video: {error.strerror}") from error
        return rejected("processing_failed", "the video could not be rewritten without its "
                                             f"metadata ({type(error).__name__}: "
                                             f"{error.strerror})")
    shown = checked.verdict
    copy = RenderedImage(shown.width or 0, shown.height or 0, "video/mp4", playable)
    return Verdict("ready", None, shown.width, shown.height, shown.duration_ms,
                   (copy, *shown.renditions), shown.placeholder)


#: FFmpeg errors that say the machine failed, not the file (retried, never recorded).
_MACHINE_ERRORS = {errno.ENOSPC, errno.EIO, errno.EMFILE, errno.ENFILE, errno.EDQUOT}


@dataclass(frozen=True, slots=True)
class _Checked:
    """What decoding found: a rejection, or the poster renditions and the tracks to keep."""

    verdict: Verdict
    tracks: tuple[int, ...] = ()


def _inspect(source: Any, data: bytes, settings: MediaSettings) -> _Checked:
    if not source.streams.video:
        return _Checked(rejected("undecodable", "the file has no video track"))
    video = source.streams.video[0]
    audio = source.streams.audio[0] if source.streams.audio else None
    for stream in (video, audio):
        if stream is not None and any(entry.pos + entry.size > len(data)
                                      for entry in stream.index_entries):
            return _Checked(rejected("truncated",
                                     "the video data ends early (an incomplete upload?)"))
    width, height = video.codec_context.width, video.codec_context.height
    refused = size_refused(width, height, settings, " per frame")
    if refused is not None:
        return _Checked(refused)
    duration_ms = _duration_ms(source, video)
    if duration_ms is None or duration_ms <= 0:
        return _Checked(rejected("undecodable", "the video has no duration"))
    limit_ms = settings.max_video_seconds * 1000
    if duration_ms > limit_ms:
        return _Checked(_too_long(duration_ms, settings))
    for stream, allowed in ((video, settings.video_codecs), (audio, settings.audio_codecs)):
        if stream is None:
            continue
        codec = stream.codec_context.codec.canonical_name  # "mp3", not its decoder "mp3float"
        if codec not in allowed:
            return _Checked(rejected("unsupported_codec", f"the {stream.type} track is "
                                                          f"{codec}; upload "
                                                          f"{' or '.join(allowed)}"))
    video.thread_type = "AUTO"
    first = None
    for frame in source.decode(video):
        if first is None:
            first = frame.to_image(), _rotation(frame)
        if (frame.width, frame.height) != (width, height):
            refused = size_refused(frame.width, frame.height, settings, " per frame")
            if refused is not None:
                return _Checked(refused)
        if frame.time is not None:  # the header's duration is the uploader's word only
            duration_ms = max(duration_ms, int(frame.time * 1000))
            if duration_ms > limit_ms:
                return _Checked(_too_long(duration_ms, settings))
    if first is None:
        return _Checked(rejected("undecodable", "no frame of the video decodes"))
    poster, rotation = first
    upright = poster.rotate(rotation, expand=True) if rotation else poster
    stills = render_photo(upright, None, settings)
    shown_width, shown_height = upright.size
    tracks = (video.index,) if audio is None else (video.index, audio.index)
    return _Checked(Verdict("ready", None, shown_width, shown_height, duration_ms,
                            stills.renditions, stills.placeholder), tracks)


def _too_long(duration_ms: int, settings: MediaSettings) -> Verdict:
    return rejected("too_long", f"{duration_ms / 1000:.1f} s is longer than the "
                                f"{settings.max_video_seconds} s allowed")


def _rotation(frame: Any) -> int:
    """The frame's display rotation in whole quarter turns (counter-clockwise degrees)."""
    try:
        degrees = float(frame.rotation or 0)
    except (TypeError, ValueError):  # a display matrix that is no rotation
        return 0
    if degrees != degrees:  # NaN
        return 0
    return (round(degrees / 90) * 90) % 360


def _duration_ms(source: Any, video: Any) -> int | None:
    if video.duration is not None and video.time_base is not None:
        return int(video.duration * video.time_base * 1000)
    if source.duration is not None:
        return int(source.duration // 1000)  # AV_TIME_BASE: microseconds
    return None


def _remux(data: bytes, tracks: tuple[int, ...]) -> bytes:
    """The tracks' packets as they are, in a new MP4 with nothing else of the upload's."""
    with tempfile.TemporaryDirectory(prefix="feedline-video-") as folder:
        path = os.path.join(folder, "video.mp4")
        # faststart rewrites the file to put the index in front: a path, not a buffer.
        with av.open(io.BytesIO(data), mode="r", format="mov",
                     metadata_errors="ignore") as source, \
                av.open(path, mode="w", format="mp4",
                        options={"movflags": "+faststart"}) as target:
            copies = {}
            for index in tracks:
                original = source.streams[index]
                copy = target.add_stream_from_template(original)
                copy.metadata.clear()
                if original.codec_context.codec.canonical_name == "hevc":
                    # Apple's players play HEVC tagged hvc1 only; the muxer would pick hev1.
                    copy.codec_context.codec_tag = original.codec_context.codec_tag
                copies[index] = copy
            for packet in source.demux([source.streams[i] for i in tracks]):
                if packet.dts is None:  # the demuxer's end-of-stream marker
                    continue
                packet.stream = copies[packet.stream.index]
                target.mux(packet)
        with open(path, "rb") as written:
            return written.read()
