/* trace: one event per probe hit that passes its filter, printf-style.
 *
 * The per-probe event structs and functions are generated from the user's
 * probes (pytracekit/tools/trace.py through pytracekit/probes/expr.py) and spliced in
 * at the end. Every event starts with struct trace_header, then the
 * probe's numeric arguments (u64 each), then its strings (STRING_SIZE each).
 */
#include "vmlinux.h"
#include "pytracekit.h"

#ifndef BUFFER_PAGES
#define BUFFER_PAGES 4096        /* ring buffer size in pages (a power of two) */
#endif
#ifndef STACK_ENTRIES
#define STACK_ENTRIES 1024
#endif
#ifndef USER_STACKS
#define USER_STACKS 0
#endif
#ifndef KERNEL_STACKS
#define KERNEL_STACKS 0
#endif
#ifndef STRING_SIZE
#define STRING_SIZE 80
#endif

BPF_RINGBUF_OUTPUT(events, BUFFER_PAGES);
/* kernel stacks by a hash of their frames (KSTACK_HASH, ptk_kstack.h), else
 * in the stack map, whose bucket collisions drop some */
#include "ptk_kstack.h"
BPF_STACK_TRACE(stacks, KSTACK_HASH ? 1 : STACK_ENTRIES);
/* User frames as (build id, offset): nameable after the process exited;
 * with CFI_UNWIND, unwound in the kernel once the process is loaded. */
#define USTACK_LAYOUT 2   /* user_stacks: frame-pointer walks by hash (ptk_ustack.h) */
#define FP_USTACKS_SIZE STACK_ENTRIES
#include "ptk_unwind.h"
#include "ptk_ustack.h"

struct trace_header {
    u64 ts;
    u32 pid;
    u32 tid;
    u32 probe;
    u32 cpu;
    s32 user_stack;
    s32 kernel_stack;
    char comm[TASK_COMM_LEN];
    u64 user_stack_hash;     /* nonzero: the user stack is in `ustacks` */
    u64 kernel_stack_hash;   /* nonzero: the kernel stack is in `kstacks` */
};

PTK_INLINE void trace_fill_header(struct trace_header *h, void *ctx, u32 probe)
{
    u64 pid_tgid = bpf_get_current_pid_tgid();
    h->ts = bpf_ktime_get_ns();
    h->pid = pid_tgid >> 32;
    h->tid = (u32)pid_tgid;
    h->probe = probe;
    h->cpu = bpf_get_smp_processor_id();
    h->user_stack = -1;
    h->kernel_stack = -1;
    h->user_stack_hash = 0;
    h->kernel_stack_hash = 0;
    if (USER_STACKS)
        h->user_stack = ptk_user_stack(ctx, h->pid, &h->user_stack_hash);
#if KSTACK_HASH
    if (KERNEL_STACKS)
        h->kernel_stack_hash = ptk_kernel_stack_hash(ctx, &h->kernel_stack);
#else
    if (KERNEL_STACKS)
        h->kernel_stack = ptk_checked_stack_id(stacks.get_stackid(ctx, 0));
#endif
    bpf_get_current_comm(&h->comm, sizeof(h->comm));
}

/* generated probes */
/* PTK_SLOT TRACE_PROBES */
