/* hardirqs: time (or count) per hard interrupt handler, from
 * irq:irq_handler_entry/exit, aggregated in the kernel (ptk_irq.h). */
#include "vmlinux.h"
#include "pytracekit.h"
#include "ptk_irq.h"

TRACEPOINT_PROBE(irq, irq_handler_entry)
{
    if (!cpu_selected())
        return PTK_TP_PASS;
    struct irq_key key = {};
    bpf_probe_read_kernel_str(&key.name, sizeof(key.name),
                              (void *)args + (args->data_loc_name & 0xFFFF));
    irq_enter(&key);
    return PTK_TP_PASS;
}

TRACEPOINT_PROBE(irq, irq_handler_exit) { irq_exit(); return PTK_TP_PASS; }
