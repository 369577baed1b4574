"""klockstat against `workload kcontend N`: four threads on two CPUs mmap and
munmap, so writers of the process's mmap_lock wait for each other (the
holder is often preempted, so waiters cannot just spin)."""
import pytest

from conftest import pytracekit
from sched_helpers import json_lines, validate
from pytracekit.symbolize.datasyms import kernel_data_symbol
from pytracekit.model import Frame
from pytracekit.tools.klockstat import LockSite, caller_of, format_ns, lock_kind, render

MMAP_CALLERS = {"vm_mmap_pgoff", "__vm_munmap", "vm_munmap", "do_mmap", "__x64_sys_munmap",
                "__mm_populate"}


@pytest.mark.root
def test_klockstat_reports_mmap_lock_contention_of_the_command(workload):
    res = pytracekit("klockstat", "--json", "--", workload, "kcontend", "500")
    assert res.returncode == 0, res.stderr
    objs = json_lines(res.stdout)
    validate("klockstat", objs)
    sites = [o for o in objs if o["type"] == "lock"]
    # -- COMMAND filters by its pid: every wait is one of the workload's threads
    assert sites and all(o["max_comm"] == "workload" for o in sites)
    # the rwsem waits themselves (kind read/write) on mmap_lock's users
    mmap_sites = [o for o in sites
                  if o["caller"] in MMAP_CALLERS and o["kind"] in ("read", "write")]
    assert mmap_sites, [(o["caller"], o["kind"]) for o in sites]
    assert len({o["lock"] for o in mmap_sites}) == 1      # one process: one mmap_lock
    for o in mmap_sites:
        assert o["frames"][0] in ("rwsem_down_write_slowpath", "rwsem_down_read_slowpath")
    for o in sites:
        assert o["count"] >= 1 and o["wait_max_ns"] <= o["wait_total_ns"]
        assert o["wait_avg_ns"] == round(o["wait_total_ns"] / o["count"])


@pytest.mark.root
def test_klockstat_text_and_caller_filter(workload):
    res = pytracekit("klockstat", "-c", "vm_mmap_pgoff", "-s", "3", "--", workload,
                     "kcontend", "500")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["Lock", "Kind", "Caller", "Avg", "Wait", "Count", "Max",
                                "Wait", "Total", "Wait"]
    rows = [l for l in lines[1:] if not l.startswith(" ")]
    assert rows and all(l.split()[2].startswith("vm_mmap_pgoff+") for l in rows)


def test_bad_tid_filter_is_a_usage_error():
    res = pytracekit("klockstat", "-t", "abc")
    assert res.returncode == 2


def test_pure_helpers():
    assert format_ns(999) == "999 ns" and format_ns(5600) == "5.6 us"
    assert format_ns(2_500_000) == "2.5 ms" and format_ns(3e9) == "3.0 s"
    assert lock_kind(4) == "write" and lock_kind(1 | 2) == "spin+read" and lock_kind(0) == "sleep"
    frames = [Frame("rwsem_down_write_slowpath+0x1", "kernel"),
              Frame("down_write_killable+0x5c", "kernel"), Frame("vm_mmap_pgoff+0xe0", "kernel")]
    assert caller_of(frames).name == "vm_mmap_pgoff+0xe0"
    kallsyms = [(0x1000, 0x40, "jiffies_lock"), (0x2000, 0x10, "other")]
    assert kernel_data_symbol(0x1008, kallsyms) == "jiffies_lock+0x8"
    assert kernel_data_symbol(0x1000, kallsyms) == "jiffies_lock"
    assert kernel_data_symbol(0x3000, kallsyms) is None
    # this kernel lists only section markers (no CONFIG_KALLSYMS_ALL): no names
    from pytracekit.symbolize import datasyms
    if len(open("/proc/kallsyms").read().split(" D ")) < datasyms.MIN_KALLSYMS_DATA:
        assert datasyms._kallsyms_data() == []
    site = LockSite(0x1000, "jiffies_lock", "spin", frames, 2, 3000, 2000, "w", 9)
    text = render([site], depth=1).splitlines()
    assert text[1].split()[:3] == ["jiffies_lock", "spin", "vm_mmap_pgoff+0xe0"]
    assert text[2].strip() == "rwsem_down_write_slowpath+0x1"
    assert text[3].strip() == "max wait by w [9]"
