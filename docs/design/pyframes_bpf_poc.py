"""PROOF OF CONCEPT (not product code): walk a Python process's stack IN BPF
from a cpu-clock perf event, the way the product will, and print what it saw.

Checks on this kernel: task->thread.fsbase of the sampled thread equals the
thread_id (pthread_self) of exactly one PyThreadState, that state's
native_thread_id (3.11+) equals the sampled tid, and bpf_probe_read_user
follows the frame chain; names and lines are resolved afterwards in user
space by pyframes_proto.py's helpers from /proc/PID/mem.

    .venv/bin/python docs/design/pyframes_bpf_poc.py PID [SECONDS [STACKS_SHOWN]]
    (BLOCK_READ=0 in the environment: one user read per field instead of per frame)
"""
from __future__ import annotations

import collections
import ctypes
import os
import re
import sys
import time

sys.path.insert(0, __file__.rsplit("/docs/", 1)[0])
sys.path.insert(0, __file__.rsplit("/", 1)[0])
import pyframes_proto as proto  # noqa: E402
from pytracekit import pyframes_layouts as pl  # noqa: E402
from pytracekit.loader import Program  # noqa: E402

MAX_FRAMES = 128
SOURCE = r"""
#include "vmlinux.h"
#include "pytracekit.h"

struct py_frame { u64 code; s64 offset; u8 owner; u8 entry; };
struct py_sample {
    u32 tid; u32 found; u64 ns; u64 fsbase; u64 tstate; u64 native_tid; u32 depth; u32 truncated;
    struct py_frame frames[MAX_FRAMES];
};
BPF_RINGBUF_OUTPUT(samples, 64);

static inline __attribute__((always_inline)) u64 rd64(u64 addr) {
    u64 v = 0;
    bpf_probe_read_user(&v, sizeof(v), (void *)addr);
    return v;
}

int on_sample(struct bpf_perf_event_data *ctx)
{
    u64 id = bpf_get_current_pid_tgid();
    if ((id >> 32) != TARGET_PID)
        return 0;
    struct py_sample *s = samples.ringbuf_reserve(sizeof(struct py_sample));
    if (!s)
        return 0;
    u64 t0 = bpf_ktime_get_ns();
    s->tid = (u32)id;
    s->found = 0; s->depth = 0; s->truncated = 0; s->tstate = 0; s->native_tid = 0;
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    u64 fsbase = 0;
    bpf_probe_read_kernel(&fsbase, sizeof(fsbase),
                          (void *)task + __builtin_offsetof(struct task_struct, thread.fsbase));
    s->fsbase = fsbase;
    /* the sampled thread's PyThreadState: thread_id == pthread_self() == fs base */
    u64 interp = rd64(RUNTIME + PY_RUNTIME_INTERPRETERS_HEAD);
    u64 ts = interp ? rd64(interp + PY_INTERP_THREADS_HEAD) : 0;
    for (int i = 0; i < 32 && ts; i++) {
        if (rd64(ts + PY_TSTATE_THREAD_ID) == fsbase) {
            s->found = 1;
            break;
        }
        ts = rd64(ts + PY_TSTATE_NEXT);
    }
    if (!s->found) {
        s->ns = bpf_ktime_get_ns() - t0;
        samples.ringbuf_submit(s, 0);
        return 0;
    }
    s->tstate = ts;
#ifdef PY_TSTATE_NATIVE_THREAD_ID
    s->native_tid = rd64(ts + PY_TSTATE_NATIVE_THREAD_ID);
#endif
#ifdef PY_TSTATE_CFRAME
    u64 frame = rd64(rd64(ts + PY_TSTATE_CFRAME) + PY_CFRAME_CURRENT_FRAME);
#else
    u64 frame = rd64(ts + PY_TSTATE_FRAME);
#endif
    u32 n = 0;
#if BLOCK_READ
    /* one user read per frame: the fields used span [BLK_START, BLK_START + BLK_LEN) */
    u8 blk[BLK_LEN];
#define FLD(type, off) (*(type *)(blk + (off) - BLK_START))
#endif
    for (int i = 0; i < MAX_FRAMES; i++) {
        if (!frame)
            break;
        struct py_frame *f = &s->frames[i & (MAX_FRAMES - 1)];
        f->owner = 0; f->entry = 0;
#if BLOCK_READ
        if (bpf_probe_read_user(blk, sizeof(blk), (void *)(frame + BLK_START)))
            break;
        f->code = FLD(u64, PY_FRAME_CODE);
#ifdef PY_FRAME_LASTI
        f->offset = PY_VERSION_MINOR == 10 ? FLD(int, PY_FRAME_LASTI) * 2 : FLD(int, PY_FRAME_LASTI);
#else
        f->offset = (s64)(FLD(u64, PY_FRAME_INSTR_PTR) - (f->code + PY_CODE_ADAPTIVE));
        f->owner = FLD(u8, PY_FRAME_OWNER);
#endif
#ifdef PY_FRAME_IS_ENTRY
        f->entry = FLD(u8, PY_FRAME_IS_ENTRY);
#endif
        frame = FLD(u64, PY_FRAME_PREVIOUS);
#else
        f->code = rd64(frame + PY_FRAME_CODE);
#ifdef PY_FRAME_LASTI
        int lasti = 0;
        bpf_probe_read_user(&lasti, sizeof(lasti), (void *)(frame + PY_FRAME_LASTI));
        f->offset = PY_VERSION_MINOR == 10 ? lasti * 2 : lasti;
#else
        f->offset = (s64)(rd64(frame + PY_FRAME_INSTR_PTR) - (f->code + PY_CODE_ADAPTIVE));
        bpf_probe_read_user(&f->owner, 1, (void *)(frame + PY_FRAME_OWNER));
#endif
#ifdef PY_FRAME_IS_ENTRY
        bpf_probe_read_user(&f->entry, 1, (void *)(frame + PY_FRAME_IS_ENTRY));
#endif
        frame = rd64(frame + PY_FRAME_PREVIOUS);
#endif
        n++;
    }
    s->depth = n;
    s->truncated = frame != 0;
    s->ns = bpf_ktime_get_ns() - t0;
    samples.ringbuf_submit(s, 0);
    return 0;
}
"""


