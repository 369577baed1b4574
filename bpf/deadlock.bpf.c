/* deadlock: the lock-order graph of one process's mutexes, for lock-order
 * inversions (a cycle: one thread took A then B, another B then A). Uprobes
 * on the lock function's entry note each mutex a thread holds (with the user
 * stack that took it) and add an edge held -> wanted for each one it still
 * holds; the unlock function's entry forgets it. sched_process_fork (a raw
 * tracepoint) notes which thread created which, with the stack
 * pthread_create was called from (a uprobe on it notes that stack for the
 * clone that follows). Uprobes are the tool's own events; the tracepoints
 * (ptk_ustack.h's) let every event through.
 *
 * Stacks are unwound in the kernel from CFI tables (CFI_UNWIND,
 * ptk_unwind.h/ptk_ustack.h: code without frame pointers has whole stacks),
 * else (--unwind fp, or a process not loaded yet) a frame-pointer walk. That
 * walk, from a function's first instruction, skips the function's caller
 * (its return address is at the stack pointer; the frame pointer still holds
 * the caller's frame): each stack is kept with that return address,
 * `caller`, which user space puts back as the second frame. */
#include "vmlinux.h"
#include "pytracekit.h"

#ifndef MAX_HELD                /* mutexes one thread may hold at once */
#define MAX_HELD 16
#endif
#ifndef MAX_THREADS
#define MAX_THREADS 65536
#endif
#ifndef MAX_EDGES
#define MAX_EDGES 65536
#endif
#ifndef STACK_ENTRIES
#define STACK_ENTRIES 16384
#endif

BPF_STACK_TRACE(user_stacks, STACK_ENTRIES);   /* the frame-pointer walk */
#include "ptk_unwind.h"
#include "ptk_ustack.h"

struct site {
    s64 stack;                  /* a frame-pointer walk's id in user_stacks */
    u64 caller;
    u64 hash;                   /* nonzero: the unwound stack is in `ustacks` */
};

struct held_lock {
    u64 mutex;
    struct site site;
};

struct held_set {
    struct held_lock locks[MAX_HELD];
};

struct edge_key {
    u64 held;                   /* taken first ... */
    u64 wanted;                 /* ... while this one was asked for */
};

struct edge {
    struct site held_site;
    struct site wanted_site;
    u32 tid;
    u32 pad;
    char comm[TASK_COMM_LEN];
};

struct creation {
    struct site site;
    u32 parent_tid;
    u32 pad;
    char comm[TASK_COMM_LEN];
};

BPF_HASH(held, u32, struct held_set, MAX_THREADS);
BPF_ARRAY(empty_set, struct held_set, 1);   /* never written: too big for the BPF stack */
BPF_HASH(edges, struct edge_key, struct edge, MAX_EDGES);
BPF_HASH(created_by, u32, struct creation, MAX_THREADS);
BPF_HASH(creating, u32, struct site, MAX_THREADS);   /* in pthread_create: its caller */

/* The user stack at a probed function's entry (see above). */
static inline struct site entry_site(struct pt_regs *ctx)
{
    struct site s = {};
    s.stack = ptk_user_stack(ctx, bpf_get_current_pid_tgid() >> 32, &s.hash);
    bpf_probe_read_user(&s.caller, sizeof(s.caller), (void *)PT_REGS_SP(ctx));
    return s;
}

int on_lock(struct pt_regs *ctx)
{
    if (!ptk_selected())
        return 0;
    u32 tid = bpf_get_current_pid_tgid();
    u64 mutex = PT_REGS_PARM1(ctx);
    u32 zero = 0;
    struct held_set *empty = empty_set.lookup(&zero);
    if (!empty)
        return 0;
    struct held_set *set = held.lookup_or_try_init(&tid, empty);
    if (!set) {
        ptk_count_loss(PTK_MAP_FULL);
        return 0;
    }
    for (int i = 0; i < MAX_HELD; i++) {
        if (set->locks[i].mutex == mutex)
            return 0;          /* a recursive mutex taken again: no edge to itself */
    }
    struct site site = entry_site(ctx);
    int slot = -1;
    for (int i = 0; i < MAX_HELD; i++) {
        u64 other = set->locks[i].mutex;
        if (!other) {
            if (slot < 0)
                slot = i;
            continue;
        }
        struct edge_key key = { .held = other, .wanted = mutex };
        if (edges.lookup(&key))
            continue;          /* the first time this order was seen is kept */
        struct edge e = { .held_site = set->locks[i].site, .wanted_site = site, .tid = tid };
        bpf_get_current_comm(&e.comm, sizeof(e.comm));
        if (edges.update(&key, &e) != 0)
            ptk_count_loss(PTK_MAP_FULL);
    }
    if (slot < 0 || slot >= MAX_HELD) {
        ptk_count_loss(PTK_MAP_FULL);   /* more than MAX_HELD held at once */
        return 0;
    }
    set->locks[slot].mutex = mutex;
    set->locks[slot].site = site;
    return 0;
}

int on_unlock(struct pt_regs *ctx)
{
    if (!ptk_selected())
        return 0;
    u32 tid = bpf_get_current_pid_tgid();
    u64 mutex = PT_REGS_PARM1(ctx);
    struct held_set *set = held.lookup(&tid);
    if (!set)
        return 0;
    for (int i = 0; i < MAX_HELD; i++) {
        if (set->locks[i].mutex == mutex) {
            set->locks[i].mutex = 0;
        }
    }
    return 0;
}

int on_create(struct pt_regs *ctx)
{
    if (!ptk_selected())
        return 0;
    u32 tid = bpf_get_current_pid_tgid();
    struct site site = entry_site(ctx);
    if (creating.update(&tid, &site) != 0)
        ptk_count_loss(PTK_MAP_FULL);
    return 0;
}

/* raw: ptk_ustack.h has the sched_process_fork TRACEPOINT_PROBE */
RAW_TRACEPOINT_PROBE(sched_process_fork)
{
    /* TP_PROTO(struct task_struct *parent, struct task_struct *child) */
    if (!ptk_selected())
        return 0;
    u32 tid = bpf_get_current_pid_tgid(), child = 0;
    bpf_probe_read_kernel(&child, sizeof(child),
                          &((struct task_struct *)ctx->args[1])->pid);
    struct creation c = { .parent_tid = tid, .site = { .stack = -1 } };
    struct site *site = creating.lookup(&tid);
    if (site) {                /* a thread pthread_create made (else: no stack) */
        c.site = *site;
        creating.delete(&tid);
    }
    bpf_get_current_comm(&c.comm, sizeof(c.comm));
    if (created_by.update(&child, &c) != 0)
        ptk_count_loss(PTK_MAP_FULL);
    return 0;
}
