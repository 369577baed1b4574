/* argdist: counts (-C) and log2 histograms (-H) of expressions over function
 * arguments, return values, tracepoint fields and latency.
 *
 * Each probe gets a map and a function generated from its spec
 * (pytracekit/tools/argdist.py through pytracekit/expr.py), spliced in at
 * the end: a count probe keys its map by the expression values, a histogram
 * probe by struct ptk_hist_key (the log2 slot of its one expression).
 */
#include "vmlinux.h"
#include "pytracekit.h"

#ifndef MAX_ENTRIES
#define MAX_ENTRIES 10240        /* distinct keys per count probe */
#endif
#ifndef STRING_SIZE
#define STRING_SIZE 80
#endif

#ifndef EXCLUDE_SELF
#define EXCLUDE_SELF 0           /* 1: the tool itself (pid in self_pid[0]) is left out */
#endif
#if EXCLUDE_SELF
/* Filled before attaching (probegen.load_and_attach): a pid compiled in would
 * make every run's program new to the program cache (pytracekit/progcache.py). */
BPF_ARRAY(self_pid, u32, 1);
#endif

PTK_INLINE bool argdist_is_self(void)
{
#if EXCLUDE_SELF
    u32 zero = 0;
    u32 *self = self_pid.lookup(&zero);
    return self && *self && (bpf_get_current_pid_tgid() >> 32) == *self;
#else
    return false;
#endif
}

/* generated probes */
@ARGDIST_PROBES@