class PyFrame(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint64), ("offset", ctypes.c_int64),
                ("owner", ctypes.c_uint8), ("entry", ctypes.c_uint8)]


class PySample(ctypes.Structure):
    _fields_ = [("tid", ctypes.c_uint32), ("found", ctypes.c_uint32), ("ns", ctypes.c_uint64),
                ("fsbase", ctypes.c_uint64),
                ("tstate", ctypes.c_uint64), ("native_tid", ctypes.c_uint64),
                ("depth", ctypes.c_uint32), ("truncated", ctypes.c_uint32),
                ("frames", PyFrame * MAX_FRAMES)]


def main(pid: int, seconds: float) -> None:
    runtime, ver_addr, path = proto.find_runtime(pid)
    mem = proto.Mem(pid)
    version = pl.version_from_hex(mem.u64(ver_addr)) if ver_addr else \
        (3, int(re.search(r"python3\.(\d+)", path)[1]))
    L = pl.layout_for(*version)
    used = [(L.frame_previous, 8), (L.frame_code, 8)] + [
        (off, size) for off, size in ((L.frame_lasti, 4), (L.frame_instr_ptr, 8),
                                      (L.frame_owner, 1), (L.frame_is_entry, 1)) if off is not None]
    start = min(o for o, _ in used)
    block = {"BLOCK_READ": int(os.environ.get("BLOCK_READ", "1")), "BLK_START": start,
             "BLK_LEN": max(o + n for o, n in used) - start}
    defines = dict(L.defines(), TARGET_PID=pid, RUNTIME=runtime, MAX_FRAMES=MAX_FRAMES, **block)
    prog = Program.from_text("pyframes_poc", SOURCE, defines)
    import multiprocessing
    for cpu in range(multiprocessing.cpu_count()):
        prog.attach_perf_event(1, 0, "on_sample", sample_freq=99, cpu=cpu)  # software cpu-clock
    stacks: collections.Counter = collections.Counter()
    checks = collections.Counter()
    names: dict[int, tuple[str, str, int, bytes]] = {}
    line_of = proto.line_lnotab if version < (3, 10) else \
        proto.line_310 if version == (3, 10) else proto.line_311

    def resolve(code: int, offset: int) -> str:
        if code not in names:   # user space, cached by code address
            nm = proto.read_str(mem, L, mem.u64(code + (L.code_qualname or L.code_name)))
            fn = proto.read_str(mem, L, mem.u64(code + L.code_filename)).rsplit("/", 1)[-1]
            first = mem.i32(code + L.code_firstlineno)
            table = proto.read_bytes(mem, L, mem.u64(code + L.code_linetable))
            names[code] = (nm, fn, first, table)
        nm, fn, first, table = names[code]
        return f"{nm} ({fn}:{line_of(table, first, max(offset, 0))})"

    def on_event(_ctx, data, _size):
        s = ctypes.cast(data, ctypes.POINTER(PySample)).contents
        checks["samples"] += 1
        checks["ns total"] += s.ns
        checks["frames total"] += s.depth
        if not s.found:
            checks["no tstate for fsbase"] += 1
            return
        checks["tstate found by fsbase"] += 1
        if L.tstate_native_thread_id is not None:
            checks["native_thread_id == tid" if s.native_tid == s.tid else "native_thread_id != tid"] += 1
        frames = []
        for f in s.frames[:s.depth]:
            if f.owner == pl.FRAME_OWNED_BY_CSTACK:
                frames.append("|")        # a _PyEval_EvalFrameDefault boundary
                continue
            frames.append(resolve(f.code, f.offset) + ("|" if f.entry else ""))
        stacks[(s.tid, ";".join(reversed(frames)))] += 1

    prog["samples"].open_ring_buffer(on_event)
    end = time.time() + seconds
    while time.time() < end:
        prog.bpf.ring_buffer_poll(200)
    prog.close()
    n = max(checks["samples"], 1)
    per = f"mean {checks.pop('ns total') / n:.0f} ns and {checks.pop('frames total') / n:.1f} frames per sample in BPF"
    print(f"pid {pid} CPython {version[0]}.{version[1]}: {dict(checks)}; {per}")
    for (tid, stack), n in stacks.most_common(int(sys.argv[3]) if len(sys.argv) > 3 else 8):
        print(f"{n:5d} tid {tid}: {stack}")


if __name__ == "__main__":
    main(int(sys.argv[1]), float(sys.argv[2]) if len(sys.argv) > 2 else 3.0)
