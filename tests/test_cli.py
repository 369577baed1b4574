"""Behaviour every tool shares: dry run, --ebpf, errors, teardown."""
import importlib
import os
import signal
import subprocess
import sys

import pytest

from pytracekit.cli.command import tool_names
from pytracekit.errors import NotFoundError

from conftest import (ROOT, pytracekit, pytracekit_as_nobody, pytracekit_in_process,
                      pytracekit_probes_left)


def _dry_run_args(name: str) -> list[str]:
    module = importlib.import_module(f"pytracekit.tools.{name}")
    return list(getattr(module, "DRY_RUN_ARGS", []))


def test_every_tool_has_a_module_a_launcher_and_a_test():
    for name in tool_names():
        assert (ROOT / "tools" / name).exists(), f"tools/{name} missing"
        assert (ROOT / "tests" / f"test_{name}.py").exists(), f"tests/test_{name}.py missing"


def _loads_bpf(name: str) -> bool:
    """False for tools that only read files (report, diff): LOADS_BPF = False."""
    return getattr(importlib.import_module(f"pytracekit.tools.{name}"), "LOADS_BPF", True)


def test_every_tool_prints_its_bpf_with_ebpf():
    """In-process (--ebpf prints before compiling; the launcher's own path is
    test_bad_input's test_launchers_give_the_same_line_and_status)."""
    for name in filter(_loads_bpf, tool_names()):
        res = pytracekit_in_process(name, *_dry_run_args(name), "--ebpf")
        assert res.returncode == 0, f"{name}: {res.stderr}"
        assert "pytracekit.h" in res.stdout or "PYTRACEKIT_H" in res.stdout, name


def test_a_run_leaves_no_mode_and_no_claim_on_signals_behind():
    """--ebpf/--verbose and the claim on stop signals belong to one run
    (settings.run, runner.claimed_signals): nothing for a test to reset after
    running the CLI in-process, and no mode can be switched on outside a run."""
    from pytracekit.engine import runner, settings
    res = pytracekit_in_process("runqlat", "--verbose", "--ebpf")
    assert res.returncode == 0 and "#define UNIT_DIV" in res.stdout   # --ebpf was on in the run
    assert settings.current() == settings.Settings()
    assert runner._claimed is False
    with pytest.raises(RuntimeError, match=r"outside a run"):
        settings.update(ebpf=True)
    assert settings.current().ebpf is False


def test_the_loss_slots_in_c_and_in_python_agree():
    """enum ptk_loss (bpf/pytracekit.h) and loader.LOSS_SLOTS: one slot order."""
    import re
    from pytracekit.engine.loader import LOSS_SLOTS
    header = (ROOT / "bpf" / "pytracekit.h").read_text()
    enum = re.search(r"enum ptk_loss \{(.*?)\};", header, re.S).group(1)
    slots = {name.lower(): int(n) for name, n in re.findall(r"PTK_(\w+) = (\d+)", enum)}
    assert slots.pop("loss_slots") == len(LOSS_SLOTS)
    assert sorted(slots, key=slots.__getitem__) == list(LOSS_SLOTS)


@pytest.fixture(scope="module")
def dry_runs() -> dict:
    """Every BPF tool's --dry-run, on two long-lived processes side by side
    (cli_workers: BCC and LLVM are loaded once per process, not per tool)."""
    from cli_workers import run_all
    return run_all({name: [name, *_dry_run_args(name), "--dry-run"]
                    for name in tool_names() if _loads_bpf(name)})


@pytest.mark.root
@pytest.mark.alone("every-tool")   # its batch compiles every tool two at a time: one batch at once (conftest)
@pytest.mark.parametrize("name", tool_names())
def test_every_tool_compiles_and_loads_in_a_dry_run(name, dry_runs):
    if not _loads_bpf(name):
        pytest.skip(f"{name} loads no BPF")
    res = dry_runs[name]
    if isinstance(res, Exception):
        raise res
    assert res.returncode == 0, f"{name}: {res.stderr}"
    assert "dry run: compiled and loaded" in res.stdout


def test_unknown_tool_is_a_usage_error():
    res = pytracekit("no-such-tool")
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and "No such command" in res.stderr


def test_not_root_is_one_clear_line():
    res = pytracekit_as_nobody("doctor")
    assert res.returncode == 1
    assert res.stderr.strip() == ("pytracekit doctor: error: pytracekit needs root (CAP_BPF and "
                                  "CAP_PERFMON) to load BPF programs: run it with sudo")


@pytest.mark.root
def test_unknown_tracepoint_names_the_problem_and_suggests():
    from pytracekit.engine.loader import Program
    with Program.from_text("t", '#include "vmlinux.h"\nint f(void *ctx) { return 0; }\n') as p:
        with pytest.raises(NotFoundError) as info:
            p.attach_tracepoint("sched", "sched_swich", "f")
    assert "unknown tracepoint sched:sched_swich" in info.value.message
    assert "sched:sched_switch" in info.value.message


