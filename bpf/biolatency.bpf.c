/* biolatency: block I/O latency as log2 histograms, aggregated in the kernel,
 * optionally one per disk or per rwbs flags. */
#include "vmlinux.h"
#include "pytracekit.h"
#include "ptk_block.h"
#include "ptk_hist.h"

#ifndef PER_DISK
#define PER_DISK 0
#endif
#ifndef PER_FLAGS
#define PER_FLAGS 0
#endif
#ifndef UNIT_NS                 /* 1000: microseconds, 1000000: milliseconds */
#define UNIT_NS 1000
#endif

TRACEPOINT_PROBE(block, block_rq_complete)
{
    struct rq_start start;
    if (!block_take(args->dev, args->sector, &start))
        return PTK_TP_PASS;
    u64 latency = bpf_ktime_get_ns() - block_latency_start(&start);
    struct ptk_hist_key key = { .slot = ptk_log2_slot(latency / UNIT_NS) };
    if (PER_DISK)
        key.label = args->dev;
    if (PER_FLAGS)
        bpf_probe_read_kernel(&key.label, sizeof(key.label), args->rwbs);
    ptk_hist_add(&key, 1);
    return PTK_TP_PASS;
}
