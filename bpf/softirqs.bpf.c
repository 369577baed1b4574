/* softirqs: time (or count) per soft interrupt vector, from
 * irq:softirq_entry/exit, aggregated in the kernel (ptk_irq.h). */
#include "vmlinux.h"
#include "pytracekit.h"
#include "ptk_irq.h"

TRACEPOINT_PROBE(irq, softirq_entry)
{
    if (!cpu_selected())
        return 0;
    struct irq_key key = { .vec = args->vec };
    return irq_enter(&key);
}

TRACEPOINT_PROBE(irq, softirq_exit) { return irq_exit(); }
