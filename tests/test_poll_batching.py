"""watch_new_pids' poll (collect/stack_maps.py) as a stack tool's run loop calls
it: its batching is pure logic over the ring poll, the clock and sleep, so a
recording stand-in for BCC's ring buffers is enough here (the real rings are
exercised by every stack tool's tests). What it pins: a quiet poll blocks
once (each blocking wait costs CPU), and a wake-up with work makes the next
poll wait for the rest of its batch first, so a churn of announcements is
handled in batches."""
from __future__ import annotations

import ctypes

import pytest

from pytracekit.collect import stack_maps


class FakeRing:
    def __init__(self) -> None:
        self.callback = None

    def open_ring_buffer(self, callback) -> None:
        self.callback = callback


class FakeBpf:
    """ring_buffer_poll: records its timeout and runs the callbacks queued."""

    def __init__(self, rings: dict[str, FakeRing], clock: list[float]) -> None:
        self.rings, self.clock = rings, clock
        self.polls: list[int] = []
        self.queued: list[int] = []   # pids announced at the next poll

    def ring_buffer_poll(self, timeout_ms: int) -> None:
        self.polls.append(timeout_ms)
        if self.queued:
            for pid in self.queued:
                value = ctypes.c_uint32(pid)
                self.rings["new_pids"].callback(None, ctypes.addressof(value), 4)
            self.queued = []
        else:
            self.clock[0] += timeout_ms / 1000   # waited the whole timeout


class FakeProg:
    def __init__(self, clock: list[float]) -> None:
        self.rings = {"new_pids": FakeRing()}
        self.bpf = FakeBpf(self.rings, clock)

    def __getitem__(self, name: str) -> FakeRing:
        return self.rings[name]


class FakeUsers:
    def __init__(self) -> None:
        self.remembered: list[int] = []

    def forget(self, pid: int) -> None:
        pass

    def maps_changed(self, pid: int) -> bool:
        return False


class FakeSymbolizer:
    def __init__(self) -> None:
        self.users = FakeUsers()

    def remember(self, pid: int) -> None:
        self.users.remembered.append(pid)


@pytest.fixture
def loop(monkeypatch):
    clock = [1000.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock[0] += seconds

    monkeypatch.setattr("time.monotonic", lambda: clock[0])
    monkeypatch.setattr("time.sleep", sleep)
    prog, symbolizer = FakeProg(clock), FakeSymbolizer()
    poll = stack_maps.watch_new_pids(prog, symbolizer, settle_s=(), batch_s=0.03)
    return poll, prog, symbolizer, sleeps


def test_a_quiet_poll_waits_once_for_its_whole_timeout(loop):
    poll, prog, _symbolizer, sleeps = loop
    for _ in range(3):
        poll(100)
    assert sleeps == []
    assert prog.bpf.polls == [100, 100, 100]


def test_after_a_wake_up_with_events_the_next_poll_waits_for_its_batch(loop):
    poll, prog, symbolizer, sleeps = loop
    prog.bpf.queued = [4242]
    poll(100)                      # the announcement, handled at once
    assert symbolizer.users.remembered == [4242]
    assert sleeps == []
    poll(100)                      # then the rest of the 30 ms batch, then the wait
    assert sleeps == [pytest.approx(0.03)]
    assert prog.bpf.polls[0] == 100 and 69 <= prog.bpf.polls[1] <= 71   # (ms, rounded)
    poll(100)                      # that wait brought nothing: quiet again
    assert len(sleeps) == 1
    assert prog.bpf.polls[-1] == 100
