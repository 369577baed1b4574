/* biostacks: block I/O latency as a log2 histogram per initiating kernel
 * stack (with the process and disk), as libbpf-tools' biostacks. The stack
 * is taken where the request starts, in the task that starts it
 * (block:block_io_start); for a disk with its I/O accounting off that
 * tracepoint never fires, and the request is known from its issue
 * (block:block_rq_issue: the issuing stack). Latency runs from there to
 * block:block_rq_complete. The tracepoints carry no request pointer: a
 * request is known by its device and start sector, as in ptk_block.h.
 * Stacks are stored by a hash of their frames (ptk_kstack.h): a stack map's
 * bucket collisions would drop some. */
#include "vmlinux.h"
#include "pytracekit.h"

#ifndef FILTER_DEV              /* kernel dev_t ((major << 20) | minor); 0: any */
#define FILTER_DEV 0
#endif
#ifndef UNIT_NS                 /* 1000: microseconds, 1000000: milliseconds */
#define UNIT_NS 1000
#endif
#ifndef STACK_ENTRIES
#define STACK_ENTRIES 4096
#endif
#define KSTACK_HASH 1
#define KSTACKS_SIZE STACK_ENTRIES
#include "ptk_kstack.h"

struct rq_key {
    u64 sector;
    u32 dev;
    u32 pad;
};

struct rq_info {
    u64 ts;
    u32 pid;
    s32 stack;                  /* -EFAULT, or why the stack is missing */
    char comm[TASK_COMM_LEN];
    u64 stack_hash;             /* nonzero: the stack is in `kstacks` */
};

struct hist_key {
    u32 pid;
    u32 dev;
    s32 stack;
    u32 slot;
    char comm[TASK_COMM_LEN];
    u64 stack_hash;
};

BPF_HASH(requests, struct rq_key, struct rq_info, 10240);
BPF_HASH(hist, struct hist_key, u64, 8192);

/* The request's start, in its task's context; `only_new`: leave a start
 * already noted (an issue after block_io_start) as it is. */
static inline void note(void *ctx, u32 dev, u64 sector, bool only_new)
{
    if (FILTER_DEV && dev != FILTER_DEV)
        return;
    struct rq_key key = { .sector = sector, .dev = dev };
    if (only_new && requests.lookup(&key))
        return;
    if (!ptk_selected()) {
        requests.delete(&key);   /* a stale start at this sector must not be taken */
        return;
    }
    struct rq_info info = { .ts = bpf_ktime_get_ns(),
                            .pid = bpf_get_current_pid_tgid() >> 32 };
    info.stack_hash = ptk_kernel_stack_hash(ctx, &info.stack);
    bpf_get_current_comm(&info.comm, sizeof(info.comm));
    if (requests.update(&key, &info) != 0)
        ptk_count_loss(PTK_MAP_FULL);
}

TRACEPOINT_PROBE(block, block_io_start)
{
    note(args, args->dev, args->sector, false);
    return PTK_TP_PASS;
}

TRACEPOINT_PROBE(block, block_rq_issue)
{
    note(args, args->dev, args->sector, true);
    return PTK_TP_PASS;
}

TRACEPOINT_PROBE(block, block_rq_complete)
{
    struct rq_key key = { .sector = args->sector, .dev = args->dev };
    struct rq_info *info = requests.lookup(&key);
    if (!info)
        return PTK_TP_PASS;
    struct hist_key hk = { .pid = info->pid, .dev = args->dev, .stack = info->stack,
                           .stack_hash = info->stack_hash };
    hk.slot = ptk_log2_slot((bpf_ktime_get_ns() - info->ts) / UNIT_NS);
    __builtin_memcpy(hk.comm, info->comm, sizeof(hk.comm));
    requests.delete(&key);
    u64 zero = 0, *count = hist.lookup_or_try_init(&hk, &zero);
    if (count)
        __sync_fetch_and_add(count, 1);
    else
        ptk_count_loss(PTK_MAP_FULL);
    return PTK_TP_PASS;
}
