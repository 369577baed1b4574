"""list: tracepoints, perf events with their support here, program functions, USDT."""
import os
import re

import pytest

from conftest import pytracekit
from whohelpers import GatedWorkload, as_nobody, validate_json_lines

from pytracekit.symbolize.elf import functions

NO_KPROBES = not os.path.exists("/sys/bus/event_source/devices/kprobe/type")


def _names(out):
    return [line.split()[0] for line in out.splitlines() if line.startswith("  ")]


@pytest.mark.root
def test_sched_glob_lists_sched_switch_and_only_sched():
    res = pytracekit("list", "sched:*")
    assert res.returncode == 0, res.stderr
    names = _names(res.stdout)
    assert "sched:sched_switch" in names and "sched:sched_wakeup" in names
    assert all(n.startswith("sched:") for n in names)
    assert names == sorted(names)
    on_disk = {f"sched:{e}" for e in os.listdir("/sys/kernel/tracing/events/sched")
               if os.path.exists(f"/sys/kernel/tracing/events/sched/{e}/format")}
    assert set(names) == on_disk


@pytest.mark.root
def test_verbose_shows_the_tracepoint_fields():
    res = pytracekit("list", "-v", "sched:sched_switch")
    assert res.returncode == 0, res.stderr
    fields = [line.strip() for line in res.stdout.splitlines() if line.startswith("       ")]
    assert fields == ["char prev_comm[16]", "pid_t prev_pid", "int prev_prio", "long prev_state",
                      "char next_comm[16]", "pid_t next_pid", "int next_prio"]


@pytest.mark.root
def test_software_supported_hardware_not_here():
    objs = validate_json_lines("list", pytracekit("list", "--json", "sw").stdout)
    assert {o["name"]: o["supported"] for o in objs}["page-faults"] is True
    objs = validate_json_lines("list", pytracekit("list", "--json", "hw").stdout)
    hw = {o["name"]: o for o in objs if o["type"] == "event"}
    assert set(hw) >= {"cycles", "instructions", "branch-misses"}
    if not os.path.exists("/sys/bus/event_source/devices/cpu/type"):
        assert not any(o["supported"] for o in hw.values())
        assert "not supported here: perf_event_open fails" in hw["cycles"]["note"]
        text = pytracekit("list", "hw").stdout
        assert re.search(r"^  cycles\s+\[Hardware event, not supported\]$", text, re.M)


@pytest.mark.root
def test_kernel_functions_say_why_not_in_one_line():
    res = pytracekit("list", "kernel")
    assert res.returncode == 0, res.stderr
    from pytracekit.kernel.features import fentry_available
    if NO_KPROBES and not fentry_available()[0]:
        assert res.stdout.strip().splitlines() == [
            "Kernel functions cannot be probed on this kernel: no kprobes (CONFIG_KPROBES is "
            "not set; no kprobe PMU, no kprobe_events) and no fentry (loading an fentry program "
            "on do_nanosleep fails with EPERM, even as root); trace "
            "the tracepoints above instead"]
    else:
        assert re.fullmatch(r"\d+ kernel functions can be probed with (kprobes|fentry .*): .*",
                            res.stdout.strip().splitlines()[-1])


@pytest.mark.root
def test_binary_functions_are_the_workloads(workload):
    res = pytracekit("list", "-x", workload)
    assert res.returncode == 0, res.stderr
    names = _names(res.stdout)
    for fn in ("counted_function", "spin_inner", "spin_outer", "stack_leaf", "leak_path",
               "child_spin", "main"):
        assert fn in names
    assert names == [s.name for s in functions(workload)]
    assert _names(pytracekit("list", "-x", workload, "spin_*").stdout) == ["spin_inner",
                                                                           "spin_outer"]


@pytest.mark.root
def test_pid_lists_the_running_programs_functions(workload, tmp_path):
    with GatedWorkload(workload, tmp_path, "calls", "1") as w:
        res = pytracekit("list", "-p", str(w.pid), "--json", "counted_*")
        w.release()
    objs = validate_json_lines("list", res.stdout)
    assert [o["name"] for o in objs] == ["counted_function"]
    assert objs[0]["kind"] == "ufunc" and os.path.realpath(workload) in objs[0]["note"]


@pytest.mark.root
def test_python_usdt_probes():
    if not os.path.exists("/usr/bin/python3.11"):
        pytest.skip("Debian's python3.11 (with USDT notes) is not installed")
    res = pytracekit("list", "-x", "/usr/bin/python3.11", "python:*")
    assert res.returncode == 0, res.stderr
    assert set(_names(res.stdout)) >= {"python:function__entry", "python:function__return",
                                       "python:gc__start", "python:line"}
    assert "[USDT probe]" in res.stdout


@pytest.mark.root
@pytest.mark.parametrize("args, status, message", [
    (["nosuch*"], 1, "no event matches 'nosuch*'"),
    (["-x", "/no/such/binary"], 1, "no such binary: /no/such/binary"),
    (["-x", "/etc/passwd"], 2, "/etc/passwd is not an ELF binary"),
    (["-p", "999999999"], 1, "no process with pid 999999999"),
    (["-p", "1", "-x", "/bin/true"], 2, "give either -x BINARY or -p PID"),
])
def test_bad_input_is_one_line(args, status, message):
    res = pytracekit("list", *args)
    assert res.returncode == status, res.stderr
    assert message in res.stderr and res.stderr.count("\n") == 1


def test_not_root_says_so_but_binaries_still_list(workload):
    res = as_nobody("list", "sched:*")
    assert res.returncode == 1
    assert "reading tracepoints needs root" in res.stderr and res.stderr.count("\n") == 1
    res = as_nobody("list", "-x", workload, "spin_inner")
    assert res.returncode == 0 and _names(res.stdout) == ["spin_inner"]
