"""Every thread's Python frames read from /proc/PID/mem in user space: the
same walk bpf/ptk_python.h makes from a sample (runtime -> interpreters ->
thread states -> frames), for checking it and for tools without BPF."""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

from . import layouts as pl
from .memory import ProcessMemory
from .runtime import PyProcess

MAX_THREADS = 256
MAX_FRAMES = 128


@dataclass(frozen=True)
class PyFrame:
    code: int        # code object address
    offset: int      # instruction byte offset in its bytecode (>= 0)
    boundary: bool   # the outermost frame of one _PyEval_EvalFrameDefault call


@dataclass
class PyThread:
    thread_id: int                 # pthread_self(), the thread's fs base
    native_thread_id: int          # gettid() (3.11+; 0 before)
    frames: list[PyFrame] = field(default_factory=list)   # innermost first


def frame_offset(layout: pl.PyLayout, code: int, lasti: int, instr_ptr: int) -> int:
    """The instruction byte offset of a frame, as BPF computes it."""
    if layout.frame_lasti is not None:
        return lasti * (2 if layout.version == (3, 10) else 1)   # 3.10 counts code units
    return max(instr_ptr - (code + layout.code_adaptive), 0)


def thread_frames(mem: ProcessMemory, layout: pl.PyLayout, tstate: int,
                  max_frames: int = MAX_FRAMES) -> list[PyFrame]:
    L = layout
    if L.tstate_cframe is not None:
        frame = mem.u64(mem.u64(tstate + L.tstate_cframe) + L.cframe_current_frame)
    else:
        frame = mem.u64(tstate + L.tstate_frame)
    out: list[PyFrame] = []
    for _ in range(max_frames * 2):
        if not frame or len(out) >= max_frames:
            break
        prev = mem.u64(frame + L.frame_previous)
        code = mem.u64(frame + L.frame_code)
        owner = mem.read(frame + L.frame_owner, 1)[0] if L.frame_owner is not None else 0
        if owner == pl.FRAME_OWNED_BY_CSTACK:          # 3.12+ shim: ends the group before it
            if out:
                out[-1] = PyFrame(out[-1].code, out[-1].offset, True)
        else:
            lasti = struct.unpack("<i", mem.read(frame + L.frame_lasti, 4))[0] \
                if L.frame_lasti is not None else 0
            ip = mem.u64(frame + L.frame_instr_ptr) if L.frame_instr_ptr is not None else 0
            entry = mem.read(frame + L.frame_is_entry, 1)[0] if L.frame_is_entry is not None \
                else L.frame_lasti is not None          # 3.8-3.10: one eval call per frame
            out.append(PyFrame(code, frame_offset(L, code, lasti, ip), bool(entry)))
        frame = prev
    return out


def threads(proc: PyProcess) -> list[PyThread]:
    """Every thread state of every interpreter, with its frames."""
    L = proc.layout
    mem = ProcessMemory(proc.pid)
    try:
        out = []
        interp = mem.u64(proc.runtime + L.runtime_interpreters_head)
        while interp and len(out) < MAX_THREADS:
            ts = mem.u64(interp + L.interp_threads_head)
            while ts and len(out) < MAX_THREADS:
                native = mem.u64(ts + L.tstate_native_thread_id) \
                    if L.tstate_native_thread_id is not None else 0
                out.append(PyThread(mem.u64(ts + L.tstate_thread_id), native,
                                    thread_frames(mem, L, ts)))
                ts = mem.u64(ts + L.tstate_next)
            interp = mem.u64(interp + L.interp_next)
        return out
    finally:
        mem.close()
