/* funcinterval: the time between consecutive calls of the traced functions
 * (or tracepoint events), as a log2 histogram, in the kernel.
 *
 * As BCC's funcinterval, there is one "last call" time for everything traced
 * (with -p / -- COMMAND: for that process): each call adds the time since the
 * previous one. The first call only sets the time.
 */
#include "vmlinux.h"
#include "pytracekit.h"
#include "ptk_hist.h"

#ifndef UNIT_NS
#define UNIT_NS 1               /* 1000 for -u, 1000000 for -m */
#endif

BPF_ARRAY(last_call, u64, 1);

PTK_INLINE void on_call(void)
{
    if (!ptk_selected())
        return;
    int zero = 0;
    u64 *last = last_call.lookup(&zero);
    if (!last)
        return;
    u64 now = bpf_ktime_get_ns();
    u64 then = __sync_lock_test_and_set(last, now);
    if (!then || now < then)
        return;
    struct ptk_hist_key key = { .slot = ptk_log2_slot((now - then) / UNIT_NS) };
    ptk_hist_add(&key, 1);
}

#ifndef PTK_GENERATED_PROBES
int interval_0(void *ctx) { on_call(); return 0; }
#endif
/* PTK_SLOT PTK_PROBE_FUNCTIONS */
