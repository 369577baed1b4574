/* schedlat: per task, like `perf sched latency`: times switched in, total
 * run time, and the delay from becoming runnable (wakeup or preemption) to
 * running, from the sched raw tracepoints.
 *
 * Run time is what the scheduler's own clock (se.sum_exec_runtime, as in
 * /proc/PID/schedstat) grew by between a task's traced events: not every
 * switch reaches a tracepoint (ptk_sched.h), but the task switched out is
 * always seen, and the clock says how long it ran since it was last seen off
 * the CPU. A task switched out that came on unseen was switched in (counted)
 * at an unknown time: the delay that ended then is counted as unseen, not
 * measured. A task that went to sleep at a traced switch is kept
 * (runnable_since 0), so that a switch-in with no traced wakeup is known for
 * what it is (unseen) rather than missed. */
#include "vmlinux.h"
#include "pytracekit.h"
#include "ptk_sched.h"
/* runnable_since: the delay, as runqlat measures it */
#include "ptk_runq.h"

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

BPF_HASH(exec_base, u32, u64, 65536);     /* se.sum_exec_runtime when last seen off CPU */
BPF_HASH(stats, u32, struct task_stat, 16384);

PTK_INLINE u64 exec_runtime(struct task_struct *p)
{
    u64 exec = 0;
    bpf_probe_read_kernel(&exec, sizeof(exec), &p->se.sum_exec_runtime);
    return exec;
}

/* A task seen off the CPU (woken, or about to be switched in) for the first
 * time: its clock from here. */
PTK_INLINE void note_exec_base(struct task_struct *p, u32 pid)
{
    if (exec_base.lookup(&pid))
        return;
    u64 exec = exec_runtime(p);
    if (exec_base.update(&pid, &exec))
        ptk_count_loss(PTK_MAP_FULL);
}

/* Woken: its clock's base if it is off the CPU, and its wait begins. */
PTK_INLINE int task_woken(struct task_struct *p)
{
    u32 tgid = 0, pid = 0;
    if (!ptk_sched_task_selected(p, &tgid, &pid))
        return 0;
    int on_cpu = 0;     /* a running task's clock is moving: not a base */
    bpf_probe_read_kernel(&on_cpu, sizeof(on_cpu), &p->on_cpu);
    if (!on_cpu)
        note_exec_base(p, pid);
    ptk_runq_woken(pid);
    return 0;
}

RAW_TRACEPOINT_PROBE(sched_wakeup)
{
    return task_woken((struct task_struct *)ctx->args[0]);
}

RAW_TRACEPOINT_PROBE(sched_wakeup_new)
{
    return task_woken((struct task_struct *)ctx->args[0]);
}

/* The task's stats, created when absent: with --interval the entry is read
 * and deleted at each boundary, also while the task runs or waits (the
 * exec_base/runnable_since state is kept, so that run or wait counts
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

/* prev leaves the CPU: its run ends (switched in seen or not, its time is
 * its clock's growth since it was last off the CPU), and from now it waits
 * on the run queue (preempted), sleeps, or is gone. */
PTK_INLINE void task_switched_out(struct bpf_raw_tracepoint_args *ctx,
                                  struct ptk_cpu_switch *last, u64 now)
{
    struct task_struct *prev = (struct task_struct *)ctx->args[1];
    u32 tgid = 0, pid = 0;
    if (!ptk_sched_task_selected(prev, &tgid, &pid))
        return;
    u64 exec = exec_runtime(prev);   /* up to date here: the scheduler accounted the run */
    bool unseen_in = ptk_switched_in_unseen(last, pid);
    u64 *base = exec_base.lookup(&pid);
    if (base || unseen_in) {
        struct task_stat *ps = task_stats(prev, tgid, pid);
        if (ps && base && exec >= *base)
            __sync_fetch_and_add(&ps->runtime_ns, exec - *base);
        if (ps && unseen_in)
            __sync_fetch_and_add(&ps->switches, 1);   /* it was switched in, unseen */
    }
    if (unseen_in) {
        if (!base)                           /* first seen now: its run unknown */
            ptk_count_unseen();
        if (runnable_since.lookup(&pid))     /* the delay its switch-in ended */
            ptk_count_unseen();
    }
    if (ptk_runq_left(pid, ctx->args[3], ctx->args[0], now)) {   /* gone */
        exec_base.delete(&pid);
        return;
    }
    if (exec_base.update(&pid, &exec))
        ptk_count_loss(PTK_MAP_FULL);
}

/* sched_switch(bool preempt, prev, next, unsigned int prev_state) */
RAW_TRACEPOINT_PROBE(sched_switch)
{
    struct task_struct *next = (struct task_struct *)ctx->args[2];
    u64 now = bpf_ktime_get_ns();
    u32 tgid = 0, pid = 0;
    bpf_probe_read_kernel(&tgid, sizeof(tgid), &next->tgid);
    bpf_probe_read_kernel(&pid, sizeof(pid), &next->pid);
    struct ptk_cpu_switch last = ptk_cpu_switched(pid, now);
    task_switched_out(ctx, &last, now);

    if (!ptk_task_selected(tgid, pid))
        return 0;
    struct task_stat *st = task_stats(next, tgid, pid);
    if (!st)
        return 0;
    __sync_fetch_and_add(&st->switches, 1);
    note_exec_base(next, pid);
    u64 delay = 0;
    if (ptk_runq_wait_ended(pid, now, &delay)) {
        __sync_fetch_and_add(&st->delay_total_ns, delay);
        __sync_fetch_and_add(&st->delays, 1);
        if (delay > st->delay_max_ns) {   /* racy only against the same task: it runs on one CPU */
            st->delay_max_ns = delay;
            st->delay_max_at_ns = now;
        }
    }
    return 0;
}
