"""The event tools keep frame-pointer user stacks (--unwind fp, or a process
the in-kernel unwinder has not loaded yet) in `user_stacks` under a hash of
their frames (ptk_ustack.h USTACK_LAYOUT), not in a stack map: each of a
storm's processes has its own addresses (ASLR), so 2000 processes are 2000
distinct stacks, and in a stack map of 4096 buckets about a fifth of them
collided and were lost (measured: 375 of 2000, counted in stack_errors). Stored by hash, 4096 slots
hold 4096 distinct stacks: none may be lost, and what could not be stored is
counted."""
import pytest

from conftest import Tool, run_workload
from probe_helpers import validated_json_lines
from stack_checks import names

STORM = 2000


@pytest.mark.root
@pytest.mark.alone   # system-wide on the workload's child_spin: another test's workload would be counted
def test_stackcount_keeps_every_frame_pointer_stack_of_a_storm(workload):
    # system-wide: the storm's children are new processes (other pids than
    # the command's); each calls child_spin once
    with Tool("stackcount", "-U", "-P", "--json", "--unwind", "fp", "--stack-storage", "4096",
              f"{workload}:child_spin") as running:
        run_workload(workload, "storm", str(STORM), "0", timeout=180)
        out, err = running.stop()
    assert running.returncode == 0, err
    objs = validated_json_lines("stackcount", out)
    stacks = [o for o in objs if o["type"] == "stack"]
    assert objs[-1]["type"] == "loss" and objs[-1]["stack_errors"] == 0, objs[-1]
    assert sum(s["value"] for s in stacks) == STORM, stacks
    # -P: one stack per process, each stored (never "[stack not stored]") and
    # named from its own process's addresses
    assert len({s["pid"] for s in stacks}) == STORM
    assert all(names(s, "user")[-1:] == ["child_spin"] and
               "__libc_start_call_main" in names(s, "user") for s in stacks), stacks[:3]
