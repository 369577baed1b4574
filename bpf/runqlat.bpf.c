/* runqlat: time from becoming runnable (wakeup, or preemption while still
 * runnable) to running, as a log2 histogram. Raw tracepoints give the task
 * pointers, so tgid and pid namespace are read without kprobes.
 *
 * A wait whose start or end no tracepoint reported (ptk_sched.h) is counted
 * as unseen, not measured: a task that went to sleep at a traced switch is
 * kept (runnable_since 0) so that a switch-in with no traced wakeup is known
 * for what it is, and a task switched out that came on unseen has its wait
 * closed there (it ended unseen) instead of left to be measured later. */
#include "vmlinux.h"
#include "pytracekit.h"
#include "ptk_sched.h"
#include "ptk_runq.h"

#ifndef LABEL_BY        /* 0: one histogram, 1: per process, 2: per thread, 3: per pid namespace */
#define LABEL_BY 0
#endif
#ifndef UNIT_DIV        /* 1000: microseconds, 1000000: milliseconds */
#define UNIT_DIV 1000
#endif

struct comm_t { char comm[TASK_COMM_LEN]; };

BPF_HASH(hist, struct ptk_hist_key, u64, 4096);
BPF_HASH(names, u64, struct comm_t, 4096);

PTK_INLINE u64 label_of(struct task_struct *p, u32 tgid, u32 pid)
{
    if (LABEL_BY == 1)
        return tgid;
    if (LABEL_BY == 2)
        return pid;
    if (LABEL_BY == 3) {
        struct nsproxy *ns = NULL;
        struct pid_namespace *pidns = NULL;
        unsigned int inum = 0;
        bpf_probe_read_kernel(&ns, sizeof(ns), &p->nsproxy);
        if (ns)
            bpf_probe_read_kernel(&pidns, sizeof(pidns), &ns->pid_ns_for_children);
        if (pidns)
            bpf_probe_read_kernel(&inum, sizeof(inum), &pidns->ns.inum);
        return inum;
    }
    return 0;
}

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
    struct task_struct *next = (struct task_struct *)ctx->args[2];
    u32 tgid = 0, pid = 0;
    bpf_probe_read_kernel(&tgid, sizeof(tgid), &next->tgid);
    bpf_probe_read_kernel(&pid, sizeof(pid), &next->pid);
    u64 now = bpf_ktime_get_ns();
    struct ptk_cpu_switch last = ptk_cpu_switched(pid, now);
    switched_out(ctx, &last, now);

    u64 delta = 0;
    if (!ptk_runq_wait_ended(pid, now, &delta))
        return 0;
    delta /= UNIT_DIV;

    struct ptk_hist_key key = {};
    key.label = label_of(next, tgid, pid);
    key.slot = ptk_log2_slot(delta);
    u64 zero = 0, *count = hist.lookup_or_try_init(&key, &zero);
    if (count)
        __sync_fetch_and_add(count, 1);
    else
        ptk_count_loss(PTK_MAP_FULL);
    if (LABEL_BY == 1 || LABEL_BY == 2) {
        struct comm_t name = {};
        bpf_probe_read_kernel_str(&name.comm, sizeof(name.comm), &next->comm);
        if (names.update(&key.label, &name))
            ptk_count_loss(PTK_MAP_FULL);
    }
    return 0;
}
