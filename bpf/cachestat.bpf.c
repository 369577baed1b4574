/* cachestat: what the page-cache tracepoints can count, per CPU, into running
 * totals never cleared (user space prints the growth per interval):
 * pages added to the page cache (filemap:mm_filemap_add_to_page_cache, one
 * event per folio of 1 << order pages) and folios dirtied
 * (writeback:writeback_dirty_folio). A lookup that finds its page in the
 * cache (a hit) has no tracepoint: hits are not counted (see the docs). */
#include "vmlinux.h"
#include "pytracekit.h"

enum cache_stat { ADDED_PAGES, ADDED_FOLIOS, DIRTIED_FOLIOS, CACHE_STATS };

BPF_PERCPU_ARRAY(stats, u64, CACHE_STATS);

static inline void add(u32 stat, u64 n)
{
    u64 *value = stats.lookup(&stat);
    if (value)
        *value += n;
}

TRACEPOINT_PROBE(filemap, mm_filemap_add_to_page_cache)
{
    if (ptk_selected()) {
        add(ADDED_PAGES, 1ULL << (args->order & 63));
        add(ADDED_FOLIOS, 1);
    }
    return PTK_TP_PASS;
}

TRACEPOINT_PROBE(writeback, writeback_dirty_folio)
{
    if (ptk_selected())
        add(DIRTIED_FOLIOS, 1);
    return PTK_TP_PASS;
}
