/* What the stack tools (profile, offcputime, offwaketime, wakeuptime) share:
 * the stack map, which threads are selected, announcing new processes to
 * user space, saving leaf stacks for unwinding. The loader pastes this file
 * in place of its #include, like pytracekit.h, so the map calls below are
 * rewritten by BCC.
 *
 * Parameters: those of ptk_follow.h, which selects the threads (FOLLOW_MODE
 * 0 all, 2 a held `-- COMMAND` and its children, 3 pids in `followed`, 4 tids
 * in `followed`), USER_STACKS, KERNEL_STACKS,
 * STACK_STORAGE_SIZE, MAX_STACKS, MIN_BLOCK_NS, MAX_BLOCK_NS, LEAF_BYTES,
 * CFI_UNWIND (1: user stacks from ptk_unwind.h, which the tool includes first),
 * KSTACK_HASH (1: kernel stacks stored in `kstacks` under a hash of their
 * frames, key->kernel_stack_hash, instead of the stack map, whose bucket
 * collisions drop stacks; ptk_kstack.h, which the tool includes first).
 */
#ifndef PTK_STACKS_H
#define PTK_STACKS_H

#define PTK_CALLS_FOLLOW_EXEC 1   /* our sched_process_exec probe calls it */
#define PTK_CALLS_FOLLOW_FORK 1   /* our sched_process_fork probe calls it */
#include "ptk_follow.h"
#if defined(FILTER_AFTER_EXEC) && FILTER_AFTER_EXEC
#error "ptk_stacks.h has the raw sched_process_exec probe: select by FOLLOW_MODE, not FILTER_PID"
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
#ifndef MIN_BLOCK_NS
#define MIN_BLOCK_NS 1000ULL
#endif
#ifndef MAX_BLOCK_NS
#define MAX_BLOCK_NS 0xffffffffffffffffULL
#endif
#ifndef LEAF_BYTES
#define LEAF_BYTES 512
#endif

#define PTK_NO_STACK -14   /* -EFAULT: "no stack of this kind", not a loss */
#define TASK_DEAD_STATE 0x80

#if KSTACK_HASH && CFI_UNWIND   /* neither stack goes to the stack map */
BPF_STACK_TRACE(stack_traces, 1);
#else
BPF_STACK_TRACE(stack_traces, STACK_STORAGE_SIZE);
#endif
#if KSTACK_HASH   /* ptk_kstack.h, pasted before this file */
/* The current kernel stack into `kstacks`, its hash in key->kernel_stack_hash;
 * kernel_stack_id says "none" (PTK_NO_STACK) or the error (counted). */
PTK_INLINE void ptk_kernel_stack(struct ptk_stack_key *key, void *ctx)
{
    key->kernel_stack_hash = ptk_kernel_stack_hash(ctx, &key->kernel_stack_id);
}
#endif
/* every process seen once, announced so user space can snapshot its maps
 * before it exits (symbols for short-lived processes) */
PTK_PROBE_HASH(seen_pids, u32, u8, 65536);
BPF_RINGBUF_OUTPUT(new_pids, 4);

/* The leaf's registers and the top of its user stack, once per user stack
 * id: user space recovers the frames that frame-pointer unwinding skips in
 * code built without frame pointers (see pytracekit/symbolize/unwind.py). */
struct ptk_leaf {
    u64 ip;
    u64 sp;
    u64 bp;
    u8 stack[LEAF_BYTES];
};
PTK_PROBE_HASH(leaf_frames, s32, struct ptk_leaf, 4096);
BPF_PERCPU_ARRAY(leaf_scratch, struct ptk_leaf, 1);

PTK_INLINE bool ptk_ids_selected(u32 tgid, u32 tid)
{
    return tid != 0 && ptk_followed_thread(tgid, tid);
}

PTK_INLINE void ptk_announce(u32 tgid)
{
    u8 one = 1;
    if (!tgid || seen_pids.lookup(&tgid))
        return;
    seen_pids.update(&tgid, &one);
    u32 *slot = new_pids.ringbuf_reserve(sizeof(u32));
    if (slot) {
        *slot = tgid;
        new_pids.ringbuf_submit(slot, 0);
    }
}

