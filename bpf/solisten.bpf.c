/* solisten: listen() calls on IPv4 and IPv6 sockets, with the backlog.
 *
 * Without kprobes on inet_listen: syscalls:sys_enter_listen keeps the fd and
 * backlog; syscalls:sys_exit_listen, when listen() succeeded, finds the
 * socket through the caller's fd table (sock_of_fd, ptk_tcp.h) and reads its
 * family, type, bound address and port and network namespace. A listen() that
 * only changes the backlog of a listening socket is reported too, as BCC does.
 *
 * Filters: FILTER_PID (ptk_selected), FILTER_NETNS (0 off).
 */
#include "vmlinux.h"
#include "pytracekit.h"
#include "ptk_stream.h"
#include "ptk_tcp.h"

#ifndef FILTER_NETNS
#define FILTER_NETNS 0
#endif
#ifndef MAX_ENTRIES
#define MAX_ENTRIES 10240
#endif

struct listen_call {
    u32 fd;
    s32 backlog;
};

struct event {
    u64 ts_ns;
    u32 pid;
    u32 tid;
    u32 netns;
    s32 backlog;
    u16 type;          /* SOCK_STREAM, SOCK_DGRAM ... */
    u16 pad;
    char comm[TASK_COMM_LEN];
    struct tcp_endpoints ep;
};

BPF_HASH(listening, u32, struct listen_call, MAX_ENTRIES);   /* tid -> its listen() */

TRACEPOINT_PROBE(syscalls, sys_enter_listen)
{
    if (!ptk_selected())
        return PTK_TP_PASS;
    u32 tid = bpf_get_current_pid_tgid();
    struct listen_call call = { .fd = args->fd, .backlog = args->backlog };
    if (listening.update(&tid, &call) != 0)
        ptk_count_loss(PTK_MAP_FULL);
    return PTK_TP_PASS;
}

TRACEPOINT_PROBE(syscalls, sys_exit_listen)
{
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u32 tid = pid_tgid;
    struct listen_call *found = listening.lookup(&tid);
    if (!found)
        return PTK_TP_PASS;
    struct listen_call call = *found;
    listening.delete(&tid);
    if (args->ret != 0)
        return PTK_TP_PASS;
    struct sock *sk = sock_of_fd(call.fd);
    if (!sk)
        return PTK_TP_PASS;
    struct tcp_endpoints ep = {};
    endpoints_from_sock(&ep, sk);
    if (!endpoints_selected(&ep))
        return PTK_TP_PASS;
    struct net *net = NULL;
    u32 netns = 0;
    PTK_READ_FIELD(net, sk, struct sock, __sk_common.skc_net.net);
    PTK_READ_FIELD(netns, net, struct net, ns.inum);
    if (FILTER_NETNS && netns != FILTER_NETNS)
        return PTK_TP_PASS;

    struct event *e = events.ringbuf_reserve(sizeof(*e));
    if (!e) {
        ptk_count_loss(PTK_LOST_EVENTS);
        return PTK_TP_PASS;
    }
    e->ts_ns = bpf_ktime_get_ns();
    e->pid = pid_tgid >> 32;
    e->tid = tid;
    e->netns = netns;
    e->backlog = call.backlog;
    e->type = 0;
    PTK_READ_FIELD(e->type, sk, struct sock, sk_type);
    e->pad = 0;
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
    e->ep = ep;
    ptk_submit(e, sizeof(*e));
    return PTK_TP_PASS;
}
