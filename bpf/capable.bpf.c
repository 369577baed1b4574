/* capable: one event per capability check (capability:cap_capable, Linux
 * 6.14+), with its verdict. The tracepoint carries no audit flag (BCC's kprobe
 * reads cap_capable's opts): every check is shown, audited or not.
 * UNIQUE (--unique): each (capability, process) once, as BCC's. USER_STACK
 * (-U): the user stack as trace -U takes it (ptk_ustack.h). KERNEL_STACK (-K):
 * the kernel stack stored by a hash of its frames (ptk_kstack.h), not in a
 * stack map whose bucket collisions drop stacks. */
#include "vmlinux.h"
#include "pytracekit.h"
#include "ptk_stream.h"

#ifndef FILTER_CAP             /* -1: any */
#define FILTER_CAP -1
#endif
#ifndef DENIED_ONLY
#define DENIED_ONLY 0
#endif
#ifndef KERNEL_STACK           /* -K: the kernel stack of each check */
#define KERNEL_STACK 0
#endif
#ifndef USER_STACK             /* -U: the user stack of each check */
#define USER_STACK 0
#endif
#ifndef UNIQUE
#define UNIQUE 0
#endif
#define KSTACK_HASH KERNEL_STACK
#include "ptk_kstack.h"
/* A build-id stack slot is large: one slot unless asked for. */
#define USTACK_LAYOUT 2   /* user_stacks: frame-pointer walks by hash (ptk_ustack.h) */
#define FP_USTACKS_SIZE (USER_STACK ? 4096 : 1)
#include "ptk_unwind.h"
#include "ptk_ustack.h"

#if UNIQUE
struct seen_key {
    u32 tgid;
    s32 cap;
};
BPF_HASH(seen, struct seen_key, u8, 65536);
#endif

struct event {
    u64 ts;
    u32 pid;
    u32 tid;
    u32 uid;
    s32 cap;
    s32 ret;                   /* 0: allowed; -EPERM: denied */
    s32 kernel_stack;          /* < 0: no kernel stack (the error) */
    char comm[TASK_COMM_LEN];
    u64 user_stack_hash;       /* nonzero: the user stack is in `ustacks` */
    s32 user_stack;            /* < 0 and no hash: none */
    u32 pad;
    u64 kernel_stack_hash;     /* nonzero: the kernel stack is in `kstacks` */
};

TRACEPOINT_PROBE(capability, cap_capable)
{
    if (!ptk_selected())
        return PTK_TP_PASS;
    if (FILTER_CAP >= 0 && args->cap != FILTER_CAP)
        return PTK_TP_PASS;
    if (DENIED_ONLY && args->ret == 0)
        return PTK_TP_PASS;
    u64 pid_tgid = bpf_get_current_pid_tgid();
#if UNIQUE
    struct seen_key seen_key = { .tgid = pid_tgid >> 32, .cap = args->cap };
    u8 one = 1;
    if (seen.lookup(&seen_key))
        return PTK_TP_PASS;
    if (seen.update(&seen_key, &one) != 0)
        ptk_count_loss(PTK_MAP_FULL);   /* shown again later: not a silent loss */
#endif
    u64 user_hash = 0;
    s32 user_id = -1;
    if (USER_STACK)
        user_id = ptk_user_stack(args, pid_tgid >> 32, &user_hash);
    struct event *e = events.ringbuf_reserve(sizeof(*e));
    if (!e) {
        ptk_count_loss(PTK_LOST_EVENTS);
        return PTK_TP_PASS;
    }
    e->ts = bpf_ktime_get_ns();
    e->user_stack_hash = user_hash;
    e->user_stack = user_id;
    e->pad = 0;
    e->pid = pid_tgid >> 32;
    e->tid = pid_tgid;
    e->uid = bpf_get_current_uid_gid();
    e->cap = args->cap;
    e->ret = args->ret;
    e->kernel_stack = -1;
    e->kernel_stack_hash = 0;
#if KERNEL_STACK
    e->kernel_stack_hash = ptk_kernel_stack_hash(args, &e->kernel_stack);
#endif
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
    ptk_submit(e, sizeof(*e));
    return PTK_TP_PASS;
}
