/* offwaketime: off-CPU time per (blocked thread's stacks, waker's stacks).
 * sched_switch takes the stacks of the thread leaving the CPU; sched_waking
 * (in the waker's context) notes who woke it and from where; when the thread
 * runs again its time away is added under both.
 *
 * Parameters: those of ptk_stacks.h; the selection applies to the blocked
 * threads. CFI_UNWIND (ptk_unwind.h): user stacks unwound in the kernel from
 * CFI tables, each with `current`'s registers (the outgoing thread at
 * sched_switch, the waker at sched_waking). PYTHON_STACKS: CPython threads'
 * Python stacks are taken at the same two points (ids in the key, 0: none).
 * With a -p/command selection, wakers outside it keep frame-pointer stacks
 * and get no Python stack (see current_python_stack).
 *
 * Not every switch reaches a tracepoint (ptk_sched.h): a thread can be
 * switched in unseen. It is then switched out (seen) with its block still
 * open: that block ended after this CPU's last traced switch, where it is
 * closed (short by the unseen task's run only, as in offcputime), not
 * overwritten and lost.
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

struct off_start {
    u64 ts;
    u64 py_stack_id;
    struct ptk_stack_key key;
};

struct waker_stacks {
    struct ptk_stack_key key;
    u64 py_stack_id;
};

struct offwake_key {
    struct ptk_stack_key target;
    struct ptk_stack_key waker;     /* stack ids -1: woken by nobody we saw */
    u64 target_py_stack_id;         /* Python stacks (PYTHON_STACKS), 0: none */
    u64 waker_py_stack_id;
};

BPF_TABLE("lru_hash", u32, struct off_start, start, 32768);
BPF_TABLE("lru_hash", u32, struct waker_stacks, wakers, 32768);
BPF_HASH(counts, struct offwake_key, u64, MAX_STACKS);   /* nanoseconds */

/* The current thread's Python stack id (0: none, or PYTHON_STACKS off). A
 * waker outside a -p/command selection gets none (often just whatever task a
 * timer interrupt hit; user space loads only selected processes, see
 * stacktools._unwinder). */
PTK_INLINE u64 current_python_stack(struct ptk_stack_key *key)
{
#if PYTHON_STACKS
    u32 tgid = key->pid, tid = key->tid;
    if (!tid || !ptk_followed(tgid))
        return 0;
    return ptk_python_stack(tgid, tid);
#else
    return 0;
#endif
}

/* `current` wakes `target`: its stacks are the waker's. `fallback`: only if
 * no waker was noted since the target blocked. */
PTK_INLINE int note_waker(struct bpf_raw_tracepoint_args *ctx, bool fallback)
{
    struct task_struct *target = (struct task_struct *)ctx->args[0];
    u32 tid = 0;
    bpf_probe_read_kernel(&tid, sizeof(tid), &target->pid);
    if (!start.lookup(&tid))
        return 0;   /* not a thread we are timing */
    if (fallback && wakers.lookup(&tid))
        return 0;
    struct waker_stacks waker = {};
    ptk_current_stack(&waker.key, ctx);
    waker.py_stack_id = current_python_stack(&waker.key);
    wakers.update(&tid, &waker);
    return 0;
}

/* In the waker's context always. sched_wakeup is not: when the target's CPU
 * is idle the kernel queues the activation there (TTWU_QUEUE) and
 * sched_wakeup runs in that CPU's IPI, with the idle task as `current`. */
RAW_TRACEPOINT_PROBE(sched_waking)
{
    return note_waker(ctx, false);
}

/* A wakeup that began before the target's sched_switch was seen (the waker
 * matched its sleeping state while it was still switching out): who is
 * current here is the best guess left. */
RAW_TRACEPOINT_PROBE(sched_wakeup)
{
    return note_waker(ctx, true);
}

/* tid's block, begun as `s` says, ended at `end`: its time added under its
 * stacks and its waker's (none noted: woken by nobody we saw). */
PTK_INLINE void charge(struct off_start *s, u32 tid, u64 end)
{
    struct offwake_key key = {};
    key.target = s->key;
    key.target_py_stack_id = s->py_stack_id;
    u64 delta = end - s->ts;
    bool early = end < s->ts;
    struct waker_stacks *w = wakers.lookup(&tid);
    if (w) {
        key.waker = w->key;
        key.waker_py_stack_id = w->py_stack_id;
        wakers.delete(&tid);
    } else {
        key.waker.user_stack_id = -1;
        key.waker.kernel_stack_id = -1;
    }
    if (early || delta < MIN_BLOCK_NS || delta > MAX_BLOCK_NS)
        return;
    u64 zero = 0, *total = counts.lookup_or_try_init(&key, &zero);
    if (total)
        __sync_fetch_and_add(total, delta);
    else
        ptk_count_loss(PTK_MAP_FULL);
}

RAW_TRACEPOINT_PROBE(sched_switch)
{
    struct task_struct *prev = (struct task_struct *)ctx->args[1];
    struct task_struct *next = (struct task_struct *)ctx->args[2];
    long prev_state = (long)ctx->args[3];
    u32 prev_tid = 0, prev_tgid = 0, next_tid = 0;
    bpf_probe_read_kernel(&prev_tid, sizeof(prev_tid), &prev->pid);
    bpf_probe_read_kernel(&prev_tgid, sizeof(prev_tgid), &prev->tgid);
    bpf_probe_read_kernel(&next_tid, sizeof(next_tid), &next->pid);
    u64 now = bpf_ktime_get_ns();
    struct ptk_cpu_switch last = ptk_cpu_switched(next_tid, now);

    struct off_start *open = start.lookup(&prev_tid);
    if (open) {          /* switched in unseen, after the CPU's last traced switch */
        charge(open, prev_tid, last.ts);
        start.delete(&prev_tid);
    }
    bool held = false;
#if CFI_UNWIND   /* stopped at its entry by us: not the program's blocking */
    held = ptk_held_switched_out(prev_tid, prev_state, ctx->args[0]);
    ptk_held_switched_in(next_tid);
#endif
    if (!held && !(prev_state & TASK_DEAD_STATE) && ptk_ids_selected(prev_tgid, prev_tid)) {
        struct off_start s = { .ts = now };
        ptk_current_stack(&s.key, ctx);
        s.py_stack_id = current_python_stack(&s.key);
        start.update(&prev_tid, &s);
        wakers.delete(&prev_tid);
    }

    struct off_start *s = start.lookup(&next_tid);
    if (!s)
        return 0;
    charge(s, next_tid, now);
    start.delete(&next_tid);
    return 0;
}
