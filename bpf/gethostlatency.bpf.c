/* gethostlatency: host name lookups through libc (getaddrinfo, gethostbyname,
 * gethostbyname2) with their latency, one event each.
 *
 * A uprobe at entry keeps the start time and the host name (the first
 * argument, read from the caller's memory) per thread; a uretprobe at return
 * sends the event. Lookups that do not go through these functions
 * (gethostbyname_r, getaddrinfo_a, a resolver library of its own, Go's
 * resolver) are not seen.
 */
#include "vmlinux.h"
#include "pytracekit.h"
#include "ptk_stream.h"

#ifndef HOST_BYTES
#define HOST_BYTES 80
#endif
#ifndef MAX_THREADS
#define MAX_THREADS 10240
#endif

struct lookup {
    u64 ts_ns;
    char host[HOST_BYTES];
};

struct event {
    u64 ts_ns;
    u64 latency_ns;
    u32 pid;
    u32 tid;
    s32 ret;
    u32 pad;
    char comm[TASK_COMM_LEN];
    char host[HOST_BYTES];
};

BPF_HASH(lookups, u32, struct lookup, MAX_THREADS);
BPF_PERCPU_ARRAY(lookup_buf, struct lookup, 1);

int host_entry(struct pt_regs *ctx)
{
    if (!ptk_selected())
        return 0;
    int zero = 0;
    struct lookup *l = lookup_buf.lookup(&zero);
    if (!l)
        return 0;
    l->ts_ns = bpf_ktime_get_ns();
    ptk_read_user_str(l->host, sizeof(l->host), (void *)PT_REGS_PARM1(ctx));
    u32 tid = bpf_get_current_pid_tgid();
    if (lookups.update(&tid, l) != 0)
        ptk_count_loss(PTK_MAP_FULL);
    return 0;
}

int host_return(struct pt_regs *ctx)
{
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u32 tid = pid_tgid;
    struct lookup *l = lookups.lookup(&tid);
    if (!l)
        return 0;
    struct event *e = events.ringbuf_reserve(sizeof(*e));
    if (!e) {
        ptk_count_loss(PTK_LOST_EVENTS);
        lookups.delete(&tid);
        return 0;
    }
    e->ts_ns = bpf_ktime_get_ns();
    e->latency_ns = e->ts_ns - l->ts_ns;
    e->pid = pid_tgid >> 32;
    e->tid = tid;
    e->ret = PT_REGS_RC(ctx);
    e->pad = 0;
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
    __builtin_memcpy(e->host, l->host, sizeof(e->host));
    lookups.delete(&tid);
    ptk_submit(e, sizeof(*e));
    return 0;
}
