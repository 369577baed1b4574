/* slabratetop: slab allocations counted per cache, in the kernel:
 * kmem:kmem_cache_alloc names its cache; kmem:kmalloc does not (only the
 * size it got), so kmalloc allocations are counted under "kmalloc-SIZE"
 * by the size of the object they received. */
#include "vmlinux.h"
#include "pytracekit.h"

#define NAME_LEN 32

struct cache_key {
    char name[NAME_LEN];
};

struct cache_stats {
    u64 allocs;
    u64 bytes;
};

BPF_HASH(caches, struct cache_key, struct cache_stats, 4096);
BPF_HASH(kmalloc_sizes, u64, struct cache_stats, 1024);   /* bytes_alloc -> stats */

TRACEPOINT_PROBE(kmem, kmem_cache_alloc)
{
    if (!ptk_selected())
        return PTK_TP_PASS;
    struct cache_key key = {};
    u32 loc = args->data_loc_name;
    bpf_probe_read_kernel_str(&key.name, sizeof(key.name), (void *)args + (loc & 0xFFFF));
    struct cache_stats zero = {};
    struct cache_stats *st = caches.lookup_or_try_init(&key, &zero);
    if (!st) {
        ptk_count_loss(PTK_MAP_FULL);
        return PTK_TP_PASS;
    }
    __sync_fetch_and_add(&st->allocs, 1);
    __sync_fetch_and_add(&st->bytes, args->bytes_alloc);
    return PTK_TP_PASS;
}

TRACEPOINT_PROBE(kmem, kmalloc)
{
    if (!ptk_selected())
        return PTK_TP_PASS;
    u64 size = args->bytes_alloc;
    struct cache_stats zero = {};
    struct cache_stats *st = kmalloc_sizes.lookup_or_try_init(&size, &zero);
    if (!st) {
        ptk_count_loss(PTK_MAP_FULL);
        return PTK_TP_PASS;
    }
    __sync_fetch_and_add(&st->allocs, 1);
    __sync_fetch_and_add(&st->bytes, size);
    return PTK_TP_PASS;
}
