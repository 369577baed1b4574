/* sigsnoop: one event per signal generated (signal:signal_generate: sender,
 * target, signal, result) or, with DELIVER, per signal delivered
 * (signal:signal_deliver: the receiving thread and its handler). */
#include "vmlinux.h"
#include "pytracekit.h"
#include "ptk_stream.h"

#ifndef FILTER_SIGNAL          /* 0: any */
#define FILTER_SIGNAL 0
#endif
#ifndef FILTER_TPID            /* target pid (generate only); 0: any */
#define FILTER_TPID 0
#endif
#ifndef FAILED_ONLY            /* generate: only results other than "delivered" */
#define FAILED_ONLY 0
#endif
#ifndef DELIVER
#define DELIVER 0
#endif

struct event {
    u64 ts;
    u64 handler;               /* deliver: sa_handler (0 default, 1 ignore) */
    u32 pid;
    u32 tid;
    s32 tpid;                  /* generate: target; deliver: the receiving thread */
    s32 sig;
    s32 code;                  /* si_code: SI_USER 0, SI_TKILL -6, SI_KERNEL 0x80 ... */
    s32 result;                /* generate: TRACE_SIGNAL_DELIVERED 0 .. LOSE_INFO 4 */
    char comm[TASK_COMM_LEN];
};

PTK_INLINE void emit(s32 tpid, s32 sig, s32 code, s32 result, u64 handler)
{
    u64 pid_tgid = bpf_get_current_pid_tgid();
    struct event *e = events.ringbuf_reserve(sizeof(*e));
    if (!e) {
        ptk_count_loss(PTK_LOST_EVENTS);
        return;
    }
    e->ts = bpf_ktime_get_ns();
    e->handler = handler;
    e->pid = pid_tgid >> 32;
    e->tid = pid_tgid;
    e->tpid = tpid;
    e->sig = sig;
    e->code = code;
    e->result = result;
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
    ptk_submit(e, sizeof(*e));
}

#if DELIVER
TRACEPOINT_PROBE(signal, signal_deliver)
{
    if (!ptk_selected())
        return PTK_TP_PASS;
    if (FILTER_SIGNAL && args->sig != FILTER_SIGNAL)
        return PTK_TP_PASS;
    emit((u32)bpf_get_current_pid_tgid(), args->sig, args->code, 0, args->sa_handler);
    return PTK_TP_PASS;
}
#else
TRACEPOINT_PROBE(signal, signal_generate)
{
    if (!ptk_selected())
        return PTK_TP_PASS;
    if (FILTER_SIGNAL && args->sig != FILTER_SIGNAL)
        return PTK_TP_PASS;
    if (FILTER_TPID && args->pid != FILTER_TPID)
        return PTK_TP_PASS;
    if (FAILED_ONLY && args->result == 0)
        return PTK_TP_PASS;
    emit(args->pid, args->sig, args->code, args->result, 0);
    return PTK_TP_PASS;
}
#endif
