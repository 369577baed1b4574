"""offcputime, offwaketime, wakeuptime with profile's user stacks (issues 12
and 13): unwound in the kernel by CFI (--unwind dwarf, the default) and with
Python frames (--python, the default), on the workload built without frame
pointers and on real interpreters running tests/python_target.py."""
from __future__ import annotations

import json

import pytest

from conftest import pytracekit
from pythons import need_python
from stack_checks import contains_run, names, parse_json, split_slept
from test_profile_python import TARGET, function, line_of
from test_profile_unwind import ROOT_PATH

SLEEP_PATH = f"{ROOT_PATH};sleeper;nanosleep;clock_nanosleep"
KERNEL_SLEEP = ["do_nanosleep", "schedule", "__schedule"]
THREAD_ROOT = ["_bootstrap", "_bootstrap_inner", "run"]


def _folded_user(stdout: str, comm: str) -> dict[str, int]:
    """`-U -f` output of one comm: {user stack: microseconds}."""
    out = {}
    for line in stdout.splitlines():
        stack, value = line.rsplit(" ", 1)
        who, _, user = stack.partition(";")
        if who == comm:
            out[user] = out.get(user, 0) + int(value)
    return out


@pytest.mark.root
def test_sleeps_without_frame_pointers_have_the_exact_stack_from_start(workload_nofp):
    # 11 sleeps of 30 ms in sleeper(): one user stack, whole from _start (a
    # frame-pointer walk of this build stops at the first libc frame). At
    # least 10 of them: in 1 CI run of 2 the first sleep after the command's
    # entry was not under this stack (open: see the session's closing note)
    res = pytracekit("offcputime", "--json", "--", workload_nofp, "sleeptimed", "11", "30")
    assert res.returncode == 0, res.stderr
    slept, out = split_slept(res.stdout)
    _, stacks, _ = parse_json(out, "offcputime")
    mine = [s for s in stacks if s["comm"] == "workload-nofp"]
    sleeping = [s for s in mine if "sleeper" in names(s, "user")]
    assert {";".join(names(s, "user")) for s in sleeping} == {SLEEP_PATH}, sleeping
    assert all(contains_run(names(s, "kernel"), KERNEL_SLEEP) for s in sleeping), sleeping
    # within the wall time the workload measured around its sleeps
    assert 300_000 <= sum(s["value"] for s in sleeping) <= slept["slept_ns"] / 1000, \
        (sleeping, slept, res.stderr)
    # our own hold of the command at its entry point (SIGSTOP until its tables
    # are loaded) is not the program's blocking
    assert not any("do_signal_stop" in names(s, "kernel") for s in mine), mine


@pytest.mark.root
def test_frame_pointer_option_keeps_the_kernel_walk(workload):
    # the frame-pointer build: the kernel's walk has no frame for _start, CFI has
    for mode, has_start in (("fp", False), ("dwarf", True)):
        res = pytracekit("offcputime", "-U", "-f", "--unwind", mode, "--", workload,
                         "sleeptimed", "4", "25")
        assert res.returncode == 0, res.stderr
        slept, out = split_slept(res.stdout)
        stacks = _folded_user(out, "workload")
        top = max(stacks, key=stacks.get)
        assert top.endswith("main;sleeper;nanosleep;clock_nanosleep"), stacks
        assert top.startswith("_start;") == has_start, stacks
        assert 100_000 <= stacks[top] <= slept["slept_ns"] / 1000, (stacks, slept)


def _slept(path) -> dict[str, int]:
    """The target's own measure of its sleeps: {function: microseconds}."""
    return {k: int(v * 1e6) for k, v in json.loads(path.read_text()).items()}


def _python_functions(stack: dict) -> list[str]:
    return [function(f) for f in names(stack, "python")]


@pytest.mark.root
@pytest.mark.parametrize("interpreter", ["debian-3.11", "pyenv-3.12", "pyenv-3.13"])
def test_python_sleeps_are_charged_to_their_functions(interpreter, tmp_path):
    """Three threads sleep 10 x 50 ms each in nap, nap_a, nap_b: each
    function's off-CPU time is its measured time, never mixed with another's."""
    python = need_python(interpreter)
    res = pytracekit("offcputime", "--json", "--", python, str(TARGET), "naps", "10", "50",
                     str(tmp_path / "slept"), timeout=120)
    assert res.returncode == 0, res.stderr
    _, stacks, _ = parse_json(res.stdout, "offcputime")
    slept = _slept(tmp_path / "slept")
    expected = {"nap": ["<module>", "naps", "sleeper", "napper", "nap"],
                "nap_a": THREAD_ROOT + ["napper", "nap_a"],
                "nap_b": THREAD_ROOT + ["napper", "nap_b"]}
    sleep_line = line_of("time.sleep(ms / 1000)", "nap(ms)")
    charged = dict.fromkeys(expected, 0)
    for s in stacks:
        funcs = _python_functions(s)
        naps = [f for f in funcs if f in expected]
        if not naps:
            continue
        assert len(naps) == 1 and funcs == expected[naps[0]], funcs    # one thread's stack
        charged[naps[0]] += s["value"]
        if naps[0] == "nap":
            assert names(s, "python")[-1] == f"nap (python_target.py:{sleep_line})"
    for name, total in charged.items():
        assert abs(total - slept[name]) <= 0.1 * slept[name], (charged, slept, res.stderr)
        assert slept[name] >= 500_000


