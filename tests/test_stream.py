"""The ring buffer reader (pytracekit/collect/stream.py) against a ring laid out in a
file exactly as the kernel maps a BPF ring buffer: consumer page, producer
page, then the data pages twice. No BPF needed."""
import mmap
import struct

import pytest

from pytracekit.collect import stream
from pytracekit.errors import PytracekitError, UsageError

PAGE = mmap.PAGESIZE
SIZE = 4 * PAGE
FIELDS = stream.fields(("seq", "Q"), ("pid", "I"), ("comm", "16s"))   # 32 bytes, as C pads it
STRIDE = 8 + 32


class FakeRing:
    def __init__(self, tmp_path):
        self.path = tmp_path / "ring"
        self.path.write_bytes(bytes(2 * PAGE + 2 * SIZE))
        self.file = open(self.path, "r+b")
        self.prod = 0
        self.reader = stream.RingReader(self.file.fileno(), SIZE, FIELDS)

    def _write(self, pos: int, data: bytes) -> None:
        for base in (2 * PAGE, 2 * PAGE + SIZE):     # the kernel maps the data twice
            start = pos % SIZE
            first = data[:SIZE - start]
            self.file.seek(base + start)
            self.file.write(first)
            if len(first) < len(data):
                self.file.seek(base)
                self.file.write(data[len(first):])
        self.file.flush()

    def add(self, seq: int, length: int = 32, flags: int = 0) -> None:
        body = struct.pack("@QI16s4x", seq, 100 + seq, b"comm%d" % seq)   # C: comm at 12
        self._write(self.prod, struct.pack("@II", length | flags, 0) + body)
        self.prod += 8 + ((length + 7) & ~7)
        self.file.seek(PAGE)
        self.file.write(struct.pack("@Q", self.prod))
        self.file.flush()

    def commit(self, pos: int, length: int = 32) -> None:
        self._write(pos, struct.pack("@I", length))

    def consumer(self) -> int:
        self.file.seek(0)
        return struct.unpack("@Q", self.file.read(8))[0]

    def set_consumer(self, pos: int) -> None:
        self.file.seek(0)
        self.file.write(struct.pack("@Q", pos))
        self.file.flush()


@pytest.fixture
def ring(tmp_path):
    fake = FakeRing(tmp_path)
    yield fake
    fake.reader.close()
    fake.file.close()


def _read(ring, **kwargs) -> list[tuple]:
    got: list[tuple] = []
    ring.reader.consume(got.extend, **kwargs)
    return got


def test_decodes_committed_records_in_order_and_moves_the_consumer(ring):
    for seq in range(5):
        ring.add(seq)
    rows = _read(ring)
    assert [(r[0], r[1], stream.cstr(r[2])) for r in rows] == \
        [(s, 100 + s, f"comm{s}") for s in range(5)]
    assert ring.consumer() == 5 * STRIDE and ring.reader.captured == 5
    assert _read(ring) == [] and ring.reader.pending_bytes() == 0


def test_stops_at_a_busy_record_and_resumes_once_committed(ring):
    ring.add(0)
    busy_at = ring.prod
    ring.add(1, flags=stream.BUSY_BIT)
    ring.add(2)
    assert [r[0] for r in _read(ring)] == [0]
    assert ring.reader.unread_records() == 2
    ring.commit(busy_at)
    assert [r[0] for r in _read(ring)] == [1, 2]


def test_skips_discarded_records(ring):
    ring.add(0)
    ring.add(1, flags=stream.DISCARD_BIT)
    ring.add(2)
    assert [r[0] for r in _read(ring)] == [0, 2]
    assert ring.reader.captured == 2


def test_a_record_wrapping_the_end_reads_through_the_double_mapping(ring):
    start = SIZE - STRIDE // 2          # the next record straddles the end
    ring.prod = start
    ring.set_consumer(start)
    ring.add(7)
    ring.add(8)
    assert [r[0] for r in _read(ring)] == [7, 8]


def test_until_stops_at_a_producer_position(ring):
    for seq in range(3):
        ring.add(seq)
    snapshot = ring.prod               # what the final drain after Ctrl-C reads up to
    for seq in range(3, 5):
        ring.add(seq)
    assert [r[0] for r in _read(ring, until=snapshot)] == [0, 1, 2]
    assert ring.reader.unread_records() == 2


