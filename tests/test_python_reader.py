"""pytracekit.symbolize.python against real interpreters (no root, no BPF): the runtime
is found, the user-space walk finds every thread's frames, and the code
reader names them exactly as the interpreter itself (traceback's view,
sys._current_frames()) and faulthandler do. Line decoders are checked on every
instruction of every code object of a stdlib module against co_lines() /
dis.findlinestarts() of the same interpreter."""
from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest

from pytracekit.symbolize.python import code, linetable, runtime, walk

from pythons import INTERPRETERS, need_pyenv, need_python

TARGET = str(Path(__file__).parent / "python_target.py")


@pytest.fixture(scope="module", params=INTERPRETERS)
def blocked(request):
    """(process, its own report) of python_target.py block under one interpreter,
    shared by the tests below (they only read it; faulthandler's dump leaves it
    as it was)."""
    python = need_python(request.param)
    proc = subprocess.Popen([python, TARGET, "block"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
        yield proc, json.loads(line)
    finally:
        proc.kill()
        proc.wait()


def _expected(frames: list) -> list[str]:
    return [f"{name} ({os.path.basename(fn)}:{line})" for name, fn, line, _, _ in frames]


def test_walk_and_reader_match_the_interpreter(blocked):
    proc, report = blocked
    py = runtime.find(proc.pid)
    assert py is not None
    reader = code.CodeReader(py)
    threads = {str(t.thread_id): t for t in walk.threads(py)}
    for ident, frames in report.items():
        assert ident in threads, f"thread {ident} not found by the walk"
        seen = [reader.describe(f.code, f.offset) for f in threads[ident].frames]
        assert seen == _expected(frames)
        # the interpreter's own (id(code), f_lasti) give the same text
        assert [reader.describe(cid, lasti) for _, _, _, cid, lasti in frames] == _expected(frames)
    names = {f[0] for frames in report.values() for f in frames}
    assert "fuenf_函数" in names and {"main_inner", "main_outer"} <= names   # kind-2 str read


def test_a_snapshots_python_files_find_what_the_maps_do(blocked):
    """The Python check takes its candidates from the symbolizer's snapshot of
    the maps (ProcessMaps.python_files) rather than reading them again."""
    from pytracekit.symbolize.symbols import ProcessMaps, python_files_of
    proc, _report = blocked
    snap = ProcessMaps.snapshot(proc.pid)
    assert snap.python_files and all("python" in path for path in snap.python_files)
    assert python_files_of(proc.pid) == snap.python_files   # find's read without one
    from_maps, from_snapshot = runtime.find(proc.pid), runtime.find(proc.pid, snap.python_files)
    assert from_snapshot is not None and from_snapshot == from_maps
    assert runtime.find(proc.pid, {}) is None   # no python-named file mapped


@pytest.mark.parametrize("block", [code.OBJECT_BLOCK, 40])
def test_batched_reads_equal_single_reads(blocked, block, monkeypatch):
    # check_many reads a new stack's code objects together (heads, then the
    # first bytes of every name, file name and line table object, then the
    # rest of long ones: with 40-byte blocks, every one): what it reads
    # equals _read of each, one by one
    monkeypatch.setattr(code, "OBJECT_BLOCK", block)
    proc, _ = blocked
    py = runtime.find(proc.pid)
    codes = [f.code for t in walk.threads(py) for f in t.frames]
    codes += codes[:3] + [0x10]   # repeated ones, and an address that is no object
    batch, single = code.CodeReader(py), code.CodeReader(py)
    try:
        infos = batch.check_many(codes)
        assert infos == [single._read(c) for c in codes]
        assert infos[-1] is None and None not in infos[:-1]
        assert any(not i.name.isascii() for i in infos[:-1])                   # kind-2 str
        assert batch.check_many(codes) == infos   # the cache, re-validated
    finally:
        batch.close()
        single.close()


def test_reader_matches_faulthandler(blocked):
    proc, report = blocked
    py = runtime.find(proc.pid)
    reader = code.CodeReader(py)
    proc.send_signal(signal.SIGUSR1)
    dump, quiet_since, deadline = b"", time.monotonic(), time.monotonic() + 10
    os.set_blocking(proc.stderr.fileno(), False)
    while time.monotonic() < deadline and (not dump or time.monotonic() - quiet_since < 0.5):
        chunk = os.read(proc.stderr.fileno(), 65536) if select.select([proc.stderr], [], [], 0.1)[0] \
            else b""
        if chunk:
            dump, quiet_since = dump + chunk, time.monotonic()
    dump = dump.decode()
    # faulthandler: '  File "PATH", line N in NAME', innermost first, per thread
    # per thread ("Thread 0x...:" or "Current thread 0x...:"); the reporter may still be alive
    fh = []
    for section in re.split(r"^(?=(?:Current thread|Thread) 0x)", dump, flags=re.M):
        head = re.match(r"(?:Current thread|Thread) (0x[0-9a-f]+)", section)
        if head and str(int(head[1], 16)) in report:
            fh += [(os.path.basename(m[1]), int(m[2]), m[3])
                   for m in re.finditer(r'File "([^"]+)", line (\d+) in (\S+)', section)]
    ours = []
    for t in walk.threads(py):
        if str(t.thread_id) in report:
            for f in t.frames:
                info = reader.info(f.code)
                ours.append((info.basename, reader.line(info, f.offset),
                             info.name.rsplit(".", 1)[-1]  # faulthandler: co_name, escaped
                             .encode("ascii", "backslashreplace").decode()))
    assert sorted(ours) == sorted(fh)


def test_cache_fingerprint_catches_a_reused_address(blocked):
    proc, report = blocked
    py = runtime.find(proc.pid)
    reader = code.CodeReader(py)
    frames = next(iter(report.values()))
    (name, _, _, cid, _), (name2, _, _, cid2, _) = frames[0], frames[1]
    assert reader.info(cid).name == name
    # pretend the address was another code object's before: check() re-reads it
    reader.codes[cid] = reader.info(cid2)
    assert reader.info(cid).name == name2          # the cache alone is fooled
    assert reader.check(cid).name == name          # the fingerprint is not
    # read when something else lived there (not a code object then): read again
    reader.codes[cid] = None
    assert reader.check(cid).name == name


class _Replaced:
    """A process's memory where the object at `address` was freed (a free
    list's pointers over its refcount and type) or, with `other`, replaced by
    the object at `other`."""

    closed = False

    def __init__(self, mem, address: int, other: int = 0) -> None:
        self.mem, self.address, self.other = mem, address, other

    def read(self, address: int, size: int) -> bytes:
        if address != self.address:
            return self.mem.read(address, size)
        if self.other:
            return self.mem.read(self.other, size)
        return bytes(16) + self.mem.read(address, size)[16:]

    def read_many(self, addresses: list[int], size: int) -> list[bytes]:
        return [self.read(a, size) for a in addresses]

    def read_ranges(self, ranges: list[tuple[int, int]]) -> list[bytes]:
        return [self.read(a, size) for a, size in ranges]

    def u64(self, address: int) -> int:
        return int.from_bytes(self.read(address, 8), "little")


def test_a_code_object_freed_after_its_sample_keeps_its_name(blocked):
    """A stack names each frame's object by BPF's ident of it: the name read
    while it lived when the address no longer holds it, never another's."""
    proc, report = blocked
    py = runtime.find(proc.pid)
    frames = next(iter(report.values()))
    (name, _, _, cid, _), (name2, _, _, cid2, _) = frames[0], frames[1]
    reader = code.CodeReader(py)
    info, info2 = reader.info(cid), reader.info(cid2)
    assert info.name == name and info2.name == name2 and info.ident != info2.ident
    live = reader.mem
    reader.mem = _Replaced(live, cid)                      # freed
    assert reader.check(cid) is None                       # no code object there now
    reader.codes[cid] = info
    assert reader.check_many([cid], [info.ident]) == [info]
    assert reader.check_many([cid, cid], [info.ident, info2.ident]) == [info, None]
    never_read = code.CodeReader(py)
    never_read.mem = _Replaced(never_read.mem, cid)
    assert never_read.check_many([cid], [info.ident]) == [None]
    reader.mem = _Replaced(live, cid, other=cid2)          # another code object there now
    reader.codes[cid] = info
    assert [i.name for i in reader.check_many([cid], [info.ident])] == [name]
    assert [i.name for i in reader.check_many([cid], [info2.ident])] == [name2]
    reader.mem = live                                      # ident 0: not known, as before
    assert [i.name for i in reader.check_many([cid], [0])] == [name]


def test_non_python_process_is_not_python():
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        assert runtime.find(sleeper.pid) is None
    finally:
        sleeper.kill()
        sleeper.wait()


@pytest.mark.parametrize("minor", [6, 7])
def test_unsupported_versions_say_so(minor):
    python, _ = need_pyenv(minor)
    proc = subprocess.Popen([python, "-c", "import sys; print(1, flush=True); sys.stdin.read()"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        proc.stdout.readline()
        with pytest.raises(runtime.Unsupported) as exc:
            runtime.find(proc.pid)
        assert runtime.unsupported_line(proc.pid, str(exc.value)) == (
            f"python 3.{minor} process {proc.pid}: Python frames not supported (3.8-3.13); "
            "native frames only")
    finally:
        proc.kill()
        proc.wait()


LINES_DUMP = r'''
import dis, json, sys, threading, types
def codes(c):
    yield c
    for k in c.co_consts:
        if isinstance(k, types.CodeType):
            yield from codes(k)
out = []
for c in codes(compile(open(threading.__file__).read(), threading.__file__, "exec")):
    table = c.co_linetable if sys.version_info >= (3, 10) else c.co_lnotab
    exp = {}
    if sys.version_info >= (3, 10):
        for start, end, line in c.co_lines():
            for off in range(start, end, 2):
                exp[off] = line
    else:
        starts = list(dis.findlinestarts(c))
        for off in range(0, len(c.co_code), 2):
            before = [l for s, l in starts if s <= off]
            exp[off] = before[-1] if before else None
    out.append([c.co_firstlineno, table.hex(), exp])
print(json.dumps([sys.version_info[1], out]))
'''


@pytest.mark.parametrize("interpreter", INTERPRETERS)
def test_line_decoders_agree_with_the_interpreter(interpreter):
    python = need_python(interpreter)
    minor, codes = json.loads(subprocess.run([python, "-c", LINES_DUMP], capture_output=True,
                                             text=True, check=True).stdout)
    decode = linetable.decoder_for(minor)
    checked = wrong = 0
    for first, table, expected in codes:
        for off, line in expected.items():
            checked += 1
            wrong += decode(bytes.fromhex(table), first, int(off)) != line
    assert checked > 3000 and wrong == 0


def test_a_pointer_beyond_user_space_is_a_failed_read_not_a_crash():
    # a torn or stale code pointer read from the interpreter (cprofile under
    # process churn met 0xffff...): seek() on /proc/PID/mem would raise
    # OverflowError, which nothing above expects
    import os
    from pytracekit.symbolize.python.memory import ProcessMemory
    mem = ProcessMemory(os.getpid())
    try:
        for address in (0, -8, 0xffff888000000000, 1 << 64):
            with pytest.raises(OSError, match="bad address"):
                mem.read(address, 8)
    finally:
        mem.close()


def test_a_missing_cookie_is_checked_again_unless_the_data_is_mapped(blocked, monkeypatch):
    """3.13's cookie is read where _PyRuntime will be: if that address is not
    yet the file's writable data (ld.so maps a library's whole span before its
    segments; an exec replaces it all), the process is looked at again later
    instead of being declared unsupported for good."""
    proc, _ = blocked
    py = runtime.find(proc.pid)
    assert py is not None
    if py.version < (3, 13):
        pytest.skip("the cookie is 3.13's (older _PyRuntime may be in .bss, not file data)")
    # the real maps: _PyRuntime lies in the interpreter file's writable data
    assert runtime._in_data_of(proc.pid, py.runtime, py.path)
    assert not runtime._in_data_of(proc.pid, py.runtime, "/elsewhere/libpython3.13.so")
    text = [line.split()[0] for line in Path(f"/proc/{proc.pid}/maps").read_text().splitlines()
            if line.split()[1].startswith("r-x") and line.endswith(py.path)]
    assert not runtime._in_data_of(proc.pid, int(text[0].split("-")[0], 16), py.path)

    def no_cookie(*_args):
        raise runtime.NoCookie("no _Py_DebugOffsets cookie at _PyRuntime (an unusual build)")
    monkeypatch.setattr(runtime, "_check_debug_offsets", no_cookie)
    with pytest.raises(runtime.Unsupported):            # mapped data without it: unsupported
        runtime.find(proc.pid)
    monkeypatch.setattr(runtime, "_in_data_of", lambda *_args: False)
    assert runtime.find(proc.pid) is None                # not the data yet: again later
