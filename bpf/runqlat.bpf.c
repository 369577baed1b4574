/* runqlat: time from becoming runnable (wakeup, or preemption while still
 * runnable) to running, as a log2 histogram. Raw tracepoints give the task
 * pointers, so tgid and pid namespace are read without kprobes. */
#include "vmlinux.h"
#include "pytracekit.h"

#ifndef LABEL_BY        /* 0: one histogram, 1: per process, 2: per thread, 3: per pid namespace */
#define LABEL_BY 0
#endif
#ifndef UNIT_DIV        /* 1000: microseconds, 1000000: milliseconds */
#define UNIT_DIV 1000
#endif
#define TASK_RUNNING 0

struct comm_t { char comm[TASK_COMM_LEN]; };

BPF_HASH(runnable_since, u32, u64, 65536);
BPF_HASH(hist, struct ptk_hist_key, u64, 4096);
BPF_HASH(names, u64, struct comm_t, 4096);

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
    u64 delta = (bpf_ktime_get_ns() - *since) / UNIT_DIV;
    runnable_since.delete(&pid);

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
