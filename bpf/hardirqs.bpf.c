/* hardirqs: time (or count) per hard interrupt handler, from
 * irq:irq_handler_entry/exit, aggregated in the kernel. */
#include "vmlinux.h"
#include "pytracekit.h"

#ifndef DIST                    /* log2 histograms instead of totals */
#define DIST 0
#endif
#ifndef COUNT_ONLY              /* count handler runs, do not time them */
#define COUNT_ONLY 0
#endif
#ifndef PTK_CPU
#define PTK_CPU -1
#endif
#ifndef UNIT_NS                 /* histogram unit: 1000 usecs, 1 nsecs */
#define UNIT_NS 1000
#endif
#define NAME_BYTES 32

struct irq_key {
    char name[NAME_BYTES];
    u64 slot;
};

struct irq_start {
    u64 ts;
    char name[NAME_BYTES];
};

/* Handlers do not nest on a CPU (they run with interrupts off). */
BPF_PERCPU_ARRAY(starts, struct irq_start, 1);
BPF_HASH(stats, struct irq_key, u64, 1024);

PTK_INLINE void add(struct irq_key *key, u64 value)
{
    u64 zero = 0, *total = stats.lookup_or_try_init(key, &zero);
    if (total)
        __sync_fetch_and_add(total, value);
    else
        ptk_count_loss(PTK_MAP_FULL);
}

TRACEPOINT_PROBE(irq, irq_handler_entry)
{
    if (PTK_CPU >= 0 && bpf_get_smp_processor_id() != PTK_CPU)
        return 0;
    void *name = (void *)args + (args->data_loc_name & 0xFFFF);
    if (COUNT_ONLY) {
        struct irq_key key = {};
        bpf_probe_read_kernel_str(&key.name, sizeof(key.name), name);
        add(&key, 1);
        return 0;
    }
    u32 zero = 0;
    struct irq_start *start = starts.lookup(&zero);
    if (!start)
        return 0;
    bpf_probe_read_kernel_str(&start->name, sizeof(start->name), name);
    start->ts = bpf_ktime_get_ns();
    return 0;
}

TRACEPOINT_PROBE(irq, irq_handler_exit)
{
    if (COUNT_ONLY)
        return 0;
    u32 zero = 0;
    struct irq_start *start = starts.lookup(&zero);
    if (!start || !start->ts)
        return 0;
    u64 delta = bpf_ktime_get_ns() - start->ts;
    start->ts = 0;
    struct irq_key key = {};
    __builtin_memcpy(key.name, start->name, sizeof(key.name));
    if (DIST) {
        key.slot = ptk_log2_slot(delta / UNIT_NS);
        add(&key, 1);
    } else {
        add(&key, delta);
    }
    return 0;
}
