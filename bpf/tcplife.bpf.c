/* tcplife: one line per TCP session when it closes: lifespan, bytes each way.
 *
 * From sock:inet_sock_set_state alone (no kprobes): a socket is born at its
 * first change to SYN_SENT, SYN_RECV or ESTABLISHED and dies at CLOSE. State
 * changes happen mostly in softirq context, so the process is the one on CPU
 * at the changes a system call makes: SYN_SENT (connect), LAST_ACK (close
 * after the peer's FIN), or FIN_WAIT1 (close first) when nothing was seen
 * before. Bytes come from struct tcp_sock (through BTF): bytes_received, and
 * bytes_acked for what was sent and acknowledged.
 */
#include "vmlinux.h"
#include "pytracekit.h"
#include "ptk_stream.h"
#include "ptk_tcp.h"

#ifndef MAX_SOCKETS
#define MAX_SOCKETS 65536
#endif

struct owner {
    u32 pid;
    char comm[TASK_COMM_LEN];
};

struct event {
    u64 ts_ns;
    u64 span_ns;
    u64 rx_bytes;
    u64 tx_bytes;
    u32 pid;
    u32 pad;
    char comm[TASK_COMM_LEN];
    struct tcp_endpoints ep;
};

BPF_HASH(birth, u64, u64, MAX_SOCKETS);
BPF_HASH(owners, u64, struct owner, MAX_SOCKETS);

PTK_INLINE void remember_owner(u64 sk)
{
    struct owner me = { .pid = bpf_get_current_pid_tgid() >> 32 };
    bpf_get_current_comm(&me.comm, sizeof(me.comm));
    if (owners.update(&sk, &me) != 0)
        ptk_count_loss(PTK_MAP_FULL);
}

TRACEPOINT_PROBE(sock, inet_sock_set_state)
{
    if (args->protocol != PTK_IPPROTO_TCP)
        return PTK_TP_PASS;
    u64 sk = (u64)args->skaddr;
    int state = args->newstate;

    if (state == PTK_TCP_SYN_SENT || state == PTK_TCP_LAST_ACK)
        remember_owner(sk);
    else if (state == PTK_TCP_FIN_WAIT1 && !owners.lookup(&sk))
        remember_owner(sk);       /* this side closed first */
    if (state < PTK_TCP_FIN_WAIT1) {
        u64 now = bpf_ktime_get_ns();
        if (!birth.lookup(&sk) && birth.update(&sk, &now) != 0)
            ptk_count_loss(PTK_MAP_FULL);
        return PTK_TP_PASS;
    }
    if (state != PTK_TCP_CLOSE)
        return PTK_TP_PASS;

    u64 *born = birth.lookup(&sk);
    u64 start = born ? *born : 0;
    struct owner owner = {};
    struct owner *who = owners.lookup(&sk);
    if (who) {
        owner = *who;
    } else {
        owner.pid = bpf_get_current_pid_tgid() >> 32;
        bpf_get_current_comm(&owner.comm, sizeof(owner.comm));
    }
    birth.delete(&sk);
    owners.delete(&sk);
    if (!start)
        return PTK_TP_PASS;       /* born before tracing began, or a listener: no lifespan */

    struct tcp_endpoints ep = {};
    PTK_ENDPOINTS_FROM_ARGS(&ep, args);
    if (!endpoints_selected(&ep))
        return PTK_TP_PASS;
    if (FILTER_PID && owner.pid != FILTER_PID)
        return PTK_TP_PASS;

    struct event *e = events.ringbuf_reserve(sizeof(*e));
    if (!e) {
        ptk_count_loss(PTK_LOST_EVENTS);
        return PTK_TP_PASS;
    }
    struct tcp_sock *tp = (struct tcp_sock *)args->skaddr;
    e->ts_ns = bpf_ktime_get_ns();
    e->span_ns = e->ts_ns - start;
    e->rx_bytes = 0;
    e->tx_bytes = 0;
    bpf_probe_read_kernel(&e->rx_bytes, sizeof(e->rx_bytes), &tp->bytes_received);
    bpf_probe_read_kernel(&e->tx_bytes, sizeof(e->tx_bytes), &tp->bytes_acked);
    e->pid = owner.pid;
    e->pad = 0;
    __builtin_memcpy(e->comm, owner.comm, sizeof(e->comm));
    e->ep = ep;
    ptk_submit(e, sizeof(*e));
    return PTK_TP_PASS;
}
