/* softirqs: time (or count) per soft interrupt vector, from
 * irq:softirq_entry/exit, aggregated in the kernel. */
#include "vmlinux.h"
#include "pytracekit.h"

#ifndef DIST
#define DIST 0
#endif
#ifndef COUNT_ONLY
#define COUNT_ONLY 0
#endif
#ifndef PTK_CPU
#define PTK_CPU -1
#endif
#ifndef UNIT_NS
#define UNIT_NS 1000
#endif

/* Softirqs do not nest on a CPU. */
BPF_PERCPU_ARRAY(starts, u64, 1);
BPF_HASH(stats, struct ptk_hist_key, u64, 1024);   /* label: the vector */

PTK_INLINE void add(struct ptk_hist_key *key, u64 value)
{
    u64 zero = 0, *total = stats.lookup_or_try_init(key, &zero);
    if (total)
        __sync_fetch_and_add(total, value);
    else
        ptk_count_loss(PTK_MAP_FULL);
}

TRACEPOINT_PROBE(irq, softirq_entry)
{
    if (PTK_CPU >= 0 && bpf_get_smp_processor_id() != PTK_CPU)
        return 0;
    if (COUNT_ONLY) {
        struct ptk_hist_key key = { .label = args->vec };
        add(&key, 1);
        return 0;
    }
    u32 zero = 0;
    u64 *start = starts.lookup(&zero);
    if (start)
        *start = bpf_ktime_get_ns();
    return 0;
}

TRACEPOINT_PROBE(irq, softirq_exit)
{
    if (COUNT_ONLY)
        return 0;
    u32 zero = 0;
    u64 *start = starts.lookup(&zero);
    if (!start || !*start)
        return 0;
    u64 delta = bpf_ktime_get_ns() - *start;
    *start = 0;
    struct ptk_hist_key key = { .label = args->vec };
    if (DIST) {
        key.slot = ptk_log2_slot(delta / UNIT_NS);
        add(&key, 1);
    } else {
        add(&key, delta);
    }
    return 0;
}
