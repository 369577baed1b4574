/* wakeuptime: how long threads were blocked, summed per waker stack. A thread
 * leaving the CPU (sched_switch) starts its clock; whoever wakes it
 * (sched_waking runs in the waker's context) stops it and is charged with
 * the time, under the waker's stacks and the target's name.
 *
 * Parameters: those of ptk_stacks.h; the selection applies to the blocked
 * (target) threads. CFI_UNWIND (ptk_unwind.h): the waker's user stack
 * unwound in the kernel from CFI tables (`current` at sched_waking: the
 * waker, or the task an interrupt found running). PYTHON_STACKS: the waker's
 * Python stack too (its id in the key, 0: none). With a -p/command selection,
 * wakers outside it keep frame-pointer stacks and get no Python stack (user
 * space loads only selected processes: see stacktools._unwinder).
 *
 * Not every wakeup reaches a tracepoint (ptk_sched.h: none fires while some
 * tasks run, nor in an interrupt that lands meanwhile). A block whose wakeup
 * was unseen is still open when its thread is next seen on a CPU (switched
 * in, or out): it is counted as unseen there, not left to be overwritten.
 */
#include "vmlinux.h"
#include "pytracekit.h"
#include "ptk_sched.h"
#include "ptk_unwind.h"
#include "ptk_kstack.h"
#include "ptk_stacks.h"

#ifndef PYTHON_STACKS
#define PYTHON_STACKS 0
#endif
#if PYTHON_STACKS
#include "ptk_python.h"
#endif

struct wake_key {
    struct ptk_stack_key waker;
    u32 target_pid;
    u32 pad;
    char target_comm[TASK_COMM_LEN];
    u64 waker_py_stack_id;
};

BPF_TABLE("lru_hash", u32, u64, start, 32768);      /* tid -> when it blocked */
BPF_HASH(counts, struct wake_key, u64, MAX_STACKS); /* nanoseconds */

/* tid runs (switched in, or out having come on unseen): a block of it still
 * open ended with a wakeup no tracepoint reported. */
PTK_INLINE void running(u32 tid)
{
    if (start.lookup(&tid)) {
        ptk_count_unseen();
        start.delete(&tid);
    }
}

RAW_TRACEPOINT_PROBE(sched_switch)
{
    struct task_struct *prev = (struct task_struct *)ctx->args[1];
    struct task_struct *next = (struct task_struct *)ctx->args[2];
    long prev_state = (long)ctx->args[3];
    u32 tid = 0, tgid = 0, next_tid = 0;
    bpf_probe_read_kernel(&tid, sizeof(tid), &prev->pid);
    bpf_probe_read_kernel(&tgid, sizeof(tgid), &prev->tgid);
    bpf_probe_read_kernel(&next_tid, sizeof(next_tid), &next->pid);
    running(next_tid);
    running(tid);
#if CFI_UNWIND
    ptk_held_switched_in(next_tid);
#endif
    /* only sleeps: a preempted thread (state 0) is not woken by anyone */
    if (prev_state == 0 || (prev_state & TASK_DEAD_STATE) || !ptk_ids_selected(tgid, tid))
        return 0;
#if CFI_UNWIND   /* stopped at its entry by us: its waker would be our SIGCONT */
    if (ptk_held_switched_out(tid, prev_state, ctx->args[0]))
        return 0;
#endif
    u64 now = bpf_ktime_get_ns();
    start.update(&tid, &now);
    return 0;
}

/* `current` wakes `target` (TP_PROTO(struct task_struct *p)): charged with
 * its blocked time. */
PTK_INLINE int charge_waker(struct bpf_raw_tracepoint_args *ctx)
{
    struct task_struct *target = (struct task_struct *)ctx->args[0];
    u32 tid = 0;
    bpf_probe_read_kernel(&tid, sizeof(tid), &target->pid);
    u64 *began = start.lookup(&tid);
    if (!began)
        return 0;
    u64 delta = bpf_ktime_get_ns() - *began;
    start.delete(&tid);
    if (delta < MIN_BLOCK_NS || delta > MAX_BLOCK_NS)
        return 0;

    struct wake_key key = {};
    ptk_current_stack(&key.waker, ctx);
#if PYTHON_STACKS   /* as in offwaketime: not for a waker outside a -p/command selection */
    u32 waker_pid = key.waker.pid;
    if (key.waker.tid && ptk_followed(waker_pid))
        key.waker_py_stack_id = ptk_python_stack(waker_pid, key.waker.tid);
#endif
    bpf_probe_read_kernel(&key.target_pid, sizeof(key.target_pid), &target->tgid);
    bpf_probe_read_kernel_str(&key.target_comm, sizeof(key.target_comm), &target->comm);
    u64 zero = 0, *total = counts.lookup_or_try_init(&key, &zero);
    if (total)
        __sync_fetch_and_add(total, delta);
    else
        ptk_count_loss(PTK_MAP_FULL);
    return 0;
}

/* In the waker's context always. sched_wakeup is not: when the target's CPU
 * is idle the kernel queues the activation there (TTWU_QUEUE) and
 * sched_wakeup runs in that CPU's IPI, with the idle task as `current`. */
RAW_TRACEPOINT_PROBE(sched_waking)
{
    return charge_waker(ctx);
}

/* A wakeup that began before the target's sched_switch was seen (its start
 * is still there: sched_waking found none): who is current here is the best
 * guess left. */
RAW_TRACEPOINT_PROBE(sched_wakeup)
{
    return charge_waker(ctx);
}
