/* profile: sample stacks on a timer (perf_event cpu-clock) on every CPU and
 * count them in the kernel, keyed by (pid, user stack, kernel stack, comm).
 *
 * Parameters: SELECT_BY (0 all, 1 pids in `selected`, 2 tids in `selected`),
 * FOLLOW_FORKS (children of selected pids join them: `-- COMMAND`), EXEC_PID
 * (a held command: selected from its exec on),
 * INCLUDE_IDLE, USER_STACKS, KERNEL_STACKS, STACK_STORAGE_SIZE, MAX_STACKS.
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
#ifndef INCLUDE_IDLE
#define INCLUDE_IDLE 0
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

BPF_HASH(counts, struct ptk_stack_key, u64, MAX_STACKS);
BPF_STACK_TRACE(stack_traces, STACK_STORAGE_SIZE);
/* pids (or tids) to sample, filled from user space; forks may add more */
BPF_HASH(selected, u32, u8, 10240);
/* every process seen once, announced so user space can snapshot its maps
 * before it exits (symbols for short-lived processes) */
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

int on_cpu_sample(struct bpf_perf_event_data *ctx)
{
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32, tid = id;

    if (!INCLUDE_IDLE && tid == 0)
        return 0;
    if (SELECT_BY) {
        u32 who = SELECT_BY == 1 ? tgid : tid;
        if (!selected.lookup(&who))
            return 0;
    }

    struct ptk_stack_key key = { .pid = tgid };
    bpf_get_current_comm(&key.comm, sizeof(key.comm));
    /* the idle task has no user side: -EFAULT, as for kernel threads */
    key.user_stack_id = USER_STACKS && tgid ?
        ptk_checked_stack_id(stack_traces.get_stackid(&ctx->regs, BPF_F_USER_STACK)) : -14;
    key.kernel_stack_id = KERNEL_STACKS ?
        ptk_checked_stack_id(stack_traces.get_stackid(&ctx->regs, 0)) : -14;
    save_leaf(key.user_stack_id);

    u64 zero = 0, *count = counts.lookup_or_try_init(&key, &zero);
    if (count)
        __sync_fetch_and_add(count, 1);
    else
        ptk_count_loss(PTK_MAP_FULL);

    u8 one = 1;
    if (tgid && !seen_pids.lookup(&tgid)) {
        seen_pids.update(&tgid, &one);
        u32 *slot = new_pids.ringbuf_reserve(sizeof(u32));
        if (slot) {
            *slot = tgid;
            new_pids.ringbuf_submit(slot, 0);
        }
    }
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
