/* ptk_sched.h: what the tools pairing scheduler events (switch-out/switch-in,
 * wakeup/run) share about the events no tracepoint reports.
 *
 * While some tasks are on a CPU (on these VMs the VM agent's threads) no
 * tracepoint fires at all, not even in an interrupt: the switch from such a
 * task to the next one is never seen, nor a wakeup that lands meanwhile. So
 * each CPU's last traced switch is kept (when, and to whom): a task switched
 * out that is not the one the CPU's last traced switch put on it was switched
 * in unseen, after that switch. An interval whose start or end was unseen is
 * counted in ptk_sched_unseen (read by families/sched.py and reported), never
 * measured as something it was not. */
#ifndef PTK_SCHED_H
#define PTK_SCHED_H

struct ptk_cpu_switch {
    u64 ts;          /* the CPU's last traced switch (0: none yet this run) */
    u32 next_tid;    /* the task it switched in */
    u32 pad;
};

BPF_PERCPU_ARRAY(ptk_cpu_switch, struct ptk_cpu_switch, 1);
BPF_PERCPU_ARRAY(ptk_sched_unseen, u64, 1);   /* intervals not measured: an end unseen */

/* At every sched_switch, first: the CPU's previous traced switch (zero when
 * this is its first), and this one noted in its place. */
PTK_INLINE struct ptk_cpu_switch ptk_cpu_switched(u32 next_tid, u64 now)
{
    struct ptk_cpu_switch last = {};
    u32 zero = 0;
    struct ptk_cpu_switch *cur = ptk_cpu_switch.lookup(&zero);
    if (cur) {
        last = *cur;
        cur->ts = now;
        cur->next_tid = next_tid;
    }
    return last;
}

/* The task switched out now (prev) came onto this CPU unseen: after `last`,
 * which put another task on it. False for the task that was running when
 * tracing began (no switch traced on this CPU yet). */
PTK_INLINE bool ptk_switched_in_unseen(struct ptk_cpu_switch *last, u32 prev_tid)
{
    return last->ts && last->next_tid != prev_tid;
}

/* A sched tracepoint's task (prev, next, the woken): its ids, and whether
 * the tool's filters select it (ptk_task_selected). */
PTK_INLINE bool ptk_sched_task_selected(struct task_struct *p, u32 *tgid, u32 *pid)
{
    bpf_probe_read_kernel(tgid, sizeof(*tgid), &p->tgid);
    bpf_probe_read_kernel(pid, sizeof(*pid), &p->pid);
    return ptk_task_selected(*tgid, *pid);
}

PTK_INLINE void ptk_count_unseen(void)
{
    u32 zero = 0;
    u64 *n = ptk_sched_unseen.lookup(&zero);
    if (n)
        (*n)++;   /* per-CPU: no atomic needed */
}

#endif
