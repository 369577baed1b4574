/* The run queue wait of a task, as runqlat and runqslower measure it: from
 * becoming runnable (a traced wakeup, or a switch-out while still runnable)
 * to its switch-in. A task that went to sleep at a traced switch is kept as
 * ASLEEP, so that a switch-in with no traced wakeup is known for what it is
 * (bpf/ptk_sched.h: counted as unseen, never measured from a stale start).
 * runqlat, runqslower and schedlat (which keeps its own per-task clock beside
 * it) share it. */
#ifndef PTK_RUNQ_H
#define PTK_RUNQ_H

#define TASK_RUNNING 0
#define TASK_DEAD_STATE 0x80
#define ASLEEP 0        /* runnable_since: asleep since a traced switch-out */

BPF_HASH(runnable_since, u32, u64, 65536);

/* pid is woken: runnable from now, unless already waiting on the run queue
 * (a preempted task woken from a sleep it had not begun yet). */
PTK_INLINE void ptk_runq_woken(u32 pid)
{
    u64 *since = runnable_since.lookup(&pid);
    if (since && *since != ASLEEP)
        return;
    u64 now = bpf_ktime_get_ns();
    if (runnable_since.update(&pid, &now))
        ptk_count_loss(PTK_MAP_FULL);
}

/* pid leaves the CPU in `state` (sched_switch's prev_state; `preempt` its
 * first argument): from now it waits on the run queue (preempted or still
 * runnable), sleeps, or is gone (true: the includer forgets it too). */
PTK_INLINE bool ptk_runq_left(u32 pid, unsigned int state, u64 preempt, u64 now)
{
    if (state & TASK_DEAD_STATE) {
        runnable_since.delete(&pid);
        return true;
    }
    u64 since = preempt || state == TASK_RUNNING ? now : ASLEEP;
    if (runnable_since.update(&pid, &since))
        ptk_count_loss(PTK_MAP_FULL);
    return false;
}

/* pid is switched in: its wait ends. True with *delay when it was measured
 * (from a traced wakeup or switch-out); a switch-in with no traced wakeup
 * after a traced sleep is counted as unseen. */
PTK_INLINE bool ptk_runq_wait_ended(u32 pid, u64 now, u64 *delay)
{
    u64 *since = runnable_since.lookup(&pid);
    if (!since)
        return false;
    u64 began = *since;
    runnable_since.delete(&pid);
    if (began == ASLEEP) {      /* woken unseen */
        ptk_count_unseen();
        return false;
    }
    *delay = now - began;
    return true;
}

/* runqlat's and runqslower's wakeup: a selected task's wait begins. */
PTK_INLINE int woken(struct task_struct *p)
{
    u32 tgid = 0, pid = 0;
    if (ptk_sched_task_selected(p, &tgid, &pid))
        ptk_runq_woken(pid);
    return 0;
}

/* runqlat's and runqslower's switch-out: prev leaves the CPU; a wait it
 * had, if it came on unseen, ended unseen. */
PTK_INLINE void switched_out(struct bpf_raw_tracepoint_args *ctx, struct ptk_cpu_switch *last,
                             u64 now)
{
    struct task_struct *prev = (struct task_struct *)ctx->args[1];
    u32 tgid = 0, pid = 0;
    if (!ptk_sched_task_selected(prev, &tgid, &pid))
        return;
    if (ptk_switched_in_unseen(last, pid) && runnable_since.lookup(&pid))
        ptk_count_unseen();
    ptk_runq_left(pid, ctx->args[3], ctx->args[0], now);
}

#endif
