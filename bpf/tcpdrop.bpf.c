/* tcpdrop: TCP packets the kernel dropped, with the reason it gave.
 *
 * From skb:kfree_skb, which carries the drop reason (enum skb_drop_reason).
 * As BCC's tcpdrop on this tracepoint, NOT_SPECIFIED is left out: plain
 * kfree_skb() calls report it, many of them not drops. Unlike BCC, the ends
 * come from the packet's own IP and TCP headers, so a packet no socket took
 * (reason NO_SOCKET: a SYN to a closed port) is reported too; the state is
 * that of the socket the packet belonged to (rx_sk, else skb->sk), 0 when
 * none. The pid is whoever was on CPU (often the sender, over veth/loopback,
 * else softirq context), as BCC says.
 */
#include "vmlinux.h"
#include "pytracekit.h"
#include "ptk_stream.h"
#include "ptk_tcp.h"

#ifndef KERNEL_STACKS
#define KERNEL_STACKS 1
#endif
/* kernel stacks by a hash of their frames, not in a stack map whose bucket
 * collisions drop stacks */
#define KSTACK_HASH KERNEL_STACKS
#include "ptk_kstack.h"

#define PTK_ETH_P_IP 0x0800
#define PTK_ETH_P_IPV6 0x86DD
#define PTK_DROP_NOT_SPECIFIED 2
#define PTK_HEADER_UNSET 0xffff       /* skb->transport_header not set yet */

struct event {
    u64 ts_ns;
    u32 pid;
    s32 kernel_stack;           /* < 0: no kernel stack (the error) */
    u32 reason;
    u8 state;
    u8 tcpflags;
    u16 pad;
    char comm[TASK_COMM_LEN];
    u64 kernel_stack_hash;      /* nonzero: the kernel stack is in `kstacks` */
    struct tcp_endpoints ep;    /* l = the packet's source, r = its destination */
};

TRACEPOINT_PROBE(skb, kfree_skb)
{
    if ((u32)args->reason <= PTK_DROP_NOT_SPECIFIED)
        return PTK_TP_PASS;
    u16 proto = args->protocol;
    if (proto != PTK_ETH_P_IP && proto != PTK_ETH_P_IPV6)
        return PTK_TP_PASS;
    struct sk_buff *skb = (struct sk_buff *)args->skbaddr;
    unsigned char *head = NULL;
    u16 network = 0, transport = 0;
    PTK_READ_FIELD(head, skb, struct sk_buff, head);
    PTK_READ_FIELD(network, skb, struct sk_buff, network_header);
    PTK_READ_FIELD(transport, skb, struct sk_buff, transport_header);

    struct tcp_endpoints ep = {};
    if (proto == PTK_ETH_P_IP) {
        struct iphdr ip = {};
        if (bpf_probe_read_kernel(&ip, sizeof(ip), head + network) != 0 || ip.version != 4 ||
            ip.protocol != PTK_IPPROTO_TCP)
            return PTK_TP_PASS;
        ep.family = PTK_AF_INET;
        __builtin_memcpy(ep.laddr, &ip.saddr, 4);
        __builtin_memcpy(ep.raddr, &ip.daddr, 4);
        if (transport == PTK_HEADER_UNSET)
            transport = network + ip.ihl * 4;
    } else {
        struct ipv6hdr ip6 = {};
        if (bpf_probe_read_kernel(&ip6, sizeof(ip6), head + network) != 0 ||
            ip6.nexthdr != PTK_IPPROTO_TCP)     /* extension headers: not followed */
            return PTK_TP_PASS;
        ep.family = PTK_AF_INET6;
        __builtin_memcpy(ep.laddr, &ip6.saddr, 16);
        __builtin_memcpy(ep.raddr, &ip6.daddr, 16);
        if (transport == PTK_HEADER_UNSET)
            transport = network + sizeof(ip6);
    }
    u8 tcp[14] = {};           /* ports, and the flags in byte 13 */
    if (bpf_probe_read_kernel(tcp, sizeof(tcp), head + transport) != 0)
        return PTK_TP_PASS;
    ep.lport = (tcp[0] << 8) | tcp[1];
    ep.rport = (tcp[2] << 8) | tcp[3];
    if (!endpoints_selected(&ep))
        return PTK_TP_PASS;

    struct sock *sk = (struct sock *)args->rx_sk;
    if (!sk)
        PTK_READ_FIELD(sk, skb, struct sk_buff, sk);
    u8 state = 0;
    if (sk)
        PTK_READ_FIELD(state, sk, struct sock, __sk_common.skc_state);

    struct event *e = events.ringbuf_reserve(sizeof(*e));
    if (!e) {
        ptk_count_loss(PTK_LOST_EVENTS);
        return PTK_TP_PASS;
    }
    e->ts_ns = bpf_ktime_get_ns();
    e->pid = bpf_get_current_pid_tgid() >> 32;
    e->kernel_stack = -1;
    e->kernel_stack_hash = 0;
#if KERNEL_STACKS
    e->kernel_stack_hash = ptk_kernel_stack_hash(args, &e->kernel_stack);
#endif
    e->reason = args->reason;
    e->state = state;
    e->tcpflags = tcp[13];
    e->pad = 0;
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
    e->ep = ep;
    ptk_submit(e, sizeof(*e));
    return PTK_TP_PASS;
}
