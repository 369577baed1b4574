/* tcpretrans: TCP retransmissions (tcp:tcp_retransmit_skb), and with
 * LOSS_PROBE tail loss probes (a kprobe on tcp_send_loss_probe: there is no
 * tracepoint for them, so -l needs kprobes).
 *
 * The pid is whoever was on CPU (usually a timer or softirq: BCC's too).
 * COUNT_MODE: count per flow in the kernel instead of sending events (-c).
 */
#include "vmlinux.h"
#include "pytracekit.h"
#include "ptk_stream.h"
#include "ptk_tcp.h"

#ifndef COUNT_MODE
#define COUNT_MODE 0
#endif
#ifndef LOSS_PROBE
#define LOSS_PROBE 0
#endif
#ifndef MAX_ENTRIES
#define MAX_ENTRIES 10240
#endif

enum { KIND_RETRANSMIT = 1, KIND_LOSS_PROBE = 2 };

struct event {
    u64 ts_ns;
    u32 pid;
    s32 state;
    u32 seq;
    u8 kind;
    u8 pad[3];
    struct tcp_endpoints ep;
};

BPF_HASH(retransmits, struct tcp_endpoints, u64, MAX_ENTRIES);

PTK_INLINE void report(struct tcp_endpoints *ep, int state, u32 seq, u8 kind)
{
    if (!endpoints_selected(ep))
        return;
    if (COUNT_MODE) {
        u64 zero = 0, *count = retransmits.lookup_or_try_init(ep, &zero);
        if (count)
            __sync_fetch_and_add(count, 1);
        else
            ptk_count_loss(PTK_MAP_FULL);
        return;
    }
    struct event *e = events.ringbuf_reserve(sizeof(*e));
    if (!e) {
        ptk_count_loss(PTK_LOST_EVENTS);
        return;
    }
    e->ts_ns = bpf_ktime_get_ns();
    e->pid = bpf_get_current_pid_tgid() >> 32;
    e->state = state;
    e->seq = seq;
    e->kind = kind;
    e->pad[0] = e->pad[1] = e->pad[2] = 0;
    e->ep = *ep;
    ptk_submit(e, sizeof(*e));
}

/* The segment's first sequence number: TCP keeps it in skb->cb (tcp_skb_cb). */
PTK_INLINE u32 skb_seq(const void *skbaddr)
{
    struct sk_buff *skb = (struct sk_buff *)skbaddr;
    u32 seq = 0;
    bpf_probe_read_kernel(&seq, sizeof(seq), &((struct tcp_skb_cb *)&skb->cb[0])->seq);
    return seq;
}

TRACEPOINT_PROBE(tcp, tcp_retransmit_skb)
{
    struct tcp_endpoints ep = {};
    PTK_ENDPOINTS_FROM_ARGS(&ep, args);
    report(&ep, args->state, skb_seq(args->skbaddr), KIND_RETRANSMIT);
    return PTK_TP_PASS;
}

#if LOSS_PROBE
int on_loss_probe(void *ctx)   /* kprobe or fentry on tcp_send_loss_probe */
{
    struct sock *sk = (struct sock *)PTK_FUNC_ARG(ctx, 1);
    if (!sk)    /* under fentry a typed pointer: the verifier wants the check */
        return 0;
    struct tcp_endpoints ep = {};
    u8 state = 0;
    endpoints_from_sock(&ep, sk);
    bpf_probe_read_kernel(&state, sizeof(state), &sk->__sk_common.skc_state);
    report(&ep, state, 0, KIND_LOSS_PROBE);
    return 0;
}
#endif
