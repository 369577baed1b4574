/* cpuunclaimed: each CPU's run queue length (rq->nr_running, all scheduling
 * classes, the running task included) sampled by a cpu-clock perf event with
 * a fixed period on every CPU, stored by sample tick (time / period) and CPU:
 * user space takes the ticks every CPU has sampled and counts, per tick, idle
 * CPUs while other CPUs had tasks waiting (BCC's "unclaimed idle"). The queue
 * is reached from the interrupted task's se.cfs_rq->rq, as in runqlen. */
#include "vmlinux.h"
#include "pytracekit.h"

#ifndef PERIOD_NS
#define PERIOD_NS 10101010      /* 99 Hz */
#endif
#ifndef SAMPLE_ENTRIES
#define SAMPLE_ENTRIES 65536
#endif

struct sample_key {
    u64 tick;
    u32 cpu;
    u32 pad;
};

struct rq_sample {
    u64 ts;                     /* when this CPU sampled (-J: offsets in the tick) */
    u32 running;
    u32 pad;
};

BPF_HASH(samples, struct sample_key, struct rq_sample, SAMPLE_ENTRIES);

int on_sample(struct bpf_perf_event_data *ctx)
{
    /* plain offsets: see runqlen.bpf.c */
    void *task = (void *)bpf_get_current_task();
    void *cfs = NULL, *rq = NULL;
    u32 running = 0;
    bpf_probe_read_kernel(&cfs, sizeof(cfs), task + __builtin_offsetof(struct task_struct, se)
                          + __builtin_offsetof(struct sched_entity, cfs_rq));
    if (cfs)
        bpf_probe_read_kernel(&rq, sizeof(rq), cfs + __builtin_offsetof(struct cfs_rq, rq));
    if (rq)
        bpf_probe_read_kernel(&running, sizeof(running),
                              rq + __builtin_offsetof(struct rq, nr_running));
    u64 now = bpf_ktime_get_ns();
    struct sample_key key = { .tick = now / PERIOD_NS, .cpu = bpf_get_smp_processor_id() };
    struct rq_sample value = { .ts = now, .running = running };
    if (samples.update(&key, &value) != 0)
        ptk_count_loss(PTK_MAP_FULL);
    return 0;
}
