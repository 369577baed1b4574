/* For tests/test_recursion_misses.py: a perf_event (sampling) program that
 * calls bpf_trace_printk on each of its first LIMIT samples. The helper fires
 * the bpf_trace:bpf_trace_printk tracepoint inside this program, where the
 * kernel's per-CPU bpf_prog_active is already held (bpf_overflow_handler), so
 * trace_call_bpf skips every program on that tracepoint and counts one
 * recursion miss for each: `fired` is how many the kernel must have counted.
 */
#include "vmlinux.h"

BPF_ARRAY(fired, u64, 1);

int printk_in_sample(struct bpf_perf_event_data *ctx)
{
    int zero = 0;
    u64 *count = fired.lookup(&zero);
    if (!count || *count >= LIMIT)
        return 0;
    bpf_trace_printk("pytracekit test: recursion miss\n");
    __sync_fetch_and_add(count, 1);
    return 0;
}
