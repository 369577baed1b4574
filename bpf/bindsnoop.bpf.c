/* bindsnoop: bind() calls on IPv4 and IPv6 sockets, with the socket's options.
 *
 * Without kprobes on inet_bind: syscalls:sys_enter_bind keeps the fd and the
 * requested address (read from the caller's memory); syscalls:sys_exit_bind
 * finds the socket through the caller's fd table (task->files->fdt->fd[fd]
 * ->private_data, a struct socket) and reads what bind() left there: the
 * bound address and port (a port 0 request gets the port the kernel chose),
 * protocol, SO_BINDTODEVICE interface, SO_REUSEADDR/SO_REUSEPORT and
 * IP_FREEBIND/IP_TRANSPARENT/IP_BIND_ADDRESS_NO_PORT. A failed bind reports
 * the requested address and port. Binds of other families are not traced.
 *
 * Filters: FILTER_PID (ptk_selected), FILTER_UID (-1 off), FILTER_LPORTS
 * (wanted_lports, from ptk_tcp.h), ERRORS (0: successful binds only, as BCC).
 * COUNT (--count): no events; binds counted per (family, address, port) as
 * BCC's --count counts them.
 */
#include "vmlinux.h"
#include "pytracekit.h"
#include "ptk_stream.h"
#include "ptk_tcp.h"

#ifndef FILTER_UID
#define FILTER_UID -1
#endif
#ifndef ERRORS
#define ERRORS 0
#endif
#ifndef MAX_ENTRIES
#define MAX_ENTRIES 10240
#endif
#ifndef COUNT
#define COUNT 0
#endif

#if COUNT
struct count_key {
    u16 family;
    u16 lport;
    u8 laddr[16];
};
BPF_HASH(counts, struct count_key, u64, MAX_ENTRIES);
#endif

/* include/net/inet_sock.h (6.6 on): bit numbers in inet_sock.inet_flags */
#define PTK_INET_FLAGS_FREEBIND 11
#define PTK_INET_FLAGS_TRANSPARENT 15
#define PTK_INET_FLAGS_BIND_ADDRESS_NO_PORT 18

/* BCC's OPTS column, one bit each: F T N R r */
#define OPT_FREEBIND 1
#define OPT_TRANSPARENT 2
#define OPT_BIND_ADDRESS_NO_PORT 4
#define OPT_REUSEADDR 8
#define OPT_REUSEPORT 16

struct bind_call {
    u32 fd;
    u32 pad;
    struct tcp_endpoints requested;    /* l = the address asked for */
};

struct event {
    u64 ts_ns;
    u32 pid;
    u32 uid;
    s32 ret;
    s32 bound_dev_if;
    u16 protocol;
    u8 opts;
    u8 pad;
    char comm[TASK_COMM_LEN];
    struct tcp_endpoints ep;           /* l = the bound address and port */
};

BPF_HASH(binding, u32, struct bind_call, MAX_ENTRIES);    /* tid -> its bind() */

TRACEPOINT_PROBE(syscalls, sys_enter_bind)
{
    if (!ptk_selected())
        return PTK_TP_PASS;
    if (FILTER_UID >= 0 && (u32)bpf_get_current_uid_gid() != FILTER_UID)
        return PTK_TP_PASS;
    struct sockaddr_in6 sa = {};       /* large enough for both families' fields */
    bpf_probe_read_user(&sa, sizeof(sa), (void *)args->umyaddr);
    struct bind_call call = { .fd = args->fd };
    call.requested.family = sa.sin6_family;
    call.requested.lport = __builtin_bswap16(sa.sin6_port);
    if (sa.sin6_family == PTK_AF_INET6)
        __builtin_memcpy(call.requested.laddr, &sa.sin6_addr, 16);
    else if (sa.sin6_family == PTK_AF_INET)
        __builtin_memcpy(call.requested.laddr, &((struct sockaddr_in *)&sa)->sin_addr, 4);
    else
        return PTK_TP_PASS;
    u32 tid = bpf_get_current_pid_tgid();
    if (binding.update(&tid, &call) != 0)
        ptk_count_loss(PTK_MAP_FULL);
    return PTK_TP_PASS;
}

TRACEPOINT_PROBE(syscalls, sys_exit_bind)
{
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u32 tid = pid_tgid;
    struct bind_call *found = binding.lookup(&tid);
    if (!found)
        return PTK_TP_PASS;
    struct bind_call call = *found;
    binding.delete(&tid);
    s32 ret = args->ret;
    if (ret != 0 && !ERRORS)
        return PTK_TP_PASS;

    struct tcp_endpoints ep = call.requested;
    u16 protocol = 0;
    u8 opts = 0, reuse = 0;
    s32 dev = 0;
    u64 inet_flags = 0;
    struct sock *sk = sock_of_fd(call.fd);
    if (sk) {
        PTK_READ_FIELD(protocol, sk, struct sock, sk_protocol);
        PTK_READ_FIELD(dev, sk, struct sock, __sk_common.skc_bound_dev_if);
        /* skc_reuse:4 and skc_reuseport:1 share the byte after skc_state */
        bpf_probe_read_kernel(&reuse, 1, (void *)sk +
                              __builtin_offsetof(struct sock, __sk_common.skc_state) + 1);
        PTK_READ_FIELD(inet_flags, sk, struct inet_sock, inet_flags);
        if (ret == 0) {
            u16 num = 0;
            PTK_READ_FIELD(num, sk, struct sock, __sk_common.skc_num);
            ep.lport = num;
            if (ep.family == PTK_AF_INET6)
                PTK_READ_FIELD(ep.laddr, sk, struct sock, __sk_common.skc_v6_rcv_saddr);
            else
                bpf_probe_read_kernel(ep.laddr, 4, (void *)sk +
                                      __builtin_offsetof(struct sock, __sk_common.skc_rcv_saddr));
        }
    }
    if (!endpoints_selected(&ep))
        return PTK_TP_PASS;
#if COUNT
    struct count_key key = { .family = ep.family, .lport = ep.lport };
    __builtin_memcpy(key.laddr, ep.laddr, sizeof(key.laddr));
    u64 zero = 0, *count = counts.lookup_or_try_init(&key, &zero);
    if (count)
        __sync_fetch_and_add(count, 1);
    else
        ptk_count_loss(PTK_MAP_FULL);
    return PTK_TP_PASS;
#endif
    if (inet_flags & (1ULL << PTK_INET_FLAGS_FREEBIND))
        opts |= OPT_FREEBIND;
    if (inet_flags & (1ULL << PTK_INET_FLAGS_TRANSPARENT))
        opts |= OPT_TRANSPARENT;
    if (inet_flags & (1ULL << PTK_INET_FLAGS_BIND_ADDRESS_NO_PORT))
        opts |= OPT_BIND_ADDRESS_NO_PORT;
    if (reuse & 0x0f)
        opts |= OPT_REUSEADDR;
    if (reuse & 0x10)
        opts |= OPT_REUSEPORT;

    struct event *e = events.ringbuf_reserve(sizeof(*e));
    if (!e) {
        ptk_count_loss(PTK_LOST_EVENTS);
        return PTK_TP_PASS;
    }
    e->ts_ns = bpf_ktime_get_ns();
    e->pid = pid_tgid >> 32;
    e->uid = bpf_get_current_uid_gid();
    e->ret = ret;
    e->bound_dev_if = dev;
    e->protocol = protocol;
    e->opts = opts;
    e->pad = 0;
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
    e->ep = ep;
    ptk_submit(e, sizeof(*e));
    return PTK_TP_PASS;
}
