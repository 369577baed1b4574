/* tcpstates: every TCP state change, with the time spent in the old state.
 *
 * sock:inet_sock_set_state fires for each change of a full socket (request
 * sockets are not full sockets, so NEW_SYN_RECV never shows). The pid and
 * comm are whoever was on CPU: often softirq context (BCC's C-PID).
 */
#include "vmlinux.h"
#include "pytracekit.h"
#include "ptk_stream.h"
#include "ptk_tcp.h"

#ifndef MAX_SOCKETS
#define MAX_SOCKETS 65536
#endif

struct event {
    u64 ts_ns;
    u64 skaddr;
    u64 span_ns;       /* time in oldstate; 0 when this socket was not seen before */
    u32 pid;
    s32 oldstate;
    s32 newstate;
    char comm[TASK_COMM_LEN];
    struct tcp_endpoints ep;
};

BPF_HASH(last_change, u64, u64, MAX_SOCKETS);

TRACEPOINT_PROBE(sock, inet_sock_set_state)
{
    if (args->protocol != PTK_IPPROTO_TCP)
        return PTK_TP_PASS;
    struct tcp_endpoints ep = {};
    PTK_ENDPOINTS_FROM_ARGS(&ep, args);
    if (!endpoints_selected(&ep))
        return PTK_TP_PASS;
    u64 sk = (u64)args->skaddr, now = bpf_ktime_get_ns(), span = 0;
    u64 *then = last_change.lookup(&sk);
    if (then)
        span = now - *then;
    if (args->newstate == PTK_TCP_CLOSE)
        last_change.delete(&sk);
    else if (last_change.update(&sk, &now) != 0)
        ptk_count_loss(PTK_MAP_FULL);

    struct event *e = events.ringbuf_reserve(sizeof(*e));
    if (!e) {
        ptk_count_loss(PTK_LOST_EVENTS);
        return PTK_TP_PASS;
    }
    e->ts_ns = now;
    e->skaddr = sk;
    e->span_ns = span;
    e->pid = bpf_get_current_pid_tgid() >> 32;
    e->oldstate = args->oldstate;
    e->newstate = args->newstate;
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
    e->ep = ep;
    ptk_submit(e, sizeof(*e));
    return PTK_TP_PASS;
}
