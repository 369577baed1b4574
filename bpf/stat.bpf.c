/* stat: count tracepoint hits in the kernel, one slot per -e event.
 *
 * One small function per tracepoint event is generated from the -e specs
 * (with its --filter compiled to C) and spliced in for STAT_PROBES; each
 * calls count_event(slot). */
#include "vmlinux.h"
#include "pytracekit.h"

#ifndef MAX_EVENTS
#define MAX_EVENTS 64
#endif
/* -C: a bit per CPU to count on; 0 counts on every CPU. */
#ifndef CPU_MASK
#define CPU_MASK 0
#endif

#include "ptk_follow.h"

BPF_PERCPU_ARRAY(counts, u64, MAX_EVENTS);

PTK_INLINE int count_event(u32 slot)
{
    if (CPU_MASK && !((CPU_MASK >> (bpf_get_smp_processor_id() & 63)) & 1))
        return 0;
    if (!ptk_followed(bpf_get_current_pid_tgid() >> 32))
        return 0;
    u64 *value = counts.lookup(&slot);
    if (value)
        (*value)++;   /* per-CPU slot: no atomic needed */
    return 0;
}

/* PTK_SLOT STAT_PROBES */
