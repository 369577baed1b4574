/* ugc: one event per Python garbage collection, from CPython's USDT probes
 * python:gc__start(int generation) and python:gc__done(Py_ssize_t collected):
 * its generation, duration and the number of unreachable objects it found.
 * gc__start keeps the start per thread; gc__done emits. */
#include "vmlinux.h"
#include "pytracekit.h"
#include "ptk_stream.h"

#ifndef MIN_NS                 /* -M: only collections at least this long */
#define MIN_NS 0
#endif
#ifndef USDT_ARGS              /* 0: a dry run without a process (no USDT context to read args) */
#define USDT_ARGS 1
#endif

struct gc_start {
    u64 ts;
    s32 generation;
};

BPF_HASH(started, u32, struct gc_start, 10240);

struct event {
    u64 ts;
    u64 elapsed_ns;
    s64 collected;
    u32 pid;
    u32 tid;
    s32 generation;
    u32 pad;
};

int on_gc_start(struct pt_regs *ctx)
{
    if (!ptk_selected())
        return 0;
    struct gc_start start = { .ts = bpf_ktime_get_ns(), .generation = -1 };
#if USDT_ARGS
    int generation = -1;
    bpf_usdt_readarg(1, ctx, &generation);
    start.generation = generation;
#endif
    u32 tid = bpf_get_current_pid_tgid();
    if (started.update(&tid, &start))
        ptk_count_loss(PTK_MAP_FULL);
    return 0;
}

int on_gc_done(struct pt_regs *ctx)
{
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u32 tid = pid_tgid;
    struct gc_start *start = started.lookup(&tid);
    if (!start)
        return 0;
    struct gc_start saved = *start;
    started.delete(&tid);
    u64 now = bpf_ktime_get_ns();
    if (now - saved.ts < MIN_NS)
        return 0;
    struct event *e = events.ringbuf_reserve(sizeof(*e));
    if (!e) {
        ptk_count_loss(PTK_LOST_EVENTS);
        return 0;
    }
    e->ts = saved.ts;
    e->elapsed_ns = now - saved.ts;
    e->collected = -1;
#if USDT_ARGS
    long collected = -1;
    bpf_usdt_readarg(1, ctx, &collected);
    e->collected = collected;
#endif
    e->pid = pid_tgid >> 32;
    e->tid = tid;
    e->generation = saved.generation;
    e->pad = 0;
    ptk_submit(e, sizeof(*e));
    return 0;
}