@pytest.mark.root
def test_compile_error_is_short_and_the_full_log_is_kept():
    from pytracekit.errors import CompileError
    from pytracekit.engine.loader import Program
    with pytest.raises(CompileError) as info:
        Program.from_text("broken", '#include "vmlinux.h"\nint f(void *ctx) { return nope; }\n')
    assert "\n" not in info.value.message
    assert "undeclared identifier 'nope'" in info.value.message
    assert "main.c" in info.value.detail


@pytest.mark.root
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_run_prints_results_and_detaches(sig):
    proc_args = [sys.executable, "examples/count_syscalls.py"]
    ready_r, ready_w = os.pipe()
    proc = subprocess.Popen(proc_args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTRACEKIT_READY_FD": str(ready_w)},
                            pass_fds=(ready_w,))
    os.close(ready_w)
    try:
        # its results are printed, then detached: generous bounds on a loaded machine
        assert os.read(ready_r, 16) == b"ready\n"   # "" if it died first
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
    finally:
        os.close(ready_r)
        if proc.poll() is None:   # never left running after a failure
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert out.startswith("PID")
    assert "Traceback" not in err
    assert pytracekit_probes_left() == []


@pytest.mark.root
def test_a_compiler_that_exits_the_process_still_gets_one_clear_line(tmp_path):
    """LLVM exit()s on a program over the BPF stack limit; say why anyway."""
    script = tmp_path / "overflow.py"
    script.write_text(
        "from pytracekit.engine.loader import Program\n"
        "Program.from_text('overflow', '#include \"vmlinux.h\"\\n"
        "TRACEPOINT_PROBE(syscalls, sys_enter_openat) { char b[700];"
        " bpf_probe_read_user_str(b, sizeof(b), args->filename); return b[0] + b[600]; }')\n")
    res = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 1
    assert res.stderr.strip() == ("pytracekit: error: BPF program overflow does not compile: more "
                                  "than the 512 bytes of BPF stack: move large local variables "
                                  "into a per-CPU array map")


@pytest.mark.root
def test_a_vmlinux_h_in_the_working_directory_is_not_used(tmp_path):
    (tmp_path / "vmlinux.h").write_text("#error this file must not be included\n")
    res = subprocess.run([sys.executable, "-c",
                          "from pytracekit.engine.loader import Program\n"
                          "Program.from_text('t', '#include \"vmlinux.h\"\\n"
                          "TRACEPOINT_PROBE(sched, sched_switch) { return args->prev_pid; }')\n"
                          "print('compiled')"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "compiled"


def test_a_forked_child_dies_on_sigterm_instead_of_unwinding_the_tool():
    """pyroute2's netns helper and held commands are forks of the tool: SIGTERM
    must end them, not raise the tool's Stop inside them."""
    from pytracekit.engine import runner
    runner.install_signal_handlers()
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.write(ready_w, b"r")   # a signal before this point could be lost in the fork
            while True:
                signal.pause()
        except BaseException:
            os._exit(3)   # unwound instead of dying: the bug
    os.read(ready_r, 1)
    os.close(ready_r)
    os.close(ready_w)
    os.kill(pid, signal.SIGTERM)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM


@pytest.mark.root
def test_a_reader_that_goes_away_ends_the_tool_quietly_and_detached():
    """`tool | head -1`: the next write fails with EPIPE; the tool detaches and
    exits 0 without a message (click alone would exit 1)."""
    proc = subprocess.Popen([sys.executable, "-m", "pytracekit", "funccount", "-i", "0.2",
                             "-d", "5", "t:syscalls:sys_enter_getppid"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline() is not None
    proc.stdout.close()            # the reader is gone before the next interval
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert err.strip().splitlines() == [
        'Tracing 1 function for "t:syscalls:sys_enter_getppid"... Hit Ctrl-C to end.'], err
    assert pytracekit_probes_left() == []


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


def test_the_commands_exit_runs_atexit_handlers_and_flushes_before_it_skips_teardown():
    """cli.command.exit_now ends with os._exit (no module teardown): what the
    atexit handlers do (BCC's cleanup, temporary files) and what stdout holds
    still happen, with the status given; a non-daemon thread gets the normal exit."""
    code = ("import atexit, sys, threading, time; from pytracekit.cli import command\n"
            "atexit.register(lambda: print('handler ran'))\n"
            "sys.stdout.write('buffered ')\n"
            "if sys.argv[1] == 'thread':\n"
            "    threading.Thread(target=lambda: time.sleep(0.2) or print('thread joined'))"
            ".start()\n"
            "command.exit_now(3)\n")
    for mode, expected in (("plain", "buffered handler ran\n"),
                           ("thread", "buffered thread joined\nhandler ran\n")):
        res = subprocess.run([sys.executable, "-c", code, mode], cwd=ROOT,
                             capture_output=True, text=True, timeout=60)
        assert (res.returncode, res.stdout, res.stderr) == (3, expected, "")
