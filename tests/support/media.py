"""Files for the media tests, made with Pillow (real photos, and the bad inputs of issue 14)."""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

import httpx
from PIL import ExifTags, Image, ImageDraw

from feedline.media.messages import MediaUploaded
from feedline.media.worker import MediaWorker
from feedline.settings import ServingSettings
from feedline.stores.media_store import object_name
from feedline.stores.object_store import storage_client
from serving.auth import issue_token

#: Where the test photos claim they were taken (a GPS location that must never be served).
LATITUDE = (52.0, 22.0, 12.5)
LONGITUDE = (4.0, 53.0, 30.0)
RED = (200, 40, 40)


def photo(width: int = 1600, height: int = 1200, *, gps: bool = True,
          orientation: int | None = None, colour: tuple[int, int, int] = RED) -> bytes:
    """A JPEG mostly of ``colour`` with some detail, EXIF with a GPS location and a camera."""
    image = Image.new("RGB", (width, height), colour)
    draw = ImageDraw.Draw(image)
    for step in range(0, min(width, height) // 4, 16):
        draw.rectangle((step, step, step + 8, step + 8), fill=(30, 30 + step % 200, 160))
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "FeedlineCam"
    exif[ExifTags.Base.Model] = "Test 1"
    if orientation is not None:
        exif[ExifTags.Base.Orientation] = orientation
    if gps:
        location = exif.get_ifd(ExifTags.IFD.GPSInfo)
        location[ExifTags.GPS.GPSLatitudeRef] = "N"
        location[ExifTags.GPS.GPSLatitude] = LATITUDE
        location[ExifTags.GPS.GPSLongitudeRef] = "E"
        location[ExifTags.GPS.GPSLongitude] = LONGITUDE
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90, exif=exif, comment=b"taken at home")
    return buffer.getvalue()


def has_gps(data: bytes) -> bool:
    """The file carries a GPS location in its EXIF."""
    with Image.open(io.BytesIO(data)) as image:
        return bool(image.getexif().get_ifd(ExifTags.IFD.GPSInfo))


def carries_metadata(data: bytes) -> list[str]:
    """What metadata a served file still carries (empty: none but a colour profile)."""
    found = []
    with Image.open(io.BytesIO(data)) as image:
        if image.getexif():
            found.append("exif")
        found += [key for key in ("exif", "xmp", "comment", "photoshop") if key in image.info]
    if b"Exif\x00\x00" in data:
        found.append("an Exif segment")
    return found


