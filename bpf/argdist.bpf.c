/* argdist: counts (-C) and log2 histograms (-H) of expressions over function
 * arguments, return values, tracepoint fields and latency.
 *
 * Each probe gets a map and a function generated from its spec
 * (pytracekit/tools/argdist.py through pytracekit/probes/expr.py), spliced in at
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

/* generated probes */
/* PTK_SLOT ARGDIST_PROBES */
