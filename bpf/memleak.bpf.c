/* memleak: outstanding allocations by stack. User mode (a pid): uprobes on
 * the libc allocators record each returned block by address with its size
 * and stack; frees remove it. Kernel mode (KERNEL_MODE): the same from the
 * kmem tracepoints. `combined` keeps per-stack totals up to date in the
 * kernel for --combined-only. A user stack is unwound in the kernel from CFI
 * (CFI_UNWIND, ptk_ustack.h: a hash) or walked by frame pointers (an id). */
#include "vmlinux.h"
#include "pytracekit.h"

#ifndef KERNEL_MODE
#define KERNEL_MODE 0
#endif
#ifndef SAMPLE_EVERY     /* record one allocation in this many */
#define SAMPLE_EVERY 1
#endif
#ifndef MIN_SIZE
#define MIN_SIZE 0
#endif
#ifndef MAX_SIZE
#define MAX_SIZE 0xffffffffffffffffULL
#endif
#ifndef MAX_ALLOCS
#define MAX_ALLOCS 1000000
#endif

/* A stack: a hash (nonzero) in `ustacks`, or in kernel mode in `kstacks`
 * (ptk_kstack.h), else an id in user_stacks. */
struct stack_ref {
    u64 stack_hash;
    s32 stack_id;
    u32 pad;
};

struct alloc_info {
    u64 size;
    u64 timestamp_ns;
    struct stack_ref stack;
    u32 tid;
    u32 pad;
};

struct combined_t {
    u64 total_size;
    u64 allocations;
};

BPF_HASH(sizes, u32, u64, 65536);               /* tid -> requested size, between entry and return */
BPF_HASH(memptrs, u32, u64, 65536);             /* tid -> posix_memalign's out pointer */
BPF_HASH(allocs, u64, struct alloc_info, MAX_ALLOCS);
BPF_HASH(combined, struct stack_ref, struct combined_t, 10240);
/* the kind of stack not taken keeps one slot; kernel stacks are stored by a
 * hash of their frames (a stack map's bucket collisions would drop some) */
#define KSTACK_HASH KERNEL_MODE
#define KSTACKS_SIZE (KERNEL_MODE ? 16384 : 1)
#include "ptk_kstack.h"
#define USTACK_LAYOUT 1   /* user_stacks: frame-pointer walks by hash (ptk_ustack.h) */
#define FP_USTACKS_SIZE (KERNEL_MODE ? 1 : 16384)
#include "ptk_unwind.h"
#include "ptk_ustack.h"

PTK_INLINE int alloc_enter(u64 size)
{
    if (!ptk_selected() || size < MIN_SIZE || size > MAX_SIZE)
        return 0;
    if (SAMPLE_EVERY > 1 && bpf_ktime_get_ns() % SAMPLE_EVERY != 0)
        return 0;
    u32 tid = bpf_get_current_pid_tgid();
    /* an allocator called from inside another (realloc -> malloc) is
     * recorded once, by the innermost call */
    if (sizes.lookup(&tid))
        sizes.delete(&tid);
    if (sizes.update(&tid, &size))
        ptk_count_loss(PTK_MAP_FULL);
    return 0;
}

PTK_INLINE int alloc_exit(void *ctx, u64 address, struct stack_ref *stack)
{
    u32 tid = bpf_get_current_pid_tgid();
    u64 *size = sizes.lookup(&tid);
    if (!size)
        return 0;
    struct alloc_info info = {};
    info.size = *size;
    sizes.delete(&tid);
    if (!address)
        return 0;
    info.timestamp_ns = bpf_ktime_get_ns();
    info.stack = *stack;
    info.tid = tid;
    if (allocs.update(&address, &info)) {
        ptk_count_loss(PTK_MAP_FULL);
        return 0;
    }
    struct combined_t zero = {};
    struct combined_t *c = combined.lookup_or_try_init(&info.stack, &zero);
    if (c) {
        __sync_fetch_and_add(&c->total_size, info.size);
        __sync_fetch_and_add(&c->allocations, 1);
    } else {
        ptk_count_loss(PTK_MAP_FULL);
    }
    return 0;
}

PTK_INLINE int free_enter(u64 address)
{
    struct alloc_info *info = allocs.lookup(&address);
    if (!info)
        return 0;
    struct stack_ref stack = info->stack;
    struct combined_t *c = combined.lookup(&stack);
    if (c) {
        __sync_fetch_and_sub(&c->total_size, info->size);
        __sync_fetch_and_sub(&c->allocations, 1);
    }
    allocs.delete(&address);
    return 0;
}

