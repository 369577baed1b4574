/* cpudist: how long tasks stay on (or, with OFF_CPU, off) a CPU between
 * context switches, as a log2 histogram, from the sched_switch raw
 * tracepoint. Every switch-out ends an on-CPU period, as in BCC.
 *
 * A period whose start or end no tracepoint reported (ptk_sched.h: a task
 * switched in unseen) is counted as unseen, not measured: on CPU, the run
 * that ends at such a task's switch-out; off CPU, the time away its unseen
 * switch-in ended (its start would otherwise be overwritten unmeasured). */
#include "vmlinux.h"
#include "pytracekit.h"
#include "ptk_sched.h"

#ifndef LABEL_BY        /* 0: one histogram, 1: per process, 2: per thread */
#define LABEL_BY 0
#endif
#ifndef UNIT_DIV        /* 1000: microseconds, 1000000: milliseconds */
#define UNIT_DIV 1000
#endif
#ifndef OFF_CPU
#define OFF_CPU 0
#endif

struct comm_t { char comm[TASK_COMM_LEN]; };

BPF_HASH(period_start, u32, u64, 65536);
BPF_HASH(hist, struct ptk_hist_key, u64, 4096);
BPF_HASH(names, u64, struct comm_t, 4096);

PTK_INLINE void start_period(u32 tgid, u32 pid, u64 now)
{
    if (!ptk_task_selected(tgid, pid))
        return;
    if (period_start.update(&pid, &now))
        ptk_count_loss(PTK_MAP_FULL);
}

PTK_INLINE void end_period(struct task_struct *task, u32 tgid, u32 pid, u64 now)
{
    u64 *since = period_start.lookup(&pid);
    if (!since)
        return;
    u64 delta = (now - *since) / UNIT_DIV;
    period_start.delete(&pid);

    struct ptk_hist_key key = {};
    key.label = LABEL_BY == 1 ? tgid : LABEL_BY == 2 ? pid : 0;
    key.slot = ptk_log2_slot(delta);
    u64 zero = 0, *count = hist.lookup_or_try_init(&key, &zero);
    if (count)
        __sync_fetch_and_add(count, 1);
    else
        ptk_count_loss(PTK_MAP_FULL);
    if (LABEL_BY) {
        struct comm_t name = {};
        bpf_probe_read_kernel_str(&name.comm, sizeof(name.comm), &task->comm);
        if (names.update(&key.label, &name))
            ptk_count_loss(PTK_MAP_FULL);
    }
}

/* sched_switch(bool preempt, prev, next, unsigned int prev_state) */
RAW_TRACEPOINT_PROBE(sched_switch)
{
    struct task_struct *prev = (struct task_struct *)ctx->args[1];
    struct task_struct *next = (struct task_struct *)ctx->args[2];
    u32 prev_tgid = 0, prev_pid = 0, next_tgid = 0, next_pid = 0;
    bpf_probe_read_kernel(&prev_tgid, sizeof(prev_tgid), &prev->tgid);
    bpf_probe_read_kernel(&prev_pid, sizeof(prev_pid), &prev->pid);
    bpf_probe_read_kernel(&next_tgid, sizeof(next_tgid), &next->tgid);
    bpf_probe_read_kernel(&next_pid, sizeof(next_pid), &next->pid);
    u64 now = bpf_ktime_get_ns();
    struct ptk_cpu_switch last = ptk_cpu_switched(next_pid, now);
    if (ptk_switched_in_unseen(&last, prev_pid) && ptk_task_selected(prev_tgid, prev_pid)) {
        /* on CPU: its run began unseen; off CPU: its time away ended unseen */
        if (!OFF_CPU || period_start.lookup(&prev_pid))
            ptk_count_unseen();
        period_start.delete(&prev_pid);
    }
    if (OFF_CPU) {
        start_period(prev_tgid, prev_pid, now);
        end_period(next, next_tgid, next_pid, now);
    } else {
        end_period(prev, prev_tgid, prev_pid, now);
        start_period(next_tgid, next_pid, now);
    }
    return 0;
}
