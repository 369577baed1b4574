"""profile: real cpu-clock sampling of the ground-truth workload."""
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import Tool, pytracekit, pytracekit_probes_left
from stack_checks import contains_run, names, parse_json

SPIN = ["main", "spin_outer", "spin_inner"]


@pytest.mark.root
def test_spinning_workload_is_on_main_spin_outer_spin_inner(workload):
    # 0.8 s of its CPU time (spin's wall-clock seconds gave 40 samples at a load of 20)
    res = pytracekit("profile", "-F", "199", "--json", "--", workload, "spincpu", "800")
    assert res.returncode == 0, res.stderr
    header, stacks, loss = parse_json(res.stdout, "profile")
    total = sum(s["value"] for s in stacks)
    on_spin = sum(s["value"] for s in stacks if contains_run(names(s, "user"), SPIN))
    assert total >= 50   # ~160 at 199 Hz
    assert on_spin >= 0.9 * total, res.stdout
    assert header["total"] == total and header["unit"] == "count"
    assert all(s["comm"] == "workload" for s in stacks)
    assert pytracekit_probes_left() == []


@pytest.mark.root
def test_bcc_text_and_folded_output(workload):
    res = pytracekit("profile", "-F", "199", "-U", "--", workload, "spin", "0.5")
    assert res.returncode == 0, res.stderr
    assert "Sampling at 199 Hertz of command" in res.stderr
    assert "    spin_inner\n    spin_outer\n    main\n" in res.stdout
    assert "    -                workload (" in res.stdout
    res = pytracekit("profile", "-F", "199", "-f", "-U", "--", workload, "spin", "0.5")
    line = max(res.stdout.splitlines(), key=lambda l: int(l.rsplit(" ", 1)[1]))
    assert ";main;spin_outer;spin_inner " in line and line.startswith("workload;")


@pytest.mark.root
def test_kernel_only_has_no_user_frames_and_annotations(workload):
    res = pytracekit("profile", "-F", "499", "-K", "-a", "--json", "--", workload,
                     "open", "/tmp/pytracekit-profile-open", "80000")
    assert res.returncode == 0, res.stderr
    _, stacks, _ = parse_json(res.stdout, "profile")
    kernel = [n for s in stacks for n in names(s, "kernel")]
    assert kernel and all(n.endswith("_[k]") for n in kernel)
    assert not any(names(s, "user") for s in stacks)
    # Kernel frames are named from kallsyms read when first named (after the
    # run, not before attaching): each by its function, as /proc/kallsyms has it
    # (a BPF program's, another tool's, may be gone from it by now).
    assert any(contains_run(names(s, "kernel"), [
        "entry_SYSCALL_64_after_hwframe_[k]", "do_syscall_64_[k]", "__x64_sys_openat_[k]",
        "do_sys_openat2_[k]"]) for s in stacks), res.stdout
    with open("/proc/kallsyms") as f:
        kallsyms = {line.split()[2] for line in f}
    assert all(n.removesuffix("_[k]") in kallsyms or n.startswith("bpf_") for n in kernel)


@pytest.mark.root
def test_short_lived_child_is_symbolized_after_it_exits(workload):
    # the child spins 400 ms in child_spin and exits; the parent exits after it;
    # stacks are read only then.
    res = pytracekit("profile", "-F", "199", "--json", "--", workload, "forkchild", "400")
    assert res.returncode == 0, res.stderr
    _, stacks, _ = parse_json(res.stdout, "profile")
    child = [s for s in stacks if contains_run(names(s, "user"), ["main", "child_spin",
                                                                  "spin_inner"])]
    assert sum(s["value"] for s in child) >= 10   # ~80 on an idle CPU
    pids = {s["pid"] for s in child}
    assert len(pids) == 1
    assert not any(n.startswith("[unknown]") for s in child for n in names(s))


@pytest.mark.root
def test_jit_frames_come_from_the_perf_map(workload):
    res = pytracekit("profile", "-F", "199", "-f", "-U", "--", workload, "jit", "500")
    try:
        assert res.returncode == 0, res.stderr
        top = max(res.stdout.splitlines(), key=lambda l: int(l.rsplit(" ", 1)[1]))
        assert top.rsplit(" ", 1)[0].endswith(";main;jit_spin_loop"), res.stdout
    finally:
        for p in Path("/tmp").glob("perf-*.map"):
            if "jit_spin_loop" in p.read_text():
                p.unlink()


@pytest.mark.root
def test_tiny_stack_storage_reports_lost_stacks(workload):
    res = pytracekit("profile", "-F", "199", "--stack-storage-size", "1", "--json", "--",
                     workload, "spin", "0.5")
    assert res.returncode == 0, res.stderr
    _, stacks, loss = parse_json(res.stdout, "profile")
    assert loss["stack_errors"] > 0
    assert any("[Missed User Stack]" in names(s) for s in stacks)
    assert "stacks not stored (stack map full or collision)" in res.stderr


