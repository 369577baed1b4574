/* kmem: kernel allocations like `perf kmem stat`: per call site, hits and
 * bytes requested/allocated from kmem:kmalloc and kmem:kmem_cache_alloc;
 * frees counted; page allocations by order and migrate type from
 * kmem:mm_page_alloc.
 *
 * Raw tracepoints: a classic tracepoint first fills a perf record (for
 * kmem_cache_alloc/free that copies the cache's name), which cost more than
 * the counting itself (measured: an empty classic program on these events
 * added 60% to an open() loop, an empty raw one 6-10%).
 *
 * An allocation is counted in a per-CPU slot picked by a hash of its key
 * (call site, and cache: struct kmem_cache *, 0 for kmalloc): an array
 * lookup (inlined by the verifier), a compare and plain adds, no atomics, no
 * hash map (which cost about twice the empty program's run time per event).
 * A slot is claimed by the first key that lands on it and keeps it; a key
 * whose slot another holds goes to the `sites` hash map. Slots only grow:
 * user space sums them over CPUs and subtracts what it read before. A cache's
 * sizes are read from it once, when its key is claimed or created: user space
 * multiplies by the hits. kmalloc and cache allocations have slot arrays of
 * their own: a program never runs nested in itself on one CPU (the kernel
 * skips it), so no slot is written by two programs at once. Frees are
 * per-CPU counters too.
 *
 * SLAB and PAGES say which report is asked for: only its probes are compiled
 * (BCC attaches every RAW_TRACEPOINT_PROBE it finds), so a report pays for no
 * event it does not show. */
#include "vmlinux.h"
#include "pytracekit.h"

#ifndef SLAB
#define SLAB 1
#endif
#ifndef PAGES
#define PAGES 1
#endif

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

#ifndef SLOTS
#define SLOTS 1024                    /* a power of two */
#endif
struct slot {
    struct site_key key;              /* call_site 0: free */
    struct site_stats stats;
};
BPF_PERCPU_ARRAY(kmalloc_slots, struct slot, SLOTS);
BPF_PERCPU_ARRAY(cache_slots, struct slot, SLOTS);

PTK_INLINE u32 slot_of(u64 call_site, u64 cache)
{
    return (u32)(ptk_mix(call_site, cache) >> 40) & (SLOTS - 1);
}

PTK_INLINE struct site_stats *site_in_map(struct site_key *key, struct site_stats *init)
{
    struct site_stats *st = sites.lookup_or_try_init(key, init);
    if (!st)
        ptk_count_loss(PTK_MAP_FULL);
    return st;
}

#if SLAB
/* kmalloc(call_site, ptr, bytes_req, bytes_alloc, gfp_flags, node) */
RAW_TRACEPOINT_PROBE(kmalloc)
{
    if (!ptk_selected())
        return 0;
    struct site_key key = { .call_site = ctx->args[0] };
    u32 index = slot_of(key.call_site, 0);
    struct slot *s = kmalloc_slots.lookup(&index);
    if (!s)
        return 0;
    if (s->key.call_site == key.call_site || !s->key.call_site) {
        s->key.call_site = key.call_site;     /* claimed, if it was free */
        s->stats.hits++;
        s->stats.bytes_req += ctx->args[2];
        s->stats.bytes_alloc += ctx->args[3];
        return 0;
    }
    struct site_stats zero = {};
    struct site_stats *st = site_in_map(&key, &zero);
    if (st) {
        __sync_fetch_and_add(&st->hits, 1);
        __sync_fetch_and_add(&st->bytes_req, ctx->args[2]);
        __sync_fetch_and_add(&st->bytes_alloc, ctx->args[3]);
    }
    return 0;
}

/* kmem_cache_alloc(call_site, ptr, struct kmem_cache *s, gfp_flags, node):
 * the classic tracepoint's bytes_req/bytes_alloc are s->object_size/s->size */
PTK_INLINE void cache_sizes(struct site_key *key, struct site_stats *init)
{
    unsigned int size = 0, object_size = 0;
    void *cache = (void *)key->cache;
    bpf_probe_read_kernel(&size, sizeof(size),
                          cache + __builtin_offsetof(struct kmem_cache, size));
    bpf_probe_read_kernel(&object_size, sizeof(object_size),
                          cache + __builtin_offsetof(struct kmem_cache, object_size));
    init->bytes_req = object_size;
    init->bytes_alloc = size;
}

RAW_TRACEPOINT_PROBE(kmem_cache_alloc)
{
    if (!ptk_selected())
        return 0;
    struct site_key key = { .call_site = ctx->args[0], .cache = ctx->args[2] };
    u32 index = slot_of(key.call_site, key.cache);
    struct slot *s = cache_slots.lookup(&index);
    if (!s)
        return 0;
    if (s->key.call_site == key.call_site && s->key.cache == key.cache) {
        s->stats.hits++;           /* the hot path */
        return 0;
    }
    struct site_stats init = {};
    if (!s->key.call_site) {
        cache_sizes(&key, &init);
        init.hits = 1;
        s->stats = init;
        s->key = key;
        return 0;
    }
    struct site_stats *st = sites.lookup(&key);
    if (!st) {
        cache_sizes(&key, &init);
        st = site_in_map(&key, &init);
        if (!st)
            return 0;
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
#endif /* SLAB */

#if PAGES
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
#endif /* PAGES */
