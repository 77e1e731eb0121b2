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

import io
import os
import tempfile
from typing import Any

import av

from feedline.media.processing import KIND, RenderedImage, Verdict, rejected, render_photo
from feedline.settings import MediaSettings

#: Types this module reads (one FFmpeg demuxer reads both).
VIDEO_TYPES = ("video/mp4", "video/quicktime")


def process_video(data: bytes, claimed: str, settings: MediaSettings) -> Verdict:
    """Check a video of type ``claimed``: ready with its renditions, or rejected."""
    try:
        with av.open(io.BytesIO(data), mode="r", format="mov",
                     metadata_errors="ignore") as source:
            return _inspect(source, data, settings)
    except av.FFmpegError as error:
        return rejected("undecodable", f"not a decodable {KIND[claimed].split(' ', 1)[1]} "
                                       f"({type(error).__name__}: {error.strerror})")


def _inspect(source: Any, data: bytes, settings: MediaSettings) -> Verdict:
    if not source.streams.video:
        return rejected("undecodable", "the file has no video track")
    video = source.streams.video[0]
    audio = source.streams.audio[0] if source.streams.audio else None
    for stream in (video, audio):
        if stream is not None and any(entry.pos + entry.size > len(data)
                                      for entry in stream.index_entries):
            return rejected("truncated", "the video data ends early (an incomplete upload?)")
    width, height = video.codec_context.width, video.codec_context.height
    if width < 1 or height < 1:
        return rejected("undecodable", f"{width}x{height} has no pixels")
    if width * height > settings.max_pixels:
        return rejected("too_many_pixels", f"{width}x{height} is {width * height} pixels "
                                           f"per frame, more than the {settings.max_pixels} "
                                           "allowed")
    if max(width, height) > settings.max_side:
        return rejected("too_large", f"{width}x{height} has a side over {settings.max_side} px")
    duration_ms = _duration_ms(source, video)
    if duration_ms is None or duration_ms <= 0:
        return rejected("undecodable", "the video has no duration")
    if duration_ms > settings.max_video_seconds * 1000:
        return rejected("too_long", f"{duration_ms / 1000:.1f} s is longer than the "
                                    f"{settings.max_video_seconds} s allowed")
    codec = video.codec_context.name
    if codec not in settings.video_codecs:
        return rejected("unsupported_codec", f"the video track is {codec}; upload "
                                             f"{' or '.join(settings.video_codecs)}")
    if audio is not None and audio.codec_context.name not in settings.audio_codecs:
        return rejected("unsupported_codec", f"the audio track is {audio.codec_context.name};"
                                             f" upload {' or '.join(settings.audio_codecs)}")
    video.thread_type = "AUTO"
    first = None
    frames = 0
    for frame in source.decode(video):
        if first is None:
            first = frame.to_image(), int(frame.rotation or 0)
        frames += 1
    if first is None:
        return rejected("undecodable", "no frame of the video decodes")
    poster, rotation = first
    upright = poster.rotate(rotation, expand=True) if rotation % 360 else poster
    stills = render_photo(upright, None, settings)
    shown_width, shown_height = upright.size
    playable = RenderedImage(shown_width, shown_height, "video/mp4",
                             _remux(data, video.index, None if audio is None else audio.index))
    return Verdict("ready", None, shown_width, shown_height, duration_ms,
                   (playable, *stills.renditions), stills.placeholder)


def _duration_ms(source: Any, video: Any) -> int | None:
    if video.duration is not None and video.time_base is not None:
        return int(video.duration * video.time_base * 1000)
    if source.duration is not None:
        return int(source.duration // 1000)  # AV_TIME_BASE: microseconds
    return None


def _remux(data: bytes, video_index: int, audio_index: int | None) -> bytes:
    """The tracks' packets as they are, in a new MP4 with nothing else of the upload's."""
    wanted = [video_index] if audio_index is None else [video_index, audio_index]
    with tempfile.TemporaryDirectory(prefix="feedline-video-") as folder:
        path = os.path.join(folder, "video.mp4")
        # faststart rewrites the file to put the index in front: a path, not a buffer.
        with av.open(io.BytesIO(data), mode="r", format="mov",
                     metadata_errors="ignore") as source, \
                av.open(path, mode="w", format="mp4",
                        options={"movflags": "+faststart"}) as target:
            copies = {}
            for index in wanted:
                copy = target.add_stream_from_template(source.streams[index])
                copy.metadata.clear()
                copies[index] = copy
            for packet in source.demux([source.streams[i] for i in wanted]):
                if packet.dts is None:  # the demuxer's end-of-stream marker
                    continue
                packet.stream = copies[packet.stream.index]
                target.mux(packet)
        with open(path, "rb") as written:
            return written.read()

