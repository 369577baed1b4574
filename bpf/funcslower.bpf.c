/* funcslower: calls of traced functions slower than MIN_NS, one event each,
 * with their return value and (ARGS > 0) their first arguments.
 *
 * Each probe gets a generated entry function (slower_entry_N) and return
 * function (slower_return_N). A thread keeps a small stack of entries (start
 * time and arguments), so nested and recursive calls are each timed; a
 * return whose entry was not seen (the call began before tracing) is ignored.
 * Entry and return are uprobes or kprobes (pt_regs); kernel functions through
 * BPF trampolines are refused in Python. USER_STACKS/KERNEL_STACKS (-U/-K)
 * take the stack at the return, as BCC does: user stacks as trace -U takes
 * them (ptk_ustack.h: unwound in the kernel from CFI, else build-id frames).
 */
#include "vmlinux.h"
#include "pytracekit.h"
#include "ptk_stream.h"

#ifndef MIN_NS
#define MIN_NS 1000000ULL
#endif
#ifndef ARGS
#define ARGS 0                      /* arguments kept, at most 6 */
#endif
#ifndef MAX_DEPTH
#define MAX_DEPTH 32
#endif
#ifndef MAX_THREADS
#define MAX_THREADS 10240
#endif
#ifndef USER_STACKS
#define USER_STACKS 0
#endif
#ifndef KERNEL_STACKS
#define KERNEL_STACKS 0
#endif
#ifndef STACK_STORAGE
#define STACK_STORAGE 4096
#endif

/* A kind of stack not asked for keeps one slot (build-id slots are large). */
BPF_STACK_TRACE(stacks, KERNEL_STACKS ? STACK_STORAGE : 1);
#define USTACK_LAYOUT 2   /* user_stacks: frame-pointer walks by hash (ptk_ustack.h) */
#define FP_USTACKS_SIZE (USER_STACKS ? STACK_STORAGE : 1)
#include "ptk_unwind.h"
#include "ptk_ustack.h"

struct entry_key {
    u32 tid;
    u32 depth;
};

struct entry {
    u64 ts_ns;
    u64 args[6];
};

struct event {
    u64 ts_ns;
    u64 latency_ns;
    u64 retval;
    u64 args[6];
    u32 pid;
    u32 tid;
    u32 probe;
    u32 pad;
    char comm[TASK_COMM_LEN];
    u64 user_stack_hash;    /* nonzero: the user stack is in `ustacks` */
    s32 user_stack_id;
    s32 kernel_stack_id;
};

BPF_HASH(depths, u32, u32, MAX_THREADS);
BPF_HASH(entries, struct entry_key, struct entry, MAX_THREADS);

PTK_INLINE int on_entry(struct pt_regs *ctx)
{
    if (!ptk_selected())
        return 0;
    u32 tid = (u32)bpf_get_current_pid_tgid();
    u32 zero = 0;
    u32 *depth = depths.lookup_or_try_init(&tid, &zero);
    if (!depth) {
        ptk_count_loss(PTK_MAP_FULL);
        return 0;
    }
    /* Deeper than MAX_DEPTH: not timed, but still counted so returns pair up. */
    if (*depth < MAX_DEPTH) {
        struct entry_key key = { .tid = tid, .depth = *depth };
        struct entry e = { .ts_ns = bpf_ktime_get_ns() };
        if (ARGS > 0) e.args[0] = PT_REGS_PARM1(ctx);
        if (ARGS > 1) e.args[1] = PT_REGS_PARM2(ctx);
        if (ARGS > 2) e.args[2] = PT_REGS_PARM3(ctx);
        if (ARGS > 3) e.args[3] = PT_REGS_PARM4(ctx);
        if (ARGS > 4) e.args[4] = PT_REGS_PARM5(ctx);
        if (ARGS > 5) e.args[5] = PT_REGS_PARM6(ctx);
        if (entries.update(&key, &e) != 0)
            ptk_count_loss(PTK_MAP_FULL);
    }
    (*depth)++;
    return 0;
}

PTK_INLINE int on_return(struct pt_regs *ctx, u32 probe)
{
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u32 tid = (u32)pid_tgid;
    u32 *depth = depths.lookup(&tid);
    if (!depth || *depth == 0)
        return 0;
    (*depth)--;
    struct entry_key key = { .tid = tid, .depth = *depth };
    if (*depth == 0)
        depths.delete(&tid);
    struct entry *found = entries.lookup(&key);
    if (!found)
        return 0;
    struct entry began = *found;
    entries.delete(&key);
    u64 now = bpf_ktime_get_ns();
    if (now - began.ts_ns < MIN_NS)
        return 0;
    u64 user_hash = 0;
    s32 user_id = -1, kernel_id = -1;
    if (USER_STACKS)
        user_id = ptk_user_stack(ctx, pid_tgid >> 32, &user_hash);
    if (KERNEL_STACKS)
        kernel_id = ptk_checked_stack_id(stacks.get_stackid(ctx, 0));
    struct event *e = events.ringbuf_reserve(sizeof(*e));
    if (!e) {
        ptk_count_loss(PTK_LOST_EVENTS);
        return 0;
    }
    e->user_stack_hash = user_hash;
    e->user_stack_id = user_id;
    e->kernel_stack_id = kernel_id;
    e->ts_ns = now;
    e->latency_ns = now - began.ts_ns;
    e->retval = PT_REGS_RC(ctx);
    __builtin_memcpy(e->args, began.args, sizeof(e->args));
    e->pid = pid_tgid >> 32;
    e->tid = tid;
    e->probe = probe;
    e->pad = 0;
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
    ptk_submit(e, sizeof(*e));
    return 0;
}

/* One pair per probe, replacing the placeholder; alone, the file compiles
 * with the pair for probe 0. */
#ifndef PTK_GENERATED_PROBES
int slower_entry_0(struct pt_regs *ctx) { return on_entry(ctx); }
int slower_return_0(struct pt_regs *ctx) { return on_return(ctx, 0); }
#endif
/* PTK_SLOT PTK_PROBE_FUNCTIONS */
