/* runqlen: sample each CPU's run queue length at a fixed rate (cpu-clock
 * perf event). The length is the CPU's rq->nr_running (all scheduling
 * classes), reached without kprobes through the interrupted task's
 * se.cfs_rq->rq; the running task itself is not counted as waiting. */
#include "vmlinux.h"
#include "pytracekit.h"

#ifndef PER_CPU
#define PER_CPU 0
#endif
#define MAX_LEN 64      /* longer queues are counted in the last bucket */

BPF_HASH(hist, struct ptk_hist_key, u64, 4096);

int on_sample(struct bpf_perf_event_data *ctx)
{
    /* Plain offsets: BCC's rewriter mangles `&task->se.cfs_rq` on a task
     * pointer that came from bpf_get_current_task(). */
    void *task = (void *)bpf_get_current_task();
    void *cfs = NULL, *rq = NULL;
    unsigned int running = 0;
    bpf_probe_read_kernel(&cfs, sizeof(cfs), task + __builtin_offsetof(struct task_struct, se)
                          + __builtin_offsetof(struct sched_entity, cfs_rq));
    if (cfs)
        bpf_probe_read_kernel(&rq, sizeof(rq), cfs + __builtin_offsetof(struct cfs_rq, rq));
    if (rq)
        bpf_probe_read_kernel(&running, sizeof(running), rq + __builtin_offsetof(struct rq, nr_running));
    u32 len = running > 0 ? running - 1 : 0;
    if (len > MAX_LEN)
        len = MAX_LEN;

    struct ptk_hist_key key = {};
    key.label = PER_CPU ? bpf_get_smp_processor_id() : 0;
    key.slot = len;
    u64 zero = 0, *count = hist.lookup_or_try_init(&key, &zero);
    if (count)
        __sync_fetch_and_add(count, 1);
    else
        ptk_count_loss(PTK_MAP_FULL);
    return 0;
}
