/* drsnoop: one event per direct reclaim: a task that had to free memory
 * itself before its allocation could go on, with how long it took and the
 * pages it freed. Global reclaim (vmscan:mm_vmscan_direct_reclaim_*) and a
 * memory cgroup at its limit (vmscan:mm_vmscan_memcg_reclaim_*). The begin
 * gives the allocation's order and GFP flags (-v). */
#include "vmlinux.h"
#include "pytracekit.h"
#include "ptk_stream.h"

#ifndef FILTER_UID             /* -1: any */
#define FILTER_UID -1
#endif

enum kind { KIND_DIRECT = 1, KIND_MEMCG = 2 };

struct reclaim_start {
    u64 ts;
    u64 gfp_flags;
    u32 kind;
    s32 order;
};

BPF_HASH(started, u32, struct reclaim_start, 10240);

struct event {
    u64 ts;
    u64 delta_ns;
    u64 pages;
    u32 pid;
    u32 tid;
    u32 uid;
    u32 kind;
    s32 order;                 /* of the allocation that needed it */
    u32 pad;
    char comm[TASK_COMM_LEN];
    u64 gfp_flags;             /* of the allocation that needed it */
};

PTK_INLINE void reclaim_begin(u32 kind, s32 order, u64 gfp_flags)
{
    if (!ptk_selected())
        return;
    u64 uid_gid = bpf_get_current_uid_gid();
    if (FILTER_UID >= 0 && (u32)uid_gid != (u32)FILTER_UID)
        return;
    u32 tid = bpf_get_current_pid_tgid();
    struct reclaim_start start = { .ts = bpf_ktime_get_ns(), .kind = kind, .order = order,
                                   .gfp_flags = gfp_flags };
    if (started.update(&tid, &start))
        ptk_count_loss(PTK_MAP_FULL);
}

PTK_INLINE void reclaim_end(u64 pages)
{
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u32 tid = pid_tgid;
    struct reclaim_start *s = started.lookup(&tid);
    if (!s)
        return;
    struct reclaim_start start = *s;
    started.delete(&tid);
    struct event *e = events.ringbuf_reserve(sizeof(*e));
    if (!e) {
        ptk_count_loss(PTK_LOST_EVENTS);
        return;
    }
    e->ts = bpf_ktime_get_ns();
    e->delta_ns = e->ts - start.ts;
    e->pages = pages;
    e->pid = pid_tgid >> 32;
    e->tid = tid;
    e->uid = bpf_get_current_uid_gid();
    e->kind = start.kind;
    e->order = start.order;
    e->pad = 0;
    e->gfp_flags = start.gfp_flags;
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
    ptk_submit(e, sizeof(*e));
}

TRACEPOINT_PROBE(vmscan, mm_vmscan_direct_reclaim_begin)
{
    reclaim_begin(KIND_DIRECT, args->order, args->gfp_flags);
    return PTK_TP_PASS;
}

TRACEPOINT_PROBE(vmscan, mm_vmscan_direct_reclaim_end)
{
    reclaim_end(args->nr_reclaimed);
    return PTK_TP_PASS;
}

TRACEPOINT_PROBE(vmscan, mm_vmscan_memcg_reclaim_begin)
{
    reclaim_begin(KIND_MEMCG, args->order, args->gfp_flags);
    return PTK_TP_PASS;
}

TRACEPOINT_PROBE(vmscan, mm_vmscan_memcg_reclaim_end)
{
    reclaim_end(args->nr_reclaimed);
    return PTK_TP_PASS;
}
