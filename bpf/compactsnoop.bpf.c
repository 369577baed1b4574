/* compactsnoop: one event per zone compaction (compact_zone): from
 * compaction:mm_compaction_begin to _end in the same thread, with the zone's
 * first pfn (user space names node and zone from /proc/zoneinfo), the mode,
 * the status and, when mm_compaction_suitable said it first, the order. */
#include "vmlinux.h"
#include "pytracekit.h"
#include "ptk_stream.h"

struct compaction {
    u64 ts;
    u64 zone_start;
    s32 order;                 /* -1: the whole zone (compact_memory, proactive) */
    u32 sync;
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
                            .order = -1, .sync = args->sync };
    s32 *order = orders.lookup(&tid);
    if (order) {
        c.order = *order;
        orders.delete(&tid);
    }
    if (running.update(&tid, &c))
        ptk_count_loss(PTK_MAP_FULL);
    return PTK_TP_PASS;
}

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
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
    ptk_submit(e, sizeof(*e));
    return PTK_TP_PASS;
}
