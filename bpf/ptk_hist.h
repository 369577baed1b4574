/* ptk_hist.h: one in-kernel aggregation map, `hist`, of HIST_KEY -> u64, and
 * the one way to add to it (a full map is counted, never silent). Pasted in by
 * pytracekit/collect/stream.py; define HIST_KEY before including it. */
#ifndef PTK_HIST_H
#define PTK_HIST_H

#ifndef HIST_KEY
#define HIST_KEY struct ptk_hist_key
#endif
#ifndef HIST_ENTRIES
#define HIST_ENTRIES 4096
#endif

BPF_HASH(hist, HIST_KEY, u64, HIST_ENTRIES);

PTK_INLINE void ptk_hist_add(HIST_KEY *key, u64 value)
{
    u64 zero = 0, *total = hist.lookup_or_try_init(key, &zero);
    if (total)
        __sync_fetch_and_add(total, value);
    else
        ptk_count_loss(PTK_MAP_FULL);
}

#endif /* PTK_HIST_H */
