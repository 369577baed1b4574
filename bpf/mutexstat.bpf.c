/* mutexstat: pthread mutex contention by mutex and calling stack, through
 * uprobes on pthread_mutex_lock (entry and return) and pthread_mutex_unlock.
 * A lock call counts as contended when the thread entered futex() inside it
 * (glibc sleeps in the kernel only when the mutex is held by another). The
 * stack is taken at the return, where the caller's frame is complete:
 * unwound in the kernel from CFI tables (CFI_UNWIND, ptk_ustack.h), else a
 * frame-pointer walk. */
#include "vmlinux.h"
#include "pytracekit.h"

#define USTACK_LAYOUT 1   /* user_stacks: frame-pointer walks by hash (ptk_ustack.h) */
#define FP_USTACKS_SIZE 16384
#include "ptk_unwind.h"
#include "ptk_ustack.h"

struct lock_call {
    u64 mutex;
    u64 start_ns;
    u32 contended;
    u32 pad;
};

struct site_key {
    u64 mutex;
    s32 stack_id;
    u32 pid;
    u64 user_stack_hash;    /* nonzero: the stack is in `ustacks` */
};

struct site_stats {
    u64 acquisitions;
    u64 contended;
    u64 wait_total_ns;      /* time in contended lock calls */
    u64 wait_max_ns;
    u64 hold_total_ns;
    u64 hold_max_ns;
    u64 holds;
};

struct held_key {
    u64 mutex;
    u32 tid;
    u32 pad;
};

struct held_val {
    u64 since_ns;
    struct site_key site;
};

BPF_HASH(in_lock, u32, struct lock_call, 65536);
BPF_HASH(stats, struct site_key, struct site_stats, 10240);
BPF_HASH(held, struct held_key, struct held_val, 65536);

int lock_enter(struct pt_regs *ctx)
{
    if (!ptk_selected())
        return 0;
    u32 tid = bpf_get_current_pid_tgid();
    struct lock_call call = {};
    call.mutex = PT_REGS_PARM1(ctx);
    call.start_ns = bpf_ktime_get_ns();
    if (in_lock.update(&tid, &call))
        ptk_count_loss(PTK_MAP_FULL);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_futex)
{
    u32 tid = bpf_get_current_pid_tgid();
    struct lock_call *call = in_lock.lookup(&tid);
    if (call)
        call->contended = 1;
    return PTK_TP_PASS;
}

int lock_return(struct pt_regs *ctx)
{
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u32 tid = pid_tgid;
    struct lock_call *call = in_lock.lookup(&tid);
    if (!call)
        return 0;
    u64 now = bpf_ktime_get_ns();
    struct lock_call done = *call;
    in_lock.delete(&tid);
    if (PT_REGS_RC(ctx) != 0)      /* not acquired (error) */
        return 0;

    struct site_key key = {};
    key.mutex = done.mutex;
    key.pid = pid_tgid >> 32;
    key.stack_id = ptk_user_stack(ctx, key.pid, &key.user_stack_hash);
    struct site_stats zero = {};
    struct site_stats *st = stats.lookup_or_try_init(&key, &zero);
    if (!st) {
        ptk_count_loss(PTK_MAP_FULL);
        return 0;
    }
    __sync_fetch_and_add(&st->acquisitions, 1);
    if (done.contended) {
        u64 wait = now - done.start_ns;
        __sync_fetch_and_add(&st->contended, 1);
        __sync_fetch_and_add(&st->wait_total_ns, wait);
        if (wait > st->wait_max_ns)
            st->wait_max_ns = wait;
    }
    struct held_key hk = {};
    hk.mutex = done.mutex;
    hk.tid = tid;
    struct held_val hv = {};
    hv.since_ns = now;
    hv.site = key;
    if (held.update(&hk, &hv))
        ptk_count_loss(PTK_MAP_FULL);
    return 0;
}

int unlock_enter(struct pt_regs *ctx)
{
    if (!ptk_selected())
        return 0;
    struct held_key hk = {};
    hk.mutex = PT_REGS_PARM1(ctx);
    hk.tid = bpf_get_current_pid_tgid();
    struct held_val *hv = held.lookup(&hk);
    if (!hv)
        return 0;
    u64 hold = bpf_ktime_get_ns() - hv->since_ns;
    /* Created when absent: with --interval the site's stats are read and
     * deleted at each boundary, also while its mutex is held (held and
     * in_lock are kept, so a hold or wait counts once, where it ends). */
    struct site_key site = hv->site;
    held.delete(&hk);
    struct site_stats zero = {};
    struct site_stats *st = stats.lookup_or_try_init(&site, &zero);
    if (!st) {
        ptk_count_loss(PTK_MAP_FULL);
        return 0;
    }
    __sync_fetch_and_add(&st->hold_total_ns, hold);
    __sync_fetch_and_add(&st->holds, 1);
    if (hold > st->hold_max_ns)
        st->hold_max_ns = hold;
    return 0;
}