@pytest.mark.root
def test_pid_list_selects_only_those_processes(workload, tmp_path):
    go = tmp_path / "go"
    a = subprocess.Popen([workload, "--go-file", str(go), "spin", "0.6"])
    b = subprocess.Popen([workload, "--go-file", str(go), "spin", "0.6"])
    try:
        with Tool("profile", "-F", "199", "-f", "-p", str(a.pid), "2") as tool:
            go.touch()
            out, err = tool.wait()
    finally:
        a.wait()
        b.wait()
    assert tool.returncode == 0, err
    assert out.strip() and all(l.startswith("workload;") for l in out.splitlines())
    res = pytracekit("profile", "-F", "199", "--json", "-p", f"{a.pid},{b.pid}", "0.1")
    assert res.returncode == 1 and "no process with pid" in res.stderr


def test_bad_options_are_one_line_usage_errors():
    for args, message in [(["-p", "12,x"], "'x' is not a process id"),
                          (["-F", "99", "-c", "1000"], "give -F HZ or -c PERIOD, not both"),
                          (["-U", "-K"], "-U and -K exclude each other"),
                          (["--output", "x.weird"], "cannot tell the format of x.weird")]:
        res = pytracekit("profile", *args, "1")
        assert res.returncode == 2, (args, res.stderr)
        assert res.stderr.count("\n") == 1 and message in res.stderr, res.stderr


@pytest.mark.root
def test_missing_command_is_a_clear_error():
    res = pytracekit("profile", "--", "/no/such/program")
    assert res.returncode == 1
    assert res.stderr.strip().endswith("cannot run /no/such/program: No such file or directory"
                                       " (give a path to an executable or a command on PATH)")


@pytest.mark.root
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_system_wide_run_prints_stacks_and_detaches(workload, sig):
    # spins until killed below: the tool may take seconds to be ready on a loaded machine
    spinner = subprocess.Popen([workload, "spin", "60"])
    try:
        with Tool("profile", "-F", "199", "-f") as tool:
            time.sleep(0.5)
            out, err = tool.stop(sig)
    finally:
        spinner.kill()
        spinner.wait()
    assert tool.returncode == 0, err
    assert any(l.startswith("workload;") and ";spin_outer;spin_inner" in l
               for l in out.splitlines()), out[:2000]
    assert "Traceback" not in err
    assert pytracekit_probes_left() == []


@pytest.mark.root
def test_output_files_hold_the_same_totals(workload, tmp_path):
    from pytracekit.render.pprof import from_pprof
    from pytracekit.render.flamegraph import page_data
    pb, html = tmp_path / "spin.pb.gz", tmp_path / "spin.html"
    res = pytracekit("profile", "-F", "199", "--json", "--output", str(pb), "--", workload,
                     "spin", "0.5")
    assert res.returncode == 0, res.stderr
    header, _, _ = parse_json(res.stdout, "profile")
    assert from_pprof(pb.read_bytes()).total == header["total"]
    res = pytracekit("profile", "-F", "199", "--output", str(html), "--format", "flamegraph",
                     "--", workload, "spin", "0.5")
    assert res.returncode == 0 and f"wrote flamegraph to {html}" in res.stderr
    assert "spin_inner" in page_data(html.read_text())["names"]


@pytest.mark.root
def test_cpu_filter_samples_only_that_cpu(workload):
    pinned = ["taskset", "-c", "0", workload, "spin", "0.5"]
    res = pytracekit("profile", "-F", "199", "-C", "1", "-f", "--", *pinned)
    assert res.returncode == 0, res.stderr
    assert "spin_inner" not in res.stdout
    res = pytracekit("profile", "-F", "199", "-C", "0", "-f", "--", *pinned)
    assert "spin_inner" in res.stdout


@pytest.mark.root
def test_delimiter_between_user_and_kernel_frames(workload):
    args = ["--", workload, "open", "/tmp/pytracekit-profile-open", "80000"]
    text = pytracekit("profile", "-F", "499", "-d", *args).stdout
    folded = pytracekit("profile", "-F", "499", "-d", "-f", *args).stdout
    # text: kernel frames, then --, then user frames (leaf first)
    assert "    entry_SYSCALL_64_after_hwframe\n    --\n" in text
    assert any(";-;entry_SYSCALL_64_after_hwframe;" in l for l in folded.splitlines())


@pytest.mark.root
def test_idle_is_left_out_by_default(workload):
    # (with -I idle samples are kept, but a halted vCPU takes few cpu-clock samples
    # and other load may leave no idle time at all, so only the default is asserted)
    # an idle machine may give no other samples at all: keep a CPU busy meanwhile
    # (spinning until the profile ends: compiling may take longer than a fixed spin)
    busy = subprocess.Popen([workload, "spin", "60"])
    try:
        res = pytracekit("profile", "-F", "199", "-K", "-f", "0.5")
    finally:
        busy.kill()
        busy.wait()
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip()
    assert not any(l.startswith("swapper/") for l in res.stdout.splitlines())
