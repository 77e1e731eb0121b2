"""What the stack's processes consume during a benchmark: resident memory (sampled peak)
and CPU time (per process tree, between two readings), from ``/proc``."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

#: Clock ticks per second of /proc/<pid>/stat's CPU times.
_TICKS = os.sysconf("SC_CLK_TCK")


def tree(pid: int) -> Iterator[int]:
    """The process and its descendants (PyFlink's Python workers run under the TaskManager).

    Children are listed per thread (``/proc/PID/task/TID/children``): the JVM starts its
    Python workers from worker threads, so every thread's list is read, not only the main
    thread's (which missed them all).
    """
    todo = [pid]
    while todo:
        current = todo.pop()
        yield current
        for listing in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                todo.extend(int(c) for c in listing.read_text().split())
            except OSError:
                continue


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (0 when it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime


class CpuMeter:
    """CPU seconds used by groups of process trees between ``start`` and ``stop``.

    ``groups`` maps a name ("pipeline", "stores" ...) to root pids; every process of their
    trees is read at both ends, so Python workers started in between count in full. After
    ``stop``, ``split`` says per group how much went to the roots themselves and how much to
    their descendants (a TaskManager's JVM against its Python workers).
    """

    def __init__(self, groups: Mapping[str, Iterable[int]]) -> None:
        self.groups = {name: list(pids) for name, pids in groups.items()}
        self._start: dict[int, float] = {}
        self.split: dict[str, dict[str, float]] = {}

    def _read(self) -> dict[int, float]:
        return {pid: cpu_seconds(pid) for roots in self.groups.values()
                for root in roots for pid in tree(root)}

    def start(self) -> None:
        """Take the first reading."""
        self._start = self._read()

    def stop(self) -> dict[str, float]:
        """CPU seconds per group since ``start`` (``split`` keeps where they went)."""
        self.split = {}
        for name, roots in self.groups.items():
            part = {"roots": 0.0, "descendants": 0.0}
            for root in roots:
                for pid in tree(root):
                    used = max(0.0, cpu_seconds(pid) - self._start.get(pid, 0.0))
                    part["roots" if pid == root else "descendants"] += used
            self.split[name] = part
        return {name: part["roots"] + part["descendants"] for name, part in self.split.items()}


class StackMemory:
    """Samples the resident memory of every stack process and its children (PyFlink's
    Python workers run under the TaskManager); keeps the peak of the total."""

    def __init__(self, pids: list[int], every_s: float = 1.0) -> None:
        self.pids = pids
        self.every_s = every_s
        self.peak_mb = 0.0
        self.per_service_mb: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _tree_rss_mb(pid: int) -> float:
        total = 0.0
        for current in tree(pid):
            try:
                status = Path(f"/proc/{current}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            sizes = {pid: self._tree_rss_mb(pid) for pid in self.pids}
            for pid, size in sizes.items():
                self.per_service_mb[pid] = max(self.per_service_mb.get(pid, 0.0), size)
            self.peak_mb = max(self.peak_mb, sum(sizes.values()))
            self._stop.wait(self.every_s)

    def __enter__(self) -> StackMemory:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
