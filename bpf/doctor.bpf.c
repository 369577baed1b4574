/* doctor: one tiny program per attach mechanism, to prove each works here. */
#include "vmlinux.h"
#include "pytracekit.h"

BPF_ARRAY(hits, u64, 8);
BPF_STACK_TRACE(stacks, 64);
BPF_RINGBUF_OUTPUT(events, 1);

enum { HIT_TRACEPOINT, HIT_RAW_TRACEPOINT, HIT_PERF, HIT_UPROBE, HIT_STACK, HIT_RINGBUF };

PTK_INLINE void hit(u32 slot)
{
    u64 *value = hits.lookup(&slot);
    if (value)
        __sync_fetch_and_add(value, 1);
}

/* doctor's own pid (filled before attaching): the tracepoint counts only its
 * own getppid calls, as the uprobe does, whatever else runs */
BPF_ARRAY(doctor_pid, u32, 1);

int on_tracepoint(void *ctx)
{
    u32 zero = 0;
    u32 *self = doctor_pid.lookup(&zero);
    if (self && *self == bpf_get_current_pid_tgid() >> 32)
        hit(HIT_TRACEPOINT);
    return PTK_TP_PASS;
}

int on_raw_tracepoint(struct bpf_raw_tracepoint_args *ctx) { hit(HIT_RAW_TRACEPOINT); return 0; }

int on_perf_event(struct bpf_perf_event_data *ctx)
{
    hit(HIT_PERF);
    if (stacks.get_stackid(ctx, 0) >= 0)
        hit(HIT_STACK);
    u32 *slot = events.ringbuf_reserve(sizeof(u32));
    if (slot) {
        *slot = 1;
        events.ringbuf_submit(slot, 0);
        hit(HIT_RINGBUF);
    }
    return 0;
}

int on_uprobe(struct pt_regs *ctx) { hit(HIT_UPROBE); return 0; }
