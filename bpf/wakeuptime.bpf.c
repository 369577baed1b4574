/* wakeuptime: how long threads were blocked, summed per waker stack. A thread
 * leaving the CPU (sched_switch) starts its clock; whoever wakes it
 * (sched_wakeup runs in the waker's context) stops it and is charged with
 * the time, under the waker's stacks and the target's name.
 *
 * Parameters as offcputime: SELECT_BY/FOLLOW_FORKS select the blocked
 * (target) threads; MIN_BLOCK_NS, MAX_BLOCK_NS, USER_STACKS, KERNEL_STACKS.
 */
#include "vmlinux.h"
#include "pytracekit.h"

#ifndef SELECT_BY
#define SELECT_BY 0
#endif
#ifndef FOLLOW_FORKS
#define FOLLOW_FORKS 0
#endif
#ifndef EXEC_PID
#define EXEC_PID 0
#endif
#ifndef MIN_BLOCK_NS
#define MIN_BLOCK_NS 1000ULL
#endif
#ifndef MAX_BLOCK_NS
#define MAX_BLOCK_NS 0xffffffffffffffffULL
#endif
#ifndef USER_STACKS
#define USER_STACKS 1
#endif
#ifndef KERNEL_STACKS
#define KERNEL_STACKS 1
#endif
#ifndef STACK_STORAGE_SIZE
#define STACK_STORAGE_SIZE 16384
#endif
#ifndef MAX_STACKS
#define MAX_STACKS 40960
#endif

#define TASK_DEAD_STATE 0x80

struct wake_key {
    struct ptk_stack_key waker;
    u32 target_pid;
    u32 pad;
    char target_comm[TASK_COMM_LEN];
};

BPF_TABLE("lru_hash", u32, u64, start, 32768);      /* tid -> when it blocked */
BPF_HASH(counts, struct wake_key, u64, MAX_STACKS); /* nanoseconds */
BPF_STACK_TRACE(stack_traces, STACK_STORAGE_SIZE);
BPF_HASH(selected, u32, u8, 10240);
BPF_HASH(seen_pids, u32, u8, 65536);
BPF_RINGBUF_OUTPUT(new_pids, 4);

/* The leaf's registers and the top of its user stack, once per user stack
 * id: user space recovers the frames that frame-pointer unwinding skips in
 * code built without frame pointers (see pytracekit/unwind.py). */
#ifndef LEAF_BYTES
#define LEAF_BYTES 512
#endif
struct ptk_leaf {
    u64 ip;
    u64 sp;
    u64 bp;
    u8 stack[LEAF_BYTES];
};
BPF_HASH(leaf_frames, s32, struct ptk_leaf, 4096);
BPF_PERCPU_ARRAY(leaf_scratch, struct ptk_leaf, 1);

PTK_INLINE void save_leaf(s32 user_stack_id)
{
    if (user_stack_id < 0 || leaf_frames.lookup(&user_stack_id))
        return;
    u32 zero = 0;
    struct ptk_leaf *leaf = leaf_scratch.lookup(&zero);
    if (!leaf)
        return;
    struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
    bpf_probe_read_kernel(&leaf->ip, sizeof(leaf->ip), &regs->ip);
    bpf_probe_read_kernel(&leaf->sp, sizeof(leaf->sp), &regs->sp);
    bpf_probe_read_kernel(&leaf->bp, sizeof(leaf->bp), &regs->bp);
    if (bpf_probe_read_user(leaf->stack, sizeof(leaf->stack), (void *)leaf->sp) == 0)
        leaf_frames.update(&user_stack_id, leaf);
}

PTK_INLINE bool wanted(u32 tgid, u32 tid)
{
    if (SELECT_BY == 1 && !selected.lookup(&tgid))
        return false;
    if (SELECT_BY == 2 && !selected.lookup(&tid))
        return false;
    return tid != 0;
}

RAW_TRACEPOINT_PROBE(sched_switch)
{
    struct task_struct *prev = (struct task_struct *)ctx->args[1];
    long prev_state = (long)ctx->args[3];
    u32 tid = 0, tgid = 0;
    bpf_probe_read_kernel(&tid, sizeof(tid), &prev->pid);
    bpf_probe_read_kernel(&tgid, sizeof(tgid), &prev->tgid);
    /* only sleeps: a preempted thread (state 0) is not woken by anyone */
    if (prev_state == 0 || (prev_state & TASK_DEAD_STATE) || !wanted(tgid, tid))
        return 0;
    u64 now = bpf_ktime_get_ns();
    start.update(&tid, &now);
    return 0;
}

RAW_TRACEPOINT_PROBE(sched_wakeup)
{
    /* TP_PROTO(struct task_struct *p) */
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
    u64 id = bpf_get_current_pid_tgid();
    key.waker.pid = id >> 32;
    key.waker.tid = (u32)id;
    bpf_get_current_comm(&key.waker.comm, sizeof(key.waker.comm));
    /* the idle task has no user side: -EFAULT, as for kernel threads */
    key.waker.user_stack_id = USER_STACKS && key.waker.pid ?
        ptk_checked_stack_id(stack_traces.get_stackid(ctx, BPF_F_USER_STACK)) : -14;
    key.waker.kernel_stack_id = KERNEL_STACKS ?
        ptk_checked_stack_id(stack_traces.get_stackid(ctx, 0)) : -14;
    save_leaf(key.waker.user_stack_id);
    bpf_probe_read_kernel(&key.target_pid, sizeof(key.target_pid), &target->tgid);
    bpf_probe_read_kernel_str(&key.target_comm, sizeof(key.target_comm), &target->comm);

    u64 zero = 0, *total = counts.lookup_or_try_init(&key, &zero);
    if (total)
        __sync_fetch_and_add(total, delta);
    else
        ptk_count_loss(PTK_MAP_FULL);

    u8 one = 1;
    u32 waker = key.waker.pid;
    if (waker && !seen_pids.lookup(&waker)) {
        seen_pids.update(&waker, &one);
        u32 *slot = new_pids.ringbuf_reserve(sizeof(u32));
        if (slot) {
            *slot = waker;
            new_pids.ringbuf_submit(slot, 0);
        }
    }
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exec)
{
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    seen_pids.delete(&tgid);
    /* `-- COMMAND`: selected from its exec on, not while it is still the
     * forked copy of pytracekit waiting to be released */
    if (EXEC_PID && tgid == EXEC_PID) {
        u8 one = 1;
        selected.update(&tgid, &one);
    }
    return 0;
}

#if FOLLOW_FORKS
TRACEPOINT_PROBE(sched, sched_process_fork)
{
    u32 parent = bpf_get_current_pid_tgid() >> 32, child = args->child_pid;
    u8 one = 1;
    if (selected.lookup(&parent))
        selected.update(&child, &one);
    return 0;
}
#endif
