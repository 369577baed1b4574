/* biopattern: random and sequential block I/O per disk, counted in the
 * kernel and read (then cleared) every interval.
 *
 * At block:block_rq_complete a request is sequential when it starts where
 * the disk's previous completed request ended, else random (the first one
 * seen on a disk too: nothing precedes it). The end of the last request
 * lives in its own map, kept across intervals.
 */
#include "vmlinux.h"
#include "pytracekit.h"

#ifndef FILTER_DEV
#define FILTER_DEV 0
#endif
#ifndef MAX_DISKS
#define MAX_DISKS 1024
#endif

struct pattern {
    u64 random;
    u64 sequential;
    u64 bytes;
};

BPF_HASH(patterns, u32, struct pattern, MAX_DISKS);
BPF_HASH(last_end, u32, u64, MAX_DISKS);    /* dev -> sector after its last request */

TRACEPOINT_PROBE(block, block_rq_complete)
{
    u32 dev = args->dev;
    if (FILTER_DEV && dev != FILTER_DEV)
        return PTK_TP_PASS;
    u64 sector = args->sector, end = sector + args->nr_sector;
    u64 *last = last_end.lookup(&dev);
    bool sequential = last && *last == sector;
    if (last_end.update(&dev, &end) != 0)
        ptk_count_loss(PTK_MAP_FULL);
    struct pattern zero = {}, *p = patterns.lookup_or_try_init(&dev, &zero);
    if (!p) {
        ptk_count_loss(PTK_MAP_FULL);
        return PTK_TP_PASS;
    }
    if (sequential)
        __sync_fetch_and_add(&p->sequential, 1);
    else
        __sync_fetch_and_add(&p->random, 1);
    __sync_fetch_and_add(&p->bytes, (u64)args->nr_sector * 512);
    return PTK_TP_PASS;
}
