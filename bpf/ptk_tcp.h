/* ptk_tcp.h: what the tcp tools (tcplife, tcpconnect, tcpaccept, tcpretrans,
 * tcpstates, ...) share. stream.load() pastes it in place of its #include, so
 * the map calls below are rewritten by BCC like those of the main file.
 *
 * Filters (0 = off): FILTER_FAMILY (AF_INET or AF_INET6), FILTER_LPORTS and
 * FILTER_RPORTS (ports listed in the wanted_lports / wanted_rports maps).
 */
#ifndef PTK_TCP_H
#define PTK_TCP_H

#ifndef FILTER_FAMILY
#define FILTER_FAMILY 0
#endif
#ifndef FILTER_LPORTS
#define FILTER_LPORTS 0
#endif
#ifndef FILTER_RPORTS
#define FILTER_RPORTS 0
#endif

#define PTK_AF_INET 2
#define PTK_AF_INET6 10
#define PTK_IPPROTO_TCP 6

/* TCP states, as include/net/tcp_states.h numbers them */
#define PTK_TCP_ESTABLISHED 1
#define PTK_TCP_SYN_SENT 2
#define PTK_TCP_SYN_RECV 3
#define PTK_TCP_FIN_WAIT1 4
#define PTK_TCP_CLOSE 7
#define PTK_TCP_LAST_ACK 9

/* Both ends of a connection, ports in host order. IPv4 addresses take the
 * first 4 bytes of laddr/raddr. */
struct tcp_endpoints {
    u16 family;
    u16 lport;
    u16 rport;
    u16 ep_pad;
    u8 laddr[16];
    u8 raddr[16];
};

BPF_HASH(wanted_lports, u16, u8, 64);
BPF_HASH(wanted_rports, u16, u8, 64);

PTK_INLINE bool endpoints_selected(struct tcp_endpoints *ep)
{
    if (ep->family != PTK_AF_INET && ep->family != PTK_AF_INET6)
        return false;
    if (FILTER_FAMILY && ep->family != FILTER_FAMILY)
        return false;
    if (FILTER_LPORTS && !wanted_lports.lookup(&ep->lport))
        return false;
    if (FILTER_RPORTS && !wanted_rports.lookup(&ep->rport))
        return false;
    return true;
}

/* From the fields sock:inet_sock_set_state and tcp:tcp_retransmit_skb share
 * (family, sport, dport, saddr, daddr, saddr_v6, daddr_v6): the kernel fills
 * them from the socket, s = local, d = remote, ports in host order. A macro
 * because each tracepoint's args struct is a different type. */
#define PTK_ENDPOINTS_FROM_ARGS(ep, args) do {                              \
        (ep)->family = (args)->family;                                       \
        (ep)->lport = (args)->sport;                                         \
        (ep)->rport = (args)->dport;                                         \
        if ((args)->family == PTK_AF_INET6) {                                \
            __builtin_memcpy((ep)->laddr, (args)->saddr_v6, 16);             \
            __builtin_memcpy((ep)->raddr, (args)->daddr_v6, 16);             \
        } else {                                                             \
            __builtin_memcpy((ep)->laddr, (args)->saddr, 4);                 \
            __builtin_memcpy((ep)->raddr, (args)->daddr, 4);                 \
        }                                                                    \
    } while (0)

/* From a struct sock (after connect() or accept() returned). */
PTK_INLINE void endpoints_from_sock(struct tcp_endpoints *ep, struct sock *sk)
{
    struct sock_common common = {};
    bpf_probe_read_kernel(&common, sizeof(common), &sk->__sk_common);
    ep->family = common.skc_family;
    ep->lport = common.skc_num;
    ep->rport = __builtin_bswap16(common.skc_dport);
    if (common.skc_family == PTK_AF_INET6) {
        __builtin_memcpy(ep->laddr, &common.skc_v6_rcv_saddr, 16);
        __builtin_memcpy(ep->raddr, &common.skc_v6_daddr, 16);
    } else {
        __builtin_memcpy(ep->laddr, &common.skc_rcv_saddr, 4);
        __builtin_memcpy(ep->raddr, &common.skc_daddr, 4);
    }
}

/* The socket behind one of the current task's file descriptors, for tools
 * on the socket system calls (bindsnoop, solisten): task->files->fdt->fd[fd]
 * ->private_data is the struct socket. NULL when a read fails. Fields are
 * read at the offsets this program was compiled with (PTK_READ_FIELD, from
 * ptk_stream.h, which must be included first). */
#ifdef PTK_READ_FIELD
PTK_INLINE struct sock *sock_of_fd(u32 fd)
{
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    struct files_struct *files = NULL;
    struct fdtable *fdt = NULL;
    struct file **fds = NULL;
    struct file *file = NULL;
    struct socket *socket = NULL;
    struct sock *sk = NULL;
    PTK_READ_FIELD(files, task, struct task_struct, files);
    PTK_READ_FIELD(fdt, files, struct files_struct, fdt);
    PTK_READ_FIELD(fds, fdt, struct fdtable, fd);
    bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]);
    PTK_READ_FIELD(socket, file, struct file, private_data);
    PTK_READ_FIELD(sk, socket, struct socket, sk);
    return sk;
}
#endif

#endif /* PTK_TCP_H */
