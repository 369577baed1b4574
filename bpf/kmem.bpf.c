/* kmem: kernel allocations like `perf kmem stat`: per call site, hits and
 * bytes requested/allocated from kmem:kmalloc and kmem:kmem_cache_alloc;
 * frees counted; page allocations by order and migrate type from
 * kmem:mm_page_alloc. */
#include "vmlinux.h"
#include "pytracekit.h"

struct site_stats {
    u64 hits;
    u64 bytes_req;
    u64 bytes_alloc;
};

struct page_key {
    u32 order;
    s32 migratetype;
    u64 gfp_flags;
};

BPF_HASH(sites, u64, struct site_stats, 10240);
BPF_HASH(pages, struct page_key, u64, 1024);
BPF_ARRAY(frees, u64, 2);      /* 0: kfree, 1: kmem_cache_free */

PTK_INLINE int count_alloc(u64 call_site, u64 req, u64 alloc)
{
    if (!ptk_selected())
        return 0;
    struct site_stats zero = {};
    struct site_stats *st = sites.lookup_or_try_init(&call_site, &zero);
    if (!st) {
        ptk_count_loss(PTK_MAP_FULL);
        return 0;
    }
    __sync_fetch_and_add(&st->hits, 1);
    __sync_fetch_and_add(&st->bytes_req, req);
    __sync_fetch_and_add(&st->bytes_alloc, alloc);
    return 0;
}

TRACEPOINT_PROBE(kmem, kmalloc)
{
    count_alloc(args->call_site, args->bytes_req, args->bytes_alloc);
    return PTK_TP_PASS;
}

TRACEPOINT_PROBE(kmem, kmem_cache_alloc)
{
    count_alloc(args->call_site, args->bytes_req, args->bytes_alloc);
    return PTK_TP_PASS;
}

PTK_INLINE int count_free(u32 slot, const void *ptr)
{
    if (!ptk_selected() || !ptr)
        return 0;
    u64 *n = frees.lookup(&slot);
    if (n)
        __sync_fetch_and_add(n, 1);
    return 0;
}

TRACEPOINT_PROBE(kmem, kfree) { count_free(0, args->ptr); return PTK_TP_PASS; }
TRACEPOINT_PROBE(kmem, kmem_cache_free) { count_free(1, args->ptr); return PTK_TP_PASS; }

TRACEPOINT_PROBE(kmem, mm_page_alloc)
{
    if (!ptk_selected())
        return PTK_TP_PASS;
    struct page_key key = {};
    key.order = args->order;
    key.migratetype = args->migratetype;
    key.gfp_flags = args->gfp_flags;
    u64 zero = 0, *count = pages.lookup_or_try_init(&key, &zero);
    if (count)
        __sync_fetch_and_add(count, 1);
    else
        ptk_count_loss(PTK_MAP_FULL);
    return PTK_TP_PASS;
}
