/* bitesize: block I/O size histograms per process name, from
 * block:block_rq_issue (its comm is the task issuing the request). */
#include "vmlinux.h"
#include "pytracekit.h"

#ifndef FILTER_DEV              /* kernel dev_t; 0: any */
#define FILTER_DEV 0
#endif

struct size_key {
    char comm[TASK_COMM_LEN];
    u32 slot;                   /* log2 of the size in KiB */
    u32 pad;
};

#define HIST_KEY struct size_key
#include "ptk_hist.h"

TRACEPOINT_PROBE(block, block_rq_issue)
{
    if (FILTER_DEV && args->dev != FILTER_DEV)
        return PTK_TP_PASS;
    struct size_key key = { .slot = ptk_log2_slot(args->bytes / 1024) };
    bpf_probe_read_kernel(&key.comm, sizeof(key.comm), args->comm);
    ptk_hist_add(&key, 1);
    return PTK_TP_PASS;
}
