"""What a rebuild job tells its operator: progress lines, a progress bar, the metrics.

The bar's steps are counted by the job's own steps (``CountSteps`` in
``pipelines.batch.transforms``): on the DirectRunner, whose workers are local processes,
each step appends a byte to a file whose size the bar follows.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from typing import Any

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions


def say(message: str) -> None:
    """A progress line on stderr (above a progress bar, if one is showing)."""
    from feedline.cli import write_line

    write_line(f"[{time.strftime('%H:%M:%S')}] {message}", sys.stderr)


def advance(progress_file: str | None) -> None:
    """One step of the job done: a byte appended to its progress file (``PipelineProgress``)."""
    if progress_file:
        with open(progress_file, "ab") as handle:
            handle.write(b".")


class PipelineProgress:
    """A progress bar of ``total`` steps that the job's steps advance with ``advance``.

    Shown on a terminal with the DirectRunner, whose workers are local processes: they
    append a byte per step to a temporary file whose size the bar follows. Entering gives
    the file's path for the job's ``RebuildOptions.progress_file``, or None (no bar:
    nothing to report).
    """

    def __init__(self, desc: str, total: int, options: PipelineOptions) -> None:
        from feedline.cli import interactive

        runner = str(options.view_as(StandardOptions).runner or "")
        self.shown = interactive() and runner.endswith("DirectRunner")
        self.desc, self.total = desc, total
        self._stop = threading.Event()

    def __enter__(self) -> str | None:
        from feedline.cli import progress_bar

        if not self.shown:
            return None
        self._folder = tempfile.TemporaryDirectory(prefix="feedline-progress-")
        self.path = os.path.join(self._folder.name, "steps")
        open(self.path, "wb").close()
        self._bar = progress_bar(self.desc, self.total, "step")
        self._follower = threading.Thread(target=self._follow, name="pipeline-progress",
                                          daemon=True)
        self._follower.start()
        return self.path

    def _follow(self) -> None:
        while not self._stop.wait(0.5):
            self._bar.update(min(self.total, os.path.getsize(self.path)) - self._bar.n)

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if not self.shown:
            return
        self._stop.set()
        self._follower.join()
        if kind is None:
            self._bar.update(self.total - self._bar.n)
        self._bar.close()
        self._folder.cleanup()


def print_metrics(result: Any) -> None:
    """Counts per stage from the pipeline's metrics."""
    try:
        counters = result.metrics().query()["counters"]
    except Exception as err:  # metrics are a report, not the result
        say(f"metrics unavailable: {err}")
        return
    totals: dict[str, int] = {}
    for counter in counters:
        if counter.key.metric.namespace == "beam":  # a portable runner's own (beam:metric:…)
            continue
        name = f"{counter.key.metric.namespace}.{counter.key.metric.name}"
        totals[name] = totals.get(name, 0) + int(counter.committed or counter.attempted or 0)
    for name in sorted(totals):
        say(f"  {name:<32} {totals[name]:>12,}")
