/* tcpaccept: passive TCP opens, as the accepting process sees them.
 *
 * Without a kretprobe on inet_csk_accept: when accept()/accept4() returns a
 * new descriptor (syscalls:sys_exit_accept*), the socket is found through the
 * caller's file table (task->files->fdt->fd[ret]->private_data, a struct
 * socket) and both ends are read from its struct sock.
 */
#include "vmlinux.h"
#include "pytracekit.h"
#include "ptk_stream.h"
#include "ptk_tcp.h"

struct event {
    u64 ts_ns;
    u32 pid;
    u32 tid;
    char comm[TASK_COMM_LEN];
    struct tcp_endpoints ep;
};

/* The struct sock behind file descriptor `fd` of the current task, or NULL. */
PTK_INLINE struct sock *socket_of_fd(int fd)
{
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    struct files_struct *files = NULL;
    struct fdtable *fdt = NULL;
    struct file **fds = NULL;
    struct file *file = NULL;
    struct socket *sock = NULL;
    struct sock *sk = NULL;
    unsigned int max_fds = 0;
    bpf_probe_read_kernel(&files, sizeof(files), &task->files);
    if (!files)
        return NULL;
    bpf_probe_read_kernel(&fdt, sizeof(fdt), &files->fdt);
    if (!fdt)
        return NULL;
    bpf_probe_read_kernel(&max_fds, sizeof(max_fds), &fdt->max_fds);
    if ((unsigned int)fd >= max_fds)
        return NULL;
    bpf_probe_read_kernel(&fds, sizeof(fds), &fdt->fd);
    bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]);
    if (!file)
        return NULL;
    bpf_probe_read_kernel(&sock, sizeof(sock), &file->private_data);
    if (!sock)
        return NULL;
    bpf_probe_read_kernel(&sk, sizeof(sk), &sock->sk);
    return sk;
}

PTK_INLINE int accepted(long ret)
{
    if (ret < 0 || !ptk_selected())
        return 0;
    struct sock *sk = socket_of_fd(ret);
    if (!sk)
        return 0;
    u16 protocol = 0;
    bpf_probe_read_kernel(&protocol, sizeof(protocol), &sk->sk_protocol);
    if (protocol != PTK_IPPROTO_TCP)
        return 0;
    struct tcp_endpoints ep = {};
    endpoints_from_sock(&ep, sk);
    if (!endpoints_selected(&ep))
        return 0;

    struct event *e = events.ringbuf_reserve(sizeof(*e));
    if (!e) {
        ptk_count_loss(PTK_LOST_EVENTS);
        return 0;
    }
    u64 pid_tgid = bpf_get_current_pid_tgid();
    e->ts_ns = bpf_ktime_get_ns();
    e->pid = pid_tgid >> 32;
    e->tid = pid_tgid;
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
    e->ep = ep;
    ptk_submit(e, sizeof(*e));
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_accept4)
{
    accepted(args->ret);
    return PTK_TP_PASS;
}

TRACEPOINT_PROBE(syscalls, sys_exit_accept)
{
    accepted(args->ret);
    return PTK_TP_PASS;
}