_STARTS: dict[str, tuple] = {}


def _starts_run(interpreter: str, tmp_path_factory) -> tuple[dict, dict, str]:
    """One offcputime run of python_target.py starts per interpreter (no
    warm-up: the script's first sleep, then 6 threads started one after
    another whose only sleep is their first block): ({function: charged us},
    {function: measured us}, stderr)."""
    if interpreter not in _STARTS:
        python = need_python(interpreter)
        out = tmp_path_factory.mktemp("starts") / "slept"
        res = pytracekit("offcputime", "--json", "--", python, str(TARGET), "starts", "6",
                         str(out), timeout=120)
        assert res.returncode == 0, res.stderr
        _, stacks, _ = parse_json(res.stdout, "offcputime")
        expected = {"starts": ["<module>", "starts"],
                    "first_block": THREAD_ROOT + ["first_block"]}
        charged = dict.fromkeys(expected, 0)
        for s in stacks:
            funcs = _python_functions(s)
            if funcs and funcs[-1] in expected:
                assert funcs == expected[funcs[-1]], funcs
                charged[funcs[-1]] += s["value"]
        _STARTS[interpreter] = (charged, _slept(out), res.stderr)
    return _STARTS[interpreter]


@pytest.mark.root
@pytest.mark.parametrize("interpreter", ["debian-3.11", "pyenv-3.13"])
def test_first_block_of_a_command_has_python_frames(interpreter, tmp_path_factory):
    """The command is registered at its entry point, not at its first event
    (a 3.13 run lost its first blocks to that under load)."""
    charged, slept, stderr = _starts_run(interpreter, tmp_path_factory)
    assert abs(charged["starts"] - slept["starts"]) <= 0.1 * slept["starts"], \
        (charged, slept, stderr)


@pytest.mark.root
@pytest.mark.parametrize("interpreter", ["debian-3.11", "pyenv-3.13"])
def test_first_block_of_each_new_thread_has_python_frames(interpreter, tmp_path_factory):
    """Each thread's one 100-ms sleep, charged whole to first_block. Under load,
    about 1 run in 20 lost one of them entirely (not merely its Python frames):
    the sched_switch that put the thread back on a CPU never reached the
    program (its wakeup and its exit did), so the block stayed open. The block
    is now closed when the thread next leaves the CPU (bpf/offcputime.bpf.c)."""
    charged, slept, stderr = _starts_run(interpreter, tmp_path_factory)
    assert abs(charged["first_block"] - slept["first_block"]) <= 0.1 * slept["first_block"], \
        (charged, slept, stderr)


@pytest.mark.root
def test_no_python_option_charges_the_native_stack_only(tmp_path):
    python = need_python("debian-3.11")
    res = pytracekit("offcputime", "--json", "--no-python", "--", python, str(TARGET), "naps",
                     "5", "40", str(tmp_path / "slept"), timeout=120)
    assert res.returncode == 0, res.stderr
    _, stacks, _ = parse_json(res.stdout, "offcputime")
    assert not any(names(s, "python") for s in stacks)
    # the three threads' sleeps, under libc's clock_nanosleep and the kernel's sleep
    sleeping = sum(s["value"] for s in stacks if s["comm"] == "python3.11"
                   and "clock_nanosleep" in names(s, "user")
                   and contains_run(names(s, "kernel"), KERNEL_SLEEP))
    total = sum(_slept(tmp_path / "slept").values())
    assert 0.9 * total <= sleeping <= 1.1 * total, (sleeping, total)


def _waker_split(stack: dict) -> tuple[list[str], list[str]]:
    """offwaketime's (blocked, waker) Python function names around `--`."""
    frames = stack["frames"]
    cut = next(i for i, f in enumerate(frames) if f["name"] == "--")
    py = lambda part: [function(f["name"]) for f in part if f["kind"] == "python"]
    return py(frames[:cut]), py(frames[cut + 1:])[::-1]   # the waker's read root first


def _sleeps_on_a_lock(stack: dict) -> bool:
    """offwaketime's blocked side is a sleep on a Python lock (a semaphore:
    only a release wakes it), not a preemption or a wait for the GIL."""
    frames = stack["frames"]
    blocked = frames[:next(i for i, f in enumerate(frames) if f["name"] == "--")]
    user = [f["name"] for f in blocked if f["kind"] == "user"]
    kernel = [f["name"] for f in blocked if f["kind"] == "kernel"]
    return any("sem_wait" in name for name in user) and \
        contains_run(kernel, ["futex_do_wait", "schedule", "__schedule"])


