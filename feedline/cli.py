"""What the command-line tools and the batch jobs share: argument types, progress bars.

Progress bars go to stderr and only when it is a terminal (tqdm's ``disable=None``), so
scripts, pipes and CI logs see exactly the lines they saw before.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO

from tqdm import tqdm

if TYPE_CHECKING:
    from feedline.settings import BatchSettings


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT: a long-running command's loop runs until it is."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def iso_time(text: str) -> datetime:
    """An ISO-8601 instant with a timezone (``2026-11-01T00:00:00Z``), as an argparse type."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {text!r}") from None
    if moment.utcoffset() is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no timezone; add Z or +00:00")
    return moment


def interactive() -> bool:
    """Whether progress bars show: stderr is a terminal."""
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


def progress_bar(desc: str, total: float | None = None, unit: str = "it",
                 **options: Any) -> tqdm:
    """A bar with a count, a total, a rate and an ETA on stderr; silent when not a terminal."""
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=None,
                dynamic_ncols=True, smoothing=0.1, **options)


def write_line(message: str, file: TextIO | None = None) -> None:
    """Print a line without tearing an active progress bar (stdout by default).

    On a terminal the line first clears the current one: a bar another process draws
    there (the Beam workers' lines under the rebuild's bar) is redrawn below it.
    """
    out = file if file is not None else sys.stdout
    isatty = getattr(out, "isatty", None)
    tqdm.write(("\r\x1b[K" if isatty and isatty() else "") + message, file=out)
    out.flush()


#: The quality gate's logger; it announces each topic as it starts it
#: (``"quality gate: %s, %d partition(s)"``, topic and partition count).
GATE_LOGGER = "feedline.quality"


class _GateTopics(logging.Handler):
    """Advances a bar of partitions each time the gate starts the next topic."""

    def __init__(self, bar: tqdm) -> None:
        super().__init__(logging.INFO)
        self.bar = bar
        self.current = 0

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        if (str(record.msg).startswith("quality gate:") and len(args) == 2
                and isinstance(args[1], int)):
            self.bar.update(self.current)
            self.current = args[1]
            self.bar.set_postfix_str(str(args[0]), refresh=True)


@contextmanager
def gate_progress(settings: BatchSettings, topics: Sequence[str], since: datetime | None,
                  until: datetime | None, root: str | None = None) -> Iterator[None]:
    """A bar over the archive partitions the quality gate validates (on a terminal only).

    The gate reports per topic, so the bar moves a topic at a time; its total comes from
    listing the partitions first, which is done only when the bar shows.
    """
    if not interactive():
        yield
        return
    from feedline.archive.store import Archive

    archive = Archive.open(settings.storage, root or settings.archive_prefix)
    total = sum(len(archive.partitions_in(topic, since, until)) for topic in topics)
    logger = logging.getLogger(GATE_LOGGER)
    level = logger.level
    with progress_bar("quality gate", total, "partition") as bar:
        handler = _GateTopics(bar)
        logger.addHandler(handler)
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)
        try:
            yield
            bar.update(total - bar.n)
        finally:
            logger.removeHandler(handler)
            logger.setLevel(level)
