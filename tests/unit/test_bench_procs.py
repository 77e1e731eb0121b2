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
        assert used["idle"] < 0.05 and used["gone"] == 0.0
        assert cpu_seconds(2**22 + 7) == 0.0
    finally:
        busy.kill()
        idle.kill()
        busy.wait()
        idle.wait()
