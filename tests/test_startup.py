"""Start-up (issue 17): work a run does not need before its probes are attached
is left until it is needed, with the same results. Speed itself is measured by
bench/bench_startup.py, never asserted here."""
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT

KERNEL_OPEN_PATH = ["entry_SYSCALL_64_after_hwframe", "do_syscall_64", "__x64_sys_openat",
                    "do_sys_openat2"]


@pytest.mark.root
def test_profile_reads_the_kernel_symbols_when_it_names_a_kernel_frame(workload, monkeypatch,
                                                                       tmp_path):
    from pytracekit.engine.runner import run_until_done
    from pytracekit.kernel import tracefs
    from pytracekit.symbolize import kallsyms
    from pytracekit.tools import profile
    tracefs.tracefs_root()   # before BCC's import, which reads its path
    calls = []
    load = kallsyms.load
    monkeypatch.setattr(kallsyms, "load", lambda *a, **kw: calls.append(a) or load(*a, **kw))
    session = profile.start(command=(workload, "open", str(tmp_path / "f"), "40000"),
                            kernel_only=True, frequency=499)
    try:
        assert calls == []   # attached without the kernel's symbol table
        run_until_done(session.target, poll=session.poll)
        session.stop_sampling()
        stacks = [[f.name for f in s.stack if f.kind == "kernel"] for s in session.read().samples]
    finally:
        session.close()
    assert len(calls) == 1   # once: from the cache, or kallsyms read (a new boot)
    # named exactly
    assert any(s[:len(KERNEL_OPEN_PATH)] == KERNEL_OPEN_PATH for s in stacks), stacks
    with open("/proc/kallsyms") as f:
        names = {line.split()[2] for line in f}
    assert all(n in names or n.startswith("bpf_") for s in stacks for n in s), stacks


@pytest.mark.parametrize("module, later", [
    # symbolize/ (ELF, CFI, the symbolizer) and shutil (it imports bz2 and
    # lzma): at a trace's first frame named, or for its command
    ("tools.trace", ("pytracekit.symbolize", "pytracekit.collect.stack_maps", "shutil")),
    # Python frames: only when they are on (not with --no-python or -K);
    # lzma: MiniDebugInfo only (symbolize/elfsyms.py); a sample log: record's;
    # first samples: not with a command, -K or --unwind fp
    ("tools.profile", ("pytracekit.families.python_stacks", "pytracekit.symbolize.python",
                       "lzma", "pytracekit.collect.samplelog",
                       "pytracekit.collect.first_samples")),
    # a process's runtime is found, its code objects read, and its stacks
    # merged, after attaching
    ("families.python_stacks", ("pytracekit.symbolize.python.runtime",
                                "pytracekit.symbolize.python.code",
                                "pytracekit.symbolize.python.merge")),
    # a program loaded from the cache needs where tracefs is, not its formats
    ("kernel.mounts", ("pytracekit.kernel.tracefs",)),
])
def test_a_module_leaves_what_only_some_runs_need_unimported(module, later):
    code = ("import sys, pytracekit.cli.command, pytracekit." + module + "; "
            f"print(sorted(m for m in sys.modules if m.startswith({later!r})))")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    assert res.stdout.strip() == "[]", res.stdout


NO_PREALLOC = 1   # BPF_F_NO_PREALLOC
# inserted into by profile's perf-event program (PTK_PROBE_HASH, bpf/pytracekit.h)
IN_THE_SAMPLING_INTERRUPT = ("counts", "kstacks", "ustacks", "leaf_frames", "seen_pids")
# written by user space and process-context programs only
BY_USER_SPACE = ("followed", "proc_maps", "hold_tree", "unwind_modules")


def _map_flags(table) -> int:
    with open(f"/proc/self/fdinfo/{table.map_fd}") as f:
        return int(next(line for line in f if line.startswith("map_flags:")).split()[1], 16)


@pytest.mark.root
def test_a_stack_tool_warms_its_processes_symbols_only_while_compiling(monkeypatch, tmp_path):
    """The -p processes' file symbols are read beside clang (which runs without
    the GIL); a load from the program cache starts no thread to compete with it.
    No hash map is preallocated (creating one zeroes its capacity), in both."""
    from pytracekit.engine import progcache
    from pytracekit.symbolize.symbols import Symbolizer
    from pytracekit.tools import profile
    monkeypatch.setenv("PYTRACEKIT_CACHE", str(tmp_path / "cache"))   # the first run misses
    warmed, notes = [], []
    warm_up = Symbolizer.warm_up
    monkeypatch.setattr(Symbolizer, "warm_up",
                        lambda self, pids: warmed.append(list(pids)) or warm_up(self, pids))
    monkeypatch.setattr(progcache, "note", notes.append)
    sleeper = subprocess.Popen(["sleep", "120"])
    try:
        for run in ("compiled", "cached"):
            warmed.clear()
            session = profile.start(pids=[sleeper.pid], frequency=49)
            try:   # compiled and from the cache alike, as the kernel made them
                flags = {name: _map_flags(session.prog[name]) & NO_PREALLOC
                         for name in (*IN_THE_SAMPLING_INTERRUPT, *BY_USER_SPACE)}
            finally:
                session.close()
            assert flags == dict.fromkeys(flags, NO_PREALLOC), run
            assert warmed == ([[sleeper.pid]] if run == "compiled" else []), (run, notes)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert [n.split(" for ")[0] for n in notes if " for profile" in n] == ["miss", "hit"], notes


DATACLASS_RUN = """
import dataclasses, json
from pytracekit.engine import dccache
dccache.install('test')
@dataclasses.dataclass(frozen=True)
class A:
    x: int
    y: tuple = dataclasses.field(default_factory=tuple)
a = A(1)
print(json.dumps([repr(a), a == A(1), a == A(2), hash(a) == hash(A(1)), len(dccache._new)]))
dccache.done()
"""


def test_dataclass_methods_come_from_the_cache_only_when_it_is_trusted(tmp_path):
    """engine/dccache.py: a second run takes every method from the file the
    first wrote, and the class behaves alike; a file others can write is not read."""
    env = {**os.environ, "PYTRACEKIT_CACHE": str(tmp_path)}

    def run():
        res = subprocess.run([sys.executable, "-c", DATACLASS_RUN], env=env, cwd=ROOT,
                             capture_output=True, text=True, check=True)
        return json.loads(res.stdout)
    first, second = run(), run()
    assert first[:4] == second[:4] == ["A(x=1, y=())", True, False, True]
    assert first[4] > 0 and second[4] == 0   # compiled, then all from the file
    (kept,) = tmp_path.glob("dataclass-methods-*.marshal")
    kept.chmod(0o666)
    assert run() == first   # not trusted: compiled again
