/* profile: sample stacks on a timer (perf_event cpu-clock) on every CPU and
 * count them in the kernel, keyed by (pid, user stack, kernel stack, comm).
 *
 * Parameters: INCLUDE_IDLE, and those of ptk_stacks.h (SELECT_BY,
 * FOLLOW_FORKS, EXEC_PID, USER_STACKS, KERNEL_STACKS, STACK_STORAGE_SIZE...) and
 * CFI_UNWIND (ptk_unwind.h: user stacks unwound in the kernel from CFI tables).
 */
#include "vmlinux.h"
#include "pytracekit.h"
#include "ptk_unwind.h"
#include "ptk_stacks.h"

#ifndef INCLUDE_IDLE
#define INCLUDE_IDLE 0
#endif

BPF_HASH(counts, struct ptk_stack_key, u64, MAX_STACKS);

int on_cpu_sample(struct bpf_perf_event_data *ctx)
{
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32, tid = id;

    if (tid == 0) {   /* the idle task */
        if (!INCLUDE_IDLE || SELECT_BY)
            return 0;
    } else if (!ptk_ids_selected(tgid, tid)) {
        return 0;
    }

    struct ptk_stack_key key = {};
    ptk_current_stack(&key, ctx);
    key.tid = 0;   /* aggregate per process, as BCC's profile does */
    u64 zero = 0, *count = counts.lookup_or_try_init(&key, &zero);
    if (count)
        __sync_fetch_and_add(count, 1);
    else
        ptk_count_loss(PTK_MAP_FULL);
    return 0;
}
