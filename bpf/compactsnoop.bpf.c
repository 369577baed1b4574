/* compactsnoop: one event per zone compaction (compact_zone): from
 * compaction:mm_compaction_begin to _end in the same thread, with the zone's
 * first pfn (user space names node and zone from /proc/zoneinfo), the mode,
 * the status and, when mm_compaction_suitable said it first, the order.
 * EXTENDED (-e): the pages the compaction's own tracepoints report in its
 * thread between begin and end, summed (scanned and isolated for migration,
 * scanned and isolated as free targets, migrated, failed). KERNEL_STACK (-K):
 * the stack at mm_compaction_begin (compact_zone's start, where BCC's is),
 * stored by a hash of its frames (ptk_kstack.h), not in a stack map whose
 * bucket collisions drop stacks. */
#include "vmlinux.h"
#include "pytracekit.h"
#include "ptk_stream.h"

#ifndef EXTENDED
#define EXTENDED 0
#endif
#ifndef KERNEL_STACK
#define KERNEL_STACK 0
#endif
#define KSTACK_HASH KERNEL_STACK
#define KSTACKS_SIZE 4096      /* distinct stacks: few places compact a zone */
#include "ptk_kstack.h"

struct pages {                 /* -e: summed over one compaction */
    u64 migrate_scanned;
    u64 migrate_taken;
    u64 free_scanned;
    u64 free_taken;
    u64 migrated;
    u64 failed;
};

struct compaction {
    u64 ts;
    u64 zone_start;
    s32 order;                 /* -1: the whole zone (compact_memory, proactive) */
    u32 sync;
    s32 kernel_stack;
    u32 pad;
    u64 kernel_stack_hash;
    struct pages pages;
};

BPF_HASH(orders, u32, s32, 10240);           /* tid -> order, until compact_zone begins */
BPF_HASH(running, u32, struct compaction, 10240);

struct event {
    u64 ts;
    u64 delta_ns;
    u64 zone_start;
    u32 pid;
    u32 tid;
    s32 order;
    s32 status;
    u32 sync;
    u32 pad;
    char comm[TASK_COMM_LEN];
    s32 kernel_stack;          /* -K: < 0: no kernel stack (the error) */
    u32 pad2;
    u64 kernel_stack_hash;     /* -K: nonzero: the kernel stack is in `kstacks` */
    struct pages pages;
};

TRACEPOINT_PROBE(compaction, mm_compaction_suitable)
{
    if (!ptk_selected())
        return PTK_TP_PASS;
    u32 tid = bpf_get_current_pid_tgid();
    s32 order = args->order;
    if (orders.update(&tid, &order))
        ptk_count_loss(PTK_MAP_FULL);
    return PTK_TP_PASS;
}

TRACEPOINT_PROBE(compaction, mm_compaction_begin)
{
    if (!ptk_selected())
        return PTK_TP_PASS;
    u32 tid = bpf_get_current_pid_tgid();
    struct compaction c = { .ts = bpf_ktime_get_ns(), .zone_start = args->zone_start,
                            .order = -1, .sync = args->sync, .kernel_stack = -1 };
#if KERNEL_STACK
    c.kernel_stack_hash = ptk_kernel_stack_hash(args, &c.kernel_stack);
#endif
    s32 *order = orders.lookup(&tid);
    if (order) {
        c.order = *order;
        orders.delete(&tid);
    }
    if (running.update(&tid, &c))
        ptk_count_loss(PTK_MAP_FULL);
    return PTK_TP_PASS;
}

#if EXTENDED
TRACEPOINT_PROBE(compaction, mm_compaction_isolate_migratepages)
{
    u32 tid = bpf_get_current_pid_tgid();
    struct compaction *c = running.lookup(&tid);
    if (c) {
        c->pages.migrate_scanned += args->nr_scanned;
        c->pages.migrate_taken += args->nr_taken;
    }
    return PTK_TP_PASS;
}

TRACEPOINT_PROBE(compaction, mm_compaction_isolate_freepages)
{
    u32 tid = bpf_get_current_pid_tgid();
    struct compaction *c = running.lookup(&tid);
    if (c) {
        c->pages.free_scanned += args->nr_scanned;
        c->pages.free_taken += args->nr_taken;
    }
    return PTK_TP_PASS;
}

TRACEPOINT_PROBE(compaction, mm_compaction_migratepages)
{
    u32 tid = bpf_get_current_pid_tgid();
    struct compaction *c = running.lookup(&tid);
    if (c) {
        c->pages.migrated += args->nr_migrated;
        c->pages.failed += args->nr_failed;
    }
    return PTK_TP_PASS;
}
#endif

TRACEPOINT_PROBE(compaction, mm_compaction_end)
{
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u32 tid = pid_tgid;
    struct compaction *c = running.lookup(&tid);
    if (!c)
        return PTK_TP_PASS;
    struct compaction started = *c;
    running.delete(&tid);
    struct event *e = events.ringbuf_reserve(sizeof(*e));
    if (!e) {
        ptk_count_loss(PTK_LOST_EVENTS);
        return PTK_TP_PASS;
    }
    e->ts = bpf_ktime_get_ns();
    e->delta_ns = e->ts - started.ts;
    e->zone_start = started.zone_start;
    e->pid = pid_tgid >> 32;
    e->tid = tid;
    e->order = started.order;
    e->status = args->status;
    e->sync = started.sync;
    e->pad = 0;
    e->kernel_stack = started.kernel_stack;
    e->pad2 = 0;
    e->kernel_stack_hash = started.kernel_stack_hash;
    e->pages = started.pages;
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
    ptk_submit(e, sizeof(*e));
    return PTK_TP_PASS;
}
