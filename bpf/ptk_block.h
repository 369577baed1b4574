/* ptk_block.h: block requests followed from insert/issue to completion with
 * stable tracepoints (biolatency, biosnoop). Pasted in by pytracekit/collect/stream.py.
 *
 * The tracepoints carry no request pointer, so a request is known by its
 * device and start sector, which stay the same from insert to completion. */
#ifndef PTK_BLOCK_H
#define PTK_BLOCK_H

#ifndef FILTER_DEV              /* kernel dev_t ((major << 20) | minor); 0: any */
#define FILTER_DEV 0
#endif
#ifndef QUEUED                  /* measure from insertion, not from issue */
#define QUEUED 0
#endif

struct rq_key {
    u64 sector;
    u32 dev;
    u32 pad;
};

struct rq_start {
    u64 queued;                 /* 0 when the request was never inserted */
    u64 issued;
    u32 pid;                    /* who started it (block_io_start), if seen */
    u32 bytes;                  /* its size when issued */
    char comm[TASK_COMM_LEN];
};

BPF_HASH(rq_starts, struct rq_key, struct rq_start, 10240);

PTK_INLINE bool dev_selected(u32 dev)
{
    return !FILTER_DEV || dev == FILTER_DEV;
}

enum block_step { BLOCK_START, BLOCK_INSERT, BLOCK_ISSUE };

/* Remember a step of a request: who started it, when it was queued, when
 * (and how large) it was issued. */
PTK_INLINE int block_note(u32 dev, u64 sector, enum block_step step, u32 bytes)
{
    if (!dev_selected(dev))
        return 0;
    struct rq_key key = { .sector = sector, .dev = dev };
    struct rq_start zero = {}, *start = rq_starts.lookup_or_try_init(&key, &zero);
    if (!start) {
        ptk_count_loss(PTK_MAP_FULL);
        return 0;
    }
    if (step == BLOCK_START) {
        start->pid = bpf_get_current_pid_tgid() >> 32;
        bpf_get_current_comm(&start->comm, sizeof(start->comm));
    } else if (step == BLOCK_INSERT) {
        start->queued = bpf_ktime_get_ns();
    } else {
        start->issued = bpf_ktime_get_ns();
        start->bytes = bytes;
    }
    return 0;
}

/* At completion: a copy of what was noted (false when the issue was not
 * seen), forgotten in the map. */
PTK_INLINE bool block_take(u32 dev, u64 sector, struct rq_start *out)
{
    struct rq_key key = { .sector = sector, .dev = dev };
    struct rq_start *start = rq_starts.lookup(&key);
    if (!start)
        return false;
    bpf_probe_read_kernel(out, sizeof(*out), start);
    rq_starts.delete(&key);
    return out->issued != 0;
}

/* The latency a completion ends: from insertion with QUEUED (when seen). */
PTK_INLINE u64 block_latency_start(struct rq_start *start)
{
    return QUEUED && start->queued ? start->queued : start->issued;
}

/* Both tools note insertion (for QUEUED) and issue the same way. */
TRACEPOINT_PROBE(block, block_rq_insert)
{
    if (QUEUED)
        block_note(args->dev, args->sector, BLOCK_INSERT, 0);
    return PTK_TP_PASS;
}

TRACEPOINT_PROBE(block, block_rq_issue)
{
    block_note(args->dev, args->sector, BLOCK_ISSUE, args->bytes);
    return PTK_TP_PASS;
}

#endif /* PTK_BLOCK_H */
