"""Synthetic StackProfiles for the renderer tests: the shapes the profile and
offcputime tools produce (process frame, user frames, optional -- and kernel frames)."""
from __future__ import annotations

from pytracekit.model import Frame, LossReport, Sample, StackProfile

WORKLOAD = Frame("workload", "process")
MAIN = (Frame("_start", "user", "/w/workload", 0x401020),
        Frame("__libc_start_main", "user", "/lib/libc.so.6", 0x7f0000029d90),
        Frame("main", "user", "/w/workload", 0x401300))


def user(*names: str) -> tuple[Frame, ...]:
    return tuple(Frame(n, "user", "/w/workload", 0x401400 + i * 0x10) for i, n in enumerate(names))


def kernel(*names: str) -> tuple[Frame, ...]:
    return tuple(Frame(n, "kernel", "", 0xffffffff81000000 + i * 0x100)
                 for i, n in enumerate(names))


def spin_profile(inner: int = 950, outer: int = 30, irq: int = 20, other: int = 0) -> StackProfile:
    """The spinning workload: nearly everything in main -> spin_outer -> spin_inner."""
    samples = [
        Sample((WORKLOAD,) + MAIN + user("spin_outer", "spin_inner"), inner, 42, 42, "workload"),
        Sample((WORKLOAD,) + MAIN + user("spin_outer"), outer, 42, 42, "workload"),
        Sample((WORKLOAD,) + MAIN + user("spin_outer", "spin_inner") + (Frame("--", "marker"),)
               + kernel("asm_sysvec_apic_timer_interrupt", "sysvec_apic_timer_interrupt"),
               irq, 42, 43, "workload"),
    ]
    if other:
        samples.append(Sample((Frame("swapper/0", "process"),) + kernel("do_idle", "default_idle"),
                              other, 0, 0, "swapper/0"))
    return StackProfile(samples=samples, value_type="samples", unit="count",
                        period=10_101_010, duration_ns=2_000_000_000,
                        loss=LossReport(stack_errors=3, unknown_frames=1),
                        meta={"tool": "profile", "frequency": "99"})
