"""Folded stacks: exact lines, and parsing them back gives the same profile."""
import pytest

from pytracekit.errors import UsageError
from pytracekit.model import Frame, Sample, StackProfile
from pytracekit.render.folded import folded, parse_folded

from stack_samples import spin_profile

SPIN = "workload;_start;__libc_start_main;main;spin_outer"


def test_folded_lines_are_root_first_with_comm_and_sorted():
    text = folded(spin_profile(other=7))
    assert text.splitlines() == [
        "swapper/0;do_idle;default_idle 7",
        f"{SPIN} 30",
        f"{SPIN};spin_inner 950",
        f"{SPIN};spin_inner;--;asm_sysvec_apic_timer_interrupt;sysvec_apic_timer_interrupt 20",
    ]
    assert text.endswith("\n")


def test_identical_stacks_are_summed_and_comm_is_prepended_when_no_process_frame():
    stack = (Frame("main"), Frame("work"))
    profile = StackProfile([Sample(stack, 2, pid=5, comm="app"),
                            Sample(stack, 3, pid=5, comm="app"), Sample(stack, 4)])
    assert folded(profile) == "app;main;work 5\nmain;work 4\n"
    assert folded(profile, include_pid=True) == "app-5;main;work 5\nmain;work 4\n"


def test_names_that_would_break_a_line_are_cleaned():
    # the newline is escaped where the name enters (model.Frame), the ; here
    profile = StackProfile([Sample((Frame("app", "process"), Frame("ns::f(a;b)\n")), 1)])
    assert folded(profile) == "app;ns::f(a:b)\\x0a 1\n"
    assert parse_folded(folded(profile)).samples[0].stack[1].name == "ns::f(a:b)\\x0a"


def test_round_trip_keeps_names_values_and_kinds():
    profile = spin_profile(other=7)
    back = parse_folded(folded(profile))
    assert back.total == profile.total == 1007
    got = {tuple((f.name, f.kind) for f in s.stack): s.value for s in back.samples}
    want = {tuple((f.name, f.kind if f.kind != "kernel" else "user") for f in s.stack): s.value
            for s in profile.samples}
    # Without `_[k]` annotations kernel frames read back as user frames: the
    # format has only names. Everything else (process, marker) survives.
    assert got == want
    assert {s.comm for s in back.samples} == {"workload", "swapper/0"}
    assert folded(back) == folded(profile)


def test_bcc_annotations_give_frame_kinds_and_pids_come_back():
    text = "app-77;main;interp_[j] 2\napp-77;main;read_[k];vfs_read_[k] 3\n"
    back = parse_folded(text, include_pid=True)
    assert [(f.name, f.kind) for f in back.samples[1].stack] == [
        ("app", "process"), ("main", "user"), ("read_[k]", "kernel"), ("vfs_read_[k]", "kernel")]
    assert back.samples[0].stack[-1].kind == "jit"
    assert {(s.pid, s.comm) for s in back.samples} == {(77, "app")}
    assert folded(back, include_pid=True) == text


def test_names_with_spaces_and_comments_and_blank_lines():
    back = parse_folded("# header\n\napp;operator new(unsigned long) 12\n", comm_first=False)
    assert [f.name for f in back.samples[0].stack] == ["app", "operator new(unsigned long)"]
    assert back.samples[0].stack[0].kind == "user" and back.total == 12


@pytest.mark.parametrize("line", ["app;main", "app;main x", "app;main -3", " 5"])
def test_malformed_lines_are_one_clear_error(line):
    with pytest.raises(UsageError) as info:
        parse_folded(f"ok;fine 1\n{line}\n")
    assert info.value.message.startswith("folded stacks line 2: expected 'frame;frame;... COUNT'")
