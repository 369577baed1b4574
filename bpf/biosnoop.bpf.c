/* biosnoop: one event per completed block request: who started it, where,
 * how large, queue time and latency. */
#include "vmlinux.h"
#include "pytracekit.h"
#include "ptk_stream.h"
#include "ptk_block.h"

struct event {
    u64 ts;
    u64 latency;                /* issue -> completion, ns */
    u64 queued;                 /* insertion -> issue, ns (0: not seen) */
    u64 sector;
    u32 pid;
    u32 dev;
    u32 bytes;
    s32 error;
    char rwbs[16];
    char comm[TASK_COMM_LEN];
};

TRACEPOINT_PROBE(block, block_io_start)
{
    block_note(args->dev, args->sector, BLOCK_START, 0);
    return PTK_TP_PASS;
}

TRACEPOINT_PROBE(block, block_rq_complete)
{
    struct rq_start start;
    if (!block_take(args->dev, args->sector, &start))
        return PTK_TP_PASS;
    struct event *e = events.ringbuf_reserve(sizeof(*e));
    if (!e) {
        ptk_count_loss(PTK_LOST_EVENTS);
        return PTK_TP_PASS;
    }
    e->ts = bpf_ktime_get_ns();
    e->latency = e->ts - start.issued;
    e->queued = start.queued ? start.issued - start.queued : 0;
    e->sector = args->sector;
    e->pid = start.pid;
    e->dev = args->dev;
    e->bytes = start.bytes;
    e->error = args->error;
    __builtin_memset(e->rwbs, 0, sizeof(e->rwbs));
    bpf_probe_read_kernel(&e->rwbs, 10, args->rwbs);
    __builtin_memcpy(e->comm, start.comm, sizeof(e->comm));
    ptk_submit(e, sizeof(*e));
    return PTK_TP_PASS;
}
