/* User stacks for the event tools (stackcount, trace -U, faults, memleak,
 * mutexstat): `ptk_user_stack()` puts the current thread's user stack into
 * any key, as a hash of the in-kernel unwinder (ptk_unwind.h) when its
 * process is loaded, else as a hash of the frame-pointer walk (--unwind fp,
 * or a process not loaded yet) in `user_stacks`: keys that never collide,
 * unlike a stack map's buckets, whose collisions drop stacks (a storm of new
 * processes, each with its own addresses). User space:
 * pytracekit/collect/user_stacks.py.
 *
 * Pasted after ptk_unwind.h by a program that does not paste ptk_stacks.h
 * (whose tracepoints profile's tools share: the three below are their CFI
 * half). Parameters: CFI_UNWIND; USTACK_LAYOUT, what `user_stacks` is:
 * 1 a hash map of frame-pointer walks' addresses, 2 the same of (build id,
 * file offset) frames (named after the process exited: bpf_stack_build_id),
 * 0 a stack map the program declares before this file (BPF_STACK_TRACE or
 * _BUILDID: the walk's id); FP_USTACKS_SIZE (distinct walks, layouts 1-2).
 */
#ifndef PTK_USTACK_H
#define PTK_USTACK_H

#if CFI_UNWIND
/* every process seen once, announced so user space loads its mappings */
BPF_HASH(seen_pids, u32, u8, 65536);
BPF_RINGBUF_OUTPUT(new_pids, 4);

PTK_INLINE void ptk_ustack_announce(u32 tgid)
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

/* another program: its old mappings are void (the fallback until user
 * space, told again, has loaded the new ones). A program following a command
 * (ptk_follow.h, FOLLOW_MODE 2) has the sched_process_exec TRACEPOINT_PROBE
 * already: this one is then the raw tracepoint. */
#if defined(FOLLOW_MODE) && FOLLOW_MODE == 2
#define PTK_USTACK_EXEC_RETURN 0
RAW_TRACEPOINT_PROBE(sched_process_exec)
#else
#define PTK_USTACK_EXEC_RETURN PTK_TP_PASS
TRACEPOINT_PROBE(sched, sched_process_exec)
#endif
{
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    seen_pids.delete(&tgid);
    ptk_unwind_exec(tgid);
    return PTK_USTACK_EXEC_RETURN;
}

TRACEPOINT_PROBE(sched, sched_process_exit)
{
    u32 tid = bpf_get_current_pid_tgid();
    ptk_unwind_exit(tid);
    return PTK_TP_PASS;
}

TRACEPOINT_PROBE(sched, sched_process_fork)
{
    /* a forked child unwinds with its parent's mappings until it is loaded */
    ptk_unwind_fork(bpf_get_current_pid_tgid() >> 32, args->child_pid);
    return PTK_TP_PASS;
}
#endif /* CFI_UNWIND */

#ifndef USTACK_LAYOUT
#define USTACK_LAYOUT 0
#endif
#ifndef FP_USTACKS_SIZE
#define FP_USTACKS_SIZE 16384
#endif
#if USTACK_LAYOUT
#define PTK_FP_DEPTH 127   /* kernel.perf_event_max_stack's default */
#if USTACK_LAYOUT == 2
typedef struct bpf_stack_build_id ptk_fp_frame;
#define PTK_FP_FLAGS (BPF_F_USER_STACK | BPF_F_USER_BUILD_ID)
#else
typedef u64 ptk_fp_frame;
#define PTK_FP_FLAGS BPF_F_USER_STACK
#endif
struct ptk_fp_ustack {
    u32 len;
    u32 pad;
    ptk_fp_frame frames[PTK_FP_DEPTH];
};
/* preallocated, as a stack map is: an allocation in the probe can fail */
BPF_HASH(user_stacks, u64, struct ptk_fp_ustack, FP_USTACKS_SIZE);
BPF_PERCPU_ARRAY(fp_ustack_scratch, struct ptk_fp_ustack, 1);

/* The frame-pointer walk into `user_stacks` under a hash of its frames: the
 * hash (0: none) and the id for the key (-EFAULT: "no stack map id"; else
 * the error, counted; -ENOMEM when `user_stacks` is full). */
PTK_INLINE u64 ptk_fp_user_stack(void *ctx, s32 *stack_id)
{
    u32 zero = 0;
    *stack_id = -14;   /* EFAULT */
    struct ptk_fp_ustack *st = fp_ustack_scratch.lookup(&zero);
    if (!st)
        return 0;
    /* the helper zeroes the buffer past the stack: hash every word, no branch per depth */
    long n = bpf_get_stack(ctx, st->frames, sizeof(st->frames), PTK_FP_FLAGS);
    if (n <= 0) {
        *stack_id = n ? ptk_checked_stack_id(n) : -14;
        return 0;
    }
    u64 hash = ptk_hash_words(0x2325cbf29ce48422ULL, (const u64 *)st->frames,
                              sizeof(st->frames) / sizeof(u64));
    st->len = n / sizeof(ptk_fp_frame);
    st->pad = 0;
    hash = ptk_mix(hash, st->len);
    hash = hash ? hash : 1;   /* 0 means "not stored" */
    if (!user_stacks.lookup(&hash)) {
        int err = user_stacks.insert(&hash, st);
        if (err && err != -17 /* EEXIST: another CPU stored it first */) {
            ptk_count_loss(PTK_STACK_ERRORS);
            *stack_id = -12;   /* ENOMEM: missed */
            return 0;
        }
    }
    return hash;
}
#endif /* USTACK_LAYOUT */

/* The current thread's user stack: returns the id for the key's s32 stack id
 * field and sets *stack_hash (the key's u64). Stored by hash (unwound, or a
 * frame-pointer walk in layouts 1-2): hash nonzero, id -EFAULT ("no stack map
 * id"); not storable: hash 0, id -ENOMEM (a missed stack, counted); layout 0
 * and a process not loaded: hash 0, the id of a frame-pointer walk into the
 * `user_stacks` stack map. User space looks a hash up in the unwinder's
 * `ustacks` first, then in `user_stacks`. */
PTK_INLINE s32 ptk_user_stack(void *ctx, u32 tgid, u64 *stack_hash)
{
    *stack_hash = 0;
#if CFI_UNWIND
    if (tgid) {
        ptk_ustack_announce(tgid);
        int unwound = ptk_unwind_current(tgid, stack_hash);
        if (unwound)
            return unwound > 0 ? -14 /* EFAULT */ : -12 /* ENOMEM */;
    }
#endif
#if USTACK_LAYOUT
    s32 id;
    *stack_hash = ptk_fp_user_stack(ctx, &id);
#else
    s32 id = ptk_checked_stack_id(user_stacks.get_stackid(ctx, BPF_F_USER_STACK));
#endif
#if CFI_UNWIND
    /* a process not loaded yet: the frame-pointer walk, counted as profile's is */
    if (tgid && (*stack_hash || id >= 0))
        ptk_count_loss(PTK_UNWIND_FALLBACK);
#endif
    return id;
}

#endif /* PTK_USTACK_H */