def png(width: int = 400, height: int = 300, *, alpha: bool = False) -> bytes:
    """A PNG, with a transparent half when ``alpha``."""
    image = Image.new("RGBA" if alpha else "RGB", (width, height), (20, 120, 220))
    if alpha:
        ImageDraw.Draw(image).rectangle((0, 0, width // 2, height), fill=(0, 0, 0, 0))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(
        ">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def png_bomb(width: int = 30_000, height: int = 30_000) -> bytes:
    """A few hundred bytes claiming ``width`` x ``height`` RGB pixels (a decompression bomb).

    The header is valid; the data is one compressed row, so decoding would run out long
    before the promised 2.7 GB — the worker must refuse it from the header alone.
    """
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = zlib.compress(b"\x00" + b"\x00" * 3 * min(width, 1000), 9)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", data)
            + _chunk(b"IEND", b""))


def mp4() -> bytes:
    """The start of an MP4 file: an ``ftyp`` box (isom) and an empty ``mdat``."""
    ftyp = b"ftyp" + b"isom" + struct.pack(">I", 512) + b"isomiso2avc1mp41"
    return struct.pack(">I", 8 + len(ftyp) - 4) + ftyp + struct.pack(">I", 8) + b"mdat"


def video(width: int = 320, height: int = 240, *, seconds: float = 2.0, fps: int = 25,
          codec: str = "libx264", audio: bool = True, rotation: int = 0,
          index_first: bool = True, container: str = "mp4", audio_codec: str = "aac",
          tag: str | None = None) -> bytes:
    """A real video made with PyAV: a red picture with a white square top left (so a turn
    shows), a silent AAC track, and a GPS location and a title in its metadata, written
    as a phone does (the QuickTime location key and the ISO 6709 one). ``rotation``: the
    display rotation (counter-clockwise degrees; a phone's portrait video is -90).
    ``index_first``: the index ahead of the data (a file cut short keeps it)."""
    import tempfile

    import av
    import numpy as np

    with tempfile.TemporaryDirectory() as folder:
        path = f"{folder}/clip.{container}"
        flags = "use_metadata_tags" + ("+faststart" if index_first else "")
        with av.open(path, "w", format=container, options={"movflags": flags}) as out:
            out.metadata["location"] = VIDEO_LOCATION
            out.metadata["com.apple.quicktime.location.ISO6709"] = VIDEO_LOCATION
            out.metadata["title"] = "taken at home"
            picture = out.add_stream(codec, rate=fps)
            picture.width, picture.height, picture.pix_fmt = width, height, "yuv420p"
            if tag is not None:
                picture.codec_context.codec_tag = tag
            if rotation:
                picture.set_display_rotation(rotation)
            sound = out.add_stream(audio_codec, rate=44100) if audio else None
            frames = round(seconds * fps)
            for i in range(frames):
                pixels = np.zeros((height, width, 3), np.uint8)
                pixels[:, :] = RED
                pixels[: height // 4, : width // 4] = 255
                left = (i * 4) % width
                pixels[height * 3 // 4:, left:left + width // 8] = (30, 30, 160)  # it moves
                frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
                frame.pts = i
                for packet in picture.encode(frame):
                    out.mux(packet)
            for packet in picture.encode():
                out.mux(packet)
            if sound is not None:
                size = sound.codec_context.frame_size or 1024
                sample_format = sound.codec_context.format.name
                for i in range(int(seconds * 44100) // size):
                    chunk = av.AudioFrame.from_ndarray(
                        np.zeros((1, size), {"fltp": np.float32, "s16p": np.int16,
                                             "s32p": np.int32}[sample_format]),
                        format=sample_format, layout="mono")
                    chunk.sample_rate, chunk.pts = 44100, i * size
                    for packet in sound.encode(chunk):
                        out.mux(packet)
                for packet in sound.encode():
                    out.mux(packet)
        with open(path, "rb") as written:
            return written.read()


def shorter_header(data: bytes, factor: int) -> bytes:
    """The video with the durations in its movie and media headers divided by ``factor``
    (a file that claims to be short; its frames say otherwise)."""
    out = bytearray(data)
    for box in (b"mvhd", b"mdhd"):
        start = 0
        while (found := out.find(box, start)) != -1:
            at = found + 4 + 4 + 4 + 4 + 4  # version+flags, created, modified, timescale
            assert out[found + 4] == 0, "version 0 headers only"
            duration = struct.unpack(">I", out[at:at + 4])[0]
            out[at:at + 4] = struct.pack(">I", duration // factor)
            start = found + 4
    return bytes(out)


#: Where the test videos claim they were taken (ISO 6709), never to be served.
VIDEO_LOCATION = "+52.3676+004.9041/"


def video_facts(data: bytes) -> dict[str, Any]:
    """What a player sees in a served video: metadata, tracks, frames, rotation."""
    import av

    with av.open(io.BytesIO(data)) as container:
        tags = dict(container.metadata)
        for stream in container.streams:
            tags.update(stream.metadata)
        first = None
        frames = 0
        for frame in container.decode(video=0):
            first = first or frame
            frames += 1
        assert first is not None
        return {"tags": tags, "frames": frames, "rotation": first.rotation,
                "size": (first.width, first.height),
                "tracks": sorted(s.type for s in container.streams),
                "codecs": sorted(s.codec_context.codec.canonical_name
                                 for s in container.streams),
                "video_tag": container.streams.video[0].codec_context.codec_tag}


def truncated(data: bytes, keep: float = 0.5) -> bytes:
    """The first ``keep`` of a file (an upload cut short)."""
    return data[: int(len(data) * keep)]


# --- through the API ---------------------------------------------------------------------


def auth(settings: ServingSettings, user_id: str) -> dict[str, str]:
    """Headers of a request made by ``user_id``."""
    return {"Authorization": f"Bearer {issue_token(settings.api.jwt_secret, user_id, ttl_s=600)}"}


def announce(client: Any, settings: ServingSettings, user: str, data: bytes,
             content_type: str = "image/jpeg", *, size: int | None = None) -> dict[str, Any]:
    """``POST /v1/media`` then the PUT of ``data`` to the signed URL; the announcement."""
    answer = client.post("/v1/media", headers=auth(settings, user),
                         json={"content_type": content_type,
                               "bytes": len(data) if size is None else size})
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    stored = httpx.put(body["upload_url"], content=data, headers=body["upload_headers"])
    assert stored.status_code == 200, stored.text
    return body


def complete(client: Any, settings: ServingSettings, user: str, media_id: str) -> Any:
    """``POST /v1/media/{id}/complete``, which must answer 202."""
    answer = client.post(f"/v1/media/{media_id}/complete", headers=auth(settings, user))
    assert answer.status_code == 202, answer.text
    return answer.json()


def processed_inline(settings: ServingSettings, media_id: str) -> str:
    """Process one upload the way the media worker does, in this process (no consumer)."""
    worker = MediaWorker(settings.kafka, settings.storage, settings.cql, settings.media)
    try:
        return worker.handle(MediaUploaded(media_id))
    finally:
        worker.table.close()


def ready_media(client: Any, settings: ServingSettings, user: str, data: bytes | None = None,
                content_type: str = "image/jpeg") -> str:
    """An upload of ``user`` a post may show: uploaded, completed, processed, ready."""
    body = announce(client, settings, user, photo(64, 48) if data is None else data,
                    content_type)
    complete(client, settings, user, body["media_id"])
    assert processed_inline(settings, body["media_id"]) == "ready"
    return str(body["media_id"])


def remove_media(settings: ServingSettings, media_ids: list[str]) -> None:
    """Delete the uploads' objects and renditions from the media bucket."""
    bucket = storage_client(settings.storage).bucket(settings.storage.media_bucket)
    for media_id in media_ids:
        for prefix in (object_name(media_id),
                       f"{settings.media.rendition_folder}/{media_id}/"):
            for blob in bucket.list_blobs(prefix=prefix):
                blob.delete()
