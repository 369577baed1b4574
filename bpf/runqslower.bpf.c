/* runqslower: one event per run queue wait longer than MIN_US: from a task
 * becoming runnable (wakeup, or preempted while runnable) to running, with
 * the task that ran before it. Raw tracepoints (their return value is
 * ignored) give the task pointers. */
#include "vmlinux.h"
#include "pytracekit.h"
#include "ptk_stream.h"

#ifndef MIN_US
#define MIN_US 10000
#endif
#define TASK_RUNNING 0

BPF_HASH(runnable_since, u32, u64, 65536);

struct event {
    u64 ts;
    u64 delta_us;
    u32 pid;
    u32 tid;
    u32 prev_tid;
    u32 pad;
    char comm[TASK_COMM_LEN];
    char prev_comm[TASK_COMM_LEN];
};

PTK_INLINE int mark_runnable(struct task_struct *p)
{
    u32 tgid = 0, pid = 0;
    bpf_probe_read_kernel(&tgid, sizeof(tgid), &p->tgid);
    bpf_probe_read_kernel(&pid, sizeof(pid), &p->pid);
    if (!ptk_task_selected(tgid, pid))
        return 0;
    u64 now = bpf_ktime_get_ns();
    if (runnable_since.update(&pid, &now))
        ptk_count_loss(PTK_MAP_FULL);
    return 0;
}

RAW_TRACEPOINT_PROBE(sched_wakeup)
{
    return mark_runnable((struct task_struct *)ctx->args[0]);
}

RAW_TRACEPOINT_PROBE(sched_wakeup_new)
{
    return mark_runnable((struct task_struct *)ctx->args[0]);
}

/* sched_switch(bool preempt, prev, next, unsigned int prev_state) */
RAW_TRACEPOINT_PROBE(sched_switch)
{
    struct task_struct *prev = (struct task_struct *)ctx->args[1];
    struct task_struct *next = (struct task_struct *)ctx->args[2];
    if (ctx->args[0] || (unsigned int)ctx->args[3] == TASK_RUNNING)
        mark_runnable(prev);   /* preempted: it waits on the run queue again */

    u32 tgid = 0, pid = 0;
    bpf_probe_read_kernel(&tgid, sizeof(tgid), &next->tgid);
    bpf_probe_read_kernel(&pid, sizeof(pid), &next->pid);
    u64 *since = runnable_since.lookup(&pid);
    if (!since)
        return 0;
    u64 now = bpf_ktime_get_ns();
    u64 delta_us = (now - *since) / 1000;
    runnable_since.delete(&pid);
    if (delta_us < MIN_US)
        return 0;
    struct event *e = events.ringbuf_reserve(sizeof(*e));
    if (!e) {
        ptk_count_loss(PTK_LOST_EVENTS);
        return 0;
    }
    e->ts = now;
    e->delta_us = delta_us;
    e->pid = tgid;
    e->tid = pid;
    e->prev_tid = 0;
    bpf_probe_read_kernel(&e->prev_tid, sizeof(e->prev_tid), &prev->pid);
    e->pad = 0;
    bpf_probe_read_kernel_str(&e->comm, sizeof(e->comm), &next->comm);
    bpf_probe_read_kernel_str(&e->prev_comm, sizeof(e->prev_comm), &prev->comm);
    ptk_submit(e, sizeof(*e));
    return 0;
}
