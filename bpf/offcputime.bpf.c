/* offcputime: time threads spend blocked, summed per (thread, user stack,
 * kernel stack). At sched_switch the thread going off CPU is still `current`,
 * so its stacks are taken then; when it is switched back in, the time it was
 * away is added to that stack.
 *
 * Parameters: THREAD_KIND (0 all, 1 user threads, 2 kernel threads), STATE
 * (-1: any), and those of ptk_stacks.h (selection, MIN/MAX_BLOCK_NS, stacks);
 * CFI_UNWIND (ptk_unwind.h: user stacks unwound in the kernel from CFI
 * tables, with the outgoing thread's registers); PYTHON_STACKS: a CPython
 * thread's Python stack is taken at switch-out too, and its time is added to
 * py_counts under (stacks, Python stack id) instead of counts. SAMPLE_LOG
 * (ptk_sample_log.h): each block is logged too, at the time it began.
 */
#include "vmlinux.h"
#include "pytracekit.h"
#include "ptk_unwind.h"
#include "ptk_kstack.h"
#include "ptk_stacks.h"
#include "ptk_sample_log.h"
#include "ptk_sched.h"

#ifndef PYTHON_STACKS
#define PYTHON_STACKS 0
#endif

#ifndef THREAD_KIND
#define THREAD_KIND 0
#endif
#ifndef STATE
#define STATE -1
#endif

#define PF_KTHREAD_FLAG 0x00200000

struct off_start {
    u64 ts;
    u64 py_stack_id;   /* 0: no Python stack (or PYTHON_STACKS off) */
    struct ptk_stack_key key;
};

/* LRU: threads that exit while switched out never come back to delete theirs */
BPF_TABLE("lru_hash", u32, struct off_start, start, 32768);
BPF_HASH(counts, struct ptk_stack_key, u64, MAX_STACKS);   /* nanoseconds */

#if PYTHON_STACKS
#include "ptk_python.h"
BPF_HASH(py_counts, struct ptk_py_sample_key, u64, MAX_STACKS);   /* nanoseconds */
#endif

PTK_INLINE bool wanted(struct task_struct *task, u32 tgid, u32 tid, long state,
                       bool preempt)
{
#if CFI_UNWIND   /* held by us at its entry */
    if (ptk_held_switched_out(tid, state, preempt))
        return false;
#endif
    if (!ptk_ids_selected(tgid, tid) || (state & TASK_DEAD_STATE))
        return false;
    if (THREAD_KIND) {
        unsigned int flags = 0;
        bpf_probe_read_kernel(&flags, sizeof(flags), &task->flags);
        bool kthread = flags & PF_KTHREAD_FLAG;
        if (kthread != (THREAD_KIND == 2))
            return false;
    }
    /* low byte only: 6.1+ adds modifier bits such as TASK_FREEZABLE (0x2000) */
    if (STATE != -1 && (state & 0xff) != STATE)
        return false;
    return true;
}

/* A block that ended at `end`: its time added to its stacks' total. */
PTK_INLINE void charge(struct off_start *s, u32 tid, u64 end)
{
    struct ptk_stack_key key = s->key;
    u64 delta = end - s->ts, py_stack_id = s->py_stack_id, began = s->ts;
    if (end < began || delta < MIN_BLOCK_NS || delta > MAX_BLOCK_NS)
        return;
    ptk_log_sample_at(&key, py_stack_id, tid, began, delta);
    u64 zero = 0, *total;
#if PYTHON_STACKS
    if (py_stack_id) {
        struct ptk_py_sample_key py_key = {.key = key, .py_stack_id = py_stack_id};
        total = py_counts.lookup_or_try_init(&py_key, &zero);
        if (total)
            __sync_fetch_and_add(total, delta);
        else
            ptk_count_loss(PTK_MAP_FULL);
        return;
    }
#endif
    total = counts.lookup_or_try_init(&key, &zero);
    if (total)
        __sync_fetch_and_add(total, delta);
    else
        ptk_count_loss(PTK_MAP_FULL);
}

/* Not every switch reaches the tracepoint: while some tasks are on a CPU (on
 * these VMs the VM agent's threads) none fires, so a thread can be switched
 * in unseen (ptk_sched.h). It is then switched out (seen) with its last block
 * still open: that block ended after this CPU's last traced switch, where it
 * is closed (short by the unseen task's run), not overwritten and lost. */

RAW_TRACEPOINT_PROBE(sched_switch)
{
    /* TP_PROTO(bool preempt, struct task_struct *prev, struct task_struct *next,
     *          unsigned int prev_state) */
    struct task_struct *prev = (struct task_struct *)ctx->args[1];
    struct task_struct *next = (struct task_struct *)ctx->args[2];
    long prev_state = (long)ctx->args[3];
    u32 prev_tid = 0, prev_tgid = 0, next_tid = 0;
    bpf_probe_read_kernel(&prev_tid, sizeof(prev_tid), &prev->pid);
    bpf_probe_read_kernel(&prev_tgid, sizeof(prev_tgid), &prev->tgid);
    bpf_probe_read_kernel(&next_tid, sizeof(next_tid), &next->pid);
    u64 now = bpf_ktime_get_ns();
    u64 cpu_last = ptk_cpu_switched(next_tid, now).ts;
#if CFI_UNWIND
    ptk_held_switched_in(next_tid);
#endif

    struct off_start *open = start.lookup(&prev_tid);
    if (open) {          /* switched in unseen */
        charge(open, prev_tid, cpu_last);
        start.delete(&prev_tid);
    }
    if (wanted(prev, prev_tgid, prev_tid, prev_state, ctx->args[0])) {
        struct off_start s = { .ts = now };
        ptk_current_stack(&s.key, ctx);
#if PYTHON_STACKS   /* prev is still current: its thread state and frames */
        s.py_stack_id = ptk_python_stack(prev_tgid, prev_tid);
#endif
        start.update(&prev_tid, &s);
    }

    struct off_start *s = start.lookup(&next_tid);
    if (!s)
        return 0;
    charge(s, next_tid, now);
    start.delete(&next_tid);
    return 0;
}
