/* funclatency: time spent in functions, as log2 histograms.
 *
 * Each probe gets a generated entry function (latency_entry_N) and return
 * function (latency_return_N). A thread keeps a small stack of entry times,
 * so nested and recursive calls each get their own duration; returns whose
 * entry was not seen (the call began before tracing) are ignored.
 */
#include "vmlinux.h"
#include "pytracekit.h"

#ifndef LATENCY_PROBES
#define LATENCY_PROBES 1
#endif
#ifndef LATENCY_UNIT_NS
#define LATENCY_UNIT_NS 1          /* 1000 for -u, 1000000 for -m */
#endif
#ifndef LATENCY_PER_FUNCTION
#define LATENCY_PER_FUNCTION 0
#endif
#ifndef MAX_DEPTH
#define MAX_DEPTH 32
#endif
#ifndef MAX_THREADS
#define MAX_THREADS 10240
#endif

struct entry_key {
    u32 tid;
    u32 depth;
};

BPF_HASH(depths, u32, u32, MAX_THREADS);
BPF_HASH(starts, struct entry_key, u64, MAX_THREADS);
BPF_HASH(dist, struct ptk_hist_key, u64, 64 * LATENCY_PROBES);
/* per probe: [2n] total time in units, [2n+1] calls */
BPF_PERCPU_ARRAY(sums, u64, 2 * LATENCY_PROBES);

PTK_INLINE int on_entry(void)
{
    if (!ptk_selected())
        return 0;
    u32 tid = (u32)bpf_get_current_pid_tgid();
    u32 zero = 0;
    u32 *depth = depths.lookup_or_try_init(&tid, &zero);
    if (!depth) {
        ptk_count_loss(PTK_MAP_FULL);
        return 0;
    }
    /* Deeper than MAX_DEPTH: not timed, but still counted so returns pair up. */
    if (*depth < MAX_DEPTH) {
        struct entry_key key = { .tid = tid, .depth = *depth };
        u64 now = bpf_ktime_get_ns();
        if (starts.update(&key, &now) != 0)
            ptk_count_loss(PTK_MAP_FULL);
    }
    (*depth)++;
    return 0;
}

PTK_INLINE int on_return(u32 probe)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    u32 *depth = depths.lookup(&tid);
    if (!depth || *depth == 0)
        return 0;
    (*depth)--;
    struct entry_key key = { .tid = tid, .depth = *depth };
    if (*depth == 0)
        depths.delete(&tid);
    u64 *start = starts.lookup(&key);
    if (!start)
        return 0;
    u64 delta = (bpf_ktime_get_ns() - *start) / LATENCY_UNIT_NS;
    starts.delete(&key);

    struct ptk_hist_key hkey = {};
    hkey.label = LATENCY_PER_FUNCTION ? probe : 0;
    hkey.slot = ptk_log2_slot(delta);
    u64 zero = 0;
    u64 *count = dist.lookup_or_try_init(&hkey, &zero);
    if (count)
        __sync_fetch_and_add(count, 1);
    else
        ptk_count_loss(PTK_MAP_FULL);
    u32 total_slot = 2 * probe, calls_slot = 2 * probe + 1;
    u64 *total = sums.lookup(&total_slot);
    if (total)
        *total += delta;
    u64 *calls = sums.lookup(&calls_slot);
    if (calls)
        (*calls)++;
    return 0;
}

/* One pair per probe, replacing the placeholder; alone, the file compiles
 * with the pair for probe 0. */
#ifndef PTK_GENERATED_PROBES
int latency_entry_0(void *ctx) { return on_entry(); }
int latency_return_0(void *ctx) { return on_return(0); }
#endif
/* PTK_SLOT PTK_PROBE_FUNCTIONS */
