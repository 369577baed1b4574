/* killsnoop: one event per kill(), tkill() or tgkill() that returns, with its
 * signal and target. The enter tracepoint keeps the arguments per thread, the exit emits. */
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

/* kill(pid), tkill(tid) and tgkill(tgid, tid): TPID is the pid or thread the
 * signal was sent to, as BCC's killsnoop shows it (raise, abort and
 * pthread_kill go through tgkill). */
PTK_INLINE void remember_kill(s32 tpid, s32 sig)
{
    if (!ptk_selected())
        return;
    if (FILTER_TPID && tpid != FILTER_TPID)
        return;
    if (FILTER_SIGNAL && sig != FILTER_SIGNAL)
        return;
    u32 tid = bpf_get_current_pid_tgid();
    struct pending_kill kill = { .tpid = tpid, .sig = sig };
    if (pending.update(&tid, &kill))
        ptk_count_loss(PTK_MAP_FULL);
}

PTK_INLINE void emit_kill(s32 ret)
{
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u32 tid = pid_tgid;
    struct pending_kill *kill = pending.lookup(&tid);
    if (!kill)
        return;
    struct pending_kill saved = *kill;
    pending.delete(&tid);
    if (FAILED_ONLY && ret >= 0)
        return;
    struct event *e = events.ringbuf_reserve(sizeof(*e));
    if (!e) {
        ptk_count_loss(PTK_LOST_EVENTS);
        return;
    }
    e->ts = bpf_ktime_get_ns();
    e->pid = pid_tgid >> 32;
    e->tpid = saved.tpid;
    e->sig = saved.sig;
    e->ret = ret;
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
    ptk_submit(e, sizeof(*e));
}

TRACEPOINT_PROBE(syscalls, sys_enter_kill)
{
    remember_kill(args->pid, args->sig);
    return PTK_TP_PASS;
}

TRACEPOINT_PROBE(syscalls, sys_enter_tkill)
{
    remember_kill(args->pid, args->sig);
    return PTK_TP_PASS;
}

TRACEPOINT_PROBE(syscalls, sys_enter_tgkill)
{
    remember_kill(args->pid, args->sig);
    return PTK_TP_PASS;
}

TRACEPOINT_PROBE(syscalls, sys_exit_kill)
{
    emit_kill(args->ret);
    return PTK_TP_PASS;
}

TRACEPOINT_PROBE(syscalls, sys_exit_tkill)
{
    emit_kill(args->ret);
    return PTK_TP_PASS;
}

TRACEPOINT_PROBE(syscalls, sys_exit_tgkill)
{
    emit_kill(args->ret);
    return PTK_TP_PASS;
}
