/* schedlat: per task, like `perf sched latency`: times switched in, total
 * run time, and the delay from becoming runnable (wakeup or preemption) to
 * running, from the sched raw tracepoints. */
#include "vmlinux.h"
#include "pytracekit.h"

#define TASK_RUNNING 0

struct task_stat {
    u64 switches;
    u64 runtime_ns;
    u64 delay_total_ns;
    u64 delays;
    u64 delay_max_ns;
    u64 delay_max_at_ns;    /* when the longest delay ended (ktime) */
    u32 tgid;
    char comm[TASK_COMM_LEN];
};

BPF_HASH(runnable_since, u32, u64, 65536);
BPF_HASH(oncpu_since, u32, u64, 65536);
BPF_HASH(stats, u32, struct task_stat, 16384);

PTK_INLINE int mark_runnable(struct task_struct *p, u64 now)
{
    u32 tgid = 0, pid = 0;
    bpf_probe_read_kernel(&tgid, sizeof(tgid), &p->tgid);
    bpf_probe_read_kernel(&pid, sizeof(pid), &p->pid);
    if (ptk_task_selected(tgid, pid) && runnable_since.update(&pid, &now))
        ptk_count_loss(PTK_MAP_FULL);
    return 0;
}

RAW_TRACEPOINT_PROBE(sched_wakeup)
{
    return mark_runnable((struct task_struct *)ctx->args[0], bpf_ktime_get_ns());
}

RAW_TRACEPOINT_PROBE(sched_wakeup_new)
{
    return mark_runnable((struct task_struct *)ctx->args[0], bpf_ktime_get_ns());
}

/* The task's stats, created when absent: with --interval the entry is read
 * and deleted at each boundary, also while the task runs or waits (the
 * oncpu_since/runnable_since state is kept, so that run or wait counts
 * once, in the interval where it ends). */
PTK_INLINE struct task_stat *task_stats(struct task_struct *p, u32 tgid, u32 pid)
{
    struct task_stat zero = {};
    struct task_stat *st = stats.lookup_or_try_init(&pid, &zero);
    if (!st) {
        ptk_count_loss(PTK_MAP_FULL);
        return 0;
    }
    st->tgid = tgid;
    bpf_probe_read_kernel_str(&st->comm, sizeof(st->comm), &p->comm);
    return st;
}

/* sched_switch(bool preempt, prev, next, unsigned int prev_state) */
RAW_TRACEPOINT_PROBE(sched_switch)
{
    struct task_struct *prev = (struct task_struct *)ctx->args[1];
    struct task_struct *next = (struct task_struct *)ctx->args[2];
    u64 now = bpf_ktime_get_ns();

    u32 prev_pid = 0, prev_tgid = 0;
    bpf_probe_read_kernel(&prev_pid, sizeof(prev_pid), &prev->pid);
    u64 *on = oncpu_since.lookup(&prev_pid);
    if (on) {      /* only selected tasks are marked on-CPU */
        u64 ran = now - *on;
        oncpu_since.delete(&prev_pid);
        bpf_probe_read_kernel(&prev_tgid, sizeof(prev_tgid), &prev->tgid);
        struct task_stat *ps = task_stats(prev, prev_tgid, prev_pid);
        if (ps)
            __sync_fetch_and_add(&ps->runtime_ns, ran);
    }
    if (ctx->args[0] || (unsigned int)ctx->args[3] == TASK_RUNNING)
        mark_runnable(prev, now);

    u32 tgid = 0, pid = 0;
    bpf_probe_read_kernel(&tgid, sizeof(tgid), &next->tgid);
    bpf_probe_read_kernel(&pid, sizeof(pid), &next->pid);
    if (!ptk_task_selected(tgid, pid))
        return 0;
    struct task_stat *st = task_stats(next, tgid, pid);
    if (!st)
        return 0;
    __sync_fetch_and_add(&st->switches, 1);
    if (oncpu_since.update(&pid, &now))
        ptk_count_loss(PTK_MAP_FULL);
    u64 *since = runnable_since.lookup(&pid);
    if (since) {
        u64 delay = now - *since;
        runnable_since.delete(&pid);
        __sync_fetch_and_add(&st->delay_total_ns, delay);
        __sync_fetch_and_add(&st->delays, 1);
        if (delay > st->delay_max_ns) {   /* racy only against the same task: it runs on one CPU */
            st->delay_max_ns = delay;
            st->delay_max_at_ns = now;
        }
    }
    return 0;
}
