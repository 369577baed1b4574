/* runqslower: one event per run queue wait longer than MIN_US: from a task
 * becoming runnable (wakeup, or preempted while runnable) to running, with
 * the task that ran before it. Raw tracepoints (their return value is
 * ignored) give the task pointers.
 *
 * A wait whose start or end no tracepoint reported (ptk_sched.h) is counted
 * as unseen, never reported with a length it did not have: a task that went
 * to sleep at a traced switch is kept (runnable_since 0) so that a switch-in
 * with no traced wakeup is known for what it is, and a task switched out
 * that came on unseen has its wait closed there (it ended unseen) instead of
 * left to be measured from a stale start later. */
#include "vmlinux.h"
#include "pytracekit.h"
#include "ptk_stream.h"
#include "ptk_sched.h"
#include "ptk_runq.h"

#ifndef MIN_US
#define MIN_US 10000
#endif

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

RAW_TRACEPOINT_PROBE(sched_wakeup)
{
    return woken((struct task_struct *)ctx->args[0]);
}

RAW_TRACEPOINT_PROBE(sched_wakeup_new)
{
    return woken((struct task_struct *)ctx->args[0]);
}

/* sched_switch(bool preempt, prev, next, unsigned int prev_state) */
RAW_TRACEPOINT_PROBE(sched_switch)
{
    struct task_struct *prev = (struct task_struct *)ctx->args[1];
    struct task_struct *next = (struct task_struct *)ctx->args[2];
    u32 tgid = 0, pid = 0;
    bpf_probe_read_kernel(&tgid, sizeof(tgid), &next->tgid);
    bpf_probe_read_kernel(&pid, sizeof(pid), &next->pid);
    u64 now = bpf_ktime_get_ns();
    struct ptk_cpu_switch last = ptk_cpu_switched(pid, now);
    switched_out(ctx, &last, now);

    u64 delay = 0;
    if (!ptk_runq_wait_ended(pid, now, &delay))
        return 0;
    u64 delta_us = delay / 1000;
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