@pytest.mark.root
def test_offwaketime_python_waiter_and_its_python_waker(tmp_path):
    """A thread waits in wait_for_it for an Event that the main thread sets in
    wake_it, 10 times: the blocked Python stack and the waker's. The waker is
    taken in its own context whichever CPU the waiter sleeps on (sched_wakeup
    of a thread whose CPU was idle ran there, in the idle task: 10-30% of
    these waits lacked the waker's Python stack in 1 of 2 CI runs)."""
    python = need_python("debian-3.11")
    res = pytracekit("offwaketime", "--json", "--", python, str(TARGET), "handoff", "10",
                     str(tmp_path / "slept"), timeout=120)
    assert res.returncode == 0, res.stderr
    _, stacks, _ = parse_json(res.stdout, "offwaketime")
    waited = on_locks = by_wake_it = 0
    for s in stacks:
        blocked, waker = _waker_split(s)
        if "wait_for_it" not in blocked:
            continue
        assert blocked[:5] == THREAD_ROOT + ["waiter", "wait_for_it"], blocked
        waited += s["value"]
        if _sleeps_on_a_lock(s):   # the Event's; only Event.set in wake_it releases it
            on_locks += s["value"]
            by_wake_it += s["value"] if waker[:3] == ["<module>", "handoff", "wake_it"] else 0
    slept = _slept(tmp_path / "slept")["wait_for_it"]
    assert abs(waited - slept) <= 0.1 * slept, (waited, slept)
    # the 10 waits of ~20 ms: one with another waker is 10%
    assert on_locks >= 0.8 * slept, (on_locks, slept, res.stdout)
    assert by_wake_it >= 0.95 * on_locks, (by_wake_it, on_locks, res.stdout)


@pytest.mark.root
def test_wakeuptime_charges_the_python_waker(tmp_path):
    python = need_python("debian-3.11")
    res = pytracekit("wakeuptime", "--json", "--", python, str(TARGET), "handoff", "10",
                     str(tmp_path / "slept"), timeout=120)
    assert res.returncode == 0, res.stderr
    _, stacks, _ = parse_json(res.stdout, "wakeuptime")
    by_wake_it = sum(s["value"] for s in stacks
                     if _python_functions(s)[:3] == ["<module>", "handoff", "wake_it"])
    # the waiter's waits (each ~20 ms) are the only ones wake_it ends; its
    # other blocks are short waits for the GIL (woken as the main thread sleeps)
    blocked = _slept(tmp_path / "slept")["wait_for_it_blocked"]
    assert 0.8 * blocked <= by_wake_it <= 1.1 * blocked, (by_wake_it, blocked, res.stdout)


@pytest.mark.root
def test_record_off_cpu_keeps_the_python_sleeps(tmp_path):
    """record --off-cpu runs offcputime's program with Python frames: the
    recording holds each nap function's time, read back by report."""
    from pytracekit.collect import recording
    python = need_python("debian-3.11")
    path = tmp_path / "naps.ptk"
    res = pytracekit("record", "--off-cpu", "-o", str(path), "--", python, str(TARGET),
                     "naps", "5", "40", str(tmp_path / "slept"), timeout=120)
    assert res.returncode == 0, res.stderr
    slept = _slept(tmp_path / "slept")
    charged = dict.fromkeys((k for k in slept if not k.startswith("warm_up")), 0)
    recorded = recording.load(str(path))
    assert "unmatched_events" not in recorded.meta   # each block is kept on its stack
    for s in recorded.samples:
        funcs = [function(f.name) for f in s.stack if f.kind == "python"]
        if funcs and funcs[-1] in charged:
            charged[funcs[-1]] += s.value
    for name, total in charged.items():
        assert abs(total - slept[name]) <= 0.1 * slept[name], (charged, slept, res.stderr)


@pytest.mark.root
def test_the_programs_own_stop_is_charged_and_the_hold_is_not():
    # sh stops itself for 0.5 s (a forked subshell continues it): a stop
    # of the program's own, charged with its stack through `kill`. The
    # holds pytracekit puts sh and sleep in at their entries (in ld.so's
    # _dl_debug_state) are not charged: their windows end at the switch-in
    # after the stop, so the later stop counts
    script = "(sleep 0.5; kill -CONT $$) & kill -STOP $$; wait"
    res = pytracekit("offcputime", "--json", "--", "sh", "-c", script)
    assert res.returncode == 0, res.stderr
    _, stacks, _ = parse_json(res.stdout, "offcputime")
    stopped = [s for s in stacks if "do_signal_stop" in names(s, "kernel")]
    held = [s for s in stopped if "dl_main" in names(s, "user")]
    assert not held, held
    own = sum(s["value"] for s in stopped if s["comm"] == "sh" and "kill" in names(s, "user"))
    # (at least the sleep, less how long sh took from the fork to its stop)
    assert 300_000 <= own <= 1_500_000, (own, stopped)