#if !KERNEL_MODE
PTK_INLINE int alloc_exit_user(struct pt_regs *ctx, u64 address)
{
    u32 tid = bpf_get_current_pid_tgid();
    struct stack_ref stack = {};
    if (address && sizes.lookup(&tid))   /* else not recorded: no stack to take */
        stack.stack_id = ptk_user_stack(ctx, bpf_get_current_pid_tgid() >> 32,
                                        &stack.stack_hash);
    return alloc_exit(ctx, address, &stack);
}

int malloc_enter(struct pt_regs *ctx) { return alloc_enter(PT_REGS_PARM1(ctx)); }
int calloc_enter(struct pt_regs *ctx) { return alloc_enter(PT_REGS_PARM1(ctx) * PT_REGS_PARM2(ctx)); }
int valloc_enter(struct pt_regs *ctx) { return alloc_enter(PT_REGS_PARM1(ctx)); }
int pvalloc_enter(struct pt_regs *ctx) { return alloc_enter(PT_REGS_PARM1(ctx)); }
int memalign_enter(struct pt_regs *ctx) { return alloc_enter(PT_REGS_PARM2(ctx)); }
int aligned_alloc_enter(struct pt_regs *ctx) { return alloc_enter(PT_REGS_PARM2(ctx)); }
int mmap_enter(struct pt_regs *ctx) { return alloc_enter(PT_REGS_PARM2(ctx)); }

int realloc_enter(struct pt_regs *ctx)
{
    if (ptk_selected())
        free_enter(PT_REGS_PARM1(ctx));
    return alloc_enter(PT_REGS_PARM2(ctx));
}

int posix_memalign_enter(struct pt_regs *ctx)
{
    u32 tid = bpf_get_current_pid_tgid();
    u64 memptr = PT_REGS_PARM1(ctx);
    if (ptk_selected() && memptrs.update(&tid, &memptr))
        ptk_count_loss(PTK_MAP_FULL);
    return alloc_enter(PT_REGS_PARM3(ctx));
}

int alloc_return(struct pt_regs *ctx)
{
    return alloc_exit_user(ctx, PT_REGS_RC(ctx));
}

int mmap_return(struct pt_regs *ctx)
{
    u64 address = PT_REGS_RC(ctx);
    if (address == (u64)-1)   /* MAP_FAILED */
        address = 0;
    return alloc_exit_user(ctx, address);
}

int posix_memalign_return(struct pt_regs *ctx)
{
    u32 tid = bpf_get_current_pid_tgid();
    u64 *memptr = memptrs.lookup(&tid);
    u64 address = 0;
    if (!memptr)
        return 0;
    if (PT_REGS_RC(ctx) == 0)
        bpf_probe_read_user(&address, sizeof(address), (void *)*memptr);
    memptrs.delete(&tid);
    return alloc_exit_user(ctx, address);
}

int free_probe(struct pt_regs *ctx)
{
    if (!ptk_selected())
        return 0;
    return free_enter(PT_REGS_PARM1(ctx));
}
#else
/* Kernel allocations: the tracepoints carry size and pointer together. */
PTK_INLINE int kernel_alloc(void *ctx, u64 size, u64 address)
{
    alloc_enter(size);
    struct stack_ref stack = {};
    stack.stack_hash = ptk_kernel_stack_hash(ctx, &stack.stack_id);
    return alloc_exit(ctx, address, &stack);
}

TRACEPOINT_PROBE(kmem, kmalloc) { kernel_alloc(args, args->bytes_alloc, (u64)args->ptr); return PTK_TP_PASS; }
TRACEPOINT_PROBE(kmem, kmem_cache_alloc) { kernel_alloc(args, args->bytes_alloc, (u64)args->ptr); return PTK_TP_PASS; }
TRACEPOINT_PROBE(kmem, kfree) { free_enter((u64)args->ptr); return PTK_TP_PASS; }
TRACEPOINT_PROBE(kmem, kmem_cache_free) { free_enter((u64)args->ptr); return PTK_TP_PASS; }
TRACEPOINT_PROBE(kmem, mm_page_alloc)
{
    kernel_alloc(args, 4096ULL << args->order, args->pfn);
    return PTK_TP_PASS;
}
TRACEPOINT_PROBE(kmem, mm_page_free) { free_enter(args->pfn); return PTK_TP_PASS; }
#endif
