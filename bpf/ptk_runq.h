/* The run queue wait of a task, as runqlat and runqslower measure it: from
 * becoming runnable (a traced wakeup, or a switch-out while still runnable)
 * to its switch-in. A task that went to sleep at a traced switch is kept as
 * ASLEEP, so that a switch-in with no traced wakeup is known for what it is
 * (bpf/ptk_sched.h: counted as unseen, never measured from a stale start).
 * The includer reads and deletes runnable_since at the switch-in. */
#ifndef PTK_RUNQ_H
#define PTK_RUNQ_H

#define TASK_RUNNING 0
#define TASK_DEAD_STATE 0x80
#define ASLEEP 0        /* runnable_since: asleep since a traced switch-out */

BPF_HASH(runnable_since, u32, u64, 65536);

/* Woken: runnable from now, unless already waiting on the run queue (a
 * preempted task woken from a sleep it had not begun yet). */
PTK_INLINE int woken(struct task_struct *p)
{
    u32 tgid = 0, pid = 0;
    if (!ptk_sched_task_selected(p, &tgid, &pid))
        return 0;
    u64 *since = runnable_since.lookup(&pid);
    if (since && *since != ASLEEP)
        return 0;
    u64 now = bpf_ktime_get_ns();
    if (runnable_since.update(&pid, &now))
        ptk_count_loss(PTK_MAP_FULL);
    return 0;
}

/* prev leaves the CPU: a wait it had, if it came on unseen, ended unseen;
 * from now it waits on the run queue (preempted), sleeps, or is gone. */
PTK_INLINE void switched_out(struct bpf_raw_tracepoint_args *ctx, struct ptk_cpu_switch *last,
                             u64 now)
{
    struct task_struct *prev = (struct task_struct *)ctx->args[1];
    u32 tgid = 0, pid = 0;
    if (!ptk_sched_task_selected(prev, &tgid, &pid))
        return;
    unsigned int state = ctx->args[3];
    if (ptk_switched_in_unseen(last, pid) && runnable_since.lookup(&pid))
        ptk_count_unseen();
    if (state & TASK_DEAD_STATE) {
        runnable_since.delete(&pid);
        return;
    }
    u64 since = ctx->args[0] || state == TASK_RUNNING ? now : ASLEEP;
    if (runnable_since.update(&pid, &since))
        ptk_count_loss(PTK_MAP_FULL);
}

#endif
