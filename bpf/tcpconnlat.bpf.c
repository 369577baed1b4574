/* tcpconnlat: the latency of active TCP opens, SYN sent to handshake done.
 *
 * From sock:inet_sock_set_state alone: connect() moves the socket to SYN_SENT
 * in the caller's context (its pid and comm are taken there, and -p/-- COMMAND
 * filter there); the SYN-ACK moves it on to ESTABLISHED (in softirq context,
 * any pid), when both ends are in the event's fields. A socket that leaves
 * SYN_SENT for anything else (refused, timed out, closed) is forgotten.
 *
 * MIN_NS: report only connects that took at least this long.
 */
#include "vmlinux.h"
#include "pytracekit.h"
#include "ptk_stream.h"
#include "ptk_tcp.h"

#ifndef MIN_NS
#define MIN_NS 0
#endif
#ifndef MAX_ENTRIES
#define MAX_ENTRIES 10240
#endif

struct syn_sent {
    u64 ts_ns;
    u32 pid;
    u32 tid;
    char comm[TASK_COMM_LEN];
};

struct event {
    u64 ts_ns;
    u64 latency_ns;
    u32 pid;
    u32 tid;
    char comm[TASK_COMM_LEN];
    struct tcp_endpoints ep;
};

BPF_HASH(connecting, u64, struct syn_sent, MAX_ENTRIES);   /* socket -> its SYN_SENT */

TRACEPOINT_PROBE(sock, inet_sock_set_state)
{
    if (args->protocol != PTK_IPPROTO_TCP)
        return PTK_TP_PASS;
    u64 sk = (u64)args->skaddr;
    if (args->newstate == PTK_TCP_SYN_SENT) {
        if (!ptk_selected())
            return PTK_TP_PASS;
        u64 pid_tgid = bpf_get_current_pid_tgid();
        struct syn_sent start = { .ts_ns = bpf_ktime_get_ns(), .pid = pid_tgid >> 32,
                                  .tid = (u32)pid_tgid };
        bpf_get_current_comm(&start.comm, sizeof(start.comm));
        if (connecting.update(&sk, &start) != 0)
            ptk_count_loss(PTK_MAP_FULL);
        return PTK_TP_PASS;
    }
    if (args->oldstate != PTK_TCP_SYN_SENT)
        return PTK_TP_PASS;
    struct syn_sent *start = connecting.lookup(&sk);
    if (!start)
        return PTK_TP_PASS;
    struct syn_sent began = *start;
    connecting.delete(&sk);
    if (args->newstate != PTK_TCP_ESTABLISHED)
        return PTK_TP_PASS;
    u64 now = bpf_ktime_get_ns();
    if (now - began.ts_ns < MIN_NS)
        return PTK_TP_PASS;
    struct tcp_endpoints ep = {};
    PTK_ENDPOINTS_FROM_ARGS(&ep, args);
    if (!endpoints_selected(&ep))
        return PTK_TP_PASS;

    struct event *e = events.ringbuf_reserve(sizeof(*e));
    if (!e) {
        ptk_count_loss(PTK_LOST_EVENTS);
        return PTK_TP_PASS;
    }
    e->ts_ns = now;
    e->latency_ns = now - began.ts_ns;
    e->pid = began.pid;
    e->tid = began.tid;
    __builtin_memcpy(e->comm, began.comm, sizeof(e->comm));
    e->ep = ep;
    ptk_submit(e, sizeof(*e));
    return PTK_TP_PASS;
}
