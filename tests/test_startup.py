"""Start-up (issue 17): work a run does not need before its probes are attached
is left until it is needed, with the same results. Speed itself is measured by
bench/bench_startup.py, never asserted here."""
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
])
def test_a_tools_module_leaves_what_only_some_runs_need_unimported(tool, later):
    code = ("import sys, pytracekit.cli.command, pytracekit.tools." + tool + "; "
            f"print(sorted(m for m in sys.modules if m.startswith({later!r})))")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    assert res.stdout.strip() == "[]", res.stdout