PTK_INLINE void ptk_save_leaf(s32 user_stack_id)
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

/* The current thread as a stack key: ids, name, user and kernel stacks (ctx
 * is the program's context). The idle task has no user side. 1: the user
 * stack is the frame-pointer fallback (a process not loaded yet). */
PTK_INLINE int ptk_current_stack(struct ptk_stack_key *key, void *ctx)
{
    int fallback = 0;
    u64 id = bpf_get_current_pid_tgid();
    key->pid = id >> 32;
    key->tid = (u32)id;
    bpf_get_current_comm(&key->comm, sizeof(key->comm));
    /* the kernel stack first: the verifier walks its hash loop once, not once
     * for each way the user stack's branches below can end */
#if KSTACK_HASH
    key->kernel_stack_id = PTK_NO_STACK;
    if (KERNEL_STACKS)
        ptk_kernel_stack(key, ctx);
#else
    key->kernel_stack_id = KERNEL_STACKS ?
        ptk_checked_stack_id(stack_traces.get_stackid(ctx, 0)) : PTK_NO_STACK;
#endif
#if CFI_UNWIND   /* ptk_unwind.h, pasted before this file */
    int unwound = USER_STACKS && key->pid ? ptk_unwind_user(key) : 0;
    if (!unwound && USER_STACKS && key->pid) {
        unwound = ptk_fallback_user(key, ctx);
        fallback = unwound > 0;
    }
    /* never the stack map: a storm of new processes would collide in it */
    key->user_stack_id = unwound < 0 ? -12 /* ENOMEM: missed */ : PTK_NO_STACK;
#else
    key->user_stack_id = USER_STACKS && key->pid ?
        ptk_checked_stack_id(stack_traces.get_stackid(ctx, BPF_F_USER_STACK)) : PTK_NO_STACK;
#endif
    ptk_save_leaf(key->user_stack_id);
    ptk_announce(key->pid);
    return fallback;
}

/* The sched probes are raw tracepoints: detaching one does not wait for
 * grace periods as closing a classic tracepoint's perf event does (60-140 ms
 * of a profile's end here), and it fills no perf record first. They read no
 * field of the event, so other tracers see every event as before. */
RAW_TRACEPOINT_PROBE(sched_process_exec)
{
    ptk_follow_exec();   /* a command is followed from its exec on */
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    /* another program now: announce it again so its new maps are read */
    seen_pids.delete(&tgid);
#if FIRST_SAMPLES   /* a new program: copies of its first samples again */
    first_copied.delete(&tgid);
#endif
#if CFI_UNWIND   /* its old mappings are void: the fallback until they are rewritten */
    ptk_unwind_exec(tgid);
#endif
    return 0;
}

#if CFI_UNWIND
RAW_TRACEPOINT_PROBE(sched_process_exit)
{
    /* the process's entry when its main thread exits (else a thread's copy
     * from the fork probe below) */
    u32 tid = bpf_get_current_pid_tgid();
    ptk_unwind_exit(tid);
#if FIRST_SAMPLES
    first_copied.delete(&tid);
#endif
    return 0;
}
#endif

/* sched_process_fork(struct task_struct *parent, struct task_struct *child):
 * the command's children are followed (ptk_follow.h, FOLLOW_MODE 2); with
 * CFI_UNWIND, the child's unwinding state is its parent's mappings and held
 * tree (ptk_unwind.h) until it is loaded. */
#if CFI_UNWIND || FOLLOW_MODE == 2
RAW_TRACEPOINT_PROBE(sched_process_fork)
{
    struct task_struct *child = (struct task_struct *)ctx->args[1];
    ptk_follow_fork(child);
#if CFI_UNWIND
    u32 child_pid = 0;
    bpf_probe_read_kernel(&child_pid, sizeof(child_pid), &child->pid);
    ptk_unwind_fork(bpf_get_current_pid_tgid() >> 32, child_pid);
#endif
    return 0;
}
#endif

#endif /* PTK_STACKS_H */
