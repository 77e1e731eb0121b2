"""The benchmarks' CPU meter reads each group's process trees from /proc."""

from __future__ import annotations

import subprocess
import sys

from bench.procs import CpuMeter, cpu_seconds, tree

#: A parent whose child burns 0.3 s of CPU once told to go; then both wait for stdin to close.
BURN = r"""
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", '''
import sys, time
sys.stdin.readline()  # go
start = time.process_time()
while time.process_time() - start < 0.3:
    pass
print("burnt", flush=True)
sys.stdin.read()
'''], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
print("started", flush=True)
sys.stdin.readline()  # go
child.stdin.write("go\n")
child.stdin.flush()
print(child.stdout.readline().strip(), flush=True)
sys.stdin.read()
"""


def test_cpu_of_a_process_tree_counts_its_children() -> None:
    busy = subprocess.Popen([sys.executable, "-c", BURN], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    idle = subprocess.Popen(["sleep", "600"])
    try:
        assert busy.stdout is not None and busy.stdin is not None
        assert busy.stdout.readline().strip() == "started"
        assert len(list(tree(busy.pid))) == 2
        meter = CpuMeter({"busy": [busy.pid], "idle": [idle.pid], "gone": [2**22 + 7]})
        meter.start()
        busy.stdin.write("go\n")
        busy.stdin.flush()
        assert busy.stdout.readline().strip() == "burnt"
        used = meter.stop()
        assert used["busy"] >= 0.25  # the child's burn, read in the parent's tree
        assert meter.split["busy"]["descendants"] >= 0.25  # and counted as the child's
        assert meter.split["busy"]["roots"] < 0.25
        assert sum(meter.split["busy"].values()) == used["busy"]
        assert used["idle"] < 0.05 and used["gone"] == 0.0
        assert cpu_seconds(2**22 + 7) == 0.0
    finally:
        busy.kill()
        idle.kill()
        busy.wait()
        idle.wait()


#: A parent that starts its child from a thread that stays alive (as the JVM starts its
#: Python workers): the kernel lists that child under the thread, not the main thread.
THREAD_PARENT = r"""
import subprocess, sys, threading
done = threading.Event()
def start():
    child = subprocess.Popen(["sleep", "600"])
    print(child.pid, flush=True)
    done.wait()
    child.kill()
threading.Thread(target=start).start()
sys.stdin.read()
done.set()
"""


def test_children_started_by_a_thread_are_in_the_tree() -> None:
    parent = subprocess.Popen([sys.executable, "-c", THREAD_PARENT], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert set(tree(parent.pid)) == {parent.pid, child}
    finally:
        parent.communicate(timeout=30)
