/* mutexstat: pthread mutex contention by mutex and calling stack, through
 * uprobes on the entries of pthread_mutex_lock and pthread_mutex_unlock (at
 * the first instruction there the kernel emulates, not single-steps, with the
 * mutex and the stack still the entry's: probes/emulated.py) and the futex
 * tracepoints. No return probe: the stack is unwound at the lock's
 * entry, before the mutex is taken, so the unwind (most of the tool's own
 * time) no longer lengthens the caller's critical section, and no timing
 * includes it. (A uretprobe itself cost little on Linux 6.18: bench
 * event_cost.)
 *
 * A lock call is contended when the thread waits in futex() on the mutex's
 * lock word (an address inside the pthread_mutex_t: glibc's is at offset 0,
 * musl's at 4) while the call may still run: from its entry until the
 * thread makes another futex call, locks or unlocks a mutex, or waits on a
 * condition variable (whose internal relock is not a lock call). The wait
 * ends at the last such futex return; the hold runs from there (or from the
 * entry, uncontended) to the unlock, where the acquisition, its wait and its
 * hold are counted. The stack: unwound in the kernel from CFI (CFI_UNWIND,
 * ptk_ustack.h; its leaf, pthread_mutex_lock itself, is dropped in user
 * space), else a frame-pointer walk, which at an entry does not see the
 * immediate caller: its return address is kept in the key. */
#include "vmlinux.h"
#include "pytracekit.h"

#define USTACK_LAYOUT 1   /* user_stacks: frame-pointer walks by hash (ptk_ustack.h) */
#define FP_USTACKS_SIZE 16384
#include "ptk_unwind.h"
#include "ptk_ustack.h"

struct site_key {
    u64 mutex;
    s32 stack_id;
    u32 pid;
    u64 user_stack_hash;    /* nonzero: the stack is in `ustacks` */
    u64 caller;             /* the return address at the entry (for frame-pointer walks) */
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
    u64 start_ns;           /* the lock call's entry */
    u64 acquired_ns;        /* the entry, or the last futex return inside the call */
    u32 contended;
    u32 pad;
    struct site_key site;
};

BPF_HASH(stats, struct site_key, struct site_stats, 10240);
BPF_HASH(held, struct held_key, struct held_val, 65536);
BPF_HASH(locking, u32, u64, 65536);    /* tid -> the mutex whose lock call may still run */

#define MUTEX_SIZE 40   /* sizeof(pthread_mutex_t), x86-64: its lock word is inside */
#define FUTEX_CMD(op) ((op) & ~(128 | 256))   /* less FUTEX_PRIVATE_FLAG, _CLOCK_REALTIME */

int lock_enter(struct pt_regs *ctx)
{
    if (!ptk_selected())
        return 0;
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u32 tid = pid_tgid;
    u64 mutex = PT_REGS_PARM1(ctx);
    struct held_val hv = {};
    hv.site.mutex = mutex;
    hv.site.pid = pid_tgid >> 32;
    hv.site.stack_id = ptk_user_stack(ctx, hv.site.pid, &hv.site.user_stack_hash);
    /* the return address (rsp is still the entry's): user space puts it first
     * when the stack is a frame-pointer walk, which does not see the caller */
    bpf_probe_read_user(&hv.site.caller, sizeof(hv.site.caller), (void *)PT_REGS_SP(ctx));
    /* after the unwind: the probe's own time is neither wait nor hold */
    hv.start_ns = bpf_ktime_get_ns();
    hv.acquired_ns = hv.start_ns;
    struct held_key hk = {};
    hk.mutex = mutex;
    hk.tid = tid;
    if (held.update(&hk, &hv) || locking.update(&tid, &mutex))
        ptk_count_loss(PTK_MAP_FULL);
    return 0;
}

/* pthread_cond_*wait: the lock call before it has ended */
int settle(struct pt_regs *ctx)
{
    u32 tid = bpf_get_current_pid_tgid();
    locking.delete(&tid);
    return 0;
}

PTK_INLINE struct held_val *lock_call(u32 tid)
{
    u64 *mutex = locking.lookup(&tid);
    if (!mutex)
        return 0;
    struct held_key hk = {};
    hk.mutex = *mutex;
    hk.tid = tid;
    return held.lookup(&hk);
}

TRACEPOINT_PROBE(syscalls, sys_enter_futex)
{
    if (!ptk_selected())
        return PTK_TP_PASS;
    u32 tid = bpf_get_current_pid_tgid();
    u64 *mutex = locking.lookup(&tid);
    if (!mutex)
        return PTK_TP_PASS;
    int cmd = FUTEX_CMD(args->op);
    bool waits = cmd == 0 /* WAIT */ || cmd == 9 /* WAIT_BITSET */ ||
                 cmd == 6 /* LOCK_PI */ || cmd == 13 /* LOCK_PI2 */;
    u64 offset = (u64)args->uaddr - *mutex;   /* glibc: 0; musl: 4 */
    if (offset >= MUTEX_SIZE || !waits) {
        locking.delete(&tid);      /* not the lock call's wait: that call has ended */
        return PTK_TP_PASS;
    }
    struct held_val *hv = lock_call(tid);
    if (hv)
        hv->contended = 1;
    return PTK_TP_PASS;
}

TRACEPOINT_PROBE(syscalls, sys_exit_futex)
{
    if (!ptk_selected())
        return PTK_TP_PASS;
    struct held_val *hv = lock_call(bpf_get_current_pid_tgid());
    if (hv && hv->contended)
        hv->acquired_ns = bpf_ktime_get_ns();
    return PTK_TP_PASS;
}

int unlock_enter(struct pt_regs *ctx)
{
    if (!ptk_selected())
        return 0;
    u64 now = bpf_ktime_get_ns();
    u32 tid = bpf_get_current_pid_tgid();
    locking.delete(&tid);
    struct held_key hk = {};
    hk.mutex = PT_REGS_PARM1(ctx);
    hk.tid = tid;
    struct held_val *hv = held.lookup(&hk);
    if (!hv)
        return 0;
    struct held_val done = *hv;
    held.delete(&hk);
    struct site_stats zero = {};
    struct site_stats *st = stats.lookup_or_try_init(&done.site, &zero);
    if (!st) {
        ptk_count_loss(PTK_MAP_FULL);
        return 0;
    }
    u64 hold = now - done.acquired_ns;
    __sync_fetch_and_add(&st->acquisitions, 1);
    __sync_fetch_and_add(&st->holds, 1);
    __sync_fetch_and_add(&st->hold_total_ns, hold);
    if (hold > st->hold_max_ns)
        st->hold_max_ns = hold;
    if (done.contended) {
        u64 wait = done.acquired_ns - done.start_ns;
        __sync_fetch_and_add(&st->contended, 1);
        __sync_fetch_and_add(&st->wait_total_ns, wait);
        if (wait > st->wait_max_ns)
            st->wait_max_ns = wait;
    }
    return 0;
}
