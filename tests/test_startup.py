"""Start-up (issue 17): work a run does not need before its probes are attached
is left until it is needed, with the same results. Speed itself is measured by
bench/bench_startup.py, never asserted here."""
import json
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
    from pytracekit.kernel import bccload, tracefs
    from pytracekit.tools import profile
    tracefs.tracefs_root()   # before BCC's import, which reads its path
    bpf = bccload.import_bcc().BPF
    calls = []
    ksym = bpf.ksym
    monkeypatch.setattr(bpf, "ksym", staticmethod(
        lambda *args, **kwargs: calls.append(args) or ksym(*args, **kwargs)))
    session = profile.start(command=(workload, "open", str(tmp_path / "f"), "40000"),
                            kernel_only=True, frequency=499)
    try:
        assert calls == []   # attached without /proc/kallsyms (BCC reads it at its first ksym)
        run_until_done(session.target, poll=session.poll)
        session.stop_sampling()
        stacks = [[f.name for f in s.stack if f.kind == "kernel"] for s in session.read().samples]
    finally:
        session.close()
    assert calls
    # named exactly, from kallsyms read after the program was loaded
    assert any(s[:len(KERNEL_OPEN_PATH)] == KERNEL_OPEN_PATH for s in stacks), stacks
    with open("/proc/kallsyms") as f:
        kallsyms = {line.split()[2] for line in f}
    assert all(n in kallsyms or n.startswith("bpf_") for s in stacks for n in s), stacks


@pytest.mark.parametrize("tool, later", [
    # symbolize/ (ELF, CFI, the symbolizer) and shutil (it imports bz2 and
    # lzma): at a trace's first frame named, or for its command
    ("trace", ("pytracekit.symbolize", "pytracekit.collect.stack_maps", "shutil")),
    # Python frames: only when they are on (not with --no-python or -K)
    ("profile", ("pytracekit.families.python_stacks", "pytracekit.symbolize.python")),
    # BCC and the loader: only for a --filter the kernel cannot apply
    ("stat", ("bcc", "pytracekit.engine.loader", "pytracekit.engine.follow", "shutil")),
])
def test_a_tools_module_leaves_what_only_some_runs_need_unimported(tool, later):
    code = ("import sys, pytracekit.cli.command, pytracekit.tools." + tool + "; "
            f"print(sorted(m for m in sys.modules if m.startswith({later!r})))")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    assert res.stdout.strip() == "[]", res.stdout


# What a plain or kernel-filtered stat never needs: BCC, the BPF loader and
# program cache, the expression parser (the kernel filter's check needs only
# probes.ctype), and what only other paths import (shutil for a command found
# on PATH, traceback for an internal error).
STAT_NEVER = ("bcc", "pytracekit.kernel.bccload", "pytracekit.engine.loader",
              "pytracekit.engine.follow", "pytracekit.engine.progcache", "pytracekit.probes.expr",
              "shutil", "traceback")


@pytest.mark.root
def test_a_plain_and_a_kernel_filtered_stat_run_without_bcc_or_the_loader(workload, tmp_path):
    """A whole run, counts included: perf counters only, nothing of BCC imported."""
    argv = ["stat", "--json", "-e", "syscalls:sys_enter_openat", "-e",
            "syscalls:sys_enter_openat", "--filter", "flags & 64", "--", workload, "open",
            str(tmp_path / "marker"), "5"]
    code = ("import json, sys\n"
            "from pytracekit.cli.command import main\n"
            f"status = main({argv!r})\n"
            "sys.stdout.flush()\n"
            f"print(json.dumps(sorted(m for m in sys.modules if m.startswith({STAT_NEVER!r}))),"
            " file=sys.stderr)\n"
            "sys.exit(status)\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stderr.splitlines()[-1]) == [], res.stderr
    counts = [obj["value"] for obj in map(json.loads, res.stdout.splitlines())
              if obj["type"] == "counter"]
    assert counts[1] == 5, counts                 # O_CREAT: the workload's own opens
    assert 5 < counts[0] <= 15, counts            # and the dynamic loader's few


def test_the_command_ends_with_its_atexit_functions_run_and_its_output_flushed():
    """cli.command.exit_now skips the interpreter's teardown, not what it owes."""
    code = ("import atexit, sys\n"
            "atexit.register(lambda: print('atexit ran'))\n"
            "sys.argv = ['pytracekit', '--version']\n"
            "from pytracekit.cli.command import run\n"
            "run()\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[-1] == "atexit ran" and "pytracekit" in lines[0], res.stdout


def test_a_profiled_command_still_writes_its_profile(tmp_path):
    """cProfile writes after the command returns: exit_now leaves that run to the
    interpreter's exit."""
    out = tmp_path / "prof"
    res = subprocess.run([sys.executable, "-m", "cProfile", "-o", str(out), "-m", "pytracekit",
                          "--version"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert out.stat().st_size > 0
