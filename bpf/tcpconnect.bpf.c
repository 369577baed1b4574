/* tcpconnect: active TCP opens (connect), with the process that made them.
 *
 * Without kprobes on tcp_v4_connect: connect() moves the socket to SYN_SENT
 * (sock:inet_sock_set_state, in the caller's context) before the local port
 * is chosen, so that change only marks the thread; when connect() returns
 * (syscalls:sys_exit_connect) the SYN is out and the socket holds both ends,
 * unless the handshake failed while connect() waited: then the socket was
 * disconnected (ends cleared), so the ends are also kept when the socket
 * leaves SYN_SENT. Connects that are not connect() system calls (io_uring,
 * TCP Fast Open via sendto) are not seen.
 *
 * COUNT_MODE: count per (local address, remote address, remote port) in the
 * kernel instead of sending events (-c).
 */
#include "vmlinux.h"
#include "pytracekit.h"
#include "ptk_stream.h"
#include "ptk_tcp.h"

#ifndef COUNT_MODE
#define COUNT_MODE 0
#endif
#ifndef FILTER_UID
#define FILTER_UID -1
#endif
#ifndef MAX_ENTRIES
#define MAX_ENTRIES 10240
#endif

struct event {
    u64 ts_ns;
    u32 pid;
    u32 tid;
    u32 uid;
    s32 ret;           /* connect()'s return: 0, -EINPROGRESS, -ECONNREFUSED... */
    char comm[TASK_COMM_LEN];
    struct tcp_endpoints ep;
};

struct flow_key {
    u16 family;
    u16 rport;
    u8 laddr[16];
    u8 raddr[16];
};

BPF_HASH(connecting, u32, u64, MAX_ENTRIES);     /* tid -> socket in SYN_SENT */
/* socket -> its ends when it left SYN_SENT (family 0 until then) */
BPF_HASH(handshake_ends, u64, struct tcp_endpoints, MAX_ENTRIES);
BPF_HASH(connects, struct flow_key, u64, MAX_ENTRIES);

TRACEPOINT_PROBE(sock, inet_sock_set_state)
{
    if (args->protocol != PTK_IPPROTO_TCP)
        return PTK_TP_PASS;
    u64 sk = (u64)args->skaddr;
    if (args->oldstate == PTK_TCP_SYN_SENT) {
        struct tcp_endpoints *ends = handshake_ends.lookup(&sk);
        if (ends)
            PTK_ENDPOINTS_FROM_ARGS(ends, args);
        return PTK_TP_PASS;
    }
    if (args->newstate != PTK_TCP_SYN_SENT || !ptk_selected())
        return PTK_TP_PASS;
    if (FILTER_UID >= 0 && (u32)bpf_get_current_uid_gid() != FILTER_UID)
        return PTK_TP_PASS;
    u32 tid = bpf_get_current_pid_tgid();
    struct tcp_endpoints unknown = {};
    if (connecting.update(&tid, &sk) != 0 || handshake_ends.update(&sk, &unknown) != 0)
        ptk_count_loss(PTK_MAP_FULL);
    return PTK_TP_PASS;
}

TRACEPOINT_PROBE(syscalls, sys_exit_connect)
{
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u32 tid = pid_tgid;
    u64 *skp = connecting.lookup(&tid);
    if (!skp)
        return PTK_TP_PASS;
    u64 sk = *skp;
    connecting.delete(&tid);

    struct tcp_endpoints ep = {};
    struct tcp_endpoints *ends = handshake_ends.lookup(&sk);
    if (ends && ends->family)
        ep = *ends;
    else
        endpoints_from_sock(&ep, (struct sock *)sk);
    handshake_ends.delete(&sk);
    if (!endpoints_selected(&ep))
        return PTK_TP_PASS;

    if (COUNT_MODE) {
        struct flow_key key = { .family = ep.family, .rport = ep.rport };
        __builtin_memcpy(key.laddr, ep.laddr, 16);
        __builtin_memcpy(key.raddr, ep.raddr, 16);
        u64 zero = 0, *count = connects.lookup_or_try_init(&key, &zero);
        if (count)
            __sync_fetch_and_add(count, 1);
        else
            ptk_count_loss(PTK_MAP_FULL);
        return PTK_TP_PASS;
    }

    struct event *e = events.ringbuf_reserve(sizeof(*e));
    if (!e) {
        ptk_count_loss(PTK_LOST_EVENTS);
        return PTK_TP_PASS;
    }
    e->ts_ns = bpf_ktime_get_ns();
    e->pid = pid_tgid >> 32;
    e->tid = tid;
    e->uid = bpf_get_current_uid_gid();
    e->ret = args->ret;
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
    e->ep = ep;
    ptk_submit(e, sizeof(*e));
    return PTK_TP_PASS;
}
