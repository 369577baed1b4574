/* ptk_irq.h: what hardirqs and softirqs share. Each CPU runs one handler (or
 * one softirq) at a time, so one start time per CPU suffices; the time (or a
 * count, or a log2 slot with DIST) goes into `hist` keyed by handler name or
 * softirq vector. Pasted in by pytracekit/collect/stream.py. */
#ifndef PTK_IRQ_H
#define PTK_IRQ_H

#ifndef DIST                    /* log2 histograms instead of totals */
#define DIST 0
#endif
#ifndef COUNT_ONLY              /* count entries, do not time them */
#define COUNT_ONLY 0
#endif
#ifndef PTK_CPU                 /* -1: every CPU */
#define PTK_CPU -1
#endif
#ifndef UNIT_NS                 /* histogram unit: 1000 usecs, 1 nsecs */
#define UNIT_NS 1000
#endif
#define NAME_BYTES 32

struct irq_key {
    char name[NAME_BYTES];      /* hard irq handler name */
    u32 vec;                    /* softirq vector */
    u32 slot;
};

struct irq_start {
    u64 ts;
    struct irq_key key;
};

#define HIST_KEY struct irq_key
#include "ptk_hist.h"

BPF_PERCPU_ARRAY(starts, struct irq_start, 1);

PTK_INLINE bool cpu_selected(void)
{
    return PTK_CPU < 0 || bpf_get_smp_processor_id() == PTK_CPU;
}

/* At entry: count it (COUNT_ONLY), or remember when and what started. */
PTK_INLINE int irq_enter(struct irq_key *key)
{
    if (COUNT_ONLY) {
        ptk_hist_add(key, 1);
        return 0;
    }
    u32 zero = 0;
    struct irq_start *start = starts.lookup(&zero);
    if (start) {
        start->key = *key;
        start->ts = bpf_ktime_get_ns();
    }
    return 0;
}

PTK_INLINE int irq_exit(void)
{
    if (COUNT_ONLY)
        return 0;
    u32 zero = 0;
    struct irq_start *start = starts.lookup(&zero);
    if (!start || !start->ts)
        return 0;
    u64 delta = bpf_ktime_get_ns() - start->ts;
    start->ts = 0;
    struct irq_key key = start->key;
    if (DIST) {
        key.slot = ptk_log2_slot(delta / UNIT_NS);
        ptk_hist_add(&key, 1);
    } else {
        ptk_hist_add(&key, delta);
    }
    return 0;
}

#endif /* PTK_IRQ_H */
