/* pidpersec: new tasks (processes and threads: every clone) counted per CPU
 * from sched:sched_process_fork; user space prints the growth per interval
 * (a running total, never cleared: nothing is lost between a read and a clear). */
#include "vmlinux.h"
#include "pytracekit.h"

BPF_PERCPU_ARRAY(forks, u64, 1);

TRACEPOINT_PROBE(sched, sched_process_fork)
{
    if (!ptk_selected())
        return PTK_TP_PASS;
    u32 zero = 0;
    u64 *count = forks.lookup(&zero);
    if (count)
        (*count)++;
    return PTK_TP_PASS;
}
