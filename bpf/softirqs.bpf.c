/* softirqs: time (or count) per soft interrupt vector, from
 * irq:softirq_entry/exit, aggregated in the kernel (ptk_irq.h). */
#include "vmlinux.h"
#include "pytracekit.h"
#include "ptk_irq.h"

TRACEPOINT_PROBE(irq, softirq_entry)
{
    if (!cpu_selected())
        return PTK_TP_PASS;
    struct irq_key key = { .vec = args->vec };
    irq_enter(&key);
    return PTK_TP_PASS;
}

TRACEPOINT_PROBE(irq, softirq_exit) { irq_exit(); return PTK_TP_PASS; }
