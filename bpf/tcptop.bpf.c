/* tcptop: TCP bytes sent and received per process and connection, summed in
 * the kernel and read (then cleared) every interval.
 *
 * sock:sock_send_length and sock:sock_recv_length fire when sendmsg/recvmsg
 * on a socket return, in the caller's context, with the length moved (ret;
 * errors are negative). A MSG_PEEK read moves nothing and is not counted.
 * BCC's tcptop reads the same from kprobes on tcp_sendmsg and
 * tcp_cleanup_rbuf. Bytes moved by sendfile/splice are not seen.
 */
#include "vmlinux.h"
#include "pytracekit.h"
#include "ptk_tcp.h"

#ifndef MAX_FLOWS
#define MAX_FLOWS 16384
#endif
#define PTK_MSG_PEEK 2

struct flow_key {
    u32 pid;
    u32 pad;
    char comm[TASK_COMM_LEN];
    struct tcp_endpoints ep;
};

struct flow_bytes {
    u64 rx;
    u64 tx;
};

BPF_HASH(flows, struct flow_key, struct flow_bytes, MAX_FLOWS);

PTK_INLINE void count_bytes(struct sock *sk, u16 protocol, int ret, bool sent)
{
    if (protocol != PTK_IPPROTO_TCP || ret <= 0 || !ptk_selected())
        return;
    struct flow_key key = { .pid = bpf_get_current_pid_tgid() >> 32 };
    endpoints_from_sock(&key.ep, sk);
    if (!endpoints_selected(&key.ep))
        return;
    bpf_get_current_comm(&key.comm, sizeof(key.comm));
    struct flow_bytes zero = {}, *bytes = flows.lookup_or_try_init(&key, &zero);
    if (!bytes) {
        ptk_count_loss(PTK_MAP_FULL);
        return;
    }
    if (sent)
        __sync_fetch_and_add(&bytes->tx, ret);
    else
        __sync_fetch_and_add(&bytes->rx, ret);
}

TRACEPOINT_PROBE(sock, sock_send_length)
{
    count_bytes((struct sock *)args->sk, args->protocol, args->ret, true);
    return PTK_TP_PASS;
}

TRACEPOINT_PROBE(sock, sock_recv_length)
{
    if (!(args->flags & PTK_MSG_PEEK))
        count_bytes((struct sock *)args->sk, args->protocol, args->ret, false);
    return PTK_TP_PASS;
}
