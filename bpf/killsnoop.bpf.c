/* killsnoop: one event per kill() that returns, with its signal and target.
 * The enter tracepoint keeps the arguments per thread, the exit emits. */
#include "vmlinux.h"
#include "pytracekit.h"
#include "ptk_stream.h"

#ifndef FILTER_TPID            /* target pid; 0: any */
#define FILTER_TPID 0
#endif
#ifndef FILTER_SIGNAL          /* 0: any */
#define FILTER_SIGNAL 0
#endif
#ifndef FAILED_ONLY
#define FAILED_ONLY 0
#endif

struct pending_kill {
    s32 tpid;
    s32 sig;
};

BPF_HASH(pending, u32, struct pending_kill, 10240);

struct event {
    u64 ts;
    u32 pid;
    s32 tpid;
    s32 sig;
    s32 ret;
    char comm[TASK_COMM_LEN];
};

TRACEPOINT_PROBE(syscalls, sys_enter_kill)
{
    if (!ptk_selected())
        return PTK_TP_PASS;
    if (FILTER_TPID && args->pid != FILTER_TPID)
        return PTK_TP_PASS;
    if (FILTER_SIGNAL && args->sig != FILTER_SIGNAL)
        return PTK_TP_PASS;
    u32 tid = bpf_get_current_pid_tgid();
    struct pending_kill kill = { .tpid = args->pid, .sig = args->sig };
    if (pending.update(&tid, &kill))
        ptk_count_loss(PTK_MAP_FULL);
    return PTK_TP_PASS;
}

TRACEPOINT_PROBE(syscalls, sys_exit_kill)
{
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u32 tid = pid_tgid;
    struct pending_kill *kill = pending.lookup(&tid);
    if (!kill)
        return PTK_TP_PASS;
    struct pending_kill saved = *kill;
    pending.delete(&tid);
    if (FAILED_ONLY && args->ret >= 0)
        return PTK_TP_PASS;
    struct event *e = events.ringbuf_reserve(sizeof(*e));
    if (!e) {
        ptk_count_loss(PTK_LOST_EVENTS);
        return PTK_TP_PASS;
    }
    e->ts = bpf_ktime_get_ns();
    e->pid = pid_tgid >> 32;
    e->tpid = saved.tpid;
    e->sig = saved.sig;
    e->ret = args->ret;
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
    ptk_submit(e, sizeof(*e));
    return PTK_TP_PASS;
}
