"""Per-event tools: a BPF ring buffer read in batches, without silent loss.

A streaming tool is a BPF program plus an event formatter:

* `bpf/<tool>.bpf.c` includes "ptk_stream.h" (pasted in by `load()`), fills
  `struct event` records with `events.ringbuf_reserve()` + `ptk_submit()` and
  counts failed reserves with `ptk_count_loss(PTK_LOST_EVENTS)`;
* the Python side reads that struct's layout from the C (`layout("<tool>")`,
  collect/cstruct.py: the struct is written once), and a `Printer`
  (families/event_tools.py) formats batches of decoded tuples as text lines
  or JSON objects.

The ring buffer is read straight from its mmap (as libbpf does), not through
BCC's one-ctypes-callback-per-event path: a batch of fixed-size records is
decoded by one `struct.iter_unpack` call, formatted, and written with one
write. The BPF side wakes the reader only every WAKEUP_BYTES of backlog; the
reader's short poll timeout picks up the rest. Ctrl-C interrupts at once: the
reader never drains without a time budget, and whatever is left unread at
the end is counted and reported with the losses.
"""
from __future__ import annotations

import contextlib
import functools
import mmap
import os
import re
import select
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from .. import textsafe
from . import cstruct
from ..errors import PytracekitError, UsageError
from ..engine.loader import BPF_DIR, Program, read_source
from ..model import UNREADABLE, LossReport
from ..engine.runner import raise_pending, signals_deferred, signals_held
from ..engine.session import ProgramSession

STREAM_HEADER = "ptk_stream.h"
# Headers pasted in, as the loader pastes pytracekit.h: BCC rewrites map
# calls only in the main file.
_PASTED_INCLUDE = re.compile(r'^\s*#\s*include\s+"(ptk_\w+\.h)"\s*$', re.M)

DEFAULT_BUFFER_PAGES = 4096         # 16 MiB with 4 KiB pages: ~50k events of 300 bytes
PAGE_SIZE = mmap.PAGESIZE
RECORD_HEADER = 8                   # struct bpf_ringbuf_hdr { u32 len; u32 pg_off; }
BUSY_BIT = 1 << 31                  # reserved, not yet committed
DISCARD_BIT = 1 << 30
POLL_MAX_MS = 50                    # how long a straggler can wait for the reader
POLL_BUSY_MS = 2                    # ... while events are flowing (a storm)
BATCH_RECORDS = 8192                # records decoded per iter_unpack call
# After a run ends the probes still fire until the program is closed: what was
# committed by the end (the backlog) is read within a budget (drain_budget).
FINAL_DRAIN_S = 10.0                # after the duration or the target's end
INTERRUPT_DRAIN_S = 0.5             # ... after Ctrl-C/SIGTERM
READER_NICE = -5                    # the reader's priority, relative (see favour_reader)


def drain_budget(why: str) -> float:
    """Seconds to read the backlog of a run that ended for `why`
    (run_until_done's reason)."""
    return INTERRUPT_DRAIN_S if why == "interrupted" else FINAL_DRAIN_S


def check_buffer_pages(pages: int) -> int:
    if pages <= 0 or pages & (pages - 1):
        raise UsageError(f"--buffer-pages {pages} is not a power of two (try 64, 512 or 4096)")
    return pages


