/* offcputime: time threads spend blocked, summed per (thread, user stack,
 * kernel stack). At sched_switch the thread going off CPU is still `current`,
 * so its stacks are taken then; when it is switched back in, the time it was
 * away is added to that stack.
 *
 * Parameters: SELECT_BY (0 all, 1 pids in `selected`, 2 tids), FOLLOW_FORKS, EXEC_PID,
 * THREAD_KIND (0 all, 1 user threads, 2 kernel threads), STATE (-1: any),
 * MIN_BLOCK_NS, MAX_BLOCK_NS, USER_STACKS, KERNEL_STACKS, STACK_STORAGE_SIZE.
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
#ifndef THREAD_KIND
#define THREAD_KIND 0
#endif
#ifndef STATE
#define STATE -1
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

#define PF_KTHREAD_FLAG 0x00200000
#define TASK_DEAD_STATE 0x80

struct off_start {
    u64 ts;
    struct ptk_stack_key key;
};

/* LRU: threads that exit while switched out never come back to delete theirs */
BPF_TABLE("lru_hash", u32, struct off_start, start, 32768);
BPF_HASH(counts, struct ptk_stack_key, u64, MAX_STACKS);   /* nanoseconds */
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

PTK_INLINE bool wanted(struct task_struct *task, u32 tgid, u32 tid, long state)
{
    if (SELECT_BY == 1 && !selected.lookup(&tgid))
        return false;
    if (SELECT_BY == 2 && !selected.lookup(&tid))
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
    return tid != 0 && !(state & TASK_DEAD_STATE);
}

PTK_INLINE void announce_pid(u32 tgid)
{
    u8 one = 1;
    if (!seen_pids.lookup(&tgid)) {
        seen_pids.update(&tgid, &one);
        u32 *slot = new_pids.ringbuf_reserve(sizeof(u32));
        if (slot) {
            *slot = tgid;
            new_pids.ringbuf_submit(slot, 0);
        }
    }
}

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

    if (wanted(prev, prev_tgid, prev_tid, prev_state)) {
        struct off_start s = { .ts = now };
        s.key.pid = prev_tgid;
        s.key.tid = prev_tid;
        bpf_get_current_comm(&s.key.comm, sizeof(s.key.comm));
        s.key.user_stack_id = USER_STACKS ?
            ptk_checked_stack_id(stack_traces.get_stackid(ctx, BPF_F_USER_STACK)) : -14;
        s.key.kernel_stack_id = KERNEL_STACKS ?
            ptk_checked_stack_id(stack_traces.get_stackid(ctx, 0)) : -14;
        save_leaf(s.key.user_stack_id);
        start.update(&prev_tid, &s);
        announce_pid(prev_tgid);
    }

    struct off_start *s = start.lookup(&next_tid);
    if (!s)
        return 0;
    struct ptk_stack_key key = s->key;
    u64 delta = now - s->ts;
    start.delete(&next_tid);
    if (delta < MIN_BLOCK_NS || delta > MAX_BLOCK_NS)
        return 0;
    u64 zero = 0, *total = counts.lookup_or_try_init(&key, &zero);
    if (total)
        __sync_fetch_and_add(total, delta);
    else
        ptk_count_loss(PTK_MAP_FULL);
    return 0;
}

/* After exec a process is another program: forget it, so that its next
 * stack announces it again and user space snapshots the new maps. */
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
