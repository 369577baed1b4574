"""doctor must tell the truth about this kernel (see ../shared/KERNEL.md)."""
import json
import os

import pytest

from conftest import pytracekit


@pytest.mark.root
def test_doctor_reports_each_feature_with_evidence():
    res = pytracekit("doctor", "--json")
    assert res.returncode == 0, res.stderr
    checks = {c["feature"]: c for c in map(json.loads, res.stdout.splitlines())}
    expected = ["BTF", "tracefs", "BCC compiles here", "tracepoints", "raw tracepoints",
                "perf software events", "uprobes", "stack maps", "ring buffer", "kprobes",
                "fentry/fexit", "uprobe_multi links", "USDT", "perf hardware events"]
    assert list(checks) == expected
    for c in checks.values():
        assert c["evidence"], c
    # What attaches is proven by attaching: these must work on any BPF-capable kernel.
    for name in ["BCC compiles here", "tracepoints", "raw tracepoints", "perf software events",
                 "uprobes", "stack maps", "ring buffer"]:
        assert checks[name]["available"], checks[name]
    assert checks["BTF"]["available"] == os.path.exists("/sys/kernel/btf/vmlinux")
    kprobe_pmu = os.path.exists("/sys/bus/event_source/devices/kprobe/type")
    assert checks["kprobes"]["available"] == kprobe_pmu
    release = tuple(int(x) for x in os.uname().release.split(".")[:2])
    if release >= (6, 6):     # uprobe_multi links came in 6.6
        assert checks["uprobe_multi links"]["available"], checks["uprobe_multi links"]


@pytest.mark.root
def test_doctor_matches_this_machine_class():
    """On the project's machines (no kprobes, no trampolines, a VM) say so."""
    if os.path.exists("/sys/bus/event_source/devices/kprobe/type"):
        pytest.skip("this kernel has kprobes: not the project's reference machine")
    res = pytracekit("doctor", "--json")
    checks = {c["feature"]: c for c in map(json.loads, res.stdout.splitlines())}
    assert not checks["kprobes"]["available"]
    assert "CONFIG_KPROBES" in checks["kprobes"]["evidence"]
    assert not checks["fentry/fexit"]["available"]
    assert not checks["perf hardware events"]["available"]
    assert checks["USDT"]["available"]


def test_doctor_text_has_one_line_per_feature():
    if os.geteuid() != 0:
        pytest.skip("needs root to load BPF programs")
    res = pytracekit("doctor")
    lines = res.stdout.splitlines()
    assert len(lines) == 14
    assert lines[0].startswith("BTF")