def wakeup_bytes(buffer_bytes: int) -> int:
    """Wake the reader every 1/8 buffer, at most every 64 KiB of backlog: a
    wake-up can take a timer tick to arrive (irq_work), and the buffer must
    not fill meanwhile."""
    return max(PAGE_SIZE, min(buffer_bytes // 8, 64 * 1024))


def program(name: str, defines: dict[str, Any] | None = None,
            usdt: list[Any] | None = None) -> Program:
    """Compile bpf/<name>.bpf.c with the bpf/ptk_*.h headers it includes
    pasted in, recursively, each once (`usdt`: bcc.USDT contexts, see loader)."""
    pasted: set[str] = set()

    def paste(match: re.Match) -> str:
        header = match.group(1)
        if header in pasted:
            return ""
        pasted.add(header)
        return _PASTED_INCLUDE.sub(paste, (BPF_DIR / header).read_text())

    return Program.from_text(name, _PASTED_INCLUDE.sub(paste, read_source(name)), defines, usdt)


def load(name: str, defines: dict[str, Any] | None = None,
         buffer_pages: int = DEFAULT_BUFFER_PAGES, usdt: list[Any] | None = None) -> Program:
    """Compile a streaming tool's program with its ring buffer size."""
    pages = check_buffer_pages(buffer_pages)
    return program(name, {**(defines or {}), "BUFFER_PAGES": pages,
                          "WAKEUP_BYTES": wakeup_bytes(pages * PAGE_SIZE)}, usdt)


@dataclass(frozen=True)
class Fields:
    """The C `struct event` as (name, struct-format) pairs, in order.

    Native alignment ("@") lays fields out as the C compiler does; the total
    must equal sizeof(struct event) (checked against every record)."""

    pairs: tuple[tuple[str, str], ...]
    c_size: int | None = None       # sizeof the C struct, when read from it (layout())

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n for n, _ in self.pairs)

    @property
    def format(self) -> str:
        return "".join(f for _, f in self.pairs)

    @property
    def size(self) -> int:
        if self.c_size is not None:
            return self.c_size
        # A trailing zero-length u64 pads to 8 as C pads a struct holding a u64.
        return struct.calcsize("@" + self.format + "0Q")


cstr = textsafe.cstr   # C char array -> printable text (see textsafe)


UNREADABLE_MARK, NULL_MARK = 0xff, 0xfe   # bpf/pytracekit.h ptk_read_user_str


def user_cstr(raw: bytes) -> str | None:
    """A string ptk_read_user_str read: its text, None when it could not be
    read (not paged in), "(null)" for a NULL pointer."""
    if len(raw) >= 2 and raw[0] == 0:
        if raw[1] == UNREADABLE_MARK:
            return None
        if raw[1] == NULL_MARK:
            return "(null)"
    return cstr(raw)


def user_text(raw: bytes) -> str:
    """user_cstr for text output: an unreadable string as [unreadable]."""
    text = user_cstr(raw)
    return UNREADABLE if text is None else text


class CStrings(dict):
    """C char array -> text (left-justified to `width`), remembered: a hot
    path sees the same few names and paths over and over."""

    LIMIT = 8192

    def __init__(self, width: int = 0, decode=cstr) -> None:
        """`decode`: cstr, or user_text/user_cstr for strings from user memory."""
        super().__init__()
        self.width, self.decode = width, decode

    def __missing__(self, raw: bytes) -> str:
        if len(self) >= self.LIMIT:
            self.clear()
        text = self.decode(raw)
        if text is not None:
            text = text.ljust(self.width)
        self[raw] = text
        return text


class LineMemo(dict):
    """A formatted line (or its part after a timestamp) per record, keyed by
    the record's fields: a storm repeats the same few records, and looking a
    line up costs a third of formatting it (measured: ~0.4 against ~1.2 us a
    record for opensnoop). Bounded as CStrings is."""

    LIMIT = 8192

    def __init__(self, make: Callable[[tuple], str]) -> None:
        super().__init__()
        self.make = make

    def __missing__(self, key: tuple) -> str:
        if len(self) >= self.LIMIT:
            self.clear()
        text = self[key] = self.make(key)
        return text


class RingReader:
    """Consumes one BPF_MAP_TYPE_RINGBUF through mmap, in decoded batches."""

    def __init__(self, map_fd: int, size: int, fields: Fields) -> None:
        self.size = size
        self.mask = size - 1
        self.event_size = fields.size
        self.stride = RECORD_HEADER + ((self.event_size + 7) & ~7)
        pad = self.stride - RECORD_HEADER - struct.calcsize("@" + fields.format)
        self._events = struct.Struct(f"@{RECORD_HEADER}x{fields.format}{pad}x")
        self._u32 = struct.Struct("@I")
        # Consumer page (read-write), then the producer page and the data
        # pages, which the kernel maps twice in a row so no record wraps.
        self._consumer = mmap.mmap(map_fd, PAGE_SIZE, mmap.MAP_SHARED,
                                   mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        self._producer = mmap.mmap(map_fd, PAGE_SIZE + 2 * size, mmap.MAP_SHARED,
                                   mmap.PROT_READ, offset=PAGE_SIZE)
        self._data = memoryview(self._producer)[PAGE_SIZE:]
        # One 8-byte load/store each: struct.pack_into() zeroes its target
        # before writing, and the kernel would see consumer_pos == 0 (a full
        # buffer) in between.
        self._consumer_word = memoryview(self._consumer)[:8].cast("Q")
        self._producer_word = memoryview(self._producer)[:8].cast("Q")
        self._map_fd = map_fd
        self._epoll: select.epoll | None = None      # made on first wait()
        self.captured = 0

    # -- positions ----------------------------------------------------------

    def _consumer_pos(self) -> int:
        return self._consumer_word[0]

    def _producer_pos(self) -> int:
        return self._producer_word[0]

    def _advance(self, pos: int) -> None:
        self._consumer_word[0] = pos

    def pending_bytes(self) -> int:
        return self._producer_pos() - self._consumer_pos()

    def unread_records(self) -> int:
        """Records still in the buffer (all records have one size)."""
        return -(-self.pending_bytes() // self.stride)

    # -- reading ------------------------------------------------------------

    def wait(self, timeout_ms: int) -> None:
        """Sleep until the BPF side wakes us or the timeout passes."""
        if self.pending_bytes():
            return
        if self._epoll is None:
            self._epoll = select.epoll()
            self._epoll.register(self._map_fd, select.EPOLLIN)
        self._epoll.poll(max(0, timeout_ms) / 1000)

    def consume(self, handle: Callable[[list[tuple]], None], *,
                until: int | None = None, max_records: int | None = None,
                deadline: float | None = None) -> int:
        """Decode committed records and pass them to `handle` in batches;
        stops at `until` (a producer position), after `max_records` or at
        `deadline` (time.monotonic()). Returns the number of records read."""
        cons = self._consumer_pos()
        end = self._producer_pos() if until is None else until
        done = 0
        while cons < end:
            if max_records is not None and done >= max_records:
                break
            if deadline is not None and done and time.monotonic() >= deadline:
                break
            count = min((end - cons) // self.stride, BATCH_RECORDS)
            if count == 0:
                count = 1      # a lone record that is not ours to decode: check it below
            start = cons & self.mask
            with self._data[start:start + count * self.stride] as region:
                good = self._committed(region, count)
                if good:
                    with region[:good * self.stride] as ready:
                        rows = list(self._events.iter_unpack(ready))
            if good:
                cons += good * self.stride
                done += good
                self.captured += good
                self._advance(cons)
                handle(rows)
            if good < count:
                skip = self._odd_record(cons)
                if skip < 0:
                    break          # the producer is still writing this one
                cons += skip
                self._advance(cons)
        return done

    def _committed(self, region: memoryview, count: int) -> int:
        """How many leading records in `region` are committed events of our size."""
        if len(region) < count * self.stride:
            return 0
        with region.cast("I") as words:
            lengths = words[::self.stride // 4].tolist()
        if lengths.count(self.event_size) == count:
            return count
        for i, length in enumerate(lengths):
            if length != self.event_size:
                return i
        return count

    def _odd_record(self, cons: int) -> int:
        """Bytes to skip at a record that stopped a batch: -1 while it is busy,
        its length if discarded, 0 if it was committed since (read it next
        round); a size the Python side does not know is a bug: say so."""
        length = self._u32.unpack_from(self._data, cons & self.mask)[0]
        if length & BUSY_BIT:
            return -1
        size = length & ~(BUSY_BIT | DISCARD_BIT)
        if length & DISCARD_BIT:
            return RECORD_HEADER + ((size + 7) & ~7)
        if size == self.event_size:
            return 0
        raise PytracekitError(f"a ring buffer record of {size} bytes, expected "
                              f"{self.event_size}: the BPF struct event and the Python "
                              "field list disagree")

    def close(self) -> None:
        if self._epoll is not None:
            self._epoll.close()
        for view in (self._consumer_word, self._producer_word, self._data):
            view.release()
        self._producer.close()
        self._consumer.close()


@dataclass
class StreamSummary:
    """The end-of-run counts of a streaming tool."""
    captured: int = 0
    printed: int = 0
    unread: int = 0
    loss: LossReport = field(default_factory=LossReport)

    def line(self) -> str:
        text = f"{self.captured} events captured, {self.loss.lost_events} lost"
        if self.unread:
            text += f", {self.unread} left unread at exit"
        return text


class EventStream(ProgramSession):
    """A loaded streaming program and its reader: what an event tool's start()
    returns (engine.session); read() gives the events committed since the last."""

    def __init__(self, prog: Program, fields: Fields, map_name: str = "events") -> None:
        self.prog = prog
        self.fields = fields
        self.map_name = map_name
        self.reader: RingReader | None = None
        self._busy = False

    def open(self) -> "RingReader":
        """After prog.ready(): map the ring buffer (not in a dry run)."""
        if self.reader is None:
            table = self.prog[self.map_name]
            self.reader = RingReader(table.map_fd, table.max_entries, self.fields)
        return self.reader

    def poll(self, handle: Callable[[list[tuple]], None], timeout_ms: int) -> int:
        """Wait up to `timeout_ms` (capped) for events, then read a bounded batch."""
        reader = self.open()
        reader.wait(min(timeout_ms, POLL_BUSY_MS if self._busy else POLL_MAX_MS))
        # A batch taken off the ring is handled whole before a Ctrl-C is raised:
        # the consumer has moved past it, so the final drain could not print it.
        with signals_held():
            got = reader.consume(handle, max_records=16 * BATCH_RECORDS)
        self._busy = got > 0
        return got

    def drain(self, handle: Callable[[list[tuple]], None], budget_s: float) -> None:
        """Read what was committed when the run ended, within a time budget."""
        reader = self.open()
        reader.consume(handle, until=reader._producer_pos(),
                       deadline=time.monotonic() + budget_s)

    def read(self) -> list[dict[str, Any]]:
        """Events committed so far, as dicts (for export/record)."""
        got: list[dict[str, Any]] = []
        names = self.fields.names
        self.open().consume(lambda rows: got.extend(dict(zip(names, r)) for r in rows))
        return got

    def summary(self, printed: int = 0) -> StreamSummary:
        reader = self.reader
        return StreamSummary(captured=reader.captured if reader else 0, printed=printed,
                             unread=reader.unread_records() if reader else 0,
                             loss=self.loss())

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
            self.reader = None
        self.prog.close()


def favour_reader() -> None:
    """Run the reading thread at a higher priority when allowed (root): on a
    busy machine the reader otherwise gets a fair share of a CPU and falls
    behind a storm it could keep up with, and the ring buffer overflows. It
    only takes the CPU it needs: it sleeps whenever the buffer is empty. On
    Linux this is the calling thread's priority; a -- COMMAND, forked
    before, keeps its own."""
    with contextlib.suppress(OSError):        # not permitted: the default priority
        os.setpriority(os.PRIO_PROCESS, 0, os.getpriority(os.PRIO_PROCESS, 0) + READER_NICE)


class RunEnd:
    """Where a callback reader's final drain stops: at the first event stamped
    (bpf_ktime_get_ns: CLOCK_MONOTONIC, as time.monotonic_ns) after the run
    ended. Everything committed during the run is read however long that takes
    on a loaded machine (a time budget dropped such events uncounted); a steady
    stream of later events, which would keep libbpf consuming, is not part of
    the run. FINAL_DRAIN_S bounds a pathological backlog."""

    def __init__(self) -> None:
        self.end_ns: int | None = None
        self.give_up = 0.0

    def mark(self) -> None:
        self.end_ns = time.monotonic_ns()
        self.give_up = time.monotonic() + FINAL_DRAIN_S

    def past(self, ts_ns: int) -> bool:
        return self.end_ns is not None and (ts_ns > self.end_ns or
                                            time.monotonic() > self.give_up)


# Ring callbacks run so far in this process. BCC polls all of a program's rings
# at once, so one reader's poll runs the callbacks of the others: a poll loop
# tells by this whether its last wake-up brought events (stack_maps' batching).
_callbacks_run = 0


def callbacks_run() -> int:
    return _callbacks_run


class CallbackRings:
    """BCC's per-event ring buffers (`open_ring_buffer`) of one program, for
    tools that need a Python callback per event (trace, systrace, the new-pid
    reader), with what a callback raises carried out of C.

    An exception cannot cross a ctypes callback: it is printed ("Exception
    ignored ...") and dropped, and BCC turns an EPIPE there into exit(), so
    `| head` flooded stderr while the tool ran on. Here a callback's first
    exception is kept, every callback after it answers -1 (libbpf stops
    consuming) and `poll()`/`consume()` raise it. Ctrl-C/SIGTERM wait until
    the C call returns, then raise (runner.signals_deferred). A callback may
    return -1 itself to stop the current poll (BCC: any int, None means 0)."""

    def __init__(self, prog: Program) -> None:
        self.prog = prog
        self.failure: BaseException | None = None
        self.pending: list[int] = []          # signals noted during a poll

    def open(self, map_name: str, callback: Callable[[Any, Any, int], Any]) -> None:
        def guarded(ctx: Any, data: Any, size: int) -> int:
            global _callbacks_run
            _callbacks_run += 1
            if self.failure is not None:
                return -1
            try:
                result = int(callback(ctx, data, size) or 0)
            except BaseException as exc:     # stdout gone, Ctrl-C, a bug
                self.failure = exc
                return -1
            # A signal noted meanwhile stops the poll after this record, not before
            # the next: libbpf has moved past a record when it hands it over, so a
            # record answered -1 unread was gone, uncounted (a process's last event,
            # when the Ctrl-C came as it was read).
            return -1 if self.pending else result
        self.prog[map_name].open_ring_buffer(guarded)

    def _signals_deferred(self) -> Any:
        # Only the main thread sets handlers (and gets signals); export's
        # scrape thread reads too.
        if threading.current_thread() is threading.main_thread():
            return signals_deferred(self.pending)
        return contextlib.nullcontext()

    def poll(self, timeout_ms: int) -> None:
        with self._signals_deferred():
            self.prog.bpf.ring_buffer_poll(timeout_ms)
        self._raise()

    def consume(self) -> None:
        """Whatever is committed, without waiting: the final drain. A signal
        then only cuts the drain short (the run is ending anyway)."""
        self.pending.clear()
        with self._signals_deferred():
            self.prog.bpf.ring_buffer_consume()
        self._raise_failure()

    def _raise(self) -> None:
        self._raise_failure()
        pending, self.pending[:] = self.pending[:], []   # raised once: the run ends on it
        raise_pending(pending)

    def _raise_failure(self) -> None:
        if self.failure is not None:
            failure, self.failure = self.failure, None
            raise failure


def fields(*pairs: tuple[str, str]) -> Fields:
    return Fields(tuple(pairs))


def layout(program: str, struct_name: str = "event",
           defines: dict[str, Any] | None = None) -> Fields:
    """The fields of `struct struct_name` as bpf/<program>.bpf.c defines it
    (cstruct.struct_layout): one decoded value per member, byte arrays as
    bytes, nested structs inlined. Padding the compiler adds is skipped
    ("Nx" before the member that follows it)."""
    return _fields_of(cstruct.struct_layout(program, struct_name, defines))


@functools.lru_cache(maxsize=256)
def _fields_of(c: "cstruct.Layout") -> Fields:
    pairs, fmt = [], "@"
    for name, code, offset in c.flat():
        lands = struct.calcsize(f"{fmt}0{code[-1]}") if code[-1] != "s" else struct.calcsize(fmt)
        gap = offset - struct.calcsize(fmt)
        if offset != lands:
            if gap < 0:
                raise cstruct.LayoutError(f"struct {c.name}: {name} overlaps what precedes it")
            code = f"{gap}x{code}"
        pairs.append((name, code))
        fmt += code
    return Fields(tuple(pairs), c.size)
