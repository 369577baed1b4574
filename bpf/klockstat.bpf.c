/* klockstat: kernel lock contention by lock and kernel stack, from the
 * lock:contention_begin/contention_end tracepoints (no kprobes needed).
 * A wait is timed from the first contention_begin of a thread on a lock to
 * its contention_end; a second begin while waiting (spin, then sleep) is
 * the same wait. Kernel stacks are stored by a hash of their frames
 * (ptk_kstack.h): a stack map's bucket collisions would drop some. */
#include "vmlinux.h"
#include "pytracekit.h"
#define KSTACK_HASH 1
#include "ptk_kstack.h"

struct wait_start {
    u64 lock;
    u64 start_ns;
    s32 stack_id;               /* -EFAULT, or why the stack is missing */
    u32 flags;
    u64 stack_hash;             /* nonzero: the stack is in `kstacks` */
};

struct lock_key {
    u64 lock;
    s32 stack_id;
    u32 flags;
    u64 stack_hash;
};

struct lock_stats {
    u64 count;
    u64 total_ns;
    u64 max_ns;
    u32 max_tid;
    u32 max_pid;
    char max_comm[TASK_COMM_LEN];
};

BPF_HASH(waiting, u32, struct wait_start, 65536);
BPF_HASH(stats, struct lock_key, struct lock_stats, 10240);

TRACEPOINT_PROBE(lock, contention_begin)
{
    if (!ptk_selected())
        return PTK_TP_PASS;
    u32 tid = bpf_get_current_pid_tgid();
    struct wait_start *prev = waiting.lookup(&tid);
    if (prev && prev->lock == (u64)args->lock_addr)
        return PTK_TP_PASS;
    struct wait_start ws = {};
    ws.lock = (u64)args->lock_addr;
    ws.start_ns = bpf_ktime_get_ns();
    ws.flags = args->flags;
    ws.stack_hash = ptk_kernel_stack_hash(args, &ws.stack_id);
    if (waiting.update(&tid, &ws))
        ptk_count_loss(PTK_MAP_FULL);
    return PTK_TP_PASS;
}

TRACEPOINT_PROBE(lock, contention_end)
{
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u32 tid = pid_tgid;
    struct wait_start *ws = waiting.lookup(&tid);
    if (!ws || ws->lock != (u64)args->lock_addr)
        return PTK_TP_PASS;
    u64 wait = bpf_ktime_get_ns() - ws->start_ns;
    struct lock_key key = {};
    key.lock = ws->lock;
    key.stack_id = ws->stack_id;
    key.stack_hash = ws->stack_hash;
    key.flags = ws->flags;
    waiting.delete(&tid);

    struct lock_stats zero = {};
    struct lock_stats *st = stats.lookup_or_try_init(&key, &zero);
    if (!st) {
        ptk_count_loss(PTK_MAP_FULL);
        return PTK_TP_PASS;
    }
    __sync_fetch_and_add(&st->count, 1);
    __sync_fetch_and_add(&st->total_ns, wait);
    if (wait > st->max_ns) {
        st->max_ns = wait;
        st->max_tid = tid;
        st->max_pid = pid_tgid >> 32;
        bpf_get_current_comm(&st->max_comm, sizeof(st->max_comm));
    }
    return PTK_TP_PASS;
}
