"""Benchmark: the media worker's processing rate and upload-complete -> ready latency.

    .venv/bin/python -m bench.media [--rounds 5] [--uploads 30] [--burst 10] [--out PATH]

1. ``process``: in this process, ``feedline.media.processing.process`` on a 12-megapixel
   JPEG (4000x3000, noisy detail, EXIF with a location) ``--rounds`` times, and on a 10 s
   1080p H.264 video with sound; wall and CPU seconds per file, medians. Images per second
   per core = 1 / CPU seconds per image.
2. ``latency`` (needs the running stack: ``feedctl local up``, with its API and media
   worker): ``--uploads`` photos one after the other through the API — announce, PUT to the
   signed URL, ``POST /v1/media/{id}/complete`` — then ``GET /v1/media/{id}`` every 20 ms
   until ``ready``: the time from the complete's answer to the first ``ready`` read, p50
   and p99 (each upload by its own user, under the per-user rate limit).
3. ``burst``: ``--burst`` uploads completed at once; seconds until all are ready, images
   per second, and the media worker's CPU seconds over that time (from ``/proc``).

Skip the stack parts with ``--process-only``.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from PIL import ExifTags, Image

from bench.common import StackApi, emit, percentile, say
from bench.procs import CpuMeter
from feedline.media.processing import process
from feedline.settings import MediaSettings, get_stack_settings
from jobs.localstack import stack as local_stack

POLL_S = 0.02



def camera_photo(width: int = 4000, height: int = 3000) -> bytes:
    """A 12-megapixel JPEG as a phone writes it: detail everywhere, EXIF with a location."""
    noise = Image.effect_noise((width // 4, height // 4), 40).resize((width, height))
    gradient = Image.linear_gradient("L").resize((width, height))
    image = Image.merge("RGB", (gradient, noise, Image.effect_noise((width, height), 25)))
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "BenchCam"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef], gps[ExifTags.GPS.GPSLatitude] = "N", (52.0, 22.0, 12.5)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=92, exif=exif)
    return buffer.getvalue()


def camera_video(seconds: int = 10, width: int = 1920, height: int = 1080) -> bytes:
    """A ``seconds`` long 1080p30 H.264 video with an AAC track, as a phone records it."""
    import av
    import numpy as np

    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as folder:
        path = f"{folder}/clip.mp4"
        with av.open(path, "w", format="mp4", options={"movflags": "faststart"}) as out:
            out.metadata["location"] = "+52.3676+004.9041/"
            picture = out.add_stream("libx264", rate=30, options={"preset": "veryfast"})
            picture.width, picture.height, picture.pix_fmt = width, height, "yuv420p"
            sound = out.add_stream("aac", rate=44100)
            base = rng.integers(0, 255, (height // 8, width // 8, 3), np.uint8)
            base = base.repeat(8, axis=0).repeat(8, axis=1)
            for i in range(seconds * 30):
                frame = av.VideoFrame.from_ndarray(np.roll(base, i * 6, axis=1), format="rgb24")
                for packet in picture.encode(frame):
                    out.mux(packet)
            for packet in picture.encode():
                out.mux(packet)
            for i in range(seconds * 44100 // 1024):
                chunk = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32),
                                                   format="fltp", layout="mono")
                chunk.sample_rate, chunk.pts = 44100, i * 1024
                for packet in sound.encode(chunk):
                    out.mux(packet)
            for packet in sound.encode():
                out.mux(packet)
        return Path(path).read_bytes()


def timed(data: bytes, content_type: str, rounds: int) -> dict[str, Any]:
    """Wall and CPU seconds of ``process`` per file, medians over ``rounds``."""
    settings = MediaSettings()
    walls, cpus = [], []
    for _ in range(rounds):
        wall, cpu = time.perf_counter(), time.process_time()
        verdict = process(data, content_type, settings)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
        assert verdict.status == "ready", verdict.reason
    return {"bytes": len(data), "rounds": rounds,
            "wall_s_median": round(statistics.median(walls), 3),
            "cpu_s_median": round(statistics.median(cpus), 3),
            "renditions": [[r.width, r.height, r.content_type] for r in verdict.renditions]}


def latency(api: StackApi, photo: bytes, uploads: int, tag: str) -> dict[str, Any]:
    """Complete -> ready, one upload at a time."""
    took = []
    for i in range(uploads):
        user = f"bench{tag}{i:04d}"
        media_id = api.upload(user, photo)
        api.complete(user, media_id)
        began = time.monotonic()
        api.wait_ready(user, media_id, poll_s=POLL_S)
        took.append(time.monotonic() - began)
        say(f"latency {i + 1}/{uploads}: {took[-1]:.2f} s")
    return {"uploads": uploads, "poll_s": POLL_S,
            "p50_s": round(percentile(took, 0.5), 3), "p99_s": round(percentile(took, 0.99), 3),
            "min_s": round(min(took), 3), "max_s": round(max(took), 3)}


def burst(api: StackApi, photo: bytes, count: int, tag: str) -> dict[str, Any]:
    """``count`` uploads completed together: time until all are ready, worker CPU."""
    stack = get_stack_settings()
    worker = [row.pid for row in local_stack.status(stack) if row.name == "media-worker"
              and row.pid]
    uploads = [(f"bench{tag}b{i:04d}", api.upload(f"bench{tag}b{i:04d}", photo))
               for i in range(count)]
    meter = CpuMeter({"media-worker": worker})
    meter.start()
    began = time.monotonic()
    for user, media_id in uploads:
        api.complete(user, media_id)
    for user, media_id in uploads:
        api.wait_ready(user, media_id, poll_s=POLL_S)
    took = time.monotonic() - began
    cpu = meter.stop().get("media-worker", 0.0)
    say(f"burst of {count}: {took:.1f} s, worker CPU {cpu:.1f} s")
    return {"uploads": count, "seconds": round(took, 2), "images_per_s": round(count / took, 2),
            "worker_cpu_s": round(cpu, 1),
            "images_per_worker_cpu_s": round(count / cpu, 2) if cpu else None}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; prints and optionally writes JSON."""
    parser = argparse.ArgumentParser(prog="bench.media", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--uploads", type=int, default=30)
    parser.add_argument("--burst", type=int, default=10)
    parser.add_argument("--process-only", action="store_true",
                        help="only part 1 (no stack needed)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    results: dict[str, Any] = {"benchmark": "media", "host": platform.node(),
                               "cpus": os.cpu_count(), "python": platform.python_version(),
                               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    say("making a 12 MP photo and a 10 s 1080p video ...")
    photo, clip = camera_photo(), camera_video()
    results["photo"] = timed(photo, "image/jpeg", args.rounds)
    results["photo"]["images_per_core_s"] = round(1 / results["photo"]["cpu_s_median"], 2)
    say(f"photo: {results['photo']}")
    results["video"] = timed(clip, "video/mp4", max(1, args.rounds // 2))
    say(f"video: {results['video']}")
    if not args.process_only:
        api = StackApi()
        tag = uuid.uuid4().hex[:6]
        results["latency"] = latency(api, photo, args.uploads, tag)
        results["burst"] = burst(api, photo, args.burst, tag)
    return emit(results, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
