"""A running python to test USDT probes on (Debian's python3.11 has USDT notes,
guarded by semaphores, so probes are enabled in a live process with -p)."""
import subprocess
from pathlib import Path

from conftest import Tool, wait_until

PYTHON = "/usr/bin/python3.11"

# Waits for a go-file, then gc.collect() (python:gc__start, generation 2) N times.
GC_SCRIPT = """
import gc, os, sys, time
gc.disable()
while not os.path.exists(sys.argv[1]):
    time.sleep(0.005)
for _ in range(int(sys.argv[2])):
    gc.collect()
open(sys.argv[1] + ".done", "w").close()
time.sleep(30)   # killed by the test: interpreter shutdown would collect again
"""


def traced_python_gc(tool_args: list[str], collections: int, tmp_path: Path):
    """Run `tool -p PID TOOL_ARGS` on a python doing `collections` gc.collect()s.
    Returns (stdout, stderr, returncode) of the tool."""
    return traced_python_script(tool_args, GC_SCRIPT, [str(collections)], tmp_path)


def traced_python_script(tool_args: list[str], script: str, script_args: list[str],
                         tmp_path: Path):
    """Run `tool -p PID TOOL_ARGS` on `python -c SCRIPT GO ARGS...`: the script
    waits for the file GO, does its work, then creates GO.done. Returns
    (stdout, stderr, returncode) of the tool."""
    go = tmp_path / "go"
    proc = subprocess.Popen([PYTHON, "-c", script, str(go), *script_args])
    try:
        with Tool(tool_args[0], "-p", str(proc.pid), *tool_args[1:]) as tool:
            go.touch()
            assert wait_until(lambda: (tmp_path / "go.done").exists(), timeout=30)
            out, err = tool.stop()
    finally:
        proc.kill()
        proc.wait()
    return out, err, tool.returncode
