/* sslsniff: OpenSSL's SSL_read/SSL_write (and their _ex forms) from uprobes on
 * libssl: the plaintext size of each call that moved data, and with DATA_SIZE
 * > 0 its first DATA_SIZE bytes. Entry probes note the buffer per thread;
 * return probes emit what the call read or wrote. Uprobes are the tool's
 * own events. */
#include "vmlinux.h"
#include "pytracekit.h"
#include "ptk_stream.h"

#ifndef DATA_SIZE               /* bytes of plaintext copied per call (0: sizes only) */
#define DATA_SIZE 0
#endif
#ifndef FILTER_UID              /* -1: any */
#define FILTER_UID -1
#endif

enum { DIR_READ = 0, DIR_WRITE = 1 };

struct call {
    u64 ts;
    u64 buf;
    u64 done;                   /* SSL_*_ex: where the byte count is written */
    u32 dir;
    u32 ex;
};

struct event {
    u64 ts;
    u64 delta_ns;
    u32 pid;
    u32 tid;
    u32 uid;
    u32 len;                    /* plaintext bytes the call read or wrote */
    u32 captured;               /* bytes of it in data[] */
    u32 dir;
    char comm[TASK_COMM_LEN];
#if DATA_SIZE
    char data[DATA_SIZE];
#endif
};

BPF_HASH(calls, u32, struct call, 10240);

static inline int enter(struct pt_regs *ctx, u32 dir, u32 ex)
{
    if (!ptk_selected())
        return 0;
    if (FILTER_UID >= 0 && (u32)bpf_get_current_uid_gid() != (u32)FILTER_UID)
        return 0;
    u32 tid = bpf_get_current_pid_tgid();
    struct call c = { .ts = bpf_ktime_get_ns(), .buf = PT_REGS_PARM2(ctx),
                      .done = ex ? PT_REGS_PARM4(ctx) : 0, .dir = dir, .ex = ex };
    if (calls.update(&tid, &c) != 0)
        ptk_count_loss(PTK_MAP_FULL);
    return 0;
}

static inline int leave(struct pt_regs *ctx)
{
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u32 tid = pid_tgid;
    struct call *c = calls.lookup(&tid);
    if (!c)
        return 0;
    struct call call = *c;
    calls.delete(&tid);
    s64 ret = (s32)PT_REGS_RC(ctx);
    u64 len = 0;
    if (call.ex) {
        if (ret != 1 || bpf_probe_read_user(&len, sizeof(len), (void *)call.done) != 0)
            return 0;
    } else {
        if (ret <= 0)
            return 0;
        len = ret;
    }
    if (len == 0)
        return 0;
    struct event *e = events.ringbuf_reserve(sizeof(*e));
    if (!e) {
        ptk_count_loss(PTK_LOST_EVENTS);
        return 0;
    }
    e->ts = bpf_ktime_get_ns();
    e->delta_ns = e->ts - call.ts;
    e->pid = pid_tgid >> 32;
    e->tid = tid;
    e->uid = bpf_get_current_uid_gid();
    e->len = len;
    e->dir = call.dir;
    e->captured = 0;
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
#if DATA_SIZE
    u32 n = len < DATA_SIZE ? len : DATA_SIZE;
    if (n > 0 && n <= DATA_SIZE && bpf_probe_read_user(e->data, n, (void *)call.buf) == 0)
        e->captured = n;
    else
        ptk_count_loss(PTK_UNREADABLE_STRINGS);
#endif
    ptk_submit(e, sizeof(*e));
    return 0;
}

int enter_read(struct pt_regs *ctx) { return enter(ctx, DIR_READ, 0); }
int enter_write(struct pt_regs *ctx) { return enter(ctx, DIR_WRITE, 0); }
int enter_read_ex(struct pt_regs *ctx) { return enter(ctx, DIR_READ, 1); }
int enter_write_ex(struct pt_regs *ctx) { return enter(ctx, DIR_WRITE, 1); }
int leave_call(struct pt_regs *ctx) { return leave(ctx); }
