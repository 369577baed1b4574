/* User stacks for the event tools (stackcount, trace -U, faults, memleak,
 * mutexstat): `ptk_user_stack()` puts the current thread's user stack into
 * any key, as a hash of the in-kernel unwinder (ptk_unwind.h) when its
 * process is loaded, else as an id of the frame-pointer walk. User space:
 * pytracekit/collect/user_stacks.py.
 *
 * Pasted after ptk_unwind.h by a program that declares its frame-pointer
 * stack map as `user_stacks` (BPF_STACK_TRACE or _BUILDID) before this file
 * and does not paste ptk_stacks.h (whose tracepoints profile's tools share:
 * the three below are their CFI half). Parameter: CFI_UNWIND.
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
 * (follow.inc.c, FOLLOW_MODE 2) has the sched_process_exec TRACEPOINT_PROBE
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

/* The current thread's user stack: returns the id for the key's s32 stack id
 * field and sets *stack_hash (the key's u64). Unwound: hash nonzero, id
 * -EFAULT ("no stack in `user_stacks`"); not storable: hash 0, id -ENOMEM
 * (a missed stack, counted); process not loaded: hash 0, the id of a
 * frame-pointer walk into `user_stacks`. */
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
    return ptk_checked_stack_id(user_stacks.get_stackid(ctx, BPF_F_USER_STACK));
}

#endif /* PTK_USTACK_H */
