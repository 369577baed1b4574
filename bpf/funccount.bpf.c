/* funccount: how often each probe fires.
 *
 * One small BPF function per probe (generated into PTK_PROBE_FUNCTIONS by
 * pytracekit/tools/funccount.py) passes its probe number to count_probe():
 * the number is a constant, so each hit costs one per-CPU array increment,
 * no hashing, no atomics, no helper calls unless a filter is on.
 * Entry uprobes, on kernels with uprobe_multi links, share count_multi
 * instead: each offset of the link carries its probe number as its cookie
 * (one cheap helper call, no map lookup more).
 */
#include "vmlinux.h"
#include "pytracekit.h"

#ifndef FUNCCOUNT_PROBES
#define FUNCCOUNT_PROBES 1
#endif
#ifndef FUNCCOUNT_CPU
#define FUNCCOUNT_CPU -1
#endif

BPF_PERCPU_ARRAY(counts, u64, FUNCCOUNT_PROBES);

PTK_INLINE int count_probe(u32 probe)
{
    if (FUNCCOUNT_CPU >= 0 && bpf_get_smp_processor_id() != FUNCCOUNT_CPU)
        return 0;
    if (!ptk_selected())
        return 0;
    u64 *count = counts.lookup(&probe);
    if (count)
        (*count)++;
    return 0;
}

#ifndef FUNCCOUNT_MULTI
#define FUNCCOUNT_MULTI 0
#endif
#if FUNCCOUNT_MULTI
int count_multi(void *ctx) { return count_probe(bpf_get_attach_cookie(ctx)); }
#endif

/* One per probe: int count_N(void *ctx) { count_probe(N); return R; }
 * (R: PTK_TP_PASS on a tracepoint, else 0) replaces the placeholder;
 * alone, the file compiles with count_0. */
#ifndef PTK_GENERATED_PROBES
int count_0(void *ctx) { return count_probe(0); }
#endif
/* PTK_SLOT PTK_PROBE_FUNCTIONS */
