/* kmem: kernel allocations like `perf kmem stat`: per call site, hits and
 * bytes requested/allocated from kmem:kmalloc and kmem:kmem_cache_alloc;
 * frees counted; page allocations by order and migrate type from
 * kmem:mm_page_alloc.
 *
 * Raw tracepoints: a classic tracepoint first fills a perf record (for
 * kmem_cache_alloc/free that copies the cache's name), which cost more than
 * the counting itself (measured: an empty classic program on these events
 * added 60% to an open() loop, an empty raw one 6-10%). An allocation from a
 * cache is keyed by (call site, cache) and its sizes are read from the cache
 * once, when the key is created: the hot path is one lookup and one add;
 * user space multiplies. Frees are per-CPU counters (no atomic add). */
#include "vmlinux.h"
#include "pytracekit.h"

struct site_key {
    u64 call_site;
    u64 cache;              /* struct kmem_cache *; 0 for kmalloc */
};

/* kmalloc: hits and byte totals; a cache: hits and the per-object sizes */
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

BPF_HASH(sites, struct site_key, struct site_stats, 10240);
BPF_HASH(pages, struct page_key, u64, 1024);
BPF_PERCPU_ARRAY(frees, u64, 2);      /* 0: kfree, 1: kmem_cache_free */

/* kmalloc(call_site, ptr, bytes_req, bytes_alloc, gfp_flags, node) */
RAW_TRACEPOINT_PROBE(kmalloc)
{
    if (!ptk_selected())
        return 0;
    struct site_key key = { .call_site = ctx->args[0] };
    struct site_stats zero = {};
    struct site_stats *st = sites.lookup_or_try_init(&key, &zero);
    if (!st) {
        ptk_count_loss(PTK_MAP_FULL);
        return 0;
    }
    __sync_fetch_and_add(&st->hits, 1);
    __sync_fetch_and_add(&st->bytes_req, ctx->args[2]);
    __sync_fetch_and_add(&st->bytes_alloc, ctx->args[3]);
    return 0;
}

/* kmem_cache_alloc(call_site, ptr, struct kmem_cache *s, gfp_flags, node):
 * the classic tracepoint's bytes_req/bytes_alloc are s->object_size/s->size */
RAW_TRACEPOINT_PROBE(kmem_cache_alloc)
{
    if (!ptk_selected())
        return 0;
    struct site_key key = { .call_site = ctx->args[0], .cache = ctx->args[2] };
    struct site_stats *st = sites.lookup(&key);
    if (!st) {
        unsigned int size = 0, object_size = 0;
        void *cache = (void *)key.cache;
        bpf_probe_read_kernel(&size, sizeof(size),
                              cache + __builtin_offsetof(struct kmem_cache, size));
        bpf_probe_read_kernel(&object_size, sizeof(object_size),
                              cache + __builtin_offsetof(struct kmem_cache, object_size));
        struct site_stats init = { .bytes_req = object_size, .bytes_alloc = size };
        st = sites.lookup_or_try_init(&key, &init);
        if (!st) {
            ptk_count_loss(PTK_MAP_FULL);
            return 0;
        }
    }
    __sync_fetch_and_add(&st->hits, 1);
    return 0;
}

PTK_INLINE int count_free(u32 slot, u64 ptr)
{
    if (!ptr || !ptk_selected())
        return 0;
    u64 *n = frees.lookup(&slot);
    if (n)
        *n += 1;
    return 0;
}

/* kfree(call_site, ptr); kmem_cache_free(call_site, ptr, s) */
RAW_TRACEPOINT_PROBE(kfree) { return count_free(0, ctx->args[1]); }
RAW_TRACEPOINT_PROBE(kmem_cache_free) { return count_free(1, ctx->args[1]); }

/* mm_page_alloc(struct page *page, unsigned int order, gfp_t gfp_flags, int migratetype) */
RAW_TRACEPOINT_PROBE(mm_page_alloc)
{
    if (!ptk_selected())
        return 0;
    struct page_key key = {};
    key.order = ctx->args[1];
    key.gfp_flags = (u32)ctx->args[2];
    key.migratetype = ctx->args[3];
    u64 zero = 0, *count = pages.lookup_or_try_init(&key, &zero);
    if (count)
        __sync_fetch_and_add(count, 1);
    else
        ptk_count_loss(PTK_MAP_FULL);
    return 0;
}
