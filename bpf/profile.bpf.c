/* profile: sample stacks on a timer (perf_event cpu-clock) on every CPU and
 * count them in the kernel, keyed by (pid, user stack, kernel stack, comm).
 *
 * Parameters: INCLUDE_IDLE, and those of ptk_stacks.h (FOLLOW_MODE,
 * USER_STACKS, KERNEL_STACKS, STACK_STORAGE_SIZE...);
 * CFI_UNWIND (ptk_unwind.h: user stacks unwound in the kernel from CFI tables);
 * FIRST_SAMPLES (ptk_first_samples.h: the first samples of a process not
 * loaded yet are copied to user space, unwound there once it is);
 * PYTHON_STACKS: samples of CPython threads are counted in py_counts with
 * their Python stack's id (ptk_python.h), the others in counts as before.
 */
#include "vmlinux.h"
#define PTK_PROBE_MAPS_FILLED_ON_INSERT 1   /* see pytracekit.h */
#include "pytracekit.h"
#include "ptk_unwind.h"
#include "ptk_first_samples.h"
#include "ptk_kstack.h"
#include "ptk_stacks.h"
#include "ptk_sample_log.h"

#ifndef PYTHON_STACKS
#define PYTHON_STACKS 0
#endif

#ifndef INCLUDE_IDLE
#define INCLUDE_IDLE 0
#endif

PTK_PROBE_HASH(counts, struct ptk_stack_key, u64, MAX_STACKS);   /* see pytracekit.h */

#if PYTHON_STACKS
#include "ptk_python.h"
PTK_PROBE_HASH(py_counts, struct ptk_py_sample_key, u64, MAX_STACKS);
#endif

int on_cpu_sample(struct bpf_perf_event_data *ctx)
{
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32, tid = id;

    if (tid == 0) {   /* the idle task */
        if (!INCLUDE_IDLE || FOLLOW_MODE)
            return 0;
    } else if (!ptk_ids_selected(tgid, tid)) {
        return 0;
    }

    struct ptk_stack_key key = {};
    int fallback = ptk_current_stack(&key, ctx);
    key.tid = 0;   /* aggregate per process, as BCC's profile does */
    u64 zero = 0, *count;
#if PYTHON_STACKS
    u64 py_stack_id = tid ? ptk_python_stack(tgid, tid) : 0;
    if (py_stack_id) {
        struct ptk_py_sample_key py_key = {.key = key, .py_stack_id = py_stack_id};
        count = py_counts.lookup_or_try_init(&py_key, &zero);
        if (count)
            __sync_fetch_and_add(count, 1);
        else
            ptk_count_loss(PTK_MAP_FULL);
        ptk_log_sample(&key, py_stack_id);
        return 0;
    }
#endif
#if FIRST_SAMPLES
    if (fallback && ptk_copy_first(&key))
        return 0;   /* counted by user space (collect/first_samples.py) */
#endif
    ptk_log_sample(&key, 0);
    count = counts.lookup_or_try_init(&key, &zero);
    if (count)
        __sync_fetch_and_add(count, 1);
    else
        ptk_count_loss(PTK_MAP_FULL);
    return 0;
}
