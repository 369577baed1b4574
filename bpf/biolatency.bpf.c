/* biolatency: block I/O latency as log2 histograms, aggregated in the kernel,
 * optionally one per disk or per rwbs flags. */
#include "vmlinux.h"
#include "pytracekit.h"
#include "ptk_block.h"

#ifndef PER_DISK
#define PER_DISK 0
#endif
#ifndef PER_FLAGS
#define PER_FLAGS 0
#endif
#ifndef UNIT_NS                 /* 1000: microseconds, 1000000: milliseconds */
#define UNIT_NS 1000
#endif

BPF_HASH(hist, struct ptk_hist_key, u64, 4096);

TRACEPOINT_PROBE(block, block_rq_insert)
{
    return QUEUED ? block_note(args->dev, args->sector, BLOCK_INSERT, 0) : 0;
}

TRACEPOINT_PROBE(block, block_rq_issue)
{
    return block_note(args->dev, args->sector, BLOCK_ISSUE, args->bytes);
}

TRACEPOINT_PROBE(block, block_rq_complete)
{
    struct rq_start start;
    if (!block_take(args->dev, args->sector, &start))
        return 0;
    u64 latency = bpf_ktime_get_ns() - block_latency_start(&start);
    struct ptk_hist_key key = { .slot = ptk_log2_slot(latency / UNIT_NS) };
    if (PER_DISK)
        key.label = args->dev;
    if (PER_FLAGS)
        bpf_probe_read_kernel(&key.label, sizeof(key.label), args->rwbs);
    u64 zero = 0, *count = hist.lookup_or_try_init(&key, &zero);
    if (count)
        __sync_fetch_and_add(count, 1);
    else
        ptk_count_loss(PTK_MAP_FULL);
    return 0;
}