def test_a_record_of_another_size_is_a_clear_error(ring):
    ring.add(0, length=48)
    with pytest.raises(PytracekitError, match="48 bytes, expected 32"):
        _read(ring)


def test_buffer_pages_must_be_a_power_of_two():
    assert stream.check_buffer_pages(64) == 64
    with pytest.raises(UsageError):
        stream.check_buffer_pages(100)


def test_wakeup_threshold_is_a_power_of_two_below_the_buffer():
    for pages in (1, 16, 1024, 65536):
        wake = stream.wakeup_bytes(pages * PAGE)
        assert wake & (wake - 1) == 0 and wake <= max(PAGE, pages * PAGE // 8)


def test_summary_line_and_json():
    summary = stream.StreamSummary(captured=10, printed=9, unread=2)
    assert summary.line() == "10 events captured, 0 lost, 2 left unread at exit"
    from pytracekit.families.event_tools import summary_obj
    assert summary_obj(summary)["type"] == "loss" and summary_obj(summary)["unread"] == 2


def test_interval_and_count_or_a_command():
    from pytracekit.families.summary import interval_and_count
    assert interval_and_count(("1", "5"), None, None) == (1.0, 5, ())
    assert interval_and_count(("0.5",), None, None) == (0.5, None, ())
    assert interval_and_count(("dd", "if=x"), None, None) == (None, None, ("dd", "if=x"))
    assert interval_and_count(("sleep", "1"), 2.0, None) == (2.0, None, ("sleep", "1"))
    with pytest.raises(UsageError):
        interval_and_count((), None, 3)


def test_bcc_value_formats():
    from pytracekit.kernel import block
    from pytracekit.tools import biosnoop, execsnoop, exitsnoop, killsnoop, opensnoop
    assert exitsnoop.exit_text(0) == "0"
    assert exitsnoop.exit_text(3 << 8) == "code 3"
    assert exitsnoop.exit_text(9) == "signal 9 (KILL)"
    assert exitsnoop.exit_text(11 | 0x80) == "signal 11 (SEGV), core dumped"
    assert killsnoop.signal_number("TERM") == killsnoop.signal_number("SIGTERM") == 15
    assert opensnoop.flag_mask(("O_WRONLY", "creat")) == (1 | 0o100, False)
    assert opensnoop.flag_mask(("O_RDONLY",)) == (0, True)
    assert block.rwbs(int.from_bytes(b"WS", "little")) == "WS"
    assert block.kernel_dev(253, 1) == (253 << 20) | 1
    assert biosnoop.direction("RA") == "R" and biosnoop.direction("FWS") == "W"
    argv, more = execsnoop.argv_of(b"/bin/ls\0junk", b"ls\0-l\0/tmp\0", 11, 0, 1)
    assert argv == ["/bin/ls", "-l"] and more


def test_c_strings_are_cut_at_the_nul_and_remembered():
    names = stream.CStrings(8)
    assert names[b"cat\0garbage"] == "cat     " and b"cat\0garbage" in names
    assert stream.cstr(b"no-nul") == "no-nul"


def test_opensnoop_lines_are_remembered_per_record_and_the_memo_is_bounded(monkeypatch):
    """The memo keys on every field after the timestamp: records that differ
    in any of them (fd, error, path, pid) get their own lines."""
    from pytracekit.tools import opensnoop
    monkeypatch.setattr(stream.LineMemo, "LIMIT", 3)
    lines = opensnoop.text_formatter(True, False, False, False, t0=1_000_000_000)
    comm, path = b"wl\0" + b"x" * 13, b"/a\0junk".ljust(256, b"\0")
    rows = [(1_500_000_000, 7, 7, 0, 3, 0, 0, comm, path),
            (2_000_000_000, 7, 7, 0, 3, 0, 0, comm, path),
            (2_000_000_001, 7, 7, 0, -2, 0, 0, comm, path),
            (2_000_000_002, 8, 8, 0, 3, 0, 0, comm, b"/b\0".ljust(256, b"\0")),
            (2_000_000_003, 7, 7, 0, 4, 0, 0, comm, path)]    # the 4th key: memo cleared
    assert lines(rows) == [
        "0.500000000   7      wl                  3   0 /a",
        "1.000000000   7      wl                  3   0 /a",
        "1.000000001   7      wl                 -1   2 /a",
        "1.000000002   8      wl                  3   0 /b",
        "1.000000003   7      wl                  4   0 /a"]
    memo = stream.LineMemo(lambda key: f"{key}")
    for key in range(5):
        assert memo[(key,)] == f"({key},)"
    assert len(memo) <= 3


def test_execsnoop_argv_of_a_script_drops_the_interpreter_words():
    """`./s.sh a b` runs as `/bin/sh -e ./s.sh a b`: the caller's 3 words are
    the area's last 3; unknown argc or a truncated area keep argv[1:]."""
    from pytracekit.tools import execsnoop
    area = b"/bin/sh\0-e\0./s.sh\0a\0b\0"
    assert execsnoop.argv_of(b"./s.sh", area, len(area), 0, 20, 3) == (["./s.sh", "a", "b"],
                                                                       False)
    assert execsnoop.argv_of(b"./s.sh", area, len(area), 0, 20, 0)[0] == \
        ["./s.sh", "-e", "./s.sh", "a", "b"]
    assert execsnoop.argv_of(b"./s.sh", area, len(area), 1, 20, 3)[0][1] == "-e"
    assert execsnoop.argv_of(b"./s.sh", area, len(area), 0, 1, 3) == (["./s.sh", "a"], True)


def test_user_strings_keep_unreadable_apart_from_empty():
    """bpf/pytracekit.h ptk_read_user_str: "\\0\\xff" could not be read,
    "\\0\\xfe" was NULL, "\\0\\0" is a real empty string."""
    from pytracekit.collect import stream
    assert stream.user_cstr(b"\0\xff\0\0") is None
    assert stream.user_text(b"\0\xff\0\0") == "[unreadable]"
    assert stream.user_cstr(b"\0\xfe") == "(null)"
    assert stream.user_cstr(b"\0\0\xff") == ""
    assert stream.user_cstr(b"/a\0\xff") == "/a"


def test_a_ctrl_c_while_a_batch_is_handled_is_raised_after_it(ring):
    """The consumer moves past a batch before it is handled: a Ctrl-C raised
    in the middle of handling it would lose those events (the final drain
    starts after them), as it once lost all six of bindsnoop's binds."""
    import os
    import signal
    from types import SimpleNamespace
    events = stream.EventStream(SimpleNamespace(), FIELDS)
    events.reader = ring.reader
    for seq in range(3):
        ring.add(seq)
    handled: list[int] = []

    def handle(rows: list[tuple]) -> None:
        os.kill(os.getpid(), signal.SIGINT)
        handled.extend(r[0] for r in rows)

    with pytest.raises(KeyboardInterrupt):
        events.poll(handle, 10)
    assert handled == [0, 1, 2] and ring.consumer() == 3 * STRIDE


@pytest.mark.root
def test_a_signal_during_a_poll_loses_no_record():
    """A signal noted while a poll's callbacks run (runner.signals_deferred: Ctrl-C
    as the last events are read) ends the poll, and the final drain reads the rest:
    every record is handed over once. libbpf moves past a record before its
    callback runs, so one answered -1 unread was lost (trace dropped a process's
    last open in CI)."""
    import os
    import signal
    from pytracekit.engine.loader import Program
    prog = Program.from_text("ring_signal", r'''
#include "vmlinux.h"
#include "pytracekit.h"
BPF_RINGBUF_OUTPUT(events, 8);
TRACEPOINT_PROBE(syscalls, sys_enter_getppid) {
    if ((bpf_get_current_pid_tgid() >> 32) != FILTER_PID)
        return PTK_TP_PASS;
    u64 *n = events.ringbuf_reserve(sizeof(u64));
    if (n) {
        *n = bpf_ktime_get_ns();
        events.ringbuf_submit(n, 0);
    }
    return PTK_TP_PASS;
}
''', defines={"FILTER_PID": os.getpid()})
    try:
        prog.ready()
        rings = stream.CallbackRings(prog)
        seen = []

        def on_event(_ctx, data, _size):
            seen.append(data)
            if len(seen) == 1:   # as the deferred handler notes a SIGINT
                rings.pending.append(signal.SIGINT)
        rings.open("events", on_event)
        for _ in range(3):
            os.getppid()
        with pytest.raises(KeyboardInterrupt):
            rings.poll(100)
        rings.consume()
        assert len(seen) == 3
    finally:
        prog.close()
