/* faults: page faults counted by stack. A page-faults software perf event
 * with period 1 fires on every fault in the context of the faulting task;
 * user and kernel stacks are taken there. User stacks as stackcount takes
 * them (ptk_ustack.h): unwound in the kernel from CFI tables, else (build id,
 * file offset) frames; both nameable after a short-lived process exited.
 * Kernel stacks are stored by a hash of their frames (KSTACK_HASH,
 * ptk_kstack.h), else in the stack map, whose bucket collisions drop some. */
#include "vmlinux.h"
#include "pytracekit.h"

#ifndef USER_STACKS
#define USER_STACKS 1
#endif
#ifndef KERNEL_STACKS
#define KERNEL_STACKS 1
#endif
#ifndef STACK_STORAGE
#define STACK_STORAGE 16384
#endif

BPF_HASH(counts, struct ptk_stack_key, u64, 16384);
#include "ptk_kstack.h"
/* A map for a kind of stack not asked for keeps one slot: they are allocated
 * up front (a build-id stack slot is 4 KiB). */
BPF_STACK_TRACE(stack_traces, KERNEL_STACKS && !KSTACK_HASH ? STACK_STORAGE : 1);
#define USTACK_LAYOUT 2   /* user_stacks: frame-pointer walks by hash (ptk_ustack.h) */
#define FP_USTACKS_SIZE (USER_STACKS ? STACK_STORAGE : 1)
#include "ptk_unwind.h"
#include "ptk_ustack.h"

int on_fault(struct bpf_perf_event_data *ctx)
{
    if (!ptk_selected())
        return 0;
    u64 pid_tgid = bpf_get_current_pid_tgid();
    struct ptk_stack_key key = {};
    key.pid = pid_tgid >> 32;
    key.tid = (u32)pid_tgid;
    key.user_stack_id = -1;
    key.kernel_stack_id = -1;
    if (USER_STACKS)
        key.user_stack_id = ptk_user_stack(ctx, key.pid, &key.user_stack_hash);
#if KSTACK_HASH
    if (KERNEL_STACKS)
        key.kernel_stack_hash = ptk_kernel_stack_hash(ctx, &key.kernel_stack_id);
#else
    if (KERNEL_STACKS)
        key.kernel_stack_id = ptk_checked_stack_id(stack_traces.get_stackid(ctx, 0));
#endif
    bpf_get_current_comm(&key.comm, sizeof(key.comm));
    u64 zero = 0, *count = counts.lookup_or_try_init(&key, &zero);
    if (count)
        __sync_fetch_and_add(count, 1);
    else
        ptk_count_loss(PTK_MAP_FULL);
    return 0;
}
