/* ptk_stream.h: the ring buffer every per-event (streaming) tool writes to.
 *
 * pytracekit/collect/stream.py pastes this file in place of `#include "ptk_stream.h"`
 * (BCC rewrites map calls only in the main file). A tool then does:
 *
 *     struct event *e = events.ringbuf_reserve(sizeof(*e));
 *     if (!e) { ptk_count_loss(PTK_LOST_EVENTS); return 0; }
 *     ... fill e ...
 *     ptk_submit(e, sizeof(*e));
 *
 * Batched wake-ups: ptk_submit() commits without waking the reader, except
 * when the pending data crosses a multiple of WAKEUP_BYTES (a power of two).
 * So a storm wakes the reader once per WAKEUP_BYTES, not once per event, and
 * a trickle is picked up by the reader's short poll timeout.
 */
#ifndef PTK_STREAM_H
#define PTK_STREAM_H

#ifndef BUFFER_PAGES
#define BUFFER_PAGES 4096
#endif
#ifndef WAKEUP_BYTES
#define WAKEUP_BYTES 65536
#endif

BPF_RINGBUF_OUTPUT(events, BUFFER_PAGES);

/* BCC has no syntax for "the map itself" in a plain helper call, but it
 * rewrites `events.ringbuf_reserve(n)` into bpf_ringbuf_reserve(<map>, n, 0):
 * for the length of this one function, that helper name is a macro handing
 * back its first argument, the map pointer bpf_ringbuf_query() needs. */
#define bpf_ringbuf_reserve(map, size, flags) (map)
PTK_INLINE void *ptk_events_map(void) { return events.ringbuf_reserve(0); }
#undef bpf_ringbuf_reserve

PTK_INLINE void ptk_submit(void *record, u64 size)
{
    u64 pending = bpf_ringbuf_query(ptk_events_map(), BPF_RB_AVAIL_DATA);
    u64 before = pending - ((size + 8 + 7) & ~7ULL);   /* 8: the record header */
    /* (a ^ b) >= 2^k exactly when a and b lie in different 2^k blocks. */
    u64 flags = (pending ^ before) >= WAKEUP_BYTES ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
    events.ringbuf_submit(record, flags);
}

/* Read one field of a kernel struct through a pointer, at the offset this
 * program was compiled with. BCC's automatic rewriting of `p->field` can use
 * a different layout (seen here: mm_struct fields read 16 bytes off). */
#define PTK_READ_FIELD(dst, ptr, type, field) \
    bpf_probe_read_kernel(&(dst), sizeof(dst), (void *)(ptr) + __builtin_offsetof(type, field))

#endif /* PTK_STREAM_H */
